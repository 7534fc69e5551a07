//! The run's logs: reading them from `--logs`, and matching each to the
//! transfer it tells of.
//!
//! A log is matched by facts first: the client number, the ports, the
//! number of concurrent clients (the registration's, against the N of a
//! lab log's file name), the file's name and size, the protocol. A log
//! that contradicts any fact of the transfer is never used. Time comes
//! last and is measured from the transfer's own span in the capture. The
//! lab's logs carry only a local time in their file name, with no zone:
//! they are read at the whole-hour UTC offset (within +-14 h) that fits the
//! most of them to the capture, or at `--log-utc-offset`, so the answer
//! never depends on the time zone of the machine that analyzes. Every log
//! left out is named with the reason.

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{FixedOffset, Offset, TimeZone};
use serde::Serialize;

use crate::headers::log::{self as headers_log, HeadersLog};
use crate::protocol::Protocol;
use crate::transfer_log::{self, LogName, Role, TransferLog};

/// How far a log's time span may lie from its transfer's span in the
/// capture and still be the log of that transfer. Runs a few seconds
/// apart are told apart by it; clocks of two machines that differ by more
/// need `--log-utc-offset` or logs that say their ports.
pub const LOG_SLACK_NS: i64 = 10_000_000_000;

/// The whole-hour UTC offsets a lab log's local time is tried at.
const MAX_OFFSET_HOURS: i32 = 14;

/// A log file read from `--logs`.
#[derive(Debug, Clone)]
pub struct LoadedLog {
    pub path: PathBuf,
    pub name: Option<LogName>,
    pub log: TransferLog,
}

impl LoadedLog {
    fn client_id(&self) -> Option<u16> {
        self.log
            .client_id
            .or(self.name.as_ref().map(|n| n.client_id))
    }

    fn clients(&self) -> Option<u16> {
        self.log.clients.or(self.name.as_ref().map(|n| n.clients))
    }

    fn file_name(&self) -> Option<&str> {
        self.log
            .file_name
            .as_deref()
            .or(self.name.as_ref().map(|n| n.file_name.as_str()))
    }

    /// True when the log's only time is its file name's local stamp.
    fn zoneless(&self) -> bool {
        self.log.start.is_none() && self.name.is_some()
    }

    /// When the log's transfer happened, in ns since the epoch: its own
    /// start and end, or its file name's stamp read at `offset`.
    fn window(&self, offset: FixedOffset) -> Option<(i64, i64)> {
        if let Some(start) = self.log.start {
            let end = self.log.end.unwrap_or(start);
            return Some((start.timestamp_nanos_opt()?, end.timestamp_nanos_opt()?));
        }
        let stamp = self.name.as_ref()?.stamp;
        let t = offset
            .from_local_datetime(&stamp)
            .single()?
            .timestamp_nanos_opt()?;
        let dur = self.log.duration_s.unwrap_or(0.0).clamp(0.0, 1e6);
        // The stamp is cut to the second: the transfer began within it.
        Some((t, t.saturating_add(1_000_000_000 + (dur * 1e9) as i64)))
    }
}

/// A path given to `--logs` that holds no log.
#[derive(Debug, Clone, Serialize)]
pub struct Ignored {
    pub path: String,
    pub reason: IgnoredReason,
}

/// Why a path given to `--logs` was not read as a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoredReason {
    /// A folder with no files in it.
    EmptyFolder,
    /// A folder whose files are none of them a log.
    NoLogsInFolder { files: usize },
    /// A file with no bytes.
    EmptyFile,
    /// Neither udplab's header nor a lab log's file name.
    NotALog,
    /// It looked like a log but did not parse.
    Unreadable(String),
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match &self.reason {
            IgnoredReason::EmptyFolder => write!(f, "{path}: an empty folder, no logs in it"),
            IgnoredReason::NoLogsInFolder { files } => write!(
                f,
                "{path}: no logs in this folder ({files} {} that {} not a log)",
                if *files == 1 { "file" } else { "files" },
                if *files == 1 { "is" } else { "are" }
            ),
            IgnoredReason::EmptyFile => write!(f, "{path}: an empty file, not a log"),
            IgnoredReason::NotALog => write!(
                f,
                "{path}: not a log (no udplab log header, not named like a lab log \
                 S<k>-...-log.txt / C<k>-...-log.txt)"
            ),
            IgnoredReason::Unreadable(e) => write!(f, "{path}: log not used: {e}"),
        }
    }
}

/// What `--logs` held.
#[derive(Debug, Clone, Default)]
pub struct LogSet {
    pub logs: Vec<LoadedLog>,
    /// The header cache's logs (`udplab headers`), by path.
    pub headers: Vec<(PathBuf, HeadersLog)>,
    pub ignored: Vec<Ignored>,
}

/// Every log in `paths`: a folder's files (not its subfolders), or a file
/// read as one log. A path that cannot be read at all is an error; a file
/// that is no log, an empty file or an empty folder is named in `ignored`.
pub fn load(paths: &[PathBuf]) -> anyhow::Result<LogSet> {
    let mut set = LogSet::default();
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        let meta = fs::metadata(path)
            .map_err(|e| anyhow::anyhow!("cannot read logs at {}: {e}", path.display()))?;
        if meta.is_file() {
            // A file named as a log: what it is not is worth a warning.
            if seen.insert(path.clone()) {
                match read_headers_log(path) {
                    Some(Ok(h)) => set.headers.push((path.clone(), h)),
                    Some(Err(reason)) => set.ignored.push(Ignored {
                        path: path.display().to_string(),
                        reason,
                    }),
                    None => match read_one(path) {
                        Ok(log) => set.logs.push(log),
                        Err(reason) => set.ignored.push(Ignored {
                            path: path.display().to_string(),
                            reason,
                        }),
                    },
                }
            }
            continue;
        }
        let mut files = Vec::new();
        let entries = fs::read_dir(path)
            .map_err(|e| anyhow::anyhow!("cannot read logs at {}: {e}", path.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                files.push(entry.path());
            }
        }
        files.sort();
        let (mut found, mut others) = (0usize, 0usize);
        for file in files {
            if !seen.insert(file.clone()) {
                continue;
            }
            match read_headers_log(&file) {
                Some(Ok(h)) => {
                    set.headers.push((file, h));
                    found += 1;
                    continue;
                }
                Some(Err(reason)) => {
                    set.ignored.push(Ignored {
                        path: file.display().to_string(),
                        reason,
                    });
                    continue;
                }
                None => {}
            }
            match read_one(&file) {
                Ok(log) => {
                    set.logs.push(log);
                    found += 1;
                }
                // A folder of a run holds its capture and files besides the
                // logs: those are passed over, unless nothing else is there.
                Err(IgnoredReason::NotALog | IgnoredReason::EmptyFile) => others += 1,
                Err(reason) => set.ignored.push(Ignored {
                    path: file.display().to_string(),
                    reason,
                }),
            }
        }
        if found == 0 {
            set.ignored.push(Ignored {
                path: path.display().to_string(),
                reason: if others == 0 {
                    IgnoredReason::EmptyFolder
                } else {
                    IgnoredReason::NoLogsInFolder { files: others }
                },
            });
        }
    }
    set.logs.sort_by(|a, b| a.path.cmp(&b.path));
    set.headers.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(set)
}

/// A header log (`udplab headers`), when the file begins like one.
fn read_headers_log(path: &Path) -> Option<Result<HeadersLog, IgnoredReason>> {
    let head = head(path, headers_log::SERVER_ROLE.len()).ok()?;
    if !headers_log::looks_like(&head) {
        return None;
    }
    // A session's log is a few lines per query.
    const MAX_LEN: u64 = 16 * 1024 * 1024;
    let text = fs::File::open(path).and_then(|f| {
        let mut s = String::new();
        f.take(MAX_LEN).read_to_string(&mut s).map(|_| s)
    });
    Some(match text {
        Ok(t) => headers_log::parse(&t)
            .map(|log| log.found_from(path.parent().unwrap_or(Path::new("."))))
            .map_err(IgnoredReason::Unreadable),
        Err(e) => Err(IgnoredReason::Unreadable(e.to_string())),
    })
}

fn read_one(path: &Path) -> Result<LoadedLog, IgnoredReason> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| transfer_log::parse_log_name(n).ok());
    if name.is_none() {
        match head(path, transfer_log::HEADER.len()) {
            Ok(h) if h.is_empty() => return Err(IgnoredReason::EmptyFile),
            Ok(h) if h == transfer_log::HEADER.as_bytes() => {}
            Ok(_) => return Err(IgnoredReason::NotALog),
            Err(e) => return Err(IgnoredReason::Unreadable(e.to_string())),
        }
    }
    match transfer_log::read_log(path) {
        Ok(log) => Ok(LoadedLog {
            path: path.to_owned(),
            name,
            log,
        }),
        Err(e) => Err(IgnoredReason::Unreadable(format!(
            "{:#}",
            anyhow::Error::from(e)
        ))),
    }
}

/// The first `n` bytes of the file at `path` (fewer if it is shorter).
fn head(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    fs::File::open(path)?.take(n as u64).read_to_end(&mut out)?;
    Ok(out)
}

/// What a transfer tells, to match its logs against. A fact no input
/// tells is `None` and matches anything.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    pub client_id: Option<u16>,
    pub server_port: Option<u16>,
    pub client_port: Option<u16>,
    pub file_size: Option<u64>,
    pub file_name: Option<String>,
    /// Concurrent clients, by the registration.
    pub clients: Option<u16>,
    pub protocol: Option<Protocol>,
    /// The transfer's own span in the capture, ns since the epoch.
    pub window_ns: Option<(i64, i64)>,
}

/// A fact on which a log and a transfer disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum Conflict {
    ClientId {
        log: u16,
        capture: u16,
    },
    ServerPort {
        log: u16,
        capture: u16,
    },
    ClientPort {
        log: u16,
        capture: u16,
    },
    FileSize {
        log: u64,
        capture: u64,
    },
    FileName {
        log: String,
        capture: String,
    },
    Clients {
        log: u16,
        capture: u16,
    },
    Protocol {
        log: Protocol,
        capture: Protocol,
    },
    /// The log's time lies this far from the transfer's span.
    Time {
        apart_s: i64,
    },
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conflict::ClientId { log, capture } => {
                write!(
                    f,
                    "it is client {log}'s, the transfer is client {capture}'s"
                )
            }
            Conflict::ServerPort { log, capture } => {
                write!(f, "its server port is {log}, the capture's {capture}")
            }
            Conflict::ClientPort { log, capture } => {
                write!(f, "its client port is {log}, the capture's {capture}")
            }
            Conflict::FileSize { log, capture } => {
                write!(f, "its file has {log} bytes, the capture's {capture}")
            }
            Conflict::FileName { log, capture } => {
                write!(f, "its file is {log:?}, the capture's {capture:?}")
            }
            Conflict::Clients { log, capture } => write!(
                f,
                "its run had {log} concurrent clients, the captured registration says {capture}"
            ),
            Conflict::Protocol { log, capture } => {
                write!(f, "it speaks {log}, the capture {capture}")
            }
            Conflict::Time { apart_s } => {
                write!(f, "its time is {apart_s} s away from the captured transfer")
            }
        }
    }
}

/// Why a log was not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum LeftOut {
    /// It disagrees with every transfer of its client number.
    Contradicts { conflict: Conflict },
    /// No transfer of its client number in the capture.
    NoSuchClient { client_id: Option<u16> },
    /// Another log fits the transfer better.
    Outmatched { by: String },
    /// A header-cache log whose client has no session in the capture.
    NoSuchSession { client: String },
    /// A header-cache log, and the sessions were not asked for.
    SessionsNotAsked,
}

impl fmt::Display for LeftOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeftOut::Contradicts { conflict } => conflict.fmt(f),
            LeftOut::NoSuchClient { client_id: Some(k) } => {
                write!(f, "no transfer of client {k} in the capture")
            }
            LeftOut::NoSuchClient { client_id: None } => f.write_str("it names no client number"),
            LeftOut::Outmatched { by } => write!(f, "{by} fits its transfer better"),
            LeftOut::NoSuchSession { client } => {
                write!(f, "no header-cache session of {client} in the capture")
            }
            LeftOut::SessionsNotAsked => {
                f.write_str("a header-cache log: its sessions are shown with --conversations")
            }
        }
    }
}

/// A log left out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct LeftOutLog {
    pub path: String,
    pub reason: LeftOut,
}

/// Which log serves which transfer.
#[derive(Debug, Clone, Default)]
pub struct Assignment {
    /// Per wanted transfer, the index of its server log and client log.
    pub server: Vec<Option<usize>>,
    pub client: Vec<Option<usize>>,
    pub left_out: Vec<LeftOutLog>,
    /// The offset the lab logs' local times were read at, when one was
    /// needed and some lab log was used.
    pub utc_offset: Option<FixedOffset>,
    /// Other offsets that fit as many lab logs.
    pub other_offsets: Vec<FixedOffset>,
}

/// The facts a log agrees on with a transfer (the more, the surer), or
/// the first it contradicts: the run's own facts (client number,
/// concurrency, file, protocol) before the ports, which differ between any
/// two runs and so say least of why.
fn compare(w: &Wanted, l: &LoadedLog, offset: FixedOffset) -> Result<(u32, i64), Conflict> {
    let narrow = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
    let wide = |v: Option<u16>| v.map(u64::from);
    let facts = [
        agree(wide(l.client_id()), wide(w.client_id), |a, b| {
            Conflict::ClientId {
                log: narrow(a),
                capture: narrow(b),
            }
        })?,
        agree(wide(l.clients()), wide(w.clients), |a, b| {
            Conflict::Clients {
                log: narrow(a),
                capture: narrow(b),
            }
        })?,
        agree(l.log.file_size, w.file_size, |a, b| Conflict::FileSize {
            log: a,
            capture: b,
        })?,
        agree(l.file_name(), w.file_name.as_deref(), |a, b| {
            Conflict::FileName {
                log: a.to_owned(),
                capture: b.to_owned(),
            }
        })?,
        agree(l.log.protocol, w.protocol, |a, b| Conflict::Protocol {
            log: a,
            capture: b,
        })?,
        agree(wide(l.log.server_port), wide(w.server_port), |a, b| {
            Conflict::ServerPort {
                log: narrow(a),
                capture: narrow(b),
            }
        })?,
        agree(wide(l.log.client_port), wide(w.client_port), |a, b| {
            Conflict::ClientPort {
                log: narrow(a),
                capture: narrow(b),
            }
        })?,
    ];
    let agree = facts.iter().filter(|&&a| a).count() as u32;
    let distance = match (l.window(offset), w.window_ns) {
        (Some((from, to)), Some((first, last))) => {
            let apart = if to < first {
                first - to
            } else if from > last {
                from - last
            } else {
                0
            };
            if apart > LOG_SLACK_NS {
                return Err(Conflict::Time {
                    apart_s: apart / 1_000_000_000,
                });
            }
            from.saturating_sub(first).saturating_abs()
        }
        _ => i64::MAX,
    };
    Ok((agree, distance))
}

/// Whether a fact both sides tell agrees (`true`), is told by one side
/// only (`false`), or differs (the conflict).
fn agree<T: PartialEq + Copy>(
    log: Option<T>,
    capture: Option<T>,
    conflict: impl FnOnce(T, T) -> Conflict,
) -> Result<bool, Conflict> {
    match (log, capture) {
        (Some(a), Some(b)) if a != b => Err(conflict(a, b)),
        (Some(_), Some(_)) => Ok(true),
        _ => Ok(false),
    }
}

fn utc(hours: i32) -> FixedOffset {
    FixedOffset::east_opt(hours * 3600).unwrap_or_else(|| chrono::Utc.fix())
}

/// The offset lab logs' local times are read at: `forced`, or the whole
/// hour that fits the most of them to some transfer (ties: the one nearest
/// UTC, the others listed).
fn choose_offset(
    wanted: &[Wanted],
    logs: &[LoadedLog],
    forced: Option<FixedOffset>,
) -> (FixedOffset, Vec<FixedOffset>) {
    if let Some(o) = forced {
        return (o, Vec::new());
    }
    let zoneless: Vec<&LoadedLog> = logs.iter().filter(|l| l.zoneless()).collect();
    if zoneless.is_empty() || wanted.iter().all(|w| w.window_ns.is_none()) {
        return (utc(0), Vec::new());
    }
    let mut scored: Vec<(usize, i32)> = (-MAX_OFFSET_HOURS..=MAX_OFFSET_HOURS)
        .map(|h| {
            let o = utc(h);
            let fits = zoneless
                .iter()
                .filter(|l| {
                    wanted
                        .iter()
                        .any(|w| w.window_ns.is_some() && compare(w, l, o).is_ok())
                })
                .count();
            (fits, h)
        })
        .collect();
    scored.sort_by_key(|&(fits, h)| (std::cmp::Reverse(fits), h.abs(), h));
    let (best, h) = scored[0];
    let others = scored
        .iter()
        .skip(1)
        .filter(|&&(fits, _)| fits == best && best > 0)
        .map(|&(_, h)| utc(h))
        .collect();
    (utc(h), others)
}

/// Gives each wanted transfer at most one server log and one client log,
/// each log to at most one transfer: the pairs that agree on the most
/// facts first, then the nearest in time.
pub fn assign(wanted: &[Wanted], logs: &[LoadedLog], forced: Option<FixedOffset>) -> Assignment {
    let (offset, other_offsets) = choose_offset(wanted, logs, forced);
    let mut pairs: Vec<(u32, i64, usize, usize)> = Vec::new();
    for (wi, w) in wanted.iter().enumerate() {
        for (li, l) in logs.iter().enumerate() {
            if l.log.role.is_none() || l.client_id().is_none() {
                continue;
            }
            if let Ok((agree, distance)) = compare(w, l, offset) {
                pairs.push((agree, distance, wi, li));
            }
        }
    }
    pairs.sort_by_key(|&(agree, distance, wi, li)| (std::cmp::Reverse(agree), distance, wi, li));
    let mut out = Assignment {
        server: vec![None; wanted.len()],
        client: vec![None; wanted.len()],
        ..Assignment::default()
    };
    let mut taken = vec![false; logs.len()];
    for &(_, _, wi, li) in &pairs {
        let Some(role) = logs[li].log.role else {
            continue;
        };
        let slot = match role {
            Role::Server => &mut out.server[wi],
            Role::Client => &mut out.client[wi],
        };
        if taken[li] || slot.is_some() {
            continue;
        }
        *slot = Some(li);
        taken[li] = true;
    }
    let used_zoneless = taken
        .iter()
        .zip(logs)
        .any(|(t, l)| *t && l.zoneless() && wanted.iter().any(|w| w.window_ns.is_some()));
    if used_zoneless || forced.is_some() {
        out.utc_offset = Some(offset);
        out.other_offsets = other_offsets;
    }
    for (li, l) in logs.iter().enumerate() {
        if taken[li] {
            continue;
        }
        let reason = left_out_reason(wanted, logs, &out, li, offset);
        out.left_out.push(LeftOutLog {
            path: l.path.display().to_string(),
            reason,
        });
    }
    out
}

/// Why log `li` serves no transfer: what it contradicts in the transfers
/// of its client number, or the log that took its place.
fn left_out_reason(
    wanted: &[Wanted],
    logs: &[LoadedLog],
    a: &Assignment,
    li: usize,
    offset: FixedOffset,
) -> LeftOut {
    let l = &logs[li];
    let id = l.client_id();
    let same: Vec<usize> = (0..wanted.len())
        .filter(|&wi| id.is_some() && wanted[wi].client_id.is_none_or(|k| Some(k) == id))
        .collect();
    if same.is_empty() || l.log.role.is_none() {
        return LeftOut::NoSuchClient { client_id: id };
    }
    let mut first_conflict = None;
    for &wi in &same {
        match compare(&wanted[wi], l, offset) {
            Ok(_) => {
                let slot = match l.log.role {
                    Some(Role::Server) => a.server[wi],
                    _ => a.client[wi],
                };
                if let Some(other) = slot {
                    return LeftOut::Outmatched {
                        by: logs[other].path.display().to_string(),
                    };
                }
            }
            Err(c) => {
                first_conflict.get_or_insert(c);
            }
        }
    }
    match first_conflict {
        Some(conflict) => LeftOut::Contradicts { conflict },
        None => LeftOut::NoSuchClient { client_id: id },
    }
}

/// `+HH:MM`, `-HH:MM`, `+H` or `-H` (and `UTC` before it): a UTC offset.
pub fn parse_utc_offset(text: &str) -> Result<FixedOffset, String> {
    let t = text.trim();
    let t = t.strip_prefix("UTC").unwrap_or(t);
    if t.is_empty() || t == "Z" {
        return Ok(utc(0));
    }
    let bad = || format!("{text:?} is not a UTC offset like -05:00, +5:30 or -5");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let h: i32 = h.parse().map_err(|_| bad())?;
    let m: i32 = m.parse().map_err(|_| bad())?;
    if !(0..=MAX_OFFSET_HOURS).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn lab_log(role: Role, id: u16, clients: u16, hms: (u32, u32, u32)) -> LoadedLog {
        let stamp = NaiveDate::from_ymd_opt(2026, 11, 21)
            .and_then(|d| d.and_hms_opt(hms.0, hms.1, hms.2))
            .expect("a date");
        LoadedLog {
            path: PathBuf::from(format!("{}{id}-{clients}", role.letter())),
            name: Some(LogName {
                role,
                client_id: id,
                stamp,
                file_name: "100MB.bin".into(),
                clients,
            }),
            log: TransferLog {
                role: Some(role),
                client_id: Some(id),
                file_size: Some(1000),
                duration_s: Some(0.5),
                ..TransferLog::default()
            },
        }
    }

    /// 2026-11-21 at `h:m:s` UTC, in ns.
    fn at(h: u32, m: u32, s: u32) -> i64 {
        NaiveDate::from_ymd_opt(2026, 11, 21)
            .and_then(|d| d.and_hms_opt(h, m, s))
            .expect("a date")
            .and_utc()
            .timestamp_nanos_opt()
            .expect("in range")
    }

    fn wanted(id: u16, clients: u16, start: i64) -> Wanted {
        Wanted {
            client_id: Some(id),
            clients: Some(clients),
            file_size: Some(1000),
            file_name: Some("100MB.bin".into()),
            window_ns: Some((start, start + 500_000_000)),
            ..Wanted::default()
        }
    }

    #[test]
    fn a_log_of_another_run_size_is_left_out_with_the_reason() {
        let logs = [lab_log(Role::Server, 1, 3, (11, 47, 0))];
        let a = assign(&[wanted(1, 1, at(11, 46, 28))], &logs, None);
        assert_eq!(a.server, [None]);
        assert_eq!(
            a.left_out[0].reason,
            LeftOut::Contradicts {
                conflict: Conflict::Clients { log: 3, capture: 1 }
            }
        );
    }

    #[test]
    fn a_log_32_s_away_is_another_run() {
        let logs = [lab_log(Role::Server, 1, 1, (11, 47, 0))];
        let a = assign(&[wanted(1, 1, at(11, 46, 28))], &logs, None);
        assert_eq!(a.server, [None]);
        assert!(matches!(
            a.left_out[0].reason,
            LeftOut::Contradicts {
                conflict: Conflict::Time { apart_s: 31 }
            }
        ));
    }

    #[test]
    fn lab_logs_written_at_utc_minus_5_are_read_there() {
        // The machine that ran the lab was at UTC-5: its 06:46:19 is 11:46:19 UTC.
        let logs = [
            lab_log(Role::Server, 1, 2, (6, 46, 19)),
            lab_log(Role::Client, 1, 2, (6, 46, 19)),
            lab_log(Role::Server, 2, 2, (6, 46, 19)),
        ];
        let w = [wanted(1, 2, at(11, 46, 19)), wanted(2, 2, at(11, 46, 19))];
        let a = assign(&w, &logs, None);
        assert_eq!(a.server, [Some(0), Some(2)]);
        assert_eq!(a.client, [Some(1), None]);
        assert_eq!(a.utc_offset, FixedOffset::west_opt(5 * 3600));
        assert!(a.left_out.is_empty());
        // Told another offset, the logs are out, each with its reason.
        let a = assign(&w, &logs, FixedOffset::east_opt(0));
        assert_eq!(a.server, [None, None]);
        assert_eq!(a.left_out.len(), 3);
    }

    #[test]
    fn exact_ports_beat_time() {
        let mut near = lab_log(Role::Server, 1, 1, (11, 46, 19));
        near.log.client_port = None;
        let mut exact = lab_log(Role::Server, 1, 1, (11, 46, 21));
        exact.log.client_port = Some(40000);
        let mut w = wanted(1, 1, at(11, 46, 19));
        w.client_port = Some(40000);
        let a = assign(&[w], &[near, exact], None);
        assert_eq!(a.server, [Some(1)]);
        assert!(matches!(a.left_out[0].reason, LeftOut::Outmatched { .. }));
    }

    #[test]
    fn utc_offsets_parse() {
        assert_eq!(parse_utc_offset("-05:00"), Ok(utc(-5)));
        assert_eq!(parse_utc_offset("UTC-5"), Ok(utc(-5)));
        assert_eq!(
            parse_utc_offset("+5:30").map(|o| o.local_minus_utc()),
            Ok(5 * 3600 + 1800)
        );
        assert!(parse_utc_offset("5").is_err());
        assert!(parse_utc_offset("+15").is_err());
        assert!(parse_utc_offset("-0x").is_err());
    }
}
