//! Offline administration of the data dir: `switchboard retained list|get|delete`
//! and `switchboard data check`. A running switchboard holds the store's lock; use
//! its HTTP admin API (`[http] admin = true`) instead.

use std::path::Path;

use switchboard_bridge::store::{RetainedStore, RetainedWrite, SledStore, StoredRetained};
use switchboard_bridge::topic::{matches, valid_filter};

fn open(dir: &Path) -> Result<SledStore, String> {
    SledStore::open(dir).map_err(|e| e.to_string())
}

fn matching(store: &SledStore, filter: &str) -> Result<Vec<StoredRetained>, String> {
    if !valid_filter(filter) {
        return Err(format!("{filter:?} is not an MQTT topic filter"));
    }
    Ok(store
        .load()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|r| matches(filter, &r.topic))
        .collect())
}

fn show(record: &StoredRetained) -> String {
    match std::str::from_utf8(&record.payload) {
        Ok(text) => text.to_string(),
        Err(_) => format!("<{} bytes of binary>", record.payload.len()),
    }
}

/// Prints `topic<TAB>payload` for every retained message matching `filter`.
pub fn list(dir: &Path, filter: &str) -> Result<(), String> {
    let store = open(dir)?;
    let found = matching(&store, filter)?;
    for record in &found {
        println!("{}\t{}", record.topic, show(record));
    }
    eprintln!("{} retained message(s)", found.len());
    Ok(())
}

/// Prints one topic's retained payload, raw.
pub fn get(dir: &Path, topic: &str) -> Result<(), String> {
    let store = open(dir)?;
    let record = store
        .load()
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|r| r.topic == topic)
        .ok_or_else(|| format!("no retained message on {topic:?}"))?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&record.payload)
        .map_err(|e| e.to_string())
}

/// Deletes every retained message matching `filter`, durably.
pub fn delete(dir: &Path, filter: &str) -> Result<(), String> {
    let store = open(dir)?;
    let writes: Vec<RetainedWrite> = matching(&store, filter)?
        .into_iter()
        .map(|r| RetainedWrite {
            topic: r.topic,
            value: None,
        })
        .collect();
    store.apply(&writes).map_err(|e| e.to_string())?;
    store.flush().map_err(|e| e.to_string())?;
    println!("deleted {} retained message(s)", writes.len());
    Ok(())
}

/// Reads every record; fails naming the first that does not decode.
pub fn check(dir: &Path) -> Result<(), String> {
    let store = open(dir)?;
    let report = store.check().map_err(|e| e.to_string())?;
    println!(
        "{}: ok, {} retained message(s), {} bytes",
        dir.display(),
        report.retained,
        report.bytes
    );
    Ok(())
}
