//! The embedded store: sled at `[node] data_dir`. Retained messages live in the tree
//! `retained`: key = topic, value = format byte, QoS, timestamp (ms), payload.

use std::path::Path;

use bytes::Bytes;

use super::{CheckReport, RetainedStore, RetainedWrite, StoreError, StoredRetained};

const FORMAT: u8 = 1;
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
const HEADER: usize = 1 + 1 + 8;

pub struct SledStore {
    db: sled::Db,
    retained: sled::Tree,
}

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
        Ok(SledStore { db, retained })
    }
}

fn encode(value: &StoredRetained) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER + value.payload.len());
    bytes.push(FORMAT);
    bytes.push(value.qos);
    bytes.extend_from_slice(&value.ts_ms.to_be_bytes());
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
    if value.len() < HEADER {
        return Err(corrupt("record shorter than its header"));
    }
    if value[0] != FORMAT {
        return Err(corrupt(&format!("unknown record format {}", value[0])));
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&value[2..HEADER]);
    Ok(StoredRetained {
        qos: value[1],
        ts_ms: u64::from_be_bytes(ts),
        payload: Bytes::copy_from_slice(&value[HEADER..]),
        topic,
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
