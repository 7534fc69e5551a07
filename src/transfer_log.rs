//! Transfer logs: writing ours, reading ours and the original lab's.
//!
//! Both sides write one log per client and transfer. The file name keeps the
//! lab's pattern (`S<k>-YYYY-MM-DD-HH-MM-SS-<file>-<N>-log.txt` for the
//! server's log of client k, `C<k>-...` for client k's own), so lab users
//! find them where they expect. Our content is one `key: value` per line, in
//! English; the lab's is Spanish prose, one fact per line. [`parse`] reads
//! both into one [`TransferLog`], where a fact the log does not tell is `None`.

use std::fmt;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat};

use crate::protocol::{Mode, Protocol};

/// Which side wrote a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `S<k>-...`: the server's log of its transfer to client k.
    Server,
    /// `C<k>-...`: client k's log of what it received.
    Client,
}

impl Role {
    /// `server` or `client`, as our logs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
        }
    }

    /// `S` or `C`, the log file name's prefix.
    pub fn letter(self) -> char {
        match self {
            Role::Server => 'S',
            Role::Client => 'C',
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the writer of a log knows of the file's delivery, when `success`
/// alone would say more than it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// `unknown`: the server's log of a lab-protocol client. The lab's
    /// protocol brings nothing back (the control connection closes at the
    /// barrier, no report follows the data), so the server cannot know what
    /// arrived: its `success` is left out when everything was sent, and
    /// `false` only when sending failed. The client's own log tells.
    Unknown,
}

impl Delivery {
    /// `unknown`, as logs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Unknown => "unknown",
        }
    }

    /// The one a log names.
    pub fn parse(text: &str) -> Option<Delivery> {
        match text {
            "unknown" => Some(Delivery::Unknown),
            _ => None,
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which program wrote a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// udplab's `key: value` lines.
    Udplab,
    /// The original lab's Spanish lines.
    Lab,
}

/// What a log's file name tells: `S1-2026-11-21-11-46-19-100MB.bin-2-log.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogName {
    pub role: Role,
    pub client_id: u16,
    /// Local wall-clock time, as the lab wrote it (no zone).
    pub stamp: NaiveDateTime,
    pub file_name: String,
    /// Number of concurrent clients of the run.
    pub clients: u16,
}

/// One transfer as one log tells it. Every fact is optional: a lab log tells
/// far fewer than ours, and a value no log tells is `None`, never 0.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TransferLog {
    pub role: Option<Role>,
    pub format: Option<LogFormat>,
    pub protocol: Option<Protocol>,
    pub file_name: Option<String>,
    /// Size of the file the server offered, in bytes.
    pub file_size: Option<u64>,
    pub client_id: Option<u16>,
    /// Concurrent clients of the round.
    pub clients: Option<u16>,
    pub server_ip: Option<IpAddr>,
    /// The server's UDP data port (control port + client id).
    pub server_port: Option<u16>,
    pub client_ip: Option<IpAddr>,
    /// The client's UDP receive port.
    pub client_port: Option<u16>,
    pub control_port: Option<u16>,
    /// UDP payload size of a full data datagram.
    pub datagram_size: Option<u32>,
    /// File bytes carried by a full data datagram (datagram size less header).
    pub chunk_size: Option<u32>,
    /// Data datagrams the file needs.
    pub datagrams_total: Option<u64>,
    /// Data datagrams the server handed to the kernel.
    pub datagrams_sent: Option<u64>,
    /// File bytes the server handed to the kernel.
    pub bytes_sent: Option<u64>,
    /// Data datagrams that reached the client application (distinct ones for v1).
    pub datagrams_received: Option<u64>,
    /// File bytes the client kept.
    pub bytes_received: Option<u64>,
    pub duplicates: Option<u64>,
    /// Datagrams the client discarded: bad header, wrong size, out of range.
    pub malformed: Option<u64>,
    pub missing_datagrams: Option<u64>,
    /// Missing sequence ranges, `a-b` inclusive, comma separated (v1).
    pub missing_ranges: Option<String>,
    /// Datagrams the client's kernel dropped for this socket (buffer full).
    pub kernel_drops: Option<u64>,
    /// Receive buffer the kernel granted the client's socket, in bytes.
    pub recv_buffer: Option<u64>,
    /// v1: how the server sends, `blast` (each datagram once) or `reliable`
    /// (repair rounds until the client confirms the file).
    pub mode: Option<Mode>,
    /// Datagrams sent again in repair rounds (server), or received with the
    /// retransmission flag (client).
    pub datagrams_retransmitted: Option<u64>,
    /// Repair rounds after the first pass (reliable mode).
    pub repair_rounds: Option<u32>,
    /// The sending rate's ceiling (`--rate`), megabits (10^6 bits) per second.
    pub rate_limit_mbit_s: Option<f64>,
    /// The pacing rate when the transfer ended, megabits per second.
    pub final_rate_mbit_s: Option<f64>,
    /// Repair requests the server refused (out of range, or asking again
    /// for datagrams the client had already confirmed).
    pub reports_rejected: Option<u64>,
    /// Datagrams that arrived after the client had the whole file.
    pub late: Option<u64>,
    /// SHA-256 of the offered file, lowercase hex.
    pub sha256: Option<String>,
    pub sha256_match: Option<bool>,
    pub start: Option<DateTime<FixedOffset>>,
    pub end: Option<DateTime<FixedOffset>>,
    pub duration_s: Option<f64>,
    /// Server: seconds from the start to the last data datagram handed to
    /// the kernel (the end of the last pass). `duration_s` runs on to the
    /// verdict: for a v1 client it includes the wait for its report, which
    /// the client sends after reading back and hashing the whole file.
    pub send_duration_s: Option<f64>,
    /// Megabytes (10^6 bytes) per second: every data byte sent (server) or
    /// kept (client), over the duration.
    pub rate_mb_s: Option<f64>,
    /// File bytes per second to a complete file, MB (10^6 bytes) per second:
    /// the file's size over the time from the first datagram to the end.
    pub goodput_mb_s: Option<f64>,
    /// The file arrived whole (the client's log; the server's log of a v1
    /// client, from its report). `None` where the writer cannot know: see
    /// `delivery`.
    pub success: Option<bool>,
    /// Set where the writer cannot know whether the file arrived: then
    /// `success` makes no claim of delivery.
    pub delivery: Option<Delivery>,
    /// Why a transfer did not succeed, in a few words.
    pub error: Option<String>,
    /// Where the client stored the file (complete or marked incomplete).
    pub output: Option<String>,
}

/// The first line of every udplab log.
pub const HEADER: &str = "log: udplab 1";

/// What can go wrong reading a log or a log's file name.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the log file failed.
    #[error("cannot read log {}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The content of the log file at `path` is not a valid log.
    #[error("bad log {}", path.display())]
    InFile { path: PathBuf, source: Box<Error> },
    /// The text is neither a udplab log nor an original lab log.
    #[error("not a udplab log nor a lab log")]
    NotALog,
    /// A udplab log of a version this program does not read.
    #[error("line {line}: unsupported log version {version:?} (this program reads {HEADER:?})")]
    UnsupportedVersion { line: usize, version: String },
    /// A line of a udplab log that is not `key: value`.
    #[error("line {line}: expected `key: value`, found {text:?}")]
    MalformedLine { line: usize, text: String },
    /// A known key with a value that does not parse. In a lab log, `key`
    /// is the lab's Spanish phrase.
    #[error("line {line}: bad value for {key}: {value:?}")]
    BadValue {
        line: usize,
        key: String,
        value: String,
    },
    /// A known key given a second time.
    #[error("line {line}: {key} given twice")]
    DuplicateKey { line: usize, key: String },
    /// A lab log with both a server's fact and a client's (its port lines
    /// or the client's verdict).
    #[error("line {line}: this lab log tells facts of both the server and a client")]
    ConflictingRole { line: usize },
    /// A file name that does not follow `[SC]<k>-Y-m-d-H-M-S-<file>-<N>-log.txt`.
    #[error("log file name {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
}

/// At most this many characters of input are quoted in an error.
const QUOTE_MAX: usize = 80;

/// `text` cut to [`QUOTE_MAX`] characters, for an error message.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        Some((at, _)) => format!("{}...", text.get(..at).unwrap_or_default()),
        None => text.to_owned(),
    }
}

fn bad_value(line: usize, key: &str, value: &str) -> Error {
    Error::BadValue {
        line,
        key: key.to_owned(),
        value: quote(value),
    }
}

// ---------------------------------------------------------------- file names

/// What a log's file name holds in place of the file's name when its
/// writer never learned it (a client that gave up before the name came).
/// [`read_log`] does not take it for a file name.
pub const UNKNOWN_FILE_NAME: &str = "unknown";

/// The lab's log file name: `S1-2026-11-21-11-46-19-100MB.bin-2-log.txt`.
pub fn log_file_name(
    role: Role,
    client_id: u16,
    stamp: NaiveDateTime,
    file_name: &str,
    clients: u16,
) -> String {
    format!(
        "{}{}-{}-{}-{}-log.txt",
        role.letter(),
        client_id,
        stamp.format("%Y-%m-%d-%H-%M-%S"),
        file_name,
        clients
    )
}

/// Most seconds [`unused_log_name`] moves a stamp on.
const MAX_STAMP_STEPS: u32 = 60;

/// [`log_file_name`] for a log to be written in `dir`, a name no log there
/// has yet: client numbers are reused once a round ends, so a later round
/// within the same second can have the same number and stamp. The stamp
/// then moves on a second at a time until the name is free (up to a
/// minute; past that the first name is returned).
pub fn unused_log_name(
    dir: &Path,
    role: Role,
    client_id: u16,
    stamp: NaiveDateTime,
    file_name: &str,
    clients: u16,
) -> String {
    let first = log_file_name(role, client_id, stamp, file_name, clients);
    let mut name = first.clone();
    for step in 1..=MAX_STAMP_STEPS {
        if !dir.join(&name).exists() {
            return name;
        }
        let later = stamp + chrono::TimeDelta::seconds(i64::from(step));
        name = log_file_name(role, client_id, later, file_name, clients);
    }
    first
}

/// Whether `s` is a non-empty run of ASCII digits.
fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Reads back what [`log_file_name`] wrote. The transferred file's name may
/// hold dashes: the client count is split off from the right.
pub fn parse_log_name(name: &str) -> Result<LogName, Error> {
    let bad = |reason| Error::BadName {
        name: quote(name),
        reason,
    };
    let (role, rest) = if let Some(rest) = name.strip_prefix('S') {
        (Role::Server, rest)
    } else if let Some(rest) = name.strip_prefix('C') {
        (Role::Client, rest)
    } else {
        return Err(bad("does not start with S or C"));
    };
    let rest = rest
        .strip_suffix("-log.txt")
        .ok_or_else(|| bad("does not end with -log.txt"))?;

    let mut fields = rest.splitn(8, '-');
    let mut number = |what: &'static str| -> Result<u32, Error> {
        let field = fields.next().ok_or_else(|| bad(what))?;
        if !all_digits(field) {
            return Err(bad(what));
        }
        field.parse::<u32>().map_err(|_| bad(what))
    };
    let client_id = number("client id is not a number")?;
    let client_id = u16::try_from(client_id).map_err(|_| bad("client id is too large"))?;
    let year = number("year is missing or not a number")?;
    let month = number("month is missing or not a number")?;
    let day = number("day is missing or not a number")?;
    let hour = number("hour is missing or not a number")?;
    let minute = number("minute is missing or not a number")?;
    let second = number("second is missing or not a number")?;
    let stamp = i32::try_from(year)
        .ok()
        .and_then(|year| NaiveDate::from_ymd_opt(year, month, day))
        .and_then(|date| date.and_hms_opt(hour, minute, second))
        .ok_or_else(|| bad("date or time out of range"))?;

    let tail = fields
        .next()
        .ok_or_else(|| bad("file name and client count are missing"))?;
    let (file_name, clients) = tail
        .rsplit_once('-')
        .ok_or_else(|| bad("client count is missing"))?;
    if file_name.is_empty() {
        return Err(bad("file name is empty"));
    }
    if !all_digits(clients) {
        return Err(bad("client count is not a number"));
    }
    let clients = clients
        .parse::<u16>()
        .map_err(|_| bad("client count is too large"))?;
    Ok(LogName {
        role,
        client_id,
        stamp,
        file_name: file_name.to_owned(),
        clients,
    })
}

// ---------------------------------------------------------------- our format

/// Free text on one line: line breaks become spaces.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

impl TransferLog {
    /// The log in udplab's format: [`HEADER`], then `key: value` for each
    /// fact that is `Some`, in field order (`format` is implied, not
    /// written). Free text is written on one line; a float that is not
    /// finite is left out (no reader could take it back).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024);
        out.push_str(HEADER);
        out.push('\n');
        let mut put = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                // Writing to a String cannot fail.
                let _ = writeln!(out, "{key}: {value}");
            }
        };
        fn shown<T: fmt::Display>(v: Option<T>) -> Option<String> {
            v.map(|v| v.to_string())
        }
        let text = |v: &Option<String>| v.as_deref().map(one_line);
        let time = |v: &Option<DateTime<FixedOffset>>| {
            v.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, false))
        };
        let float = |v: Option<f64>, decimals: usize| {
            v.filter(|v| v.is_finite())
                .map(|v| format!("{v:.decimals$}"))
        };

        put("role", shown(self.role.as_ref()));
        put("protocol", shown(self.protocol.as_ref()));
        put("file_name", text(&self.file_name));
        put("file_size", shown(self.file_size.as_ref()));
        put("client_id", shown(self.client_id.as_ref()));
        put("clients", shown(self.clients.as_ref()));
        put("server_ip", shown(self.server_ip.as_ref()));
        put("server_port", shown(self.server_port.as_ref()));
        put("client_ip", shown(self.client_ip.as_ref()));
        put("client_port", shown(self.client_port.as_ref()));
        put("control_port", shown(self.control_port.as_ref()));
        put("datagram_size", shown(self.datagram_size.as_ref()));
        put("chunk_size", shown(self.chunk_size.as_ref()));
        put("datagrams_total", shown(self.datagrams_total.as_ref()));
        put("datagrams_sent", shown(self.datagrams_sent.as_ref()));
        put("bytes_sent", shown(self.bytes_sent.as_ref()));
        put(
            "datagrams_received",
            shown(self.datagrams_received.as_ref()),
        );
        put("bytes_received", shown(self.bytes_received.as_ref()));
        put("duplicates", shown(self.duplicates.as_ref()));
        put("malformed", shown(self.malformed.as_ref()));
        put("missing_datagrams", shown(self.missing_datagrams.as_ref()));
        put("missing_ranges", text(&self.missing_ranges));
        put("kernel_drops", shown(self.kernel_drops.as_ref()));
        put("recv_buffer", shown(self.recv_buffer.as_ref()));
        put("mode", shown(self.mode.as_ref()));
        put(
            "datagrams_retransmitted",
            shown(self.datagrams_retransmitted.as_ref()),
        );
        put("repair_rounds", shown(self.repair_rounds.as_ref()));
        put("rate_limit_mbit_s", float(self.rate_limit_mbit_s, 3));
        put("final_rate_mbit_s", float(self.final_rate_mbit_s, 3));
        put("reports_rejected", shown(self.reports_rejected.as_ref()));
        put("late", shown(self.late.as_ref()));
        put("sha256", text(&self.sha256));
        put("sha256_match", shown(self.sha256_match.as_ref()));
        put("start", time(&self.start));
        put("end", time(&self.end));
        put("duration_s", float(self.duration_s, 6));
        put("send_duration_s", float(self.send_duration_s, 6));
        put("rate_mb_s", float(self.rate_mb_s, 3));
        put("goodput_mb_s", float(self.goodput_mb_s, 3));
        put("success", shown(self.success.as_ref()));
        put("delivery", shown(self.delivery.as_ref()));
        put("error", text(&self.error));
        put("output", text(&self.output));
        out
    }
}

/// Sets `slot` from `value` unless it was already set.
fn set<T>(slot: &mut Option<T>, value: T, line: usize, key: &str) -> Result<(), Error> {
    if slot.is_some() {
        return Err(Error::DuplicateKey {
            line,
            key: key.to_owned(),
        });
    }
    *slot = Some(value);
    Ok(())
}

/// One `key: value` line of our format, stored into `log`. Unknown keys are
/// ignored.
fn parse_field(log: &mut TransferLog, line: usize, key: &str, value: &str) -> Result<(), Error> {
    let bad = || bad_value(line, key, value);
    fn num<T: std::str::FromStr>(value: &str) -> Option<T> {
        // `str::parse` takes a leading `+`; our logs never write one.
        all_digits(value).then(|| value.parse().ok()).flatten()
    }
    fn float(value: &str) -> Option<f64> {
        value.parse::<f64>().ok().filter(|v| v.is_finite())
    }
    fn boolean(value: &str) -> Option<bool> {
        match value {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
    fn time(value: &str) -> Option<DateTime<FixedOffset>> {
        DateTime::parse_from_rfc3339(value).ok()
    }
    fn sha256(value: &str) -> Option<String> {
        (value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| value.to_ascii_lowercase())
    }
    macro_rules! field {
        ($slot:ident, $parsed:expr) => {{
            let parsed = $parsed.ok_or_else(bad)?;
            set(&mut log.$slot, parsed, line, key)
        }};
    }
    match key {
        "role" => field!(
            role,
            match value {
                "server" => Some(Role::Server),
                "client" => Some(Role::Client),
                _ => None,
            }
        ),
        "protocol" => field!(protocol, Protocol::parse(value)),
        "file_name" => field!(file_name, Some(value.to_owned())),
        "file_size" => field!(file_size, num(value)),
        "client_id" => field!(client_id, num(value)),
        "clients" => field!(clients, num(value)),
        "server_ip" => field!(server_ip, value.parse().ok()),
        "server_port" => field!(server_port, num(value)),
        "client_ip" => field!(client_ip, value.parse().ok()),
        "client_port" => field!(client_port, num(value)),
        "control_port" => field!(control_port, num(value)),
        "datagram_size" => field!(datagram_size, num(value)),
        "chunk_size" => field!(chunk_size, num(value)),
        "datagrams_total" => field!(datagrams_total, num(value)),
        "datagrams_sent" => field!(datagrams_sent, num(value)),
        "bytes_sent" => field!(bytes_sent, num(value)),
        "datagrams_received" => field!(datagrams_received, num(value)),
        "bytes_received" => field!(bytes_received, num(value)),
        "duplicates" => field!(duplicates, num(value)),
        "malformed" => field!(malformed, num(value)),
        "missing_datagrams" => field!(missing_datagrams, num(value)),
        "missing_ranges" => field!(missing_ranges, Some(value.to_owned())),
        "kernel_drops" => field!(kernel_drops, num(value)),
        "recv_buffer" => field!(recv_buffer, num(value)),
        "mode" => field!(mode, Mode::parse(value)),
        "datagrams_retransmitted" => field!(datagrams_retransmitted, num(value)),
        "repair_rounds" => field!(repair_rounds, num(value)),
        "rate_limit_mbit_s" => field!(rate_limit_mbit_s, float(value)),
        "final_rate_mbit_s" => field!(final_rate_mbit_s, float(value)),
        "reports_rejected" => field!(reports_rejected, num(value)),
        "late" => field!(late, num(value)),
        "goodput_mb_s" => field!(goodput_mb_s, float(value)),
        "sha256" => field!(sha256, sha256(value)),
        "sha256_match" => field!(sha256_match, boolean(value)),
        "start" => field!(start, time(value)),
        "end" => field!(end, time(value)),
        "duration_s" => field!(duration_s, float(value)),
        "send_duration_s" => field!(send_duration_s, float(value)),
        "rate_mb_s" => field!(rate_mb_s, float(value)),
        "success" => field!(success, boolean(value)),
        "delivery" => field!(delivery, Delivery::parse(value)),
        "error" => field!(error, Some(value.to_owned())),
        "output" => field!(output, Some(value.to_owned())),
        _ => Ok(()),
    }
}

/// The lines of `text`, numbered from 1, trimmed; blank ones left out.
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.split('\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty())
}

/// Our format, whose header is on line `header_line`.
fn parse_udplab(text: &str, header_line: usize) -> Result<TransferLog, Error> {
    let mut log = TransferLog {
        format: Some(LogFormat::Udplab),
        ..TransferLog::default()
    };
    for (line, content) in numbered_lines(text).filter(|(n, _)| *n > header_line) {
        let (key, value) = content
            .split_once(':')
            .ok_or_else(|| Error::MalformedLine {
                line,
                text: quote(content),
            })?;
        parse_field(&mut log, line, key.trim(), value.trim())?;
    }
    Ok(log)
}

// ---------------------------------------------------------------- lab format

const LAB_SUCCESS: &str = "El archivo se ha enviado exitosamente";
const LAB_FAILURE: &str = "El archivo ha tenido un fallo o paquete faltante al enviarse";
const LAB_FILE: &str = "El archivo enviado fue";
const LAB_SIZE: &str = "El archivo tiene un tamano de";
const LAB_SIZE_TILDE: &str = "El archivo tiene un tamaño de";
const LAB_CLIENT: &str = "El cliente al que le fue enviado es";
const LAB_CLIENT_PORT: &str = "El puerto del cliente es";
const LAB_SERVER_PORT: &str = "El puerto del servidor es";
const LAB_TIME: &str = "El tiempo de transferencia para este cliente fue";

/// Where a fact may start inside a line, when the lab forgot a newline.
const LAB_STARTS: [&str; 4] = [
    "El archivo ",
    "El cliente al que",
    "El puerto del ",
    "El tiempo de transferencia",
];

/// Splits a lab line at each point where the lab glued another fact to it
/// (`...es: 5006El tiempo de ...`). A file name line is kept whole: the
/// name may hold anything.
fn lab_facts(line: &str) -> Vec<&str> {
    let mut facts = Vec::new();
    let mut rest = line;
    loop {
        let glued = if rest.starts_with(LAB_FILE) {
            None
        } else {
            LAB_STARTS
                .iter()
                .filter_map(|start| {
                    rest.match_indices(start)
                        .map(|(at, _)| at)
                        .find(|&at| at > 0)
                })
                .min()
        };
        match glued.and_then(|at| rest.split_at_checked(at)) {
            Some((head, tail)) => {
                facts.push(head.trim());
                rest = tail;
            }
            None => {
                facts.push(rest.trim());
                return facts;
            }
        }
    }
}

/// What follows `phrase` at the start of `fact`, past an optional colon.
fn after<'a>(fact: &'a str, phrase: &str) -> Option<&'a str> {
    let rest = fact.strip_prefix(phrase)?;
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    Some(rest.trim())
}

/// A lab number with an optional unit word after it.
fn lab_number<T: std::str::FromStr>(value: &str, unit: &str) -> Option<T> {
    let value = value.strip_suffix(unit).unwrap_or(value).trim();
    all_digits(value).then(|| value.parse().ok()).flatten()
}

/// A log read, before facts whose meaning depends on the role are placed.
struct Parsed {
    log: TransferLog,
    /// The lab's "tamano": the file's size in a server log, the bytes the
    /// client wrote in a client log.
    lab_size: Option<u64>,
}

impl Parsed {
    /// Places the lab's size by role and derives the rate.
    fn finish(mut self) -> TransferLog {
        let log = &mut self.log;
        if let Some(size) = self.lab_size {
            match log.role {
                Some(Role::Server) => {
                    log.file_size.get_or_insert(size);
                    log.bytes_sent.get_or_insert(size);
                }
                Some(Role::Client) => {
                    log.bytes_received.get_or_insert(size);
                }
                None => {}
            }
        }
        if log.format == Some(LogFormat::Lab) && log.rate_mb_s.is_none() {
            let bytes = match log.role {
                Some(Role::Server) => log.bytes_sent,
                Some(Role::Client) => log.bytes_received,
                None => None,
            };
            if let (Some(bytes), Some(duration)) = (bytes, log.duration_s)
                && duration > 0.0
            {
                log.rate_mb_s = Some(bytes as f64 / duration / 1e6);
            }
        }
        self.log
    }
}

/// The original lab's Spanish lines. `Err(NotALog)` if none is found.
fn parse_lab(text: &str) -> Result<Parsed, Error> {
    let mut log = TransferLog {
        format: Some(LogFormat::Lab),
        protocol: Some(Protocol::Lab),
        ..TransferLog::default()
    };
    let mut lab_size = None;
    let mut recognized = false;
    for (line, content) in numbered_lines(text) {
        for fact in lab_facts(content) {
            let mut role = |role: Role| match log.role {
                Some(known) if known != role => Err(Error::ConflictingRole { line }),
                _ => {
                    log.role = Some(role);
                    Ok(())
                }
            };
            let known = if fact == LAB_SUCCESS || fact == LAB_FAILURE {
                role(Role::Client)?;
                set(&mut log.success, fact == LAB_SUCCESS, line, "verdict")?;
                true
            } else if let Some(value) = after(fact, LAB_FILE) {
                if value.is_empty() {
                    return Err(bad_value(line, LAB_FILE, value));
                }
                set(&mut log.file_name, value.to_owned(), line, LAB_FILE)?;
                true
            } else if let Some(value) =
                after(fact, LAB_SIZE).or_else(|| after(fact, LAB_SIZE_TILDE))
            {
                let size =
                    lab_number(value, "bytes").ok_or_else(|| bad_value(line, LAB_SIZE, value))?;
                set(&mut lab_size, size, line, LAB_SIZE)?;
                true
            } else if let Some(value) = after(fact, LAB_CLIENT) {
                let id = lab_number(value, "").ok_or_else(|| bad_value(line, LAB_CLIENT, value))?;
                set(&mut log.client_id, id, line, LAB_CLIENT)?;
                true
            } else if let Some(value) = after(fact, LAB_CLIENT_PORT) {
                role(Role::Client)?;
                let port =
                    lab_number(value, "").ok_or_else(|| bad_value(line, LAB_CLIENT_PORT, value))?;
                set(&mut log.client_port, port, line, LAB_CLIENT_PORT)?;
                true
            } else if let Some(value) = after(fact, LAB_SERVER_PORT) {
                role(Role::Server)?;
                let port =
                    lab_number(value, "").ok_or_else(|| bad_value(line, LAB_SERVER_PORT, value))?;
                set(&mut log.server_port, port, line, LAB_SERVER_PORT)?;
                true
            } else if let Some(value) = after(fact, LAB_TIME) {
                let seconds = value.strip_suffix("segundos").unwrap_or(value).trim();
                let seconds = seconds
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| bad_value(line, LAB_TIME, value))?;
                set(&mut log.duration_s, seconds, line, LAB_TIME)?;
                true
            } else {
                false
            };
            recognized |= known;
        }
    }
    if !recognized {
        return Err(Error::NotALog);
    }
    Ok(Parsed { log, lab_size })
}

// ---------------------------------------------------------------- reading

/// The version a udplab header line (`log: udplab <version>`) names, or
/// `None` if `line` is no udplab header.
fn header_version(line: &str) -> Option<&str> {
    let mut words = line.strip_prefix("log:")?.split_whitespace();
    if words.next()? != "udplab" {
        return None;
    }
    let version = words.next().unwrap_or_default();
    Some(match words.next() {
        None => version,
        Some(_) => line,
    })
}

/// Either format, detected from the content.
fn parse_parts(text: &str) -> Result<Parsed, Error> {
    if let Some((line, first)) = numbered_lines(text).next()
        && let Some(version) = header_version(first)
    {
        if version != "1" {
            return Err(Error::UnsupportedVersion {
                line,
                version: quote(version),
            });
        }
        let log = parse_udplab(text, line)?;
        return Ok(Parsed {
            log,
            lab_size: None,
        });
    }
    parse_lab(text)
}

/// Reads a log in either format: ours (first line [`HEADER`]) or the
/// original lab's Spanish one. A lab log gets `format` and `protocol`
/// `Lab` and its role inferred from its lines; a lab log that names
/// neither port nor verdict has no role, and then its size line is not
/// placed ([`read_log`] takes the role from the file name).
pub fn parse(text: &str) -> Result<TransferLog, Error> {
    parse_parts(text).map(Parsed::finish)
}

/// Reads the log file at `path`; `role`, `client_id`, `clients` and
/// `file_name` that the content does not tell are taken from the file name
/// when it follows the lab's pattern (`file_name` unless the name holds
/// [`UNKNOWN_FILE_NAME`]). Bytes that are not UTF-8 are read as
/// U+FFFD.
pub fn read_log(path: &Path) -> Result<TransferLog, Error> {
    let bytes = fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let mut parsed = parse_parts(&text).map_err(|source| Error::InFile {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| parse_log_name(name).ok());
    if let Some(name) = name {
        let log = &mut parsed.log;
        log.role.get_or_insert(name.role);
        log.client_id.get_or_insert(name.client_id);
        log.clients.get_or_insert(name.clients);
        if name.file_name != UNKNOWN_FILE_NAME {
            log.file_name.get_or_insert(name.file_name);
        }
    }
    Ok(parsed.finish())
}

// ---------------------------------------------------------------- writing

/// Makes temporary names unique within this process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An I/O error that names the path it happened on.
fn io_at(path: &Path, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

/// Writes `log` to `dir/name` (creating `dir`) through a temporary file in
/// `dir` and a rename, so that `dir/name` is either absent or complete.
/// `name` must be a plain file name. Returns the final path.
pub fn write_log(dir: &Path, name: &str, log: &TransferLog) -> io::Result<PathBuf> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("log file name {name:?} is not a plain file name"),
        ));
    }
    fs::create_dir_all(dir).map_err(|e| io_at(dir, e))?;
    let path = dir.join(name);
    let tmp = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = fs::File::create(&tmp)
        .and_then(|mut file| file.write_all(log.render().as_bytes()))
        .map_err(|e| io_at(&tmp, e))
        .and_then(|()| fs::rename(&tmp, &path).map_err(|e| io_at(&path, e)));
    if let Err(err) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unused_log_name_moves_the_stamp_past_logs_already_there() {
        let dir = tempfile::tempdir().unwrap();
        let first = unused_log_name(dir.path(), Role::Server, 1, stamp(), "f.bin", 1);
        assert_eq!(first, log_file_name(Role::Server, 1, stamp(), "f.bin", 1));
        fs::write(dir.path().join(&first), "x").unwrap();
        let second = unused_log_name(dir.path(), Role::Server, 1, stamp(), "f.bin", 1);
        let later = stamp() + chrono::TimeDelta::seconds(1);
        assert_eq!(second, log_file_name(Role::Server, 1, later, "f.bin", 1));
        assert_eq!(parse_log_name(&second).unwrap().stamp, later);
        // Another number has names of its own.
        let other = unused_log_name(dir.path(), Role::Server, 2, stamp(), "f.bin", 1);
        assert_eq!(other, log_file_name(Role::Server, 2, stamp(), "f.bin", 1));
    }

    fn stamp() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2031, 3, 7)
            .and_then(|d| d.and_hms_opt(9, 5, 42))
            .expect("valid date")
    }

    fn time(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).expect("valid time")
    }

    fn full() -> TransferLog {
        TransferLog {
            role: Some(Role::Client),
            format: Some(LogFormat::Udplab),
            protocol: Some(Protocol::V1),
            file_name: Some("data-set 7.bin".into()),
            file_size: Some(31_457_280),
            client_id: Some(3),
            clients: Some(4),
            server_ip: Some("192.168.56.10".parse().expect("ip")),
            server_port: Some(6003),
            client_ip: Some("fe80::1".parse().expect("ip")),
            client_port: Some(40_123),
            control_port: Some(6000),
            datagram_size: Some(1472),
            chunk_size: Some(1460),
            datagrams_total: Some(21_546),
            datagrams_sent: Some(21_546),
            bytes_sent: Some(31_457_280),
            datagrams_received: Some(21_540),
            bytes_received: Some(31_448_520),
            duplicates: Some(2),
            malformed: Some(0),
            missing_datagrams: Some(6),
            missing_ranges: Some("17-19, 20001-20003".into()),
            kernel_drops: Some(6),
            recv_buffer: Some(425_984),
            mode: Some(Mode::Reliable),
            datagrams_retransmitted: Some(9),
            repair_rounds: Some(2),
            rate_limit_mbit_s: Some(200.0),
            final_rate_mbit_s: Some(187.5),
            reports_rejected: Some(1),
            late: Some(3),
            sha256: Some("ab".repeat(32)),
            sha256_match: Some(false),
            start: Some(time("2031-03-07T09:05:40.125001-05:00")),
            end: Some(time("2031-03-07T09:05:42.000250+00:00")),
            duration_s: Some(1.875249),
            send_duration_s: Some(1.5),
            rate_mb_s: Some(16.771),
            goodput_mb_s: Some(16.5),
            success: Some(false),
            delivery: Some(Delivery::Unknown),
            error: Some("6 datagrams missing".into()),
            output: Some("/tmp/out/data-set 7.bin.incomplete".into()),
        }
    }

    #[test]
    fn round_trip_full() {
        let log = full();
        let text = log.render();
        assert!(text.starts_with("log: udplab 1\n"));
        assert!(!text.contains("format"));
        assert!(text.contains("\nrole: client\n"));
        assert!(text.contains("\nprotocol: v1\n"));
        assert!(text.contains("\nduration_s: 1.875249\n"));
        assert!(text.contains("\nsend_duration_s: 1.500000\n"));
        assert!(text.contains("\nrate_mb_s: 16.771\n"));
        assert!(text.contains("\nstart: 2031-03-07T09:05:40.125001-05:00\n"));
        assert!(text.contains("\nend: 2031-03-07T09:05:42.000250+00:00\n"));
        // Field order: one line per field, in declaration order.
        let keys: Vec<&str> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':').map(|(k, _)| k))
            .collect();
        assert_eq!(keys.len(), 43);
        assert_eq!(keys.first(), Some(&"role"));
        assert_eq!(keys.last(), Some(&"output"));
        assert_eq!(parse(&text).expect("parses"), log);
    }

    #[test]
    fn delivery_unknown_leaves_success_out_and_old_logs_read_as_before() {
        // The server's log of a lab client that was sent everything.
        let log = TransferLog {
            role: Some(Role::Server),
            format: Some(LogFormat::Udplab),
            protocol: Some(Protocol::Lab),
            delivery: Some(Delivery::Unknown),
            ..TransferLog::default()
        };
        let text = log.render();
        assert_eq!(
            text,
            "log: udplab 1\nrole: server\nprotocol: lab\ndelivery: unknown\n"
        );
        assert_eq!(parse(&text).expect("parses"), log);
        // Logs written before the key existed read as they always did.
        let old =
            parse("log: udplab 1\nrole: server\nprotocol: lab\nsuccess: true\n").expect("parses");
        assert_eq!((old.success, old.delivery), (Some(true), None));
    }

    #[test]
    fn round_trip_sparse() {
        let log = TransferLog {
            role: Some(Role::Server),
            format: Some(LogFormat::Udplab),
            client_id: Some(1),
            duration_s: Some(0.5),
            success: Some(true),
            ..TransferLog::default()
        };
        let text = log.render();
        assert_eq!(
            text,
            "log: udplab 1\nrole: server\nclient_id: 1\nduration_s: 0.500000\nsuccess: true\n"
        );
        assert_eq!(parse(&text).expect("parses"), log);

        let empty = TransferLog {
            format: Some(LogFormat::Udplab),
            ..TransferLog::default()
        };
        assert_eq!(empty.render(), "log: udplab 1\n");
        assert_eq!(parse(&empty.render()).expect("parses"), empty);
    }

    #[test]
    fn render_keeps_free_text_on_one_line() {
        let log = TransferLog {
            format: Some(LogFormat::Udplab),
            error: Some("first\nsecond\r\nthird".into()),
            missing_ranges: Some("1-2,\n5-9".into()),
            duration_s: Some(f64::NAN),
            ..TransferLog::default()
        };
        let text = log.render();
        assert_eq!(text.lines().count(), 3);
        assert!(!text.contains("duration_s"));
        let back = parse(&text).expect("parses");
        assert_eq!(back.error.as_deref(), Some("first second  third"));
        assert_eq!(back.missing_ranges.as_deref(), Some("1-2, 5-9"));
    }

    #[test]
    fn ours_tolerates_crlf_blank_lines_unknown_keys() {
        let text = "\r\nlog: udplab 1  \r\nrole: client\r\n\r\nfuture_key: whatever\r\nbytes_received: 42 \r\nformat: ignored";
        let log = parse(text).expect("parses");
        assert_eq!(log.format, Some(LogFormat::Udplab));
        assert_eq!(log.role, Some(Role::Client));
        assert_eq!(log.bytes_received, Some(42));
    }

    #[test]
    fn ours_bad_value_names_key_and_line() {
        let text = "log: udplab 1\nrole: client\n\nclient_port: 70000\n";
        match parse(text) {
            Err(Error::BadValue { line, key, value }) => {
                assert_eq!(
                    (line, key.as_str(), value.as_str()),
                    (4, "client_port", "70000")
                );
            }
            other => panic!("expected BadValue, got {other:?}"),
        }
        for (text, key) in [
            ("log: udplab 1\nrole: both", "role"),
            ("log: udplab 1\nsuccess: yes", "success"),
            ("log: udplab 1\nbytes_sent: -1", "bytes_sent"),
            ("log: udplab 1\nbytes_sent: +1", "bytes_sent"),
            ("log: udplab 1\nduration_s: inf", "duration_s"),
            ("log: udplab 1\nstart: yesterday", "start"),
            ("log: udplab 1\nserver_ip: 300.1.1.1", "server_ip"),
            ("log: udplab 1\nsha256: xyz", "sha256"),
            ("log: udplab 1\nprotocol: ", "protocol"),
            ("log: udplab 1\ndelivery: maybe", "delivery"),
        ] {
            match parse(text) {
                Err(Error::BadValue {
                    line: 2, key: k, ..
                }) => assert_eq!(k, key),
                other => panic!("{text:?}: expected BadValue, got {other:?}"),
            }
        }
    }

    #[test]
    fn ours_other_errors() {
        assert!(matches!(
            parse("log: udplab 1\nrole: client\nrole: server"),
            Err(Error::DuplicateKey { line: 3, .. })
        ));
        assert!(matches!(
            parse("log: udplab 1\nno colon here"),
            Err(Error::MalformedLine { line: 2, .. })
        ));
        for text in [
            "log: udplab 2\nrole: client",
            "log: udplab\n",
            "log: udplab 1 extra\n",
        ] {
            assert!(
                matches!(parse(text), Err(Error::UnsupportedVersion { line: 1, .. })),
                "{text:?}"
            );
        }
        let log = parse("log:udplab\t1\nrole: server").expect("parses");
        assert_eq!(log.role, Some(Role::Server));
    }

    #[test]
    fn file_name_round_trip() {
        let name = log_file_name(Role::Server, 1, stamp(), "100MB.bin", 2);
        assert_eq!(name, "S1-2031-03-07-09-05-42-100MB.bin-2-log.txt");
        let parsed = parse_log_name(&name).expect("parses");
        assert_eq!(
            parsed,
            LogName {
                role: Role::Server,
                client_id: 1,
                stamp: stamp(),
                file_name: "100MB.bin".into(),
                clients: 2,
            }
        );

        let name = log_file_name(Role::Client, 12, stamp(), "my-big-file-3.tar.gz", 15);
        assert_eq!(
            name,
            "C12-2031-03-07-09-05-42-my-big-file-3.tar.gz-15-log.txt"
        );
        let parsed = parse_log_name(&name).expect("parses");
        assert_eq!(parsed.role, Role::Client);
        assert_eq!(parsed.client_id, 12);
        assert_eq!(parsed.file_name, "my-big-file-3.tar.gz");
        assert_eq!(parsed.clients, 15);
        assert_eq!(
            log_file_name(
                parsed.role,
                parsed.client_id,
                parsed.stamp,
                &parsed.file_name,
                parsed.clients
            ),
            name
        );
    }

    #[test]
    fn bad_file_names() {
        for name in [
            "",
            "X1-2031-03-07-09-05-42-f.bin-2-log.txt",
            "s1-2031-03-07-09-05-42-f.bin-2-log.txt",
            "S1-2031-03-07-09-05-42-f.bin-2-log.log",
            "S1-2031-03-07-09-05-42-f.bin-2",
            "S-2031-03-07-09-05-42-f.bin-2-log.txt",
            "Sx-2031-03-07-09-05-42-f.bin-2-log.txt",
            "S+1-2031-03-07-09-05-42-f.bin-2-log.txt",
            "S70000-2031-03-07-09-05-42-f.bin-2-log.txt",
            "S1-2031-03-07-log.txt",
            "S1-2031-03-07-09-05-42-log.txt",
            "S1-2031-03-07-09-05-42-f.bin-log.txt",
            "S1-2031-03-07-09-05-42--2-log.txt",
            "S1-2031-03-07-09-05-42-f.bin-two-log.txt",
            "S1-2031-03-07-09-05-42-f.bin-99999-log.txt",
            "S1-2031-aa-07-09-05-42-f.bin-2-log.txt",
            "S1-2031-13-07-09-05-42-f.bin-2-log.txt",
            "S1-2031-02-30-09-05-42-f.bin-2-log.txt",
            "S1-2031-03-07-25-05-42-f.bin-2-log.txt",
            "S1-99999999999-03-07-09-05-42-f.bin-2-log.txt",
            "Sé-2031-03-07-09-05-42-f.bin-2-log.txt",
        ] {
            assert!(
                matches!(parse_log_name(name), Err(Error::BadName { .. })),
                "{name:?} should be a bad name"
            );
        }
    }

    const CLIENT_OK: &str = "El archivo se ha enviado exitosamente\n\
        El archivo enviado fue: video-3.mp4\n\
        El archivo tiene un tamano de: 2000000 bytes\n\
        El cliente al que le fue enviado es: 7\n\
        El puerto del cliente es: 51234\n\
        El tiempo de transferencia para este cliente fue 4.0 segundos\n";

    #[test]
    fn lab_client_success() {
        let log = parse(CLIENT_OK).expect("parses");
        assert_eq!(log.format, Some(LogFormat::Lab));
        assert_eq!(log.protocol, Some(Protocol::Lab));
        assert_eq!(log.role, Some(Role::Client));
        assert_eq!(log.success, Some(true));
        assert_eq!(log.file_name.as_deref(), Some("video-3.mp4"));
        assert_eq!(log.bytes_received, Some(2_000_000));
        assert_eq!(log.file_size, None);
        assert_eq!(log.bytes_sent, None);
        assert_eq!(log.client_id, Some(7));
        assert_eq!(log.client_port, Some(51_234));
        assert_eq!(log.server_port, None);
        assert_eq!(log.duration_s, Some(4.0));
        assert_eq!(log.rate_mb_s, Some(0.5));
    }

    #[test]
    fn lab_client_failure_crlf_trailing_spaces_no_final_newline() {
        let text = "El archivo ha tenido un fallo o paquete faltante al enviarse  \r\n\
            \r\n\
            El archivo enviado fue: a b.bin\r\n\
            El archivo tiene un tamano de: 1500 bytes \r\n\
            El cliente al que le fue enviado es: 2\r\n\
            El puerto del cliente es: 40000\r\n\
            El tiempo de transferencia para este cliente fue 0.25 segundos";
        let log = parse(text).expect("parses");
        assert_eq!(log.role, Some(Role::Client));
        assert_eq!(log.success, Some(false));
        assert_eq!(log.file_name.as_deref(), Some("a b.bin"));
        assert_eq!(log.bytes_received, Some(1500));
        assert_eq!(log.client_id, Some(2));
        assert_eq!(log.client_port, Some(40_000));
        assert_eq!(log.duration_s, Some(0.25));
        assert_eq!(log.rate_mb_s, Some(0.006));
    }

    #[test]
    fn lab_server() {
        let text = "El archivo enviado fue: big.iso\n\
            El archivo tiene un tamano de: 3000000 bytes\n\
            El cliente al que le fue enviado es: 4\n\
            El puerto del servidor es: 7004\n\
            El tiempo de transferencia para este cliente fue: 1.5 segundos\n";
        let log = parse(text).expect("parses");
        assert_eq!(log.format, Some(LogFormat::Lab));
        assert_eq!(log.role, Some(Role::Server));
        assert_eq!(log.success, None);
        assert_eq!(log.file_size, Some(3_000_000));
        assert_eq!(log.bytes_sent, Some(3_000_000));
        assert_eq!(log.bytes_received, None);
        assert_eq!(log.server_port, Some(7004));
        assert_eq!(log.client_port, None);
        assert_eq!(log.client_id, Some(4));
        assert_eq!(log.duration_s, Some(1.5));
        assert_eq!(log.rate_mb_s, Some(2.0));
    }

    #[test]
    fn lab_server_glued_port_and_time() {
        let text = "El archivo enviado fue: big.iso\r\n\
            El archivo tiene un tamano de: 800 bytes\r\n\
            El cliente al que le fue enviado es: 3\r\n\
            El puerto del servidor es: 7003El tiempo de transferencia para este cliente fue: 0.125 segundos\r\n";
        let log = parse(text).expect("parses");
        assert_eq!(log.role, Some(Role::Server));
        assert_eq!(log.server_port, Some(7003));
        assert_eq!(log.duration_s, Some(0.125));
        assert_eq!(log.file_size, Some(800));
        assert_eq!(log.rate_mb_s, Some(0.0064));
    }

    #[test]
    fn lab_errors() {
        match parse("El archivo enviado fue: x\nEl puerto del cliente es: lots\n") {
            Err(Error::BadValue {
                line: 2,
                key,
                value,
            }) => {
                assert_eq!(key, LAB_CLIENT_PORT);
                assert_eq!(value, "lots");
            }
            other => panic!("expected BadValue, got {other:?}"),
        }
        assert!(matches!(
            parse("El tiempo de transferencia para este cliente fue -1 segundos"),
            Err(Error::BadValue { line: 1, .. })
        ));
        assert!(matches!(
            parse("El puerto del cliente es: 1\nEl puerto del servidor es: 2"),
            Err(Error::ConflictingRole { line: 2 })
        ));
        assert!(matches!(
            parse("El puerto del cliente es: 1\nEl puerto del cliente es: 2"),
            Err(Error::DuplicateKey { line: 2, .. })
        ));
    }

    #[test]
    fn lab_without_role_leaves_size_unplaced() {
        let log = parse("El archivo tiene un tamano de: 10 bytes\n").expect("parses");
        assert_eq!(log.role, None);
        assert_eq!(
            (log.file_size, log.bytes_sent, log.bytes_received),
            (None, None, None)
        );
    }

    #[test]
    fn not_a_log() {
        let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        for text in [
            String::new(),
            "\n\r\n  \n".into(),
            "hello world\nthis is: not a log\n".into(),
            "log: something else\n".into(),
            "El archivo".into(),
            String::from_utf8_lossy(&binary).into_owned(),
        ] {
            assert!(matches!(parse(&text), Err(Error::NotALog)), "{text:?}");
        }
    }

    #[test]
    fn never_panics_on_truncations_and_bytes() {
        let ours = full().render();
        let glued = "El archivo enviado fue: f\nEl puerto del servidor es: 5El tiempo de transferencia para este cliente fue: 1 segundos\n";
        for text in [ours.as_str(), CLIENT_OK, glued] {
            for end in 0..=text.len() {
                if let Some(prefix) = text.get(..end) {
                    let _ = parse(prefix);
                }
                if let Some(suffix) = text.get(end..) {
                    let _ = parse(suffix);
                }
            }
            // Byte-level mangling, read as a file would be.
            let mut bytes = text.as_bytes().to_vec();
            for i in 0..bytes.len() {
                if let Some(b) = bytes.get_mut(i) {
                    *b = b.wrapping_mul(31).wrapping_add(7);
                }
                let _ = parse(&String::from_utf8_lossy(&bytes));
            }
        }
        for name in [
            "S",
            "C1-",
            "S1-2031-03-07-09-05-42-",
            "C1-2-3-4-5-6-7-8-log.txt",
            "S1-log.txt",
        ] {
            for end in 0..=name.len() {
                if let Some(prefix) = name.get(..end) {
                    let _ = parse_log_name(prefix);
                }
            }
        }
    }

    #[test]
    fn write_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("logs").join("run1");
        let name = log_file_name(Role::Client, 3, stamp(), "data-set 7.bin", 4);
        let log = full();
        let path = write_log(&sub, &name, &log).expect("writes");
        assert_eq!(path, sub.join(&name));
        let entries: Vec<_> = fs::read_dir(&sub)
            .expect("read_dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(entries, vec![std::ffi::OsString::from(&name)]);
        assert_eq!(read_log(&path).expect("reads"), log);

        // A sparse log takes what it lacks from its file name.
        let sparse = TransferLog {
            success: Some(true),
            ..TransferLog::default()
        };
        let path = write_log(&sub, &name, &sparse).expect("overwrites");
        let back = read_log(&path).expect("reads");
        assert_eq!(back.role, Some(Role::Client));
        assert_eq!(back.client_id, Some(3));
        assert_eq!(back.clients, Some(4));
        assert_eq!(back.file_name.as_deref(), Some("data-set 7.bin"));
        assert_eq!(back.success, Some(true));

        // A client that never learned the file's name says so in the
        // log's name, and that is no file name.
        let unnamed = log_file_name(Role::Client, 3, stamp(), UNKNOWN_FILE_NAME, 4);
        let path = write_log(&sub, &unnamed, &sparse).expect("writes");
        let back = read_log(&path).expect("reads");
        assert_eq!((back.client_id, back.clients), (Some(3), Some(4)));
        assert_eq!(back.file_name, None);

        assert!(write_log(&sub, "../escape", &sparse).is_err());
        assert!(write_log(&sub, "", &sparse).is_err());
    }

    #[test]
    fn read_log_lab_role_from_name_and_errors_carry_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        // No port or verdict line: the role comes from the name.
        let path = dir.path().join("S2-2031-03-07-09-05-42-f.bin-3-log.txt");
        fs::write(&path, "El archivo tiene un tamano de: 1000 bytes\nEl tiempo de transferencia para este cliente fue: 0.001 segundos").expect("write");
        let log = read_log(&path).expect("reads");
        assert_eq!(log.role, Some(Role::Server));
        assert_eq!(log.file_size, Some(1000));
        assert_eq!(log.bytes_sent, Some(1000));
        assert_eq!(log.client_id, Some(2));
        assert_eq!(log.clients, Some(3));
        assert!(log.rate_mb_s.is_some());

        // A name off the pattern adds nothing.
        let other = dir.path().join("notes.txt");
        fs::write(&other, CLIENT_OK).expect("write");
        let log = read_log(&other).expect("reads");
        assert_eq!(log.clients, None);

        let garbage = dir.path().join("garbage.bin");
        fs::write(&garbage, [0xff, 0xfe, 0x00, 0x41]).expect("write");
        match read_log(&garbage) {
            Err(Error::InFile { path, source }) => {
                assert_eq!(path, garbage);
                assert!(matches!(*source, Error::NotALog));
            }
            other => panic!("expected InFile, got {other:?}"),
        }
        let missing = dir.path().join("missing-log.txt");
        match read_log(&missing) {
            Err(Error::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected Io, got {other:?}"),
        }
    }
}
