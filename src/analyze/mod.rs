//! `udplab analyze`: from captures of a run (and the run's logs) to a
//! per-client account of where the file's bytes went.
//!
//! One streaming pass, memory bounded by the number of flows:
//! [`reader`] yields packets from pcap/pcapng files merged by time,
//! [`decode`] turns one into addresses, ports and payload (pure),
//! [`tcp`] follows the control connections, [`flows`] the UDP flows;
//! [`registration`] decodes the control bytes, [`logs`] reads the run's logs
//! and matches them to transfers, [`correlate`] joins connections, flows
//! and logs into transfers, [`account`] says where each transfer's bytes
//! went (typed, with each figure's source), [`rows`] builds the rows the
//! report shows, and [`report`] writes them as a table, JSON or CSV, or
//! [`jsonl`] as one line per client for files of many runs.
//! With [`Options::conversations`], [`conversations`] lists every TCP
//! connection and UDP flow of the capture as well, in the same pass.

pub mod account;
pub mod conversations;
pub mod correlate;
pub mod decode;
pub mod flows;
pub mod jsonl;
pub mod logs;
pub mod reader;
pub mod registration;
pub mod report;
pub mod rows;
pub mod tcp;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use serde::Serialize;

use chrono::FixedOffset;

use self::conversations::ConversationTable;
use self::correlate::{CapturePoint, Correlated, Inputs};
use self::decode::Transport;
use self::flows::{FlowKey, FlowTable};
use self::logs::{Ignored, LeftOutLog};
use self::reader::{FileFacts, Reader};
use self::rows::{ClientRow, ControlRow, FlowRow};
use self::tcp::TcpTable;

/// How to read a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The TCP port clients register on; data comes from port + client number.
    pub control_port: u16,
    /// UDP payload of a full data datagram (the lab's chunk).
    pub chunk: usize,
    /// The UTC offset of the lab logs' zone-less times, when told.
    pub log_utc_offset: Option<FixedOffset>,
    /// List every TCP connection and UDP flow (`--conversations`); off, the
    /// pass spends nothing on them.
    pub conversations: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            control_port: crate::protocol::DEFAULT_PORT,
            chunk: crate::protocol::lab::CHUNK,
            log_utc_offset: None,
            conversations: false,
        }
    }
}

/// The whole report. The keys of `captures`, `control`, `clients` and
/// `skipped` are a stable contract (docs/ANALYZE.md): add, never rename.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// The TCP port the registrations were looked for on.
    pub control_port: u16,
    pub captures: Vec<CaptureRow>,
    pub control: Vec<ControlRow>,
    pub clients: Vec<ClientRow>,
    /// Packets not analysed, by reason.
    pub skipped: BTreeMap<String, u64>,
    pub flows: Vec<FlowRow>,
    /// Flows followed but left out of `flows` (those with the least data).
    pub flows_not_listed: usize,
    pub logs: LogsRow,
    pub warnings: Vec<String>,
    /// Files whose reading stopped early, with how far it got.
    pub errors: Vec<String>,
    /// Every TCP connection and UDP flow, with `--conversations` only (the
    /// key is absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversations: Option<Vec<conversations::ConversationRow>>,
    /// When nothing came to the control port: the port most connections
    /// were opened to instead.
    #[serde(skip)]
    pub suggested_port: Option<u16>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaptureRow {
    pub path: String,
    pub format: &'static str,
    pub link_types: Vec<String>,
    pub packets: u64,
    /// Packets the capturer said it dropped (pcapng statistics); null when
    /// the file does not say.
    pub dropped: Option<u64>,
    pub received_by_capturer: Option<u64>,
    pub bytes_read: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub duration_s: Option<f64>,
    pub interfaces: Vec<InterfaceRow>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InterfaceRow {
    pub name: Option<String>,
    pub link_type: String,
    pub snaplen: u32,
    pub packets: u64,
    pub received: Option<u64>,
    pub dropped: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LogsRow {
    pub used: Vec<String>,
    /// Logs read that belong to no transfer in the capture.
    pub unused: usize,
    /// Each log not used, and why.
    pub left_out: Vec<LeftOutLog>,
    /// Paths given as logs that hold none.
    pub ignored: Vec<Ignored>,
    /// The UTC offset the lab logs' local times were read at (`-05:00`),
    /// when a lab log's time was matched.
    pub utc_offset: Option<String>,
    /// Other offsets that fit as many lab logs, when there are.
    pub other_utc_offsets: Vec<String>,
}

impl LogsRow {
    fn new(c: &Correlated, ignored: &[Ignored]) -> LogsRow {
        LogsRow {
            used: c.logs_used.clone(),
            unused: c.assignment.left_out.len(),
            left_out: c.assignment.left_out.clone(),
            ignored: ignored.to_vec(),
            utc_offset: c.assignment.utc_offset.map(|o| o.to_string()),
            other_utc_offsets: c
                .assignment
                .other_offsets
                .iter()
                .map(|o| o.to_string())
                .collect(),
        }
    }
}

/// The name libpcap and Wireshark give a link type.
pub fn link_type_name(lt: i32) -> String {
    match lt {
        0 => "NULL".into(),
        1 => "ETHERNET".into(),
        12 | 14 | 101 => "RAW".into(),
        108 => "LOOP".into(),
        113 => "LINUX_SLL".into(),
        228 => "IPV4".into(),
        229 => "IPV6".into(),
        276 => "LINUX_SLL2".into(),
        other => format!("LINKTYPE_{other}"),
    }
}

/// UDP flows listed in the report, those with the most data first.
const MAX_LISTED_FLOWS: usize = 1000;

/// Packets between two calls of the progress callback.
const PROGRESS_EVERY: u64 = 1 << 16;

/// Reads every packet of `reader` and builds the report.
pub fn analyze(
    reader: &mut Reader,
    logs: &logs::LogSet,
    opts: &Options,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Analysis {
    let (tcp, flows, conversations, mut skipped) = ingest(reader, opts, progress);
    let conversations = conversations.map(|t| {
        if t.overflow > 0 {
            skipped.insert("conversation table full".into(), t.overflow);
        }
        t.finish()
    });
    let mut a = build(reader.files(), tcp, flows, skipped, logs, opts);
    a.conversations = conversations;
    a
}

/// The report of a run with no capture, from its logs alone; `why` says
/// why there is no capture and goes first among the warnings.
pub fn from_logs(logs: &logs::LogSet, opts: &Options, why: &str) -> Analysis {
    let c = correlate::from_logs(opts.control_port, &logs.logs);
    let mut warnings = vec![format!(
        "no capture ({why}): the wire columns are empty, and where the loss happened \
         is told only as far as the logs tell it"
    )];
    warnings.extend(c.warnings.iter().cloned());
    Analysis {
        control_port: opts.control_port,
        captures: Vec::new(),
        logs: LogsRow::new(&c, &logs.ignored),
        control: c.control,
        clients: c.clients,
        skipped: BTreeMap::new(),
        flows: Vec::new(),
        flows_not_listed: 0,
        warnings,
        errors: Vec::new(),
        conversations: None,
        suggested_port: None,
    }
}

/// The one pass over the packets: each decoded and fed to its table, or
/// counted as skipped with its reason.
fn ingest(
    reader: &mut Reader,
    opts: &Options,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> (
    TcpTable,
    FlowTable,
    Option<ConversationTable>,
    HashMap<String, u64>,
) {
    let mut tcp = TcpTable::new(opts.control_port);
    let mut conversations = opts.conversations.then(ConversationTable::new);
    let mut flows = FlowTable::new(opts.chunk);
    let mut skipped: HashMap<String, u64> = HashMap::new();
    let mut count = 0u64;
    while let Some(pkt) = reader.next_packet() {
        count += 1;
        // A capture point is a file: its interfaces are one capture session
        // (dumpcap -i eth0 -i lo), while two files are usually two places
        // (the server's host and the client's), each seeing the whole flow.
        let at = pkt.file;
        match decode::decode(pkt.link_type, pkt.data) {
            Ok(d) => {
                if let Some(c) = conversations.as_mut() {
                    c.ingest(pkt.link_type, pkt.data, pkt.ts_ns, pkt.orig_len, &d);
                }
                match &d.transport {
                    Transport::Udp(u) => {
                        let key = FlowKey {
                            src: SocketAddr::new(d.src, u.src_port),
                            dst: SocketAddr::new(d.dst, u.dst_port),
                        };
                        flows.ingest_udp(at, key, pkt.ts_ns, pkt.orig_len, u);
                    }
                    Transport::Tcp(t) => {
                        let src = SocketAddr::new(d.src, t.src_port);
                        let dst = SocketAddr::new(d.dst, t.dst_port);
                        tcp.ingest(at, src, dst, pkt.ts_ns, t);
                    }
                    Transport::Icmp(i) => flows.ingest_icmp(at, pkt.ts_ns, i),
                }
            }
            Err(e) => *skipped.entry(e.reason()).or_insert(0) += 1,
        }
        if count.is_multiple_of(PROGRESS_EVERY) {
            let (done, total) = reader.progress();
            progress(done, total);
        }
    }
    let (done, total) = reader.progress();
    progress(done, total);
    (tcp, flows, conversations, skipped)
}

/// From the tables to the report.
fn build(
    files: &[FileFacts],
    tcp: TcpTable,
    flows: FlowTable,
    mut skipped: HashMap<String, u64>,
    logs: &logs::LogSet,
    opts: &Options,
) -> Analysis {
    if flows.overflow > 0 {
        skipped.insert("UDP flow table full".into(), flows.overflow);
    }
    if tcp.overflow > 0 {
        skipped.insert("TCP connection table full".into(), tcp.overflow);
    }
    let mut other_ports: Vec<(u16, u64)> = tcp.other_ports.iter().map(|(&p, &n)| (p, n)).collect();
    let connections = tcp.finish();
    let flows = flows.finish();
    let points: Vec<CapturePoint> = files
        .iter()
        .map(|f| CapturePoint {
            label: f.path.display().to_string(),
            dropped: file_dropped(f),
            damaged: f.error.is_some(),
        })
        .collect();
    let c = correlate::correlate(&Inputs {
        control_port: opts.control_port,
        connections: &connections,
        flows: &flows,
        logs: &logs.logs,
        points: &points,
        log_utc_offset: opts.log_utc_offset,
    });
    let mut warnings = c.warnings.clone();
    other_ports.sort_by_key(|&(p, n)| (std::cmp::Reverse(n), p));
    let suggested_port = other_ports.first().map(|&(p, _)| p);
    if let (true, Some(port)) = (connections.is_empty(), suggested_port) {
        let seen: Vec<String> = other_ports
            .iter()
            .take(5)
            .map(|(p, n)| format!("{p} ({n})"))
            .collect();
        warnings.push(format!(
            "no TCP connection to control port {} in the capture; connections were opened to port {}: try --port {port}",
            opts.control_port,
            seen.join(", "),
        ));
    }

    // Sequence numbers expected per flow: the announce captured, or else
    // the server's log.
    let expected: HashMap<(u16, u16), u32> = c
        .clients
        .iter()
        .filter_map(|r| {
            let total = u32::try_from(r.datagrams_total?).ok()?;
            Some(((r.server_port?, r.client_port?), total))
        })
        .collect();
    // The flows that carried the most data, in capture order.
    let mut listed: Vec<&flows::Flow> = flows.iter().collect();
    let flows_not_listed = listed.len().saturating_sub(MAX_LISTED_FLOWS);
    if flows_not_listed > 0 {
        listed.sort_by_key(|f| std::cmp::Reverse((f.data.frames, f.frames)));
        listed.truncate(MAX_LISTED_FLOWS);
        listed.sort_by_key(|f| (f.point, f.first_ns, f.key));
    }
    let flow_rows = listed
        .into_iter()
        .map(|f| {
            let label = files
                .get(f.point)
                .map(|f| f.path.display().to_string())
                .unwrap_or_default();
            let exp = expected.get(&(f.key.src.port(), f.key.dst.port())).copied();
            rows::flow_row(f, label, exp)
        })
        .collect();
    let errors = files
        .iter()
        .filter_map(|f| Some(format!("{}: {}", f.path.display(), f.error.as_ref()?)))
        .collect();
    Analysis {
        control_port: opts.control_port,
        captures: files.iter().map(capture_row).collect(),
        logs: LogsRow::new(&c, &logs.ignored),
        control: c.control,
        clients: c.clients,
        skipped: skipped.into_iter().collect(),
        flows: flow_rows,
        flows_not_listed,
        warnings,
        errors,
        conversations: None,
        suggested_port: suggested_port.filter(|_| connections.is_empty()),
    }
}

fn sum_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    }
}

/// Packets the capturer dropped over a file's interfaces, if its
/// statistics say.
fn file_dropped(f: &FileFacts) -> Option<u64> {
    f.interfaces
        .iter()
        .filter_map(|i| i.stats.as_ref())
        .filter_map(|s| sum_opt(s.dropped, s.os_dropped))
        .reduce(|a, b| a.saturating_add(b))
}

fn capture_row(f: &FileFacts) -> CaptureRow {
    let mut link_types: Vec<String> = Vec::new();
    for i in &f.interfaces {
        let name = link_type_name(i.link_type.0);
        if !link_types.contains(&name) {
            link_types.push(name);
        }
    }
    let dropped = file_dropped(f);
    let received = f
        .interfaces
        .iter()
        .filter_map(|i| i.stats.as_ref())
        .filter_map(|s| s.received)
        .reduce(|a, b| a.saturating_add(b));
    CaptureRow {
        path: f.path.display().to_string(),
        format: f.format.name(),
        link_types,
        packets: f.packets,
        dropped,
        received_by_capturer: received,
        bytes_read: f.bytes_read,
        first_time: f.first_ts_ns.map(rows::format_time),
        last_time: f.last_ts_ns.map(rows::format_time),
        duration_s: f
            .first_ts_ns
            .zip(f.last_ts_ns)
            .map(|(a, b)| rows::round(b.saturating_sub(a) as f64 / 1e9, 6)),
        interfaces: f
            .interfaces
            .iter()
            .map(|i| InterfaceRow {
                name: i.name.clone(),
                link_type: link_type_name(i.link_type.0),
                snaplen: i.snaplen,
                packets: i.packets,
                received: i.stats.as_ref().and_then(|s| s.received),
                dropped: i
                    .stats
                    .as_ref()
                    .and_then(|s| sum_opt(s.dropped, s.os_dropped)),
            })
            .collect(),
        error: f.error.as_ref().map(|e| e.to_string()),
    }
}
