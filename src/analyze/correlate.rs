//! The join, and nothing else: control connections x UDP flows x logs ->
//! one [`Transfer`] per client.
//!
//! A control connection tells the client's number and UDP port; the server
//! sends from control port + number; so the data flow is
//! (server:control+k -> client:port), at every capture point that saw it.
//! Data flows whose registration the capture missed are joined by their
//! ports alone. Each transfer's logs are the ones [`logs::assign`] matches
//! to its facts.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use chrono::FixedOffset;

use super::flows::Flow;
use super::logs::{self, Assignment, LoadedLog, Wanted};
use super::registration::{Registration, decode_registration};
use super::rows::{self, ClientRow, ControlRow};
use super::series::ClientSeries;
use super::tcp::Connection;
use crate::transfer_log::Role;

/// The highest client number inferred from a data flow's port when its
/// registration was not captured.
const MAX_INFERRED_CLIENT: u16 = 4096;

/// What a capture point (one file) tells of itself.
#[derive(Debug, Clone, Default)]
pub struct CapturePoint {
    /// The file, as the report names it.
    pub label: String,
    /// Packets its statistics say the capturer dropped; `None` where the
    /// file does not say.
    pub dropped: Option<u64>,
    /// Reading the file stopped early: it is damaged or cut.
    pub damaged: bool,
}

/// Everything the join takes.
pub struct Inputs<'a> {
    pub control_port: u16,
    pub connections: &'a [Connection],
    pub flows: &'a [Flow],
    pub logs: &'a [LoadedLog],
    /// By the point index that flows and connections carry.
    pub points: &'a [CapturePoint],
    /// The UTC offset of the lab logs' local times, when the user says it.
    pub log_utc_offset: Option<FixedOffset>,
}

/// Who a transfer is between.
#[derive(Debug, Clone)]
pub struct Identity {
    pub client_id: Option<u16>,
    pub server: SocketAddr,
    pub client: SocketAddr,
    pub server_port: Option<u16>,
    pub client_port: Option<u16>,
}

/// One client's transfer as the inputs join it.
#[derive(Debug, Clone)]
pub struct Transfer<'a> {
    pub identity: Identity,
    /// The registration, when its control connection was captured.
    pub registration: Option<&'a Registration>,
    /// Its control connection.
    pub connection: Option<&'a Connection>,
    /// Its data flow at every capture point that saw it, in path order:
    /// the point nearest the sender first.
    pub flows: Vec<&'a Flow>,
    pub server_log: Option<&'a LoadedLog>,
    pub client_log: Option<&'a LoadedLog>,
}

impl Transfer<'_> {
    /// The capture point nearest the receiver: the last on the path.
    pub fn nearest_receiver(&self) -> Option<&Flow> {
        self.flows.last().copied()
    }

    /// The capture point nearest the sender: the first on the path.
    pub fn nearest_sender(&self) -> Option<&Flow> {
        self.flows.first().copied()
    }

    /// What the transfer tells, to match its logs against.
    fn wanted(&self) -> Wanted {
        let reg = self.registration;
        let announce = reg.and_then(|r| r.announce.as_ref());
        let flow = self.nearest_receiver();
        let window = match (flow, self.connection) {
            (Some(f), _) => Some((f.first_ns, f.last_ns)),
            (None, Some(c)) => Some((c.first_ns, c.last_ns)),
            (None, None) => None,
        };
        Wanted {
            client_id: self.identity.client_id,
            server_port: self.identity.server_port,
            client_port: self.identity.client_port,
            file_size: announce
                .map(|a| a.file_size)
                .or(flow.and_then(|f| f.file_size)),
            file_name: announce
                .map(|a| a.file_name.clone())
                .or_else(|| flow.and_then(|f| f.file_name.clone())),
            clients: reg.and_then(|r| r.concurrency),
            protocol: reg
                .and_then(Registration::protocol)
                .or(flow.and_then(|f| f.protocol)),
            window_ns: window,
        }
    }
}

/// The joined transfers and the logs' fate.
pub struct Correlated {
    pub control: Vec<ControlRow>,
    pub clients: Vec<ClientRow>,
    pub logs_used: Vec<String>,
    pub assignment: Assignment,
    pub warnings: Vec<String>,
    /// What each client's pictures are drawn from, in the order of
    /// `clients`; `None` where nothing was gathered for them.
    pub series: Vec<Option<ClientSeries>>,
}

pub fn correlate(inp: &Inputs) -> Correlated {
    let mut warnings = Vec::new();
    // One row per control connection; a connection seen at several capture
    // points (a server-side and a client-side capture) counts once.
    let mut seen = HashSet::new();
    let connections: Vec<(&Connection, Registration)> = inp
        .connections
        .iter()
        .filter(|c| {
            seen.insert((
                c.client,
                c.server,
                c.client_syn.or(c.server_syn).map(|s| s.isn),
            ))
        })
        .map(|c| (c, decode_registration(c)))
        .collect();
    let control = connections
        .iter()
        .map(|(c, r)| rows::control_row(c, r))
        .collect();

    let mut claimed = HashSet::new();
    let mut transfers = Vec::new();
    for (c, r) in &connections {
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
        transfers.push(Transfer {
            identity: Identity {
                client_id: Some(id),
                server: c.server,
                client: c.client,
                server_port,
                client_port: Some(port.port),
            },
            registration: Some(r),
            connection: Some(c),
            flows,
            server_log: None,
            client_log: None,
        });
    }
    // Data flows from a data port whose registration the capture missed.
    let mut orphans: BTreeMap<(SocketAddr, SocketAddr), Vec<&Flow>> = BTreeMap::new();
    for f in inp.flows {
        if f.protocol.is_none() || f.data.frames == 0 || claimed.contains(&(f.point, f.key)) {
            continue;
        }
        orphans.entry((f.key.src, f.key.dst)).or_default().push(f);
    }
    let mut foreign = 0usize;
    for ((src, dst), mut flows) in orphans {
        path_order(&mut flows);
        let id = src
            .port()
            .checked_sub(inp.control_port)
            .filter(|&k| k > 0 && k <= MAX_INFERRED_CLIENT);
        if id.is_none() {
            // Not from a data port of this run: someone else's traffic.
            foreign += 1;
            continue;
        }
        transfers.push(Transfer {
            identity: Identity {
                client_id: id,
                server: src,
                client: dst,
                server_port: Some(src.port()),
                client_port: Some(dst.port()),
            },
            registration: None,
            connection: None,
            flows,
            server_log: None,
            client_log: None,
        });
    }
    if foreign > 0 {
        warnings.push(format!(
            "{foreign} UDP flows that look like transfers do not come from a data port of \
             control port {} (control port + 1 to + {MAX_INFERRED_CLIENT}): not reported as clients",
            inp.control_port
        ));
    }
    let wanted: Vec<Wanted> = transfers.iter().map(Transfer::wanted).collect();
    let assignment = logs::assign(&wanted, inp.logs, inp.log_utc_offset);
    finish(inp, transfers, assignment, control, warnings)
}

/// Attaches the assigned logs and builds the rows.
fn finish<'a>(
    inp: &Inputs<'a>,
    mut transfers: Vec<Transfer<'a>>,
    assignment: Assignment,
    control: Vec<ControlRow>,
    warnings: Vec<String>,
) -> Correlated {
    for (i, t) in transfers.iter_mut().enumerate() {
        let log =
            |slot: &[Option<usize>]| slot.get(i).copied().flatten().and_then(|l| inp.logs.get(l));
        t.server_log = log(&assignment.server);
        t.client_log = log(&assignment.client);
    }
    let mut joined: Vec<(ClientRow, Option<ClientSeries>)> = transfers
        .iter()
        .map(|t| {
            (
                rows::client_row(t, inp.points),
                ClientSeries::of(t, inp.points),
            )
        })
        .collect();
    joined.sort_by_key(|(r, _)| (r.client_id.is_none(), r.client_id));
    let (clients, series) = joined.into_iter().unzip();
    let mut used: Vec<usize> = assignment
        .server
        .iter()
        .chain(&assignment.client)
        .flatten()
        .copied()
        .collect();
    used.sort_unstable();
    let logs_used = used
        .into_iter()
        .filter_map(|i| inp.logs.get(i))
        .map(|l| l.path.display().to_string())
        .collect();
    Correlated {
        control,
        clients,
        logs_used,
        assignment,
        warnings,
        series,
    }
}

/// Transfers from the logs alone, for a run nobody captured: one per
/// server log, then one per client log that no server log's transfer
/// took. The wire columns stay empty.
pub fn from_logs(control_port: u16, logs: &[LoadedLog]) -> Correlated {
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let addr = |ip: Option<std::net::IpAddr>, port: Option<u16>| match (ip, port) {
        (Some(ip), Some(port)) => SocketAddr::new(ip, port),
        _ => unspecified,
    };
    let identity = |l: &LoadedLog| Identity {
        client_id: l.log.client_id.or(l.name.as_ref().map(|n| n.client_id)),
        server: addr(l.log.server_ip, l.log.server_port),
        client: addr(l.log.client_ip, l.log.client_port),
        server_port: l.log.server_port,
        client_port: l.log.client_port,
    };
    let wanted_of = |l: &LoadedLog| Wanted {
        client_id: identity(l).client_id,
        server_port: l.log.server_port,
        client_port: l.log.client_port,
        file_size: l.log.file_size,
        file_name: l.log.file_name.clone(),
        clients: l.log.clients.or(l.name.as_ref().map(|n| n.clients)),
        protocol: l.log.protocol,
        window_ns: None,
    };
    let mut order: Vec<usize> = (0..logs.len()).collect();
    // Server logs first, each client's in client order.
    order.sort_by_key(|&i| {
        let l = &logs[i];
        (l.log.role != Some(Role::Server), identity(l).client_id, i)
    });
    let servers: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| {
            logs[i].log.role == Some(Role::Server) && identity(&logs[i]).client_id.is_some()
        })
        .collect();
    let wanted: Vec<Wanted> = servers.iter().map(|&i| wanted_of(&logs[i])).collect();
    let mut assignment = logs::assign(&wanted, logs, None);
    // A server log serves the transfer made of it.
    for (slot, &i) in assignment.server.iter_mut().zip(&servers) {
        *slot = Some(i);
    }
    let mut taken: HashSet<usize> = assignment
        .server
        .iter()
        .chain(&assignment.client)
        .flatten()
        .copied()
        .collect();
    let mut transfers: Vec<Transfer> = servers
        .iter()
        .map(|&i| Transfer {
            identity: identity(&logs[i]),
            registration: None,
            connection: None,
            flows: Vec::new(),
            server_log: None,
            client_log: None,
        })
        .collect();
    for &i in &order {
        let l = &logs[i];
        if taken.contains(&i) || l.log.role != Some(Role::Client) || identity(l).client_id.is_none()
        {
            continue;
        }
        taken.insert(i);
        transfers.push(Transfer {
            identity: identity(l),
            registration: None,
            connection: None,
            flows: Vec::new(),
            server_log: None,
            client_log: None,
        });
        assignment.server.push(None);
        assignment.client.push(Some(i));
    }
    assignment.left_out.retain(|o| {
        !logs
            .iter()
            .enumerate()
            .any(|(i, l)| taken.contains(&i) && l.path.display().to_string() == o.path)
    });
    let inp = Inputs {
        control_port,
        connections: &[],
        flows: &[],
        logs,
        points: &[],
        log_utc_offset: None,
    };
    finish(&inp, transfers, assignment, Vec::new(), Vec::new())
}

/// Orders one transfer's flows along its path. A datagram crosses the
/// point nearest the sender first, so that point saw the flow's first
/// datagram (its name datagram, or its first data datagram) earliest; two
/// points that saw it at the same instant are ordered by what they saw
/// (loss only takes away). Captures on one machine (network namespaces)
/// share a clock; captures on two hosts are ordered as far as their clocks
/// agree.
fn path_order(flows: &mut [&Flow]) {
    flows.sort_by_key(|f| (f.first_ns, std::cmp::Reverse(f.data.frames), f.point));
}

/// The data flows of one client at every capture point that saw it.
fn matching_flows<'a>(
    flows: &'a [Flow],
    control: &Connection,
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
    let mut flows = if same_hosts.is_empty() {
        candidates
    } else {
        same_hosts
    };
    path_order(&mut flows);
    flows
}
#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::analyze::account::{Blind, Place, Source};
    use crate::analyze::rows::round;
    use crate::protocol::{Mode, Protocol, lab, v1};
    use crate::transfer_log::TransferLog;

    #[test]
    fn rounding_and_times() {
        use crate::analyze::rows::{format_time, round};
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

    /// Datagram `seq` of the 10-datagram file, from the server to the
    /// client, at capture point `point` and time `at_ns`.
    fn ingest_data(
        t: &mut super::super::flows::FlowTable,
        point: usize,
        at_ns: i64,
        seq: u32,
        flags: u8,
    ) {
        use super::super::decode::Udp;
        use super::super::flows::FlowKey;
        let key = FlowKey {
            src: server_addr(),
            dst: client_addr(),
        };
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
        t.ingest_udp(point, key, at_ns, 42 + d.len() as u32, &udp);
    }

    /// The data flow as the capture saw it: a datagram every millisecond.
    fn reliable_flow() -> Vec<Flow> {
        use super::super::flows::FlowTable;
        let mut t = FlowTable::new(1024);
        let first_pass = (0..10).filter(|&s| s != 7).map(|s| (s, 0));
        let repair = [3, 4, 7].map(|s| (s, v1::FLAG_RETRANSMIT));
        for (i, (seq, flags)) in first_pass.chain(repair).enumerate() {
            ingest_data(&mut t, 0, i as i64 * 1_000_000, seq, flags);
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
            points: &[CapturePoint::default()],
            log_utc_offset: None,
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
            (Some(Mode::Reliable), Some(Source::ServerLog))
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
            (Some(throughput), Some(Source::Capture))
        );
        assert_eq!(r.rate_mb_s, Some(throughput));
        let goodput = round(FILE as f64 / 0.011 / 1e6, 3);
        assert_eq!(
            (r.goodput_mb_s, r.goodput_source),
            (Some(goodput), Some(Source::Capture))
        );
    }

    #[test]
    fn reliable_mode_is_seen_on_the_wire_without_logs() {
        let flows = reliable_flow();
        let r = &rows(&flows, &[], &[])[0];
        assert_eq!(
            (r.mode, r.mode_source),
            (Some(Mode::Reliable), Some(Source::RetransmitFlags))
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
        assert_eq!(r.throughput_source, Some(Source::Capture));
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
                timing: None,
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
            trace: None,
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
            points: &[CapturePoint::default()],
            log_utc_offset: None,
        });
        let r = &c.clients[0];
        assert_eq!(
            (r.mode, r.mode_source),
            (Some(Mode::Reliable), Some(Source::V1Announce))
        );
        assert_eq!(r.sent_source, Some(Source::V1Done));
        assert_eq!(r.received_source, Some(Source::V1Report));
        assert_eq!(
            r.verdict,
            "delivered whole; 3 datagrams resent (1 lost before the capture point, 2 after \
             it: the client's kernel dropped 2 datagrams)"
        );
        assert_eq!(r.goodput_source, Some(Source::Capture));
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
        let set = logs::LogSet {
            logs,
            ..Default::default()
        };
        let a = super::super::from_logs(&set, &super::super::Options::default(), "test");
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
            (Some(5.0), Some(Source::ServerLog))
        );
        assert_eq!(
            (r.goodput_mb_s, r.goodput_source),
            (Some(4.0), Some(Source::ServerLog))
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

    /// A blast flow of the file's 10 datagrams as the capture holds them.
    fn blast_flow(seqs: &[u32]) -> Vec<Flow> {
        blast_flow_at(0, 0, seqs)
    }

    /// The same at capture point `point`, each datagram `delay_ns` later.
    fn blast_flow_at(point: usize, delay_ns: i64, seqs: &[u32]) -> Vec<Flow> {
        use super::super::flows::FlowTable;
        let mut t = FlowTable::new(1024);
        for &seq in seqs {
            ingest_data(&mut t, point, i64::from(seq) * 1_000_000 + delay_ns, seq, 0);
        }
        t.finish()
    }

    fn blast_logs(kept: u64, missing: Option<&str>, kernel_drops: u64) -> Vec<LoadedLog> {
        let missing_count = missing.map_or(0, |_| 1);
        vec![
            log(
                Role::Server,
                TransferLog {
                    mode: Some(Mode::Blast),
                    datagrams_total: Some(10),
                    datagrams_sent: Some(10),
                    bytes_sent: Some(FILE),
                    ..TransferLog::default()
                },
            ),
            log(
                Role::Client,
                TransferLog {
                    mode: Some(Mode::Blast),
                    datagrams_received: Some(kept),
                    bytes_received: Some(FILE - 1008 * (10 - kept)),
                    duplicates: Some(0),
                    missing_datagrams: Some(missing_count),
                    missing_ranges: missing.map(str::to_owned),
                    kernel_drops: Some(kernel_drops),
                    ..TransferLog::default()
                },
            ),
        ]
    }

    #[test]
    fn datagrams_kept_and_dropped_beyond_the_captured_frames_make_the_capture_blind() {
        let flows = reliable_flow();
        let mut logs = reliable_logs();
        // 10 kept and 5 dropped by the client's kernel: 15 crossed the
        // capture point, which holds 12.
        logs[1].log.kernel_drops = Some(5);
        let r = &rows(&flows, &logs, &[])[0];
        assert_eq!(r.capture_missed_datagrams, Some(3));
        assert_eq!(
            r.account.capture_blind,
            Some(Blind::CaptureMissed { datagrams: 3 })
        );
        assert_eq!(
            (r.lost_before_capture_bytes, r.lost_after_capture_bytes),
            (None, None)
        );
        assert_eq!(
            r.verdict,
            "delivered whole after 1 repair round; 3 datagrams resent (the capture missed at \
             least 3 data datagrams that reached the client's host (its log proves them): \
             cannot tell where; by the logs, the client's kernel dropped 5 datagrams)"
        );
    }

    #[test]
    fn a_sequence_number_the_client_has_and_the_capture_lacks_makes_it_blind() {
        // The capture lacks datagram 7; the client lacks 3 and has 7. The
        // counts agree (9 and 9): only the sequence numbers tell.
        let flows = blast_flow(&[0, 1, 2, 3, 4, 5, 6, 8, 9]);
        let logs = blast_logs(9, Some("3"), 0);
        let r = &rows(&flows, &logs, &[])[0];
        assert_eq!(r.capture_missed_datagrams, Some(1));
        assert!(
            r.verdict
                .starts_with("cannot tell: the capture missed at least 1 data datagram ")
        );
        assert_eq!(r.lost_before_capture_bytes, None);
        // Had the client lacked 7 too, the capture would be whole.
        let logs = blast_logs(9, Some("7"), 0);
        let r = &rows(&flows, &logs, &[])[0];
        assert_eq!(r.capture_missed_datagrams, None);
        assert_eq!(r.account.capture_blind, None);
        assert_eq!(r.lost_before_capture_bytes, Some(1008));
        assert_eq!(r.lost_after_capture_bytes, Some(0));
    }

    #[test]
    fn a_damaged_file_that_ends_before_the_flow_cannot_place_its_loss() {
        let flows = blast_flow(&[0, 1, 2, 3]);
        let logs = blast_logs(10, None, 0);
        let damaged = [CapturePoint {
            label: "cut.pcap".into(),
            dropped: None,
            damaged: true,
        }];
        let c = correlate(&Inputs {
            control_port: 5005,
            connections: &[],
            flows: &flows,
            logs: &logs,
            points: &damaged,
            log_utc_offset: None,
        });
        let r = &c.clients[0];
        assert!(r.capture_cut_short);
        assert_eq!(r.account.capture_blind, Some(Blind::CutShort));
        assert_eq!(
            (r.lost_before_capture_bytes, r.lost_after_capture_bytes),
            (None, None)
        );
        assert!(
            r.verdict.starts_with(
                "cannot tell: the capture file is damaged and ends before this transfer did"
            ),
            "{}",
            r.verdict
        );
        // A flow the damaged file holds whole keeps its account.
        let whole = blast_flow(&(0..10).collect::<Vec<_>>());
        let c = correlate(&Inputs {
            control_port: 5005,
            connections: &[],
            flows: &whole,
            logs: &logs,
            points: &damaged,
            log_utc_offset: None,
        });
        assert!(!c.clients[0].capture_cut_short);
        assert_eq!(c.clients[0].verdict, "no loss");
    }

    #[test]
    fn two_capture_points_place_loss_in_the_network() {
        // The client's host (point 0, given first) saw 8 of the datagrams
        // that the server's host (point 1) saw leave; the client kept 6 and
        // its kernel dropped 2.
        let mut flows = blast_flow_at(0, 200_000, &[0, 1, 2, 3, 5, 6, 8, 9]);
        flows.extend(blast_flow_at(1, 0, &(0..10).collect::<Vec<_>>()));
        let mut logs = blast_logs(6, None, 2);
        logs[1].log.bytes_received = Some(FILE - 4 * 1008);
        logs[1].log.missing_datagrams = None;
        let points = [
            CapturePoint {
                label: "client.pcapng".into(),
                dropped: Some(0),
                damaged: false,
            },
            CapturePoint {
                label: "server.pcapng".into(),
                dropped: Some(0),
                damaged: false,
            },
        ];
        let c = correlate(&Inputs {
            control_port: 5005,
            connections: &[],
            flows: &flows,
            logs: &logs,
            points: &points,
            log_utc_offset: None,
        });
        let r = &c.clients[0];
        let path: Vec<(&str, u64)> = r
            .path
            .iter()
            .map(|p| (p.capture.as_str(), p.data_frames))
            .collect();
        assert_eq!(path, [("server.pcapng", 10), ("client.pcapng", 8)]);
        assert_eq!(r.lost_before_capture_bytes, Some(0));
        assert_eq!(r.lost_between_captures_bytes, Some(2 * 1008));
        assert_eq!(r.lost_after_capture_bytes, Some(2 * 1008));
        assert_eq!(
            r.account.places,
            [
                Place::Delivered {
                    bytes: FILE - 4 * 1008
                },
                Place::LostBetweenCaptures { bytes: 2 * 1008 },
                Place::ReceiverSocketBuffer {
                    bytes: Some(2 * 1008),
                    kernel_drops: 2
                },
            ]
        );
        assert_eq!(
            r.verdict,
            "2016 bytes lost in the network (between the capture points); 2016 bytes lost in \
             the receiver socket buffer: the client's kernel dropped 2 datagrams"
        );
    }
}
