//! The header cache: host name -> header bytes, shared by the sessions
//! under one lock, and its file.
//!
//! # File format
//! A first line `udplab header cache 1`, then one record per host, in
//! host order:
//!
//! ```text
//! <host> <length>\n<length bytes of header>\n
//! ```
//!
//! The length prefix carries the header's bytes exactly (its CR LFs and
//! anything else); the host is a checked host name, so it has no space or
//! newline. The file is written whole to a temporary file beside it and
//! renamed over it, so a reader sees the old file or the new one, never
//! part of one.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file's first line.
pub const MAGIC: &str = "udplab header cache 1";

/// Why a cache file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The message says the cause, so it is not also the source (a chain
    /// printed whole would say it twice).
    #[error("reading {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    /// The first line is not [`MAGIC`].
    #[error("{path}: not a udplab header cache (no {MAGIC:?} line)")]
    NotACache { path: PathBuf },
    /// A record is cut short or its line is not `<host> <length>`.
    #[error("{path}: record {record} at byte {offset}: {what}")]
    BadRecord {
        path: PathBuf,
        record: usize,
        offset: usize,
        what: &'static str,
    },
}

/// Host names and their headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cache {
    entries: BTreeMap<String, Arc<[u8]>>,
}

impl Cache {
    pub fn get(&self, host: &str) -> Option<Arc<[u8]>> {
        self.entries.get(host).cloned()
    }

    pub fn insert(&mut self, host: String, header: Arc<[u8]>) {
        self.entries.insert(host, header);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cache in the file format above.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC.as_bytes());
        out.push(b'\n');
        for (host, header) in &self.entries {
            out.extend_from_slice(format!("{host} {}\n", header.len()).as_bytes());
            out.extend_from_slice(header);
            out.push(b'\n');
        }
        out
    }

    /// Reads the format above; `path` only names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Cache, Error> {
        let bad = |record, offset, what| Error::BadRecord {
            path: path.to_owned(),
            record,
            offset,
            what,
        };
        let magic = format!("{MAGIC}\n");
        let Some(mut rest) = bytes.strip_prefix(magic.as_bytes()) else {
            return Err(Error::NotACache {
                path: path.to_owned(),
            });
        };
        let mut cache = Cache::default();
        let mut record = 1;
        while !rest.is_empty() {
            let offset = bytes.len() - rest.len();
            let nl = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| bad(record, offset, "no end to the record's line"))?;
            let line = std::str::from_utf8(&rest[..nl])
                .map_err(|_| bad(record, offset, "the record's line is not text"))?;
            let (host, len) = line
                .split_once(' ')
                .ok_or_else(|| bad(record, offset, "the line is not <host> <length>"))?;
            if !super::is_host_name(host.as_bytes()) {
                return Err(bad(record, offset, "not a host name"));
            }
            let len: usize = len
                .parse()
                .map_err(|_| bad(record, offset, "the length is not a number"))?;
            let body = &rest[nl + 1..];
            let header = body
                .get(..len)
                .ok_or_else(|| bad(record, offset, "the header is cut short"))?;
            if body.get(len) != Some(&b'\n') {
                return Err(bad(record, offset, "no newline after the header"));
            }
            cache.insert(host.to_owned(), header.into());
            rest = &body[len + 1..];
            record += 1;
        }
        Ok(cache)
    }

    /// The cache in `path`; an empty one when there is no such file.
    pub fn load(path: &Path) -> Result<Cache, Error> {
        match fs::read(path) {
            Ok(bytes) => Cache::from_bytes(&bytes, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Cache::default()),
            Err(error) => Err(Error::Io {
                path: path.to_owned(),
                error,
            }),
        }
    }

    /// Writes the cache to a temporary file beside `path`, then renames it
    /// over `path`.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let name = path
            .file_name()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the cache path has no file name",
                )
            })?
            .to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let written = fs::File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(&self.to_bytes())?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_bytes() {
        let mut c = Cache::default();
        c.insert(
            "www.twitch.tv".into(),
            b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n".as_slice().into(),
        );
        c.insert("b.cl".into(), b"\n\n5 7\r\n\0\xff".as_slice().into());
        c.insert("e".into(), b"".as_slice().into());
        let bytes = c.to_bytes();
        assert!(bytes.starts_with(b"udplab header cache 1\nb.cl 9\n\n\n5 7"));
        assert_eq!(Cache::from_bytes(&bytes, Path::new("c")).unwrap(), c);
    }

    #[test]
    fn refuses_cut_or_foreign_files() {
        let p = Path::new("c");
        assert!(matches!(
            Cache::from_bytes(b"", p),
            Err(Error::NotACache { .. })
        ));
        let cut = b"udplab header cache 1\na.b 10\nHTTP/1.1";
        assert!(matches!(
            Cache::from_bytes(cut, p),
            Err(Error::BadRecord {
                record: 1,
                what: "the header is cut short",
                ..
            })
        ));
        let bad = b"udplab header cache 1\na.b x\n";
        assert!(Cache::from_bytes(bad, p).is_err());
        let host = b"udplab header cache 1\n../x 0\n\n";
        assert!(Cache::from_bytes(host, p).is_err());
    }
}
