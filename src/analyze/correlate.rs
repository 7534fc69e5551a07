//! Control connections x UDP flows x logs -> one row per client.
//!
//! The link: a control connection tells the client's number and UDP port;
//! the server sends from control port + number; so the data flow is
//! (server:control+k -> client:port). The server's and the client's logs
//! of that transfer are the ones whose client number, ports, file size and
//! time agree with it. A value no input tells stays `None`.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::{DateTime, Local, TimeZone, Utc};
use serde::Serialize;

use super::flows::Flow;
use super::tcp::Connection;
use crate::protocol::{Mode, Protocol, lab, v1};
use crate::transfer_log::{self, LogName, Role, TransferLog};

/// Slack around the capture's time span within which a log's times may
/// fall and still belong to the captured run.
const LOG_SLACK_S: i64 = 120;
/// The highest client number inferred from a data flow's port when its
/// registration was not captured.
const MAX_INFERRED_CLIENT: u16 = 4096;
/// Missing sequence ranges listed per flow in the report.
const MAX_LISTED_RANGES: usize = 32;

/// A log file read from a `--logs` directory.
#[derive(Debug, Clone)]
pub struct LoadedLog {
    pub path: PathBuf,
    pub name: Option<LogName>,
    pub log: TransferLog,
}

/// Every log in `dirs` (a directory's files, not its subdirectories; a
/// path that is a file is read as one log). Files that are neither our logs
/// nor named like the lab's are passed over; logs that fail to parse give a
/// warning.
pub fn load_logs(dirs: &[PathBuf], warnings: &mut Vec<String>) -> anyhow::Result<Vec<LoadedLog>> {
    let mut paths = Vec::new();
    for dir in dirs {
        let meta = fs::metadata(dir)
            .map_err(|e| anyhow::anyhow!("cannot read logs at {}: {e}", dir.display()))?;
        if meta.is_file() {
            paths.push(dir.clone());
            continue;
        }
        let entries = fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot read logs at {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                paths.push(entry.path());
            }
        }
    }
    paths.sort();
    paths.dedup();
    let mut logs = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| transfer_log::parse_log_name(n).ok());
        let ours = name.is_none() && starts_with_header(&path);
        if name.is_none() && !ours {
            continue;
        }
        match transfer_log::read_log(&path) {
            Ok(log) => logs.push(LoadedLog { path, name, log }),
            Err(e) => warnings.push(format!("log not used: {e}")),
        }
    }
    Ok(logs)
}

/// Whether the file at `path` opens with udplab's log header (only that
/// much of it is read).
fn starts_with_header(path: &std::path::Path) -> bool {
    use std::io::Read;
    let want = transfer_log::HEADER.as_bytes();
    let mut head = Vec::with_capacity(want.len());
    fs::File::open(path)
        .and_then(|f| f.take(want.len() as u64).read_to_end(&mut head))
        .is_ok_and(|_| head == want)
}

/// What the capture and the logs tell about one client's transfer.
#[derive(Debug, Clone, Serialize)]
pub struct ClientRow {
    pub client_id: Option<u16>,
    /// From the registration, the data, or the logs.
    pub protocol: Option<Protocol>,
    pub server: SocketAddr,
    pub client: SocketAddr,
    pub server_port: Option<u16>,
    pub client_port: Option<u16>,
    pub file_name: Option<String>,
    pub file_size: Option<u64>,
    pub sent_bytes: Option<u64>,
    pub sent_source: Option<&'static str>,
    pub wire_data_frames: Option<u64>,
    pub wire_full_frames: Option<u64>,
    pub wire_frame_len: Option<u32>,
    pub wire_data_bytes: Option<u64>,
    pub received_bytes: Option<u64>,
    pub received_source: Option<&'static str>,
    pub kernel_drops: Option<u64>,
    pub lost_before_capture_bytes: Option<i64>,
    pub lost_after_capture_bytes: Option<i64>,
    pub loss_pct: Option<f64>,
    /// First to last data datagram on the wire.
    pub duration_s: Option<f64>,
    /// Data bytes on the wire over `duration_s`, in 10^6 bytes per second.
    pub rate_mb_s: Option<f64>,
    pub server_log_duration_s: Option<f64>,
    pub client_log_duration_s: Option<f64>,
    pub success: Option<bool>,
    pub icmp_port_unreachable: Option<u64>,
    /// Data datagrams the file takes (v1: the announce, or the server's log).
    pub datagrams_total: Option<u64>,
    pub capture_dropped: Option<u64>,
    pub verdict: String,
    pub server_log: Option<String>,
    pub client_log: Option<String>,
    /// True when no control connection of this client was captured.
    pub control_seen: bool,
    /// v1: `blast` or `reliable`, from the server's log, the client's log,
    /// the captured announce, or `reliable` when the wire carried datagrams
    /// with the retransmission flag.
    pub mode: Option<Mode>,
    /// Where `mode` comes from: "server log", "client log", "v1 announce",
    /// "wire (retransmission flags)".
    pub mode_source: Option<&'static str>,
    /// Data datagrams on the wire with the retransmission flag (v1 headers).
    pub wire_retransmitted: Option<u64>,
    /// Distinct sequence numbers on the wire (v1 headers).
    pub wire_distinct_datagrams: Option<u64>,
    /// Datagrams the server resent in repair rounds (its log).
    pub datagrams_retransmitted: Option<u64>,
    /// Repair rounds after the first pass (the server's log, or else the
    /// client's).
    pub repair_rounds: Option<u32>,
    /// The server's pacing rate when the transfer ended, 10^6 bits per
    /// second (its log).
    pub final_rate_mbit_s: Option<f64>,
    /// Repair requests the server refused (its log).
    pub reports_rejected: Option<u64>,
    /// Datagrams that reached the client after it had the whole file (its
    /// log).
    pub late: Option<u64>,
    /// Every data byte (each copy) over the time it took, 10^6 bytes per
    /// second: the wire's (as `rate_mb_s`), or the server log's `rate_mb_s`.
    pub throughput_mb_s: Option<f64>,
    /// "wire" or "server log".
    pub throughput_source: Option<&'static str>,
    /// Distinct file bytes delivered over the time it took, 10^6 bytes per
    /// second: from the wire, or the client's or server's log.
    pub goodput_mb_s: Option<f64>,
    /// "wire", "client log" or "server log".
    pub goodput_source: Option<&'static str>,
}

/// A control connection as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ControlRow {
    pub client_id: Option<u16>,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub handshake: &'static str,
    pub syn_time: Option<String>,
    pub handshake_rtt_us: Option<f64>,
    pub mss: Option<u16>,
    pub client_mss: Option<u16>,
    pub server_mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub client_window_scale: Option<u8>,
    pub server_window_scale: Option<u8>,
    pub sack_permitted: Option<bool>,
    pub protocol: Option<Protocol>,
    pub udp_port: Option<u16>,
    pub concurrency: Option<u16>,
    /// v1 messages seen, in order, by direction.
    pub messages: Vec<String>,
    pub bytes_to_server: u64,
    pub bytes_to_client: u64,
    pub retransmitted_segments: u64,
    pub teardown: Option<String>,
    /// Why the control bytes could not be read in full, if so.
    pub note: Option<String>,
    #[serde(skip)]
    pub decoded: Registration,
    #[serde(skip)]
    pub first_ns: i64,
}

/// A UDP flow as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FlowRow {
    pub capture: String,
    pub src: String,
    pub dst: String,
    /// The protocol its datagrams speak; null when unrecognised.
    pub kind: Option<Protocol>,
    pub frames: u64,
    pub payload_bytes: u64,
    pub name_datagram: Option<String>,
    pub size_datagram: Option<u64>,
    pub data_frames: u64,
    pub full_frames: u64,
    pub full_frame_len: Option<u32>,
    pub data_bytes: u64,
    pub other_frames: u64,
    pub first_time: String,
    pub last_time: String,
    pub duration_s: f64,
    pub rate_mb_s: Option<f64>,
    pub longest_silence_s: f64,
    pub longest_silence_at: Option<String>,
    pub icmp_port_unreachable: u64,
    pub v1: Option<SeqRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeqRow {
    pub distinct: u64,
    pub duplicates: u64,
    pub retransmitted: u64,
    pub reordered: u64,
    pub highest_seq: Option<u32>,
    /// Datagrams the file needs, when the announce was captured.
    pub expected: Option<u32>,
    pub missing: u64,
    /// Inclusive ranges, at most a few dozen listed.
    pub missing_ranges: Vec<[u32; 2]>,
    pub jitter_us: f64,
}

/// The control bytes of a connection, decoded.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub client_id: Option<u16>,
    pub concurrency: Option<u16>,
    pub port: Option<lab::PortMessage>,
    pub announce: Option<v1::Announce>,
    pub done: Option<v1::Done>,
    pub report: Option<v1::Report>,
    pub messages: Vec<String>,
    pub note: Option<String>,
}

impl Registration {
    fn version(&self) -> Option<u8> {
        self.port.map(|p| p.version)
    }

    fn protocol(&self) -> Option<Protocol> {
        match self.version()? {
            0 => Some(Protocol::Lab),
            v1::VERSION => Some(Protocol::V1),
            _ => None,
        }
    }
}

/// Decode the control bytes of both directions: the lab's registration,
/// then for v1 the framed messages.
pub fn decode_registration(c: &Connection) -> Registration {
    let mut r = Registration::default();
    let mut notes = Vec::new();
    let down = &c.to_client.bytes;
    let up = &c.to_server.bytes;
    r.client_id = down
        .get(..lab::CLIENT_ID_LEN)
        .and_then(|b| lab::parse_client_id(b).ok());
    r.port = up
        .get(..lab::PORT_MSG_LEN)
        .and_then(|b| lab::PortMessage::parse(b).ok());
    let after_id = lab::CLIENT_ID_LEN + lab::CONCURRENCY_LEN;
    r.concurrency = down
        .get(lab::CLIENT_ID_LEN..after_id)
        .and_then(|b| lab::parse_concurrency(b).ok());
    if r.version() == Some(v1::VERSION) {
        for (dir, bytes, from, cut) in [
            ("server", down, after_id, c.to_client.hole.is_some()),
            ("client", up, lab::PORT_MSG_LEN, c.to_server.hole.is_some()),
        ] {
            let mut rest = bytes.get(from..).unwrap_or_default();
            // The reliable mode's feedback comes every few milliseconds: a
            // run of them is listed once, with its count and last figures.
            let mut feedback: Option<(u64, v1::Feedback)> = None;
            loop {
                let decoded = v1::Message::decode(rest);
                if !matches!(decoded, Ok(Some((v1::Message::Feedback(_), _))))
                    && let Some((n, last)) = feedback.take()
                {
                    r.messages.push(feedback_line(dir, n, &last));
                }
                match decoded {
                    Ok(Some((v1::Message::Feedback(f), used))) => {
                        let n = feedback.map_or(0, |(n, _)| n);
                        feedback = Some((n + 1, f));
                        rest = rest.get(used..).unwrap_or_default();
                    }
                    Ok(Some((msg, used))) => {
                        r.messages.push(format!("{dir}: {}", describe(&msg)));
                        match msg {
                            v1::Message::Announce(a) => r.announce = Some(a),
                            v1::Message::Done(d) => r.done = Some(d),
                            v1::Message::Report(rep) => r.report = Some(rep),
                            _ => {}
                        }
                        rest = rest.get(used..).unwrap_or_default();
                    }
                    Ok(None) => {
                        // A stream cut short says so below, once.
                        if !rest.is_empty() && !cut {
                            notes.push(format!(
                                "{} bytes from the {dir} end with an unfinished message",
                                rest.len()
                            ));
                        }
                        break;
                    }
                    Err(e) => {
                        notes.push(format!("undecodable message from the {dir}: {e}"));
                        break;
                    }
                }
            }
        }
    } else if let Some(v) = r.version()
        && v != 0
    {
        notes.push(format!("unknown protocol version {v} in the port message"));
    }
    for (dir, s) in [("client", &c.to_server), ("server", &c.to_client)] {
        if let Some(h) = s.hole {
            notes.push(format!("bytes from the {dir}: {}", h.describe()));
        }
    }
    if !notes.is_empty() {
        r.note = Some(notes.join("; "));
    }
    r
}

/// A run of `n` feedback messages from `dir`, the last one `last`.
fn feedback_line(dir: &str, n: u64, last: &v1::Feedback) -> String {
    if n == 1 {
        format!("{dir}: {}", describe(&v1::Message::Feedback(*last)))
    } else {
        format!(
            "{dir}: {n} x feedback (the last: round {}, {} arrived, {} lost)",
            last.round, last.arrived, last.lost
        )
    }
}

fn describe(m: &v1::Message) -> String {
    match m {
        v1::Message::Announce(a) => format!(
            "announce {} ({} bytes, {} datagrams of {})",
            a.file_name, a.file_size, a.datagrams, a.datagram_size
        ),
        v1::Message::Start { .. } => "start".into(),
        v1::Message::Done(d) => format!(
            "done ({} datagrams, {} bytes sent)",
            d.datagrams_sent, d.bytes_sent
        ),
        v1::Message::Report(r) => format!(
            "report ({} datagrams, {} bytes received, {} missing{})",
            r.datagrams_received,
            r.bytes_received,
            r.missing_datagrams,
            r.kernel_drops
                .map(|k| format!(", {k} kernel drops"))
                .unwrap_or_default()
        ),
        v1::Message::Abort { reason } => format!("abort: {reason}"),
        v1::Message::Feedback(f) => format!(
            "feedback (round {}, {} arrived, {} lost)",
            f.round, f.arrived, f.lost
        ),
    }
}

/// A time in RFC 3339 with microseconds, UTC.
pub fn format_time(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    .unwrap_or_else(|| format!("{ns} ns"))
}

/// Round to `digits` decimals, so that reports compare and read well.
pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

pub fn control_row(c: &Connection) -> ControlRow {
    let mut r = decode_registration(c);
    // The row shows the messages and the note; the decoded facts keep the rest.
    let messages = std::mem::take(&mut r.messages);
    let note = r.note.take();
    ControlRow {
        client_id: r.client_id,
        client: c.client,
        server: c.server,
        handshake: c.handshake(),
        syn_time: c.client_syn.map(|s| format_time(s.at_ns)),
        handshake_rtt_us: c.handshake_rtt_us().map(|x| round(x, 3)),
        mss: c.mss(),
        client_mss: c.client_syn.and_then(|s| s.mss),
        server_mss: c.server_syn.and_then(|s| s.mss),
        window_scale: c.window_scale(),
        client_window_scale: c.client_syn.and_then(|s| s.window_scale),
        server_window_scale: c.server_syn.and_then(|s| s.window_scale),
        sack_permitted: c.sack_permitted(),
        protocol: r.protocol(),
        udp_port: r.port.map(|p| p.port),
        concurrency: r.concurrency,
        messages,
        bytes_to_server: c.to_server.len,
        bytes_to_client: c.to_client.len,
        retransmitted_segments: c.retransmitted(),
        teardown: c.teardown.map(|t| t.describe()),
        note,
        decoded: r,
        first_ns: c.first_ns,
    }
}

pub fn flow_row(f: &Flow, capture: String, expected: Option<u32>) -> FlowRow {
    let duration_s = f.last_ns.saturating_sub(f.first_ns) as f64 / 1e9;
    FlowRow {
        capture,
        src: f.key.src.to_string(),
        dst: f.key.dst.to_string(),
        kind: f.protocol,
        frames: f.frames,
        payload_bytes: f.payload_bytes,
        name_datagram: f.file_name.clone(),
        size_datagram: f.file_size,
        data_frames: f.data.frames,
        full_frames: f.data.full_frames,
        full_frame_len: f.data.full_frame_len(),
        data_bytes: f.data.bytes,
        other_frames: f.other_frames,
        first_time: format_time(f.first_ns),
        last_time: format_time(f.last_ns),
        duration_s: round(duration_s, 6),
        rate_mb_s: rate(f.data.bytes, f.data.duration_s()),
        longest_silence_s: round(f.longest_silence_ns as f64 / 1e9, 6),
        longest_silence_at: f.longest_silence_at_ns.map(format_time),
        icmp_port_unreachable: f.icmp_unreachable,
        v1: f.seq.as_ref().map(|s| {
            let count = expected
                .or(s.highest.map(|h| h.saturating_add(1)))
                .unwrap_or(0);
            let (ranges, missing) = s.missing(count, MAX_LISTED_RANGES);
            SeqRow {
                distinct: s.distinct,
                duplicates: s.duplicates,
                retransmitted: s.retransmitted,
                reordered: s.reordered,
                highest_seq: s.highest,
                expected,
                missing,
                missing_ranges: ranges.into_iter().map(|(a, b)| [a, b]).collect(),
                jitter_us: round(s.jitter_us, 3),
            }
        }),
    }
}

fn rate(bytes: u64, duration_s: Option<f64>) -> Option<f64> {
    let d = duration_s?;
    (d > 0.0).then(|| round(bytes as f64 / d / 1e6, 3))
}

/// Everything the rows are built from.
pub struct Inputs<'a> {
    pub control_port: u16,
    pub connections: &'a [Connection],
    pub flows: &'a [Flow],
    pub logs: &'a [LoadedLog],
    /// Packets each capture point (file) says its capturer dropped, by the
    /// point index flows and connections carry; `None` where it does not say.
    pub capture_dropped: &'a [Option<u64>],
    /// The capture's time span, nanoseconds since the epoch.
    pub span_ns: Option<(i64, i64)>,
}

pub struct Correlated {
    pub control: Vec<ControlRow>,
    pub clients: Vec<ClientRow>,
    pub logs_used: Vec<String>,
    /// Logs read but belonging to no captured transfer.
    pub logs_unused: usize,
    pub warnings: Vec<String>,
}

pub fn correlate(inp: &Inputs) -> Correlated {
    let mut warnings = Vec::new();
    // One row per control connection; a connection seen at several capture
    // points (a server-side and a client-side capture) counts once.
    let mut seen = HashSet::new();
    let control: Vec<ControlRow> = inp
        .connections
        .iter()
        .filter(|c| {
            seen.insert((
                c.client,
                c.server,
                c.client_syn.or(c.server_syn).map(|s| s.isn),
            ))
        })
        .map(control_row)
        .collect();

    let mut used_logs = vec![false; inp.logs.len()];
    let mut claimed = HashSet::new();
    let mut clients = Vec::new();
    for c in &control {
        let r = &c.decoded;
        let (Some(id), Some(port)) = (r.client_id, r.port) else {
            // A connection that never registered (refused, cut short, or
            // seen only in part) has no data flow to join.
            continue;
        };
        let server_port = inp.control_port.checked_add(id);
        let flows = match server_port {
            Some(data_port) => matching_flows(inp.flows, c, data_port, port.port),
            None => Vec::new(),
        };
        claimed.extend(flows.iter().map(|f| (f.point, f.key)));
        let row = build_row(
            inp,
            Identity {
                client_id: Some(id),
                server: c.server,
                client: c.client,
                server_port,
                client_port: Some(port.port),
                reg: Some(r),
            },
            &flows,
            &mut used_logs,
        );
        clients.push(row);
    }
    // Data flows from a data port whose registration the capture missed.
    let mut orphans: BTreeMap<FlowKeyOrd, Vec<&Flow>> = BTreeMap::new();
    for f in inp.flows {
        if f.protocol.is_none() || f.data.frames == 0 || claimed.contains(&(f.point, f.key)) {
            continue;
        }
        orphans.entry((f.key.src, f.key.dst)).or_default().push(f);
    }
    let mut foreign = 0usize;
    for ((src, dst), flows) in orphans {
        let id = src
            .port()
            .checked_sub(inp.control_port)
            .filter(|&k| k > 0 && k <= MAX_INFERRED_CLIENT);
        if id.is_none() {
            // Not from a data port of this run: someone else's traffic.
            foreign += 1;
            continue;
        }
        let row = build_row(
            inp,
            Identity {
                client_id: id,
                server: src,
                client: dst,
                server_port: Some(src.port()),
                client_port: Some(dst.port()),
                reg: None,
            },
            &flows,
            &mut used_logs,
        );
        clients.push(row);
    }
    if foreign > 0 {
        warnings.push(format!(
            "{foreign} UDP flows that look like transfers do not come from a data port of \
             control port {} (control port + 1 to + {MAX_INFERRED_CLIENT}): not reported as clients",
            inp.control_port
        ));
    }
    clients.sort_by_key(|r| (r.client_id.is_none(), r.client_id));
    let logs_used = inp
        .logs
        .iter()
        .zip(&used_logs)
        .filter(|(_, u)| **u)
        .map(|(l, _)| l.path.display().to_string())
        .collect();
    Correlated {
        control,
        clients,
        logs_used,
        logs_unused: used_logs.iter().filter(|u| !**u).count(),
        warnings,
    }
}

/// Rows from the logs alone, for a run nobody captured: one per server
/// log, then one per client log no server log claimed. The wire columns
/// stay empty.
pub fn from_logs(control_port: u16, logs: &[LoadedLog]) -> Correlated {
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut order: Vec<usize> = (0..logs.len()).collect();
    // Server logs first, each client's in client order.
    order.sort_by_key(|&i| {
        let l = &logs[i].log;
        (l.role != Some(Role::Server), l.client_id, i)
    });
    let inp = Inputs {
        control_port,
        connections: &[],
        flows: &[],
        logs,
        capture_dropped: &[],
        span_ns: None,
    };
    let mut used = vec![false; logs.len()];
    let mut clients = Vec::new();
    for i in order {
        if used[i] {
            continue;
        }
        let log = &logs[i].log;
        let addr = |ip: Option<std::net::IpAddr>, port: Option<u16>| match (ip, port) {
            (Some(ip), Some(port)) => SocketAddr::new(ip, port),
            _ => unspecified,
        };
        let id = Identity {
            client_id: log.client_id.or(logs[i].name.as_ref().map(|n| n.client_id)),
            server: addr(log.server_ip, log.server_port),
            client: addr(log.client_ip, log.client_port),
            server_port: log.server_port,
            client_port: log.client_port,
            reg: None,
        };
        if id.client_id.is_none() {
            continue;
        }
        clients.push(build_row(&inp, id, &[], &mut used));
    }
    clients.sort_by_key(|r| (r.client_id.is_none(), r.client_id));
    Correlated {
        control: Vec::new(),
        clients,
        logs_used: logs
            .iter()
            .zip(&used)
            .filter(|(_, u)| **u)
            .map(|(l, _)| l.path.display().to_string())
            .collect(),
        logs_unused: used.iter().filter(|u| !**u).count(),
        warnings: Vec::new(),
    }
}

type FlowKeyOrd = (SocketAddr, SocketAddr);

/// The data flows of one client at every capture point that saw it.
fn matching_flows<'a>(
    flows: &'a [Flow],
    control: &ControlRow,
    data_port: u16,
    client_port: u16,
) -> Vec<&'a Flow> {
    let candidates: Vec<&Flow> = flows
        .iter()
        .filter(|f| f.key.src.port() == data_port && f.key.dst.port() == client_port)
        .collect();
    // Prefer the flow between the control connection's own addresses; a
    // multi-homed server may send from another.
    let same_hosts: Vec<&Flow> = candidates
        .iter()
        .copied()
        .filter(|f| control.client.ip() == f.key.dst.ip() && control.server.ip() == f.key.src.ip())
        .collect();
    if same_hosts.is_empty() {
        candidates
    } else {
        same_hosts
    }
}

struct Identity<'a> {
    client_id: Option<u16>,
    server: SocketAddr,
    client: SocketAddr,
    server_port: Option<u16>,
    client_port: Option<u16>,
    reg: Option<&'a Registration>,
}

fn build_row(inp: &Inputs, id: Identity, flows: &[&Flow], used: &mut [bool]) -> ClientRow {
    let reg = id.reg;
    let announce = reg.and_then(|r| r.announce.as_ref());
    // The capture point nearest the receiver: the one whose flow carried
    // the fewest data frames.
    let flow = flows
        .iter()
        .copied()
        .min_by_key(|f| (f.data.frames, f.point));
    let protocol = reg
        .and_then(Registration::protocol)
        .or(flow.and_then(|f| f.protocol));

    let want_size = announce
        .map(|a| a.file_size)
        .or(flow.and_then(|f| f.file_size));
    let server_log = pick_log(inp, Role::Server, &id, want_size, used);
    let client_log = pick_log(inp, Role::Client, &id, want_size, used);
    let slog = server_log.map(|i| &inp.logs[i]);
    let clog = client_log.map(|i| &inp.logs[i]);
    let protocol = protocol.or_else(|| slog.or(clog).and_then(|l| l.log.protocol));

    let file_name = announce
        .map(|a| a.file_name.clone())
        .or_else(|| slog.and_then(|l| l.log.file_name.clone()))
        .or_else(|| flow.and_then(|f| f.file_name.clone()))
        .or_else(|| clog.and_then(|l| l.log.file_name.clone()));
    let file_size = announce
        .map(|a| a.file_size)
        .or_else(|| slog.and_then(|l| l.log.file_size))
        .or_else(|| flow.and_then(|f| f.file_size))
        .or_else(|| clog.and_then(|l| l.log.file_size));

    let (sent_bytes, sent_source) = match (
        slog.and_then(|l| l.log.bytes_sent),
        reg.and_then(|r| r.done),
    ) {
        (Some(b), _) => (Some(b), Some("server log")),
        (None, Some(d)) => (Some(d.bytes_sent), Some("v1 done message")),
        (None, None) => (None, None),
    };
    let report = reg.and_then(|r| r.report.as_ref());
    let (received_bytes, received_source) = match (clog.and_then(|l| l.log.bytes_received), report)
    {
        (Some(b), _) => (Some(b), Some("client log")),
        (None, Some(r)) => (Some(r.bytes_received), Some("v1 report message")),
        (None, None) => (None, None),
    };
    let kernel_drops = clog
        .and_then(|l| l.log.kernel_drops)
        .or(report.and_then(|r| r.kernel_drops));

    // When the registration was captured but no data was, the wire carried
    // none: zero is what the capture tells.
    let wire = match flow {
        Some(f) => Some((f.data.frames, f.data.full_frames, f.data.bytes)),
        None if reg.is_some() => Some((0, 0, 0)),
        None => None,
    };
    let wire_bytes = wire.map(|w| w.2);
    // The v1 sequence numbers: copies resent, and distinct datagrams (not
    // told when some were beyond what could be tracked).
    let seq = flow.and_then(|f| f.seq.as_ref());
    let (wire_retransmitted, wire_distinct) = match (flow, seq) {
        (Some(_), Some(s)) => (
            Some(s.retransmitted),
            (s.untracked == 0).then_some(s.distinct),
        ),
        (None, _) if reg.is_some() && protocol == Some(Protocol::V1) => (Some(0), Some(0)),
        _ => (None, None),
    };
    let (mode, mode_source) = if let Some(m) = slog.and_then(|l| l.log.mode) {
        (Some(m), Some("server log"))
    } else if let Some(m) = clog.and_then(|l| l.log.mode) {
        (Some(m), Some("client log"))
    } else if let Some(a) = announce {
        (Some(a.mode), Some("v1 announce"))
    } else if wire_retransmitted.is_some_and(|n| n > 0) {
        (Some(Mode::Reliable), Some("wire (retransmission flags)"))
    } else {
        (None, None)
    };
    let reliable = mode == Some(Mode::Reliable);
    // In the reliable mode the server calls a transfer a success only when
    // the client confirmed the file: its log may say so when the client's
    // does not.
    let success = clog
        .and_then(|l| l.log.success)
        .or(report.map(|r| r.sha256_match))
        .or_else(|| slog.and_then(|l| l.log.success).filter(|_| reliable));

    let diff = |a: Option<u64>, b: Option<u64>| Some(signed_diff(a?, b?));
    let lost_before = diff(sent_bytes, wire_bytes);
    let lost_after = diff(wire_bytes, received_bytes);
    // The file's loss. The reliable mode sends more than the file (every
    // resent copy counts in `sent_bytes`): only the file's size measures it.
    let whole = if reliable {
        file_size
    } else {
        file_size.or(sent_bytes)
    };
    let loss_pct = match (whole, received_bytes) {
        (Some(0), Some(_)) => Some(0.0),
        (Some(total), Some(got)) => {
            Some(round(100.0 * (total as f64 - got as f64) / total as f64, 3))
        }
        _ => None,
    };
    let capture_dropped = flow.and_then(|f| inp.capture_dropped.get(f.point).copied().flatten());
    let capture_whole = capture_dropped.is_none_or(|n| n == 0);
    // Each capture point counts the ICMP errors it saw; take the most.
    let icmp = flow.map(|_| flows.iter().map(|g| g.icmp_unreachable).max().unwrap_or(0));
    let datagrams_total = announce
        .map(|a| u64::from(a.datagrams))
        .or_else(|| slog.and_then(|l| l.log.datagrams_total));
    let datagrams_retransmitted = slog.and_then(|l| l.log.datagrams_retransmitted);
    let repair_rounds = slog
        .and_then(|l| l.log.repair_rounds)
        .or_else(|| clog.and_then(|l| l.log.repair_rounds));
    let late = clog.and_then(|l| l.log.late);
    let received_datagrams = clog
        .and_then(|l| l.log.datagrams_received)
        .or(report.map(|r| r.datagrams_received));
    let repair = reliable.then(|| {
        let duplicates = clog
            .and_then(|l| l.log.duplicates)
            .or(report.map(|r| r.duplicates));
        Repair {
            rounds: repair_rounds,
            resent: datagrams_retransmitted.or(wire_retransmitted.filter(|_| capture_whole)),
            wire_datagrams: wire.map(|w| w.0),
            total: datagrams_total,
            client_extra: match (duplicates, late) {
                (None, None) => None,
                (d, l) => Some(d.unwrap_or(0).saturating_add(l.unwrap_or(0))),
            },
            // The server's log relays the client's last report.
            missing: clog
                .and_then(|l| l.log.missing_datagrams)
                .or(report.map(|r| r.missing_datagrams))
                .or_else(|| slog.and_then(|l| l.log.missing_datagrams))
                .or_else(|| Some(datagrams_total?.saturating_sub(received_datagrams?))),
            confirmed: success.or_else(|| {
                (received_bytes.is_some() && received_bytes == file_size).then_some(true)
            }),
            error: slog
                .and_then(|l| Some(("server", l.log.error.clone()?)))
                .or_else(|| clog.and_then(|l| Some(("client", l.log.error.clone()?)))),
        }
    });
    let facts = Facts {
        expected: sent_bytes.or(file_size),
        file_size,
        wire: wire_bytes,
        received: received_bytes,
        kernel_drops,
        capture_dropped,
        icmp: icmp.unwrap_or(0),
        sent_datagrams: slog
            .and_then(|l| l.log.datagrams_sent)
            .or(reg.and_then(|r| r.done).map(|d| d.datagrams_sent)),
        received_datagrams,
        repair,
    };
    // A capture that lost packets itself cannot place the loss.
    let (lost_before, lost_after) = if capture_whole {
        (lost_before, lost_after)
    } else {
        (None, None)
    };
    let wire_rate = flow.and_then(|f| rate(f.data.bytes, f.data.duration_s()));
    let (throughput_mb_s, throughput_source) = match (
        wire_rate.filter(|_| capture_whole),
        slog.and_then(|l| l.log.rate_mb_s),
    ) {
        (Some(r), _) => (Some(r), Some("wire")),
        (None, Some(r)) => (Some(r), Some("server log")),
        (None, None) => (None, None),
    };
    // Goodput on the wire: the file bytes of the first copy of each
    // datagram (the lab's protocol never resends: all of its data), as much
    // as the client kept, over the flow's data time.
    let wire_goodput = flow.filter(|_| capture_whole).and_then(|f| {
        let distinct = match &f.seq {
            Some(s) if s.untracked == 0 => s.distinct_bytes,
            Some(_) => return None,
            None => f.data.bytes,
        };
        rate(distinct.min(received_bytes?), f.data.duration_s())
    });
    let (goodput_mb_s, goodput_source) = if let Some(g) = wire_goodput {
        (Some(g), Some("wire"))
    } else if let Some(g) = slog.and_then(|l| l.log.goodput_mb_s) {
        // The server's clock runs from the first datagram sent to the
        // client's confirmation: the same span as its throughput.
        (Some(g), Some("server log"))
    } else if let Some(g) = clog.and_then(|l| l.log.goodput_mb_s) {
        (Some(g), Some("client log"))
    } else {
        (None, None)
    };
    ClientRow {
        client_id: id.client_id,
        protocol,
        server: id.server,
        client: id.client,
        server_port: id.server_port,
        client_port: id.client_port,
        file_name,
        file_size,
        sent_bytes,
        sent_source,
        wire_data_frames: wire.map(|w| w.0),
        wire_full_frames: wire.map(|w| w.1),
        wire_frame_len: flow.and_then(|f| f.data.full_frame_len()),
        wire_data_bytes: wire_bytes,
        received_bytes,
        received_source,
        kernel_drops,
        lost_before_capture_bytes: lost_before,
        lost_after_capture_bytes: lost_after,
        loss_pct,
        duration_s: flow.and_then(|f| f.data.duration_s()).map(|d| round(d, 6)),
        rate_mb_s: wire_rate,
        server_log_duration_s: slog.and_then(|l| l.log.duration_s),
        client_log_duration_s: clog.and_then(|l| l.log.duration_s),
        success,
        icmp_port_unreachable: icmp,
        datagrams_total,
        capture_dropped,
        verdict: verdict(&facts),
        server_log: slog.map(|l| l.path.display().to_string()),
        client_log: clog.map(|l| l.path.display().to_string()),
        control_seen: reg.is_some(),
        mode,
        mode_source,
        wire_retransmitted,
        wire_distinct_datagrams: wire_distinct,
        datagrams_retransmitted,
        repair_rounds,
        final_rate_mbit_s: slog.and_then(|l| l.log.final_rate_mbit_s),
        reports_rejected: slog.and_then(|l| l.log.reports_rejected),
        late,
        throughput_mb_s,
        throughput_source,
        goodput_mb_s,
        goodput_source,
    }
}

/// The log of `role` for this client: same client number, no port or size
/// that disagrees, times within the capture's span; the nearest in time
/// when several qualify. Each log serves one row.
fn pick_log(
    inp: &Inputs,
    role: Role,
    id: &Identity,
    size: Option<u64>,
    used: &mut [bool],
) -> Option<usize> {
    let agree = |a: Option<u16>, b: Option<u16>| a.is_none() || b.is_none() || a == b;
    let mut best: Option<(i64, usize)> = None;
    for (i, l) in inp.logs.iter().enumerate() {
        let log = &l.log;
        if used.get(i).copied().unwrap_or(true) || log.role != Some(role) {
            continue;
        }
        let log_id = log.client_id.or(l.name.as_ref().map(|n| n.client_id));
        if log_id.is_none() || (id.client_id.is_some() && log_id != id.client_id) {
            continue;
        }
        if !agree(log.server_port, id.server_port) || !agree(log.client_port, id.client_port) {
            continue;
        }
        if let (Some(a), Some(b)) = (log.file_size, size)
            && a != b
        {
            continue;
        }
        // Ports the capture knows but the log does not tell (the lab's
        // logs tell few) leave time as the judge.
        let distance = match (log_times(l), inp.span_ns) {
            (Some((from, to)), Some((first, last))) => {
                let slack = LOG_SLACK_S * 1_000_000_000;
                if to < first.saturating_sub(slack) || from > last.saturating_add(slack) {
                    continue;
                }
                from.saturating_sub(first).saturating_abs()
            }
            _ => i64::MAX,
        };
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, i));
        }
    }
    let i = best?.1;
    if let Some(u) = used.get_mut(i) {
        *u = true;
    }
    Some(i)
}

/// When a log's transfer happened, in ns since the epoch: its own start and
/// end, or the time in its file name (local time, as the lab wrote it).
fn log_times(l: &LoadedLog) -> Option<(i64, i64)> {
    if let Some(start) = l.log.start {
        let end = l.log.end.unwrap_or(start);
        return Some((start.timestamp_nanos_opt()?, end.timestamp_nanos_opt()?));
    }
    let stamp = l.name.as_ref()?.stamp;
    let t = Local
        .from_local_datetime(&stamp)
        .earliest()?
        .timestamp_nanos_opt()?;
    let dur = l.log.duration_s.unwrap_or(0.0);
    Some((t, t.saturating_add((dur.max(0.0) * 1e9) as i64)))
}

/// `a - b`, saturating at the ends of i64 (the inputs are untrusted).
fn signed_diff(a: u64, b: u64) -> i64 {
    let d = i128::from(a) - i128::from(b);
    i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
}

/// What the verdict is drawn from.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Bytes the server sent (its log), or else the file size.
    pub expected: Option<u64>,
    pub file_size: Option<u64>,
    pub wire: Option<u64>,
    pub received: Option<u64>,
    pub kernel_drops: Option<u64>,
    pub capture_dropped: Option<u64>,
    pub icmp: u64,
    /// Data datagrams the server sent and the client kept, when told.
    pub sent_datagrams: Option<u64>,
    pub received_datagrams: Option<u64>,
    /// The reliable mode's account, when the transfer was in that mode.
    pub repair: Option<Repair>,
}

/// What a reliable-mode transfer's verdict adds to [`Facts`]. Counts are
/// datagrams; `Facts::sent_datagrams` counts every copy sent, first or
/// resent, and `Facts::received_datagrams` the distinct ones the client
/// kept.
#[derive(Debug, Clone, Default)]
pub struct Repair {
    /// Repair rounds after the first pass.
    pub rounds: Option<u32>,
    /// Datagrams resent: the server's count, or else the copies the wire
    /// carried with the retransmission flag.
    pub resent: Option<u64>,
    /// Data datagrams on the wire, every copy.
    pub wire_datagrams: Option<u64>,
    /// Datagrams the file takes.
    pub total: Option<u64>,
    /// Copies that reached the client but were not new to it (duplicates,
    /// and late ones after it had the whole file).
    pub client_extra: Option<u64>,
    /// Datagrams the client still lacked at the end.
    pub missing: Option<u64>,
    /// The client confirmed the whole file.
    pub confirmed: Option<bool>,
    /// Why the transfer failed, by the log of "server" or "client".
    pub error: Option<(&'static str, String)>,
}

/// One line naming where the loss happened.
pub fn verdict(f: &Facts) -> String {
    if let Some(r) = &f.repair {
        return reliable_verdict(f, r);
    }
    let place = place_loss(f);
    // A server that stopped early (the client had gone, or it aborted)
    // lost nothing on the way of what it sent, yet the file is short.
    match (f.expected, f.file_size) {
        (Some(sent), Some(size)) if sent < size => {
            let short = format!("the server sent only {sent} of {size} bytes");
            if place == "no loss" {
                format!("nothing lost on the way, but {short}")
            } else {
                format!("{place}; {short}")
            }
        }
        _ => place,
    }
}

/// When the capture cannot place the loss, the logs alone can still close
/// the account: every datagram the server sent either reached the client or
/// was dropped by its kernel. Empty when they do not.
fn logs_close_the_account(f: &Facts) -> String {
    match (f.sent_datagrams, f.received_datagrams, f.kernel_drops) {
        (Some(sent), Some(got), Some(k)) if sent > got && sent - got == k => format!(
            "; by the logs, the client's kernel dropped all {k} missing datagrams \
             (receiver socket buffer)"
        ),
        _ => String::new(),
    }
}

/// " after 2 repair rounds", " in the first pass", or nothing when no
/// log tells.
fn after_rounds(rounds: Option<u32>) -> String {
    match rounds {
        None => String::new(),
        Some(0) => " in the first pass".into(),
        Some(1) => " after 1 repair round".into(),
        Some(n) => format!(" after {n} repair rounds"),
    }
}

fn datagrams(n: u64) -> String {
    if n == 1 {
        "1 datagram".into()
    } else {
        format!("{n} datagrams")
    }
}

/// Where the copies that had to be resent were lost, as far as the inputs
/// say: copies sent but never on the wire were lost before the capture
/// point; copies on the wire that the client neither kept nor counted as
/// duplicates, after it.
fn where_copies_were_lost(f: &Facts, r: &Repair) -> Option<String> {
    let extra = r.client_extra.unwrap_or(0);
    let by_kernel = |k: u64| format!("the client's kernel dropped {}", datagrams(k));
    if let Some(n) = f.capture_dropped.filter(|&n| n > 0) {
        let mut text = format!("the capture dropped {n} packets: cannot tell where");
        if let Some(k) = f.kernel_drops.filter(|&k| k > 0) {
            text.push_str(&format!("; by the logs, {}", by_kernel(k)));
        }
        return Some(text);
    }
    let Some(wire) = r.wire_datagrams else {
        let mut text = "the capture holds no data flow to say where".to_string();
        let lost = f
            .sent_datagrams
            .zip(f.received_datagrams)
            .map(|(s, g)| s.saturating_sub(g.saturating_add(extra)));
        match (lost, f.kernel_drops) {
            (Some(n), Some(k)) if n > 0 && n == k => text.push_str(&format!(
                "; by the logs, the client's kernel dropped all {n} copies lost, in the \
                 receiver socket buffer"
            )),
            (Some(n), Some(k)) if n > 0 => text.push_str(&format!(
                "; by the logs, {n} copies were lost and {}",
                by_kernel(k)
            )),
            (_, Some(k)) if k > 0 => text.push_str(&format!("; by the logs, {}", by_kernel(k))),
            _ => {}
        }
        return Some(text);
    };
    let before = f.sent_datagrams.map(|s| signed_diff(s, wire));
    let after = f
        .received_datagrams
        .map(|g| signed_diff(wire, g.saturating_add(extra)));
    let mut parts = Vec::new();
    match before {
        Some(b) if b >= 0 => parts.push(format!("{b} lost before the capture point")),
        Some(b) => parts.push(format!(
            "the wire carried {} more than the server sent",
            datagrams(b.unsigned_abs())
        )),
        None => {}
    }
    match after {
        Some(a) if a >= 0 => {
            let mut text = if parts.is_empty() {
                format!("{a} lost after the capture point")
            } else {
                format!("{a} after it")
            };
            if a > 0 {
                if f.icmp > 0 {
                    text.push_str(&format!(
                        ": the client had gone: {} ICMP port unreachable",
                        f.icmp
                    ));
                } else if let Some(k) = f.kernel_drops.filter(|&k| k > 0) {
                    text.push_str(&format!(": {}", by_kernel(k)));
                }
            }
            parts.push(text);
        }
        Some(a) => parts.push(format!(
            "the client took {} more than the wire carried",
            datagrams(a.unsigned_abs())
        )),
        None => {}
    }
    if extra > 0 {
        parts.push(format!("{extra} arrived again"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The verdict of a reliable-mode transfer: the file arrives whole or not
/// at all, so the question is what it took (repair rounds, datagrams
/// resent, where their first copies were lost), or what was missing when
/// it ended.
fn reliable_verdict(f: &Facts, r: &Repair) -> String {
    let rounds = after_rounds(r.rounds);
    let place = where_copies_were_lost(f, r);
    let resent = match (r.resent, &place) {
        (Some(k), Some(p)) => Some(format!("{} resent ({p})", datagrams(k))),
        (Some(k), None) => Some(format!("{} resent", datagrams(k))),
        (None, Some(p)) => Some(format!("no server log counts the datagrams resent ({p})")),
        (None, None) => None,
    };
    if r.confirmed == Some(true) {
        if r.resent == Some(0) && r.rounds.unwrap_or(0) == 0 {
            return "no loss: delivered whole in the first pass, nothing resent".into();
        }
        let mut text = format!("delivered whole{rounds}");
        if let Some(resent) = resent {
            text.push_str("; ");
            text.push_str(&resent);
        }
        return text;
    }
    let missing = match (r.confirmed, r.missing, r.total) {
        (None, _, _) => "no client log or report says what arrived".to_string(),
        (_, Some(0), _) => "every datagram arrived, but the file's SHA-256 does not match".into(),
        (_, Some(m), Some(t)) => format!("{m} of {} missing", datagrams(t)),
        (_, Some(m), None) => format!("{} missing", datagrams(m)),
        (_, None, _) => match (f.received, f.file_size) {
            (Some(got), Some(size)) => format!("the client kept {got} of {size} bytes"),
            _ => "no client log or report says what is missing".into(),
        },
    };
    let head = if r.confirmed.is_none() {
        "not confirmed"
    } else {
        "not delivered whole"
    };
    let mut text = format!("{head}{rounds}: {missing}");
    if let Some(resent) = resent {
        text.push_str("; ");
        text.push_str(&resent);
    }
    if f.icmp > 0 && !text.contains("ICMP") {
        text.push_str(&format!(
            "; the client had gone: {} ICMP port unreachable",
            f.icmp
        ));
    }
    if let Some((who, e)) = &r.error {
        text.push_str(&format!("; the {who}'s log says: {e}"));
    }
    if let (Some(sent), Some(size)) = (f.expected, f.file_size)
        && sent < size
    {
        text.push_str(&format!("; the server sent only {sent} of {size} bytes"));
    }
    text
}

fn place_loss(f: &Facts) -> String {
    if let Some(n) = f.capture_dropped.filter(|&n| n > 0) {
        let mut text = format!("cannot tell: the capture dropped {n} packets");
        text.push_str(&logs_close_the_account(f));
        return text;
    }
    let Some(wire) = f.wire else {
        return match (f.expected, f.received) {
            (Some(e), Some(r)) if r >= e => {
                "no loss (by the logs; no data flow in the capture)".into()
            }
            (Some(e), Some(r)) => {
                let mut text = format!(
                    "{} bytes lost; the capture holds no data flow to say where",
                    e - r
                );
                text.push_str(&logs_close_the_account(f));
                text
            }
            _ => "cannot tell: no data flow in the capture and no logs".into(),
        };
    };
    let Some(received) = f.received else {
        let mut text = match f.expected {
            Some(e) if wire >= e => format!("the wire carried all {e} bytes sent"),
            Some(e) => format!(
                "{} bytes lost before the capture point (sender host or network)",
                e - wire
            ),
            None => format!("the wire carried {wire} bytes; no server log says what was sent"),
        };
        if f.icmp > 0 {
            text.push_str(&format!(
                "; the client had gone: {} ICMP port unreachable",
                f.icmp
            ));
        }
        text.push_str("; no client log says what arrived");
        return text;
    };
    let before = f.expected.map(|e| signed_diff(e, wire));
    let after = signed_diff(wire, received);
    let mut parts = Vec::new();
    match before {
        Some(b) if b > 0 => parts.push(format!(
            "{b} bytes lost before the capture point (sender host or network)"
        )),
        Some(b) if b < 0 => parts.push(format!(
            "the wire carried {} bytes more than the server sent",
            -b
        )),
        None => parts.push("no server log says what was sent".into()),
        _ => {}
    }
    if after > 0 {
        let cause = if f.icmp > 0 {
            format!("the client had gone: {} ICMP port unreachable", f.icmp)
        } else {
            match f.kernel_drops {
                Some(k) if k > 0 => format!("the client's kernel dropped {k} datagrams"),
                Some(_) => "the client's kernel counted no drops".into(),
                None => "no kernel drop count".into(),
            }
        };
        let place = if f.kernel_drops.is_some_and(|k| k > 0) && f.icmp == 0 {
            "in the receiver socket buffer"
        } else {
            "after the capture point"
        };
        let carried = if before == Some(0) {
            "the wire carried everything, "
        } else {
            ""
        };
        parts.push(format!("{after} bytes lost {place}: {carried}{cause}"));
    } else if after < 0 {
        parts.push(format!(
            "the client kept {} bytes more than the wire carried",
            -after
        ));
    }
    if parts.is_empty() {
        return "no loss".into();
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(expected: u64, wire: u64, received: u64) -> Facts {
        Facts {
            expected: Some(expected),
            wire: Some(wire),
            received: Some(received),
            ..Facts::default()
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&facts(100, 100, 100)), "no loss");
        let mut f = facts(100, 100, 40);
        f.kernel_drops = Some(3);
        assert_eq!(
            verdict(&f),
            "60 bytes lost in the receiver socket buffer: the wire carried everything, the client's kernel dropped 3 datagrams"
        );
        f.capture_dropped = Some(7);
        assert_eq!(verdict(&f), "cannot tell: the capture dropped 7 packets");
        f.sent_datagrams = Some(10);
        f.received_datagrams = Some(7);
        assert_eq!(
            verdict(&f),
            "cannot tell: the capture dropped 7 packets; by the logs, the client's kernel \
             dropped all 3 missing datagrams (receiver socket buffer)"
        );
        f.received_datagrams = Some(6);
        assert_eq!(verdict(&f), "cannot tell: the capture dropped 7 packets");
        assert_eq!(
            verdict(&facts(100, 70, 70)),
            "30 bytes lost before the capture point (sender host or network)"
        );
        let mut f = facts(100, 100, 10);
        f.icmp = 2;
        assert_eq!(
            verdict(&f),
            "90 bytes lost after the capture point: the wire carried everything, the client had gone: 2 ICMP port unreachable"
        );
        let f = Facts {
            wire: Some(5),
            ..Facts::default()
        };
        assert_eq!(
            verdict(&f),
            "the wire carried 5 bytes; no server log says what was sent; no client log says what arrived"
        );
        let mut f = Facts {
            expected: Some(10),
            wire: Some(10),
            ..Facts::default()
        };
        assert_eq!(
            verdict(&f),
            "the wire carried all 10 bytes sent; no client log says what arrived"
        );
        f.file_size = Some(40);
        f.icmp = 3;
        assert_eq!(
            verdict(&f),
            "the wire carried all 10 bytes sent; the client had gone: 3 ICMP port unreachable; \
             no client log says what arrived; the server sent only 10 of 40 bytes"
        );
        assert_eq!(
            verdict(&Facts {
                file_size: Some(100),
                ..facts(60, 60, 60)
            }),
            "nothing lost on the way, but the server sent only 60 of 100 bytes"
        );
        assert_eq!(
            verdict(&facts(100, 80, 50)),
            "20 bytes lost before the capture point (sender host or network); 30 bytes lost after the capture point: no kernel drop count"
        );
    }

    #[test]
    fn rounding_and_times() {
        assert_eq!(round(1.23456, 3), 1.235);
        assert_eq!(
            format_time(1_500_000_001_000),
            "1970-01-01T00:25:00.000001Z"
        );
        assert_eq!(format_time(-1), "1969-12-31T23:59:59.999999Z");
    }

    // A reliable-mode transfer of a 9,580-byte file in 10 datagrams of
    // 1,008 file bytes (the last 580), client 1 of control port 5005. The
    // first pass never put datagram 7 on the wire (lost before the capture
    // point); the client's kernel dropped 3 and 4 after it; one repair round
    // resent 3, 4 and 7 with the retransmission flag.
    const FILE: u64 = 9 * 1008 + 580;
    const SENT_BYTES: u64 = FILE + 3 * 1008;

    fn server_addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5006))
    }

    fn client_addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    /// The data flow as the capture saw it: a datagram every millisecond.
    fn reliable_flow() -> Vec<Flow> {
        use super::super::decode::Udp;
        use super::super::flows::{FlowKey, FlowTable};
        let mut t = FlowTable::new(1024);
        let key = FlowKey {
            src: server_addr(),
            dst: client_addr(),
        };
        let first_pass = (0..10).filter(|&s| s != 7).map(|s| (s, 0));
        let repair = [3, 4, 7].map(|s| (s, v1::FLAG_RETRANSMIT));
        for (i, (seq, flags)) in first_pass.chain(repair).enumerate() {
            let mut d = v1::DataHeader {
                flags,
                seq,
                send_time_us: 0,
            }
            .emit()
            .to_vec();
            d.resize(v1::HEADER_LEN + if seq == 9 { 580 } else { 1008 }, 0xAB);
            let udp = Udp {
                src_port: 5006,
                dst_port: 40000,
                payload_len: d.len(),
                payload: &d,
            };
            t.ingest_udp(0, key, i as i64 * 1_000_000, 42 + d.len() as u32, &udp);
        }
        t.finish()
    }

    fn log(role: Role, log: TransferLog) -> LoadedLog {
        let name = match role {
            Role::Server => "S1.log",
            Role::Client => "C1.log",
        };
        LoadedLog {
            path: PathBuf::from(name),
            name: None,
            log: TransferLog {
                role: Some(role),
                protocol: Some(Protocol::V1),
                client_id: Some(1),
                file_size: Some(FILE),
                server_port: Some(5006),
                client_port: Some(40000),
                ..log
            },
        }
    }

    fn reliable_logs() -> Vec<LoadedLog> {
        vec![
            log(
                Role::Server,
                TransferLog {
                    mode: Some(Mode::Reliable),
                    datagrams_total: Some(10),
                    datagrams_sent: Some(13),
                    bytes_sent: Some(SENT_BYTES),
                    datagrams_retransmitted: Some(3),
                    repair_rounds: Some(1),
                    final_rate_mbit_s: Some(80.0),
                    reports_rejected: Some(0),
                    rate_mb_s: Some(5.0),
                    goodput_mb_s: Some(4.0),
                    success: Some(true),
                    ..TransferLog::default()
                },
            ),
            log(
                Role::Client,
                TransferLog {
                    mode: Some(Mode::Reliable),
                    datagrams_received: Some(10),
                    bytes_received: Some(FILE),
                    duplicates: Some(0),
                    late: Some(0),
                    missing_datagrams: Some(0),
                    kernel_drops: Some(2),
                    datagrams_retransmitted: Some(3),
                    repair_rounds: Some(1),
                    goodput_mb_s: Some(3.5),
                    success: Some(true),
                    ..TransferLog::default()
                },
            ),
        ]
    }

    fn rows(flows: &[Flow], logs: &[LoadedLog], connections: &[Connection]) -> Vec<ClientRow> {
        correlate(&Inputs {
            control_port: 5005,
            connections,
            flows,
            logs,
            capture_dropped: &[None],
            span_ns: Some((0, 11_000_000)),
        })
        .clients
    }

    #[test]
    fn reliable_capture_with_logs_places_the_resent_copies() {
        let flows = reliable_flow();
        let logs = reliable_logs();
        let r = &rows(&flows, &logs, &[])[0];
        assert_eq!(
            r.verdict,
            "delivered whole after 1 repair round; 3 datagrams resent (1 lost before the \
             capture point, 2 after it: the client's kernel dropped 2 datagrams)"
        );
        assert_eq!(
            (r.mode, r.mode_source),
            (Some(Mode::Reliable), Some("server log"))
        );
        assert_eq!(r.wire_data_frames, Some(12));
        assert_eq!(r.wire_data_bytes, Some(SENT_BYTES - 1008));
        assert_eq!(
            (r.wire_retransmitted, r.wire_distinct_datagrams),
            (Some(3), Some(10))
        );
        assert_eq!(r.datagrams_retransmitted, Some(3));
        assert_eq!(r.repair_rounds, Some(1));
        assert_eq!(r.final_rate_mbit_s, Some(80.0));
        assert_eq!(r.reports_rejected, Some(0));
        assert_eq!(r.late, Some(0));
        // Copies, in bytes: one never on the wire, two that crossed it and
        // never reached the client; their sum is what was sent beyond the file.
        assert_eq!(r.lost_before_capture_bytes, Some(1008));
        assert_eq!(r.lost_after_capture_bytes, Some(2 * 1008));
        assert_eq!(r.loss_pct, Some(0.0));
        assert_eq!(r.success, Some(true));
        // 11 ms from the first to the last data datagram.
        assert_eq!(r.duration_s, Some(0.011));
        let throughput = round((SENT_BYTES - 1008) as f64 / 0.011 / 1e6, 3);
        assert_eq!(
            (r.throughput_mb_s, r.throughput_source),
            (Some(throughput), Some("wire"))
        );
        assert_eq!(r.rate_mb_s, Some(throughput));
        let goodput = round(FILE as f64 / 0.011 / 1e6, 3);
        assert_eq!(
            (r.goodput_mb_s, r.goodput_source),
            (Some(goodput), Some("wire"))
        );
    }

    #[test]
    fn reliable_mode_is_seen_on_the_wire_without_logs() {
        let flows = reliable_flow();
        let r = &rows(&flows, &[], &[])[0];
        assert_eq!(
            (r.mode, r.mode_source),
            (Some(Mode::Reliable), Some("wire (retransmission flags)"))
        );
        assert_eq!(
            r.verdict,
            "not confirmed: no client log or report says what arrived; 3 datagrams resent"
        );
        assert_eq!(
            (r.datagrams_retransmitted, r.wire_retransmitted),
            (None, Some(3))
        );
        assert_eq!(
            (r.lost_before_capture_bytes, r.lost_after_capture_bytes),
            (None, None)
        );
        assert_eq!((r.goodput_mb_s, r.goodput_source), (None, None));
        assert_eq!(r.throughput_source, Some("wire"));
        assert_eq!(r.repair_rounds, None);
    }

    /// The control connection of the transfer above, as `udplab capture`
    /// keeps it whole: registration, announce (reliable), start, done; the
    /// client's feedback and its final report.
    fn reliable_connection() -> Connection {
        use super::super::tcp::Stream;
        let mut down = Vec::new();
        down.extend_from_slice(&lab::emit_client_id(1));
        down.extend_from_slice(&lab::emit_concurrency(1));
        let announce = v1::Announce {
            file_name: "f.bin".into(),
            file_size: FILE,
            datagrams: 10,
            datagram_size: 1024,
            data_port: 5006,
            mode: Mode::Reliable,
            sha256: [7; 32],
        };
        for m in [
            v1::Message::Announce(announce),
            v1::Message::Start { time_us: 1 },
            v1::Message::Done(v1::Done {
                datagrams_sent: 13,
                bytes_sent: SENT_BYTES,
                duration_us: 11_000,
            }),
        ] {
            down.extend_from_slice(&m.encode());
        }
        let mut up = lab::PortMessage {
            port: 40000,
            version: v1::VERSION,
        }
        .emit()
        .to_vec();
        for (round, arrived, lost) in [(0, 4, 0), (0, 7, 3), (1, 10, 3)] {
            let f = v1::Feedback {
                round,
                arrived,
                lost,
                kernel_drops: Some(2),
            };
            up.extend_from_slice(&v1::Message::Feedback(f).encode());
        }
        let report = v1::Report {
            datagrams_received: 10,
            bytes_received: FILE,
            duplicates: 0,
            malformed: 0,
            missing_datagrams: 0,
            kernel_drops: Some(2),
            sha256_match: true,
            missing: Vec::new(),
            ranges_truncated: false,
        };
        up.extend_from_slice(&v1::Message::Report(report).encode());
        let stream = |bytes: Vec<u8>| {
            let mut s = Stream::default();
            s.len = bytes.len() as u64;
            s.bytes = bytes;
            s
        };
        Connection {
            point: 0,
            client: SocketAddr::from(([127, 0, 0, 1], 50000)),
            server: SocketAddr::from(([127, 0, 0, 1], 5005)),
            client_syn: None,
            server_syn: None,
            ack_ns: None,
            first_ns: 0,
            last_ns: 11_000_000,
            segments: 10,
            to_server: stream(up),
            to_client: stream(down),
            teardown: None,
        }
    }

    #[test]
    fn reliable_capture_alone_reads_mode_done_and_report_from_the_wire() {
        let flows = reliable_flow();
        let connections = [reliable_connection()];
        let c = correlate(&Inputs {
            control_port: 5005,
            connections: &connections,
            flows: &flows,
            logs: &[],
            capture_dropped: &[None],
            span_ns: Some((0, 11_000_000)),
        });
        let r = &c.clients[0];
        assert_eq!(
            (r.mode, r.mode_source),
            (Some(Mode::Reliable), Some("v1 announce"))
        );
        assert_eq!(r.sent_source, Some("v1 done message"));
        assert_eq!(r.received_source, Some("v1 report message"));
        assert_eq!(
            r.verdict,
            "delivered whole; 3 datagrams resent (1 lost before the capture point, 2 after \
             it: the client's kernel dropped 2 datagrams)"
        );
        assert_eq!(r.goodput_source, Some("wire"));
        // A run of feedback messages is listed once.
        assert_eq!(
            c.control[0].messages,
            [
                "server: announce f.bin (9652 bytes, 10 datagrams of 1024)",
                "server: start",
                "server: done (13 datagrams, 12676 bytes sent)",
                "client: 3 x feedback (the last: round 1, 10 arrived, 3 lost)",
                "client: report (10 datagrams, 9652 bytes received, 0 missing, 2 kernel drops)",
            ]
        );
        assert_eq!(c.control[0].note, None);
    }

    #[test]
    fn reliable_rows_from_logs_alone() {
        let logs = reliable_logs();
        let a = super::super::from_logs(&logs, &super::super::Options::default(), "test");
        let r = &a.clients[0];
        // The server sent more than the file; the file arrived whole.
        assert!(r.sent_bytes > r.file_size);
        assert_eq!(r.loss_pct, Some(0.0));
        assert_eq!(
            (r.lost_before_capture_bytes, r.lost_after_capture_bytes),
            (None, None)
        );
        assert_eq!(
            r.verdict,
            "delivered whole after 1 repair round; 3 datagrams resent (the capture holds no \
             data flow to say where; by the logs, 3 copies were lost and the client's kernel \
             dropped 2 datagrams)"
        );
        assert_eq!(
            (r.wire_retransmitted, r.wire_distinct_datagrams),
            (None, None)
        );
        assert_eq!(r.datagrams_retransmitted, Some(3));
        assert_eq!(r.repair_rounds, Some(1));
        assert_eq!(r.final_rate_mbit_s, Some(80.0));
        assert_eq!(r.reports_rejected, Some(0));
        assert_eq!(r.late, Some(0));
        assert_eq!(
            (r.throughput_mb_s, r.throughput_source),
            (Some(5.0), Some("server log"))
        );
        assert_eq!(
            (r.goodput_mb_s, r.goodput_source),
            (Some(4.0), Some("server log"))
        );
        let v = serde_json::to_value(r).unwrap();
        assert_eq!(v["mode"], "reliable");
        assert_eq!(v["datagrams_retransmitted"], 3);
        assert_eq!(v["wire_retransmitted"], serde_json::Value::Null);
    }

    #[test]
    fn reliable_failure_says_what_was_missing() {
        let mut logs = reliable_logs();
        let s = &mut logs[0].log;
        (
            s.datagrams_total,
            s.datagrams_sent,
            s.datagrams_retransmitted,
        ) = (Some(100), Some(140), Some(40));
        s.repair_rounds = Some(3);
        s.bytes_sent = Some(140 * 1008);
        s.success = Some(false);
        s.error = Some("deadline: 5 datagrams still missing after 30 s".into());
        let c = &mut logs[1].log;
        (c.datagrams_received, c.bytes_received, c.missing_datagrams) =
            (Some(95), Some(95 * 1008), Some(5));
        c.kernel_drops = Some(45);
        c.success = Some(false);
        for l in &mut logs {
            l.log.file_size = Some(100 * 1008);
        }
        let r = &from_logs(5005, &logs).clients[0];
        assert_eq!(
            r.verdict,
            "not delivered whole after 3 repair rounds: 5 of 100 datagrams missing; 40 \
             datagrams resent (the capture holds no data flow to say where; by the logs, the \
             client's kernel dropped all 45 copies lost, in the receiver socket buffer); the \
             server's log says: deadline: 5 datagrams still missing after 30 s"
        );
        assert_eq!(r.loss_pct, Some(5.0));
        assert_eq!(r.success, Some(false));
    }

    #[test]
    fn reliable_verdicts() {
        let mut f = facts(100, 100, 100);
        f.repair = Some(Repair {
            rounds: Some(0),
            resent: Some(0),
            confirmed: Some(true),
            wire_datagrams: Some(1),
            ..Repair::default()
        });
        assert_eq!(
            verdict(&f),
            "no loss: delivered whole in the first pass, nothing resent"
        );
        f.repair = Some(Repair {
            rounds: Some(2),
            resent: Some(5),
            confirmed: Some(true),
            wire_datagrams: Some(9),
            ..Repair::default()
        });
        f.capture_dropped = Some(4);
        f.kernel_drops = Some(5);
        assert_eq!(
            verdict(&f),
            "delivered whole after 2 repair rounds; 5 datagrams resent (the capture dropped 4 \
             packets: cannot tell where; by the logs, the client's kernel dropped 5 datagrams)"
        );
        // The client gone mid-transfer: no account of its own.
        let f = Facts {
            expected: Some(3024),
            file_size: Some(9580),
            wire: Some(3024),
            icmp: 4,
            sent_datagrams: Some(3),
            repair: Some(Repair {
                resent: Some(0),
                wire_datagrams: Some(3),
                total: Some(10),
                ..Repair::default()
            }),
            ..Facts::default()
        };
        assert_eq!(
            verdict(&f),
            "not confirmed: no client log or report says what arrived; 0 datagrams resent (0 \
             lost before the capture point); the client had gone: 4 ICMP port unreachable; \
             the server sent only 3024 of 9580 bytes"
        );
    }

    #[test]
    fn unknown_new_keys_are_null_never_zero() {
        // A blast transfer's logs that predate the reliable mode.
        let logs = vec![
            log(
                Role::Server,
                TransferLog {
                    datagrams_sent: Some(10),
                    bytes_sent: Some(FILE),
                    ..TransferLog::default()
                },
            ),
            log(
                Role::Client,
                TransferLog {
                    datagrams_received: Some(10),
                    bytes_received: Some(FILE),
                    ..TransferLog::default()
                },
            ),
        ];
        let r = &from_logs(5005, &logs).clients[0];
        assert_eq!(
            r.verdict,
            "no loss (by the logs; no data flow in the capture)"
        );
        let v = serde_json::to_value(r).unwrap();
        for key in [
            "mode",
            "mode_source",
            "wire_retransmitted",
            "wire_distinct_datagrams",
            "datagrams_retransmitted",
            "repair_rounds",
            "final_rate_mbit_s",
            "reports_rejected",
            "late",
            "throughput_mb_s",
            "throughput_source",
            "goodput_mb_s",
            "goodput_source",
        ] {
            assert_eq!(v.get(key), Some(&serde_json::Value::Null), "{key}");
        }
    }
}
