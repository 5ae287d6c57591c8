//! The embedded store: sled at `[node] data_dir`. Retained messages live in the tree
//! `retained`: key = topic, value = format byte, QoS, timestamp (ms), payload.

use std::path::Path;

use bytes::Bytes;

use super::{
    CheckReport, HistoryRecord, RetainedStore, RetainedWrite, SavedHistory, SessionSnapshot,
    StoreError, StoredRetained,
};

const FORMAT: u8 = 1;
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
const HEADER: usize = 1 + 1 + 8 + 8;

pub struct SledStore {
    db: sled::Db,
    retained: sled::Tree,
    history: sled::Tree,
    sessions: sled::Tree,
}

/// Key of the saved history's header in the `history` tree (records are keyed by
/// their 8-byte offset, so a shorter key cannot collide).
const HISTORY_HEADER: &[u8] = b"header";

impl SledStore {
    /// Opens (or creates) the store in `dir`. Errors name the folder.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let open_error = |message: String| StoreError::Open {
            path: dir.to_path_buf(),
            message,
        };
        if dir.exists() && !dir.is_dir() {
            return Err(open_error("exists and is not a folder".into()));
        }
        std::fs::create_dir_all(dir).map_err(|e| open_error(format!("cannot create: {e}")))?;
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            // sled's default page cache is 1 GiB; retained messages are read once at start.
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("could not acquire lock") {
                    open_error("in use by another process (a running switchboard? stop it, or use its HTTP admin API)".into())
                } else {
                    open_error(format!("cannot open the store: {text}"))
                }
            })?;
        let retained = db
            .open_tree("retained")
            .map_err(|e| open_error(format!("cannot open the retained tree: {e}")))?;
        let history = db
            .open_tree("history")
            .map_err(|e| open_error(format!("cannot open the history tree: {e}")))?;
        let sessions = db
            .open_tree("sessions")
            .map_err(|e| open_error(format!("cannot open the sessions tree: {e}")))?;
        Ok(SledStore {
            db,
            retained,
            history,
            sessions,
        })
    }
}

fn encode(value: &StoredRetained) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER + value.payload.len());
    bytes.push(FORMAT);
    bytes.push(value.qos);
    bytes.extend_from_slice(&value.ts_ms.to_be_bytes());
    bytes.extend_from_slice(&value.expires_at_ms.unwrap_or(0).to_be_bytes());
    bytes.extend_from_slice(&value.payload);
    bytes
}

fn decode(key: &[u8], value: &[u8]) -> Result<StoredRetained, StoreError> {
    let topic = String::from_utf8(key.to_vec()).map_err(|_| StoreError::Corrupt {
        topic: String::from_utf8_lossy(key).into_owned(),
        message: "topic is not UTF-8".into(),
    })?;
    let corrupt = |message: &str| StoreError::Corrupt {
        topic: topic.clone(),
        message: message.into(),
    };
    let (Some(header), Some(payload)) = (value.get(..HEADER), value.get(HEADER..)) else {
        return Err(corrupt("record shorter than its header"));
    };
    let [format, qos, ts @ .., _, _, _, _, _, _, _, _] = header else {
        return Err(corrupt("record shorter than its header"));
    };
    if *format != FORMAT {
        return Err(corrupt(&format!("unknown record format {format}")));
    }
    let ts: [u8; 8] = ts.try_into().map_err(|_| corrupt("bad timestamp"))?;
    let expires: [u8; 8] = header
        .get(10..HEADER)
        .and_then(|e| e.try_into().ok())
        .ok_or_else(|| corrupt("bad expiry"))?;
    let expires_at_ms = u64::from_be_bytes(expires);
    Ok(StoredRetained {
        qos: *qos,
        ts_ms: u64::from_be_bytes(ts),
        expires_at_ms: (expires_at_ms != 0).then_some(expires_at_ms),
        payload: Bytes::copy_from_slice(payload),
        topic,
    })
}

fn encode_history(record: &HistoryRecord) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(12 + record.topic.len() + record.payload.len());
    bytes.push(FORMAT);
    bytes.push(u8::from(record.kept));
    bytes.extend_from_slice(&record.ts_ms.to_be_bytes());
    bytes.extend_from_slice(&(record.topic.len() as u16).to_be_bytes());
    bytes.extend_from_slice(record.topic.as_bytes());
    bytes.extend_from_slice(&record.payload);
    bytes
}

fn decode_history(key: &[u8], value: &[u8]) -> Result<HistoryRecord, StoreError> {
    let corrupt = |message: &str| StoreError::Corrupt {
        topic: format!("<history {key:?}>"),
        message: message.into(),
    };
    let offset = u64::from_be_bytes(key.try_into().map_err(|_| corrupt("bad history key"))?);
    let Some(&[format, kept, t0, t1, t2, t3, t4, t5, t6, t7, l0, l1]) = value.get(..12) else {
        return Err(corrupt("bad history record"));
    };
    if format != FORMAT {
        return Err(corrupt("bad history record"));
    }
    let topic_len = usize::from(u16::from_be_bytes([l0, l1]));
    let topic = value
        .get(12..12 + topic_len)
        .and_then(|t| std::str::from_utf8(t).ok())
        .ok_or_else(|| corrupt("bad history topic"))?;
    let payload = value.get(12 + topic_len..).unwrap_or_default();
    Ok(HistoryRecord {
        offset,
        topic: topic.to_string(),
        payload: Bytes::copy_from_slice(payload),
        ts_ms: u64::from_be_bytes([t0, t1, t2, t3, t4, t5, t6, t7]),
        kept: kept == 1,
    })
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

impl RetainedStore for SledStore {
    fn apply(&self, writes: &[RetainedWrite]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for write in writes {
            match &write.value {
                Some(value) => batch.insert(write.topic.as_bytes(), encode(value)),
                None => batch.remove(write.topic.as_bytes()),
            }
        }
        self.retained.apply_batch(batch).map_err(io)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(io)
    }

    fn load(&self) -> Result<Vec<StoredRetained>, StoreError> {
        self.retained
            .iter()
            .map(|entry| {
                let (key, value) = entry.map_err(io)?;
                decode(&key, &value)
            })
            .collect()
    }

    fn save_history(&self, history: &SavedHistory) -> Result<(), StoreError> {
        self.history.clear().map_err(io)?;
        let mut batch = sled::Batch::default();
        for record in &history.records {
            batch.insert(&record.offset.to_be_bytes(), encode_history(record));
        }
        let mut header = history.next_offset.to_be_bytes().to_vec();
        header.extend_from_slice(history.epoch.as_bytes());
        batch.insert(HISTORY_HEADER, header);
        self.history.apply_batch(batch).map_err(io)?;
        self.flush()
    }

    fn take_history(&self) -> Result<Option<SavedHistory>, StoreError> {
        let Some(header) = self.history.get(HISTORY_HEADER).map_err(io)? else {
            self.history.clear().map_err(io)?;
            return Ok(None);
        };
        let mut saved = SavedHistory::default();
        if let (Some(next), Some(epoch)) = (header.get(..8), header.get(8..)) {
            if let (Ok(next), false) = (<[u8; 8]>::try_from(next), epoch.is_empty()) {
                saved.next_offset = u64::from_be_bytes(next);
                saved.epoch = String::from_utf8_lossy(epoch).into_owned();
            }
        }
        for entry in self.history.iter() {
            let (key, value) = entry.map_err(io)?;
            if &*key != HISTORY_HEADER {
                saved.records.push(decode_history(&key, &value)?);
            }
        }
        self.history.clear().map_err(io)?;
        self.flush()?;
        Ok((!saved.epoch.is_empty()).then_some(saved))
    }

    fn save_sessions(&self, sessions: &[SessionSnapshot]) -> Result<(), StoreError> {
        let keep: std::collections::HashSet<&[u8]> =
            sessions.iter().map(|s| s.client_id.as_bytes()).collect();
        let mut batch = sled::Batch::default();
        for key in self.sessions.iter().keys() {
            let key = key.map_err(io)?;
            if !keep.contains(&*key) {
                batch.remove(key);
            }
        }
        for session in sessions {
            batch.insert(
                session.client_id.as_bytes(),
                super::sessions::encode(session),
            );
        }
        self.sessions.apply_batch(batch).map_err(io)?;
        self.flush()
    }

    fn load_sessions(&self) -> Result<Vec<SessionSnapshot>, StoreError> {
        self.sessions
            .iter()
            .map(|entry| {
                let (key, value) = entry.map_err(io)?;
                super::sessions::decode(&key, &value)
            })
            .collect()
    }

    fn check(&self) -> Result<CheckReport, StoreError> {
        let mut report = CheckReport::default();
        for entry in self.retained.iter() {
            let (key, value) = entry.map_err(io)?;
            decode(&key, &value)?;
            report.retained += 1;
            report.bytes += (key.len() + value.len()) as u64;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_survive_reopening_and_deletes_stick() {
        let dir = std::env::temp_dir().join(format!("sb-sled-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let value = |topic: &str, payload: &'static [u8]| RetainedWrite {
            topic: topic.into(),
            value: Some(StoredRetained {
                topic: topic.into(),
                payload: Bytes::from_static(payload),
                qos: 1,
                ts_ms: 42,
                expires_at_ms: None,
            }),
        };
        {
            let store = SledStore::open(&dir).unwrap();
            store
                .apply(&[value("a/1", b"one"), value("a/2", b"two")])
                .unwrap();
            store
                .apply(&[RetainedWrite {
                    topic: "a/1".into(),
                    value: None,
                }])
                .unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(&dir).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].topic, "a/2");
        assert_eq!(&loaded[0].payload[..], b"two");
        assert_eq!((loaded[0].qos, loaded[0].ts_ms), (1, 42));
        assert_eq!(store.check().unwrap().retained, 1);

        let history = SavedHistory {
            epoch: "epoch-1".into(),
            next_offset: 8,
            records: vec![HistoryRecord {
                offset: 7,
                topic: "h/1".into(),
                payload: Bytes::from_static(b"x"),
                ts_ms: 5,
                kept: true,
            }],
        };
        store.save_history(&history).unwrap();
        let taken = store.take_history().unwrap().expect("saved history");
        assert_eq!((taken.epoch.as_str(), taken.next_offset), ("epoch-1", 8));
        assert_eq!(taken.records, history.records);
        assert!(store.take_history().unwrap().is_none(), "taken once");
        drop(store);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_file_where_the_folder_should_be_is_named() {
        let file = std::env::temp_dir().join(format!("sb-sled-file-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let err = SledStore::open(&file).err().expect("refused");
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        std::fs::remove_file(&file).ok();
    }
}
