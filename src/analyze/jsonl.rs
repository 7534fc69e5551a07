//! `--format jsonl`: one JSON object per client row per line, each line
//! carrying the run's id and its captures' paths, so that the lines of
//! many analyses append to one file that columnar readers (DuckDB, Spark,
//! pandas) read as it is.
//!
//! A line is the client row of the JSON report, keys, order and nesting
//! kept (`path` a list of objects, `account` an object), after three keys
//! of its own: `run_id` ([`run_id`]), `captures` (the paths as given) and
//! `analyzed_at`. The lines of one analysis go to their file in one write
//! under an exclusive lock ([`append`]): another udplab appending to the
//! same file waits, and a write that fails is cut back off, so the file
//! only ever holds whole analyses.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Analysis, CaptureRow};

/// Hex digits of a run id (64 bits of its SHA-256).
const RUN_ID_DIGITS: usize = 16;

/// The id of the run an analysis read: 16 hex digits of the SHA-256 of
/// what was read of each capture (its format, link types, packets, bytes,
/// first and last packet time), the captures' entries sorted so that the
/// order they are given in does not matter.
///
/// It depends on the captures' contents alone, not on their paths, the
/// logs or the options: the same files give the same id wherever they lie
/// and however they are named, and two runs' captures differ at least in
/// their packets' times. None without a capture.
pub fn run_id(captures: &[CaptureRow]) -> Option<String> {
    if captures.is_empty() {
        return None;
    }
    let mut entries: Vec<String> = captures.iter().map(capture_entry).collect();
    entries.sort();
    let mut hasher = Sha256::new();
    for e in &entries {
        hasher.update(e.as_bytes());
        hasher.update(b"\n");
    }
    let mut id = crate::protocol::hex(&hasher.finalize());
    id.truncate(RUN_ID_DIGITS);
    Some(id)
}

/// One capture's part of the run id: what the file holds, not where it is.
fn capture_entry(c: &CaptureRow) -> String {
    format!(
        "{} {} {} {} {} {}",
        c.format,
        c.link_types.join("+"),
        c.packets,
        c.bytes_read,
        c.first_time.as_deref().unwrap_or("-"),
        c.last_time.as_deref().unwrap_or("-"),
    )
}

/// The analysis's lines, one per client row, each ending in `\n`.
pub fn lines(a: &Analysis, analyzed_at: DateTime<Utc>) -> io::Result<Vec<u8>> {
    let run_id = run_id(&a.captures);
    let captures: Vec<Value> = a
        .captures
        .iter()
        .map(|c| Value::String(c.path.clone()))
        .collect();
    let analyzed_at = analyzed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut out = Vec::new();
    for row in &a.clients {
        let Value::Object(keys) = serde_json::to_value(row).map_err(io::Error::other)? else {
            return Err(io::Error::other("a client row is not a JSON object"));
        };
        let mut line = Map::with_capacity(keys.len() + 3);
        line.insert("run_id".into(), run_id.clone().into());
        line.insert("captures".into(), Value::Array(captures.clone()));
        line.insert("analyzed_at".into(), analyzed_at.clone().into());
        line.extend(keys);
        // Compact JSON escapes every control character: no line break
        // inside a line.
        serde_json::to_writer(&mut out, &line).map_err(io::Error::other)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Appends `bytes` to `file` whole or not at all. A regular file is
/// locked (flock, exclusive) for the write, the bytes go at its end, and
/// when writing fails (a full disk, a file size limit) the file is cut
/// back to where it ended. Anything else (a pipe, a terminal) gets the
/// bytes as they come.
pub fn append(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    if !file.metadata()?.is_file() {
        file.write_all(bytes)?;
        return file.flush();
    }
    file.lock()?;
    let written = append_locked(file, bytes);
    let unlocked = file.unlock();
    written.and(unlocked)
}

fn append_locked(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    let start = file.seek(SeekFrom::End(0))?;
    match file.write_all(bytes).and_then(|()| file.flush()) {
        Ok(()) => Ok(()),
        Err(e) => match file.set_len(start) {
            Ok(()) => Err(e),
            Err(cut) => Err(io::Error::new(
                e.kind(),
                format!("{e}; and cutting the partial lines back off failed: {cut}"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(path: &str, packets: u64, first: &str) -> CaptureRow {
        CaptureRow {
            path: path.into(),
            format: "pcap",
            link_types: vec!["ETHERNET".into()],
            packets,
            dropped: None,
            received_by_capturer: None,
            bytes_read: packets * 100,
            first_time: Some(first.into()),
            last_time: Some("2026-11-21T12:43:36.000000Z".into()),
            duration_s: None,
            interfaces: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn run_id_follows_contents_not_paths_or_order() {
        let a = capture("runs/a/capture.pcap", 10, "2026-11-21T12:43:35.000001Z");
        let b = capture("runs/b/capture.pcap", 10, "2026-11-21T12:43:35.000002Z");
        let id = run_id(std::slice::from_ref(&a)).unwrap();
        assert_eq!(id.len(), RUN_ID_DIGITS);
        assert!(id.bytes().all(|c| c.is_ascii_hexdigit()));
        let moved = capture("/elsewhere/x.pcap", 10, "2026-11-21T12:43:35.000001Z");
        assert_eq!(run_id(&[moved]).unwrap(), id);
        assert_ne!(run_id(std::slice::from_ref(&b)).unwrap(), id);
        assert_eq!(
            run_id(&[a.clone(), b.clone()]),
            run_id(&[b.clone(), a.clone()])
        );
        assert_ne!(run_id(&[a.clone(), b]).unwrap(), id);
        assert_eq!(run_id(&[]), None);
    }
}
