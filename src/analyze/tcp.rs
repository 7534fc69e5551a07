//! TCP connections to the control port: the handshake (times, RTT, MSS,
//! window scale, SACK-permitted), the control bytes of each direction put
//! back in order, retransmitted segments, and the teardown.
//!
//! Only connections with one end on the control port are followed; other
//! TCP is counted per server port so that the report can suggest `--port`.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde::Serialize;

use super::decode::Tcp;
use super::series::{SEGMENT_BUDGET, Segment, TRACE_SEGMENTS, Trace};

/// Bytes of control stream kept per direction: the lab's registration is 7
/// bytes, v1's messages are at most 64 KiB each.
pub const MAX_STREAM: usize = 256 * 1024;
/// Out-of-order segments held per direction while waiting for a gap to fill.
const MAX_PENDING: usize = 32;
/// Connections followed at once.
pub const MAX_CONNECTIONS: usize = 10_000;
/// Control bytes kept over all connections (and segments held out of
/// order), so that a capture of many connections stays within memory.
pub const STREAM_BUDGET: usize = 4 * 1024 * 1024;

/// Which end of a control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// How a connection was closed, by the flag of its first closing segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CloseKind {
    #[serde(rename = "FIN")]
    Fin,
    #[serde(rename = "RST")]
    Rst,
}

impl CloseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseKind::Fin => "FIN",
            CloseKind::Rst => "RST",
        }
    }
}

impl std::fmt::Display for CloseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of a connection's three-way handshake a capture holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HandshakeSeen {
    #[serde(rename = "complete")]
    Complete,
    #[serde(rename = "no final ACK")]
    NoFinalAck,
    #[serde(rename = "no SYN-ACK")]
    NoSynAck,
    /// No SYN: the connection was open before the capture began.
    #[serde(rename = "not seen (connection already open)")]
    AlreadyOpen,
}

impl HandshakeSeen {
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeSeen::Complete => "complete",
            HandshakeSeen::NoFinalAck => "no final ACK",
            HandshakeSeen::NoSynAck => "no SYN-ACK",
            HandshakeSeen::AlreadyOpen => "not seen (connection already open)",
        }
    }
}

impl std::fmt::Display for HandshakeSeen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who closed first, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Teardown {
    pub by: Side,
    pub kind: CloseKind,
    pub at_ns: i64,
}

impl Teardown {
    pub fn describe(&self) -> String {
        format!("{} {} first", self.by.as_str(), self.kind)
    }
}

/// One direction of a connection's byte stream.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    /// Sequence number of the first stream byte (ISN + 1).
    base: Option<u32>,
    /// Next sequence number expected.
    next: u32,
    /// The stream's bytes from the start, while no hole was met.
    pub bytes: Vec<u8>,
    /// Why `bytes` stops short of the stream, if it does.
    pub hole: Option<Hole>,
    /// Stream bytes carried (by the TCP/IP lengths), retransmissions excluded.
    pub len: u64,
    /// Segments carrying only bytes already seen.
    pub retransmitted: u64,
    pending: Vec<(u32, usize, Vec<u8>)>,
}

/// Why the kept bytes of a stream end early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hole {
    /// The capture began after the stream did.
    StartNotSeen,
    /// The snap length cut a segment: its end and what follows are unknown.
    SnapLength { at: u64 },
    /// A segment was never captured.
    Missing { at: u64 },
    /// More than [`MAX_STREAM`] bytes.
    TooLong,
}

impl Hole {
    pub fn describe(&self) -> String {
        match self {
            Hole::StartNotSeen => "its start was not captured".into(),
            Hole::SnapLength { at } => format!("the snap length cut it at byte {at}"),
            Hole::Missing { at } => format!("a segment at byte {at} was not captured"),
            Hole::TooLong => "longer than the analyzer keeps".into(),
        }
    }
}

impl Stream {
    fn start(&mut self, isn: u32) {
        if self.base.is_none() {
            self.base = Some(isn.wrapping_add(1));
            self.next = isn.wrapping_add(1);
        }
    }

    /// Bytes of segments held out of order, waiting for a gap to fill.
    pub(crate) fn held(&self) -> usize {
        self.pending.iter().map(|(_, _, d)| d.len()).sum()
    }

    /// Offset of `seq` from the stream's start.
    fn offset(&self, seq: u32) -> u64 {
        u64::from(seq.wrapping_sub(self.base.unwrap_or(seq)))
    }

    fn segment(&mut self, seq: u32, payload_len: usize, captured: &[u8], budget: &mut usize) {
        if payload_len == 0 {
            return;
        }
        if self.base.is_none() {
            self.base = Some(seq);
            self.next = seq;
            self.hole.get_or_insert(Hole::StartNotSeen);
        }
        let rel = seq.wrapping_sub(self.next) as i32;
        if rel > 0 {
            // Ahead of what we have: hold it until the gap fills.
            let keep = captured.len().min(payload_len);
            if self.pending.len() < MAX_PENDING && keep <= *budget {
                *budget -= keep;
                self.pending.push((
                    seq,
                    payload_len,
                    captured.get(..keep).unwrap_or_default().to_vec(),
                ));
            } else {
                self.hole.get_or_insert(Hole::Missing {
                    at: self.offset(self.next),
                });
                self.pending.clear();
                self.next = seq;
                self.accept(seq, payload_len, captured, budget);
            }
            return;
        }
        let skip = rel.unsigned_abs() as usize;
        if skip >= payload_len {
            self.retransmitted += 1;
            return;
        }
        // Partly new: take what lies beyond `next`.
        let new_captured = captured.get(skip..).unwrap_or_default();
        self.accept(self.next, payload_len - skip, new_captured, budget);
        self.drain_pending(budget);
    }

    /// A segment starting exactly at `next`.
    fn accept(&mut self, seq: u32, payload_len: usize, captured: &[u8], budget: &mut usize) {
        debug_assert_eq!(seq, self.next);
        if self.hole.is_none() {
            let room = MAX_STREAM.saturating_sub(self.bytes.len()).min(*budget);
            let take = captured.len().min(payload_len);
            if take > room {
                self.bytes
                    .extend_from_slice(captured.get(..room).unwrap_or_default());
                self.hole = Some(Hole::TooLong);
            } else {
                self.bytes
                    .extend_from_slice(captured.get(..take).unwrap_or_default());
                *budget -= take;
                if take < payload_len {
                    self.hole = Some(Hole::SnapLength {
                        at: self.len + take as u64,
                    });
                }
            }
        }
        self.len += payload_len as u64;
        self.next = seq.wrapping_add(payload_len as u32);
    }

    fn drain_pending(&mut self, budget: &mut usize) {
        loop {
            let next = self.next;
            let Some(i) = self.pending.iter().position(|&(seq, len, _)| {
                let rel = seq.wrapping_sub(next) as i32;
                rel <= 0 && (rel.unsigned_abs() as usize) < len
            }) else {
                // Drop what is wholly behind us now.
                self.pending.retain(|&(seq, len, _)| {
                    let rel = seq.wrapping_sub(next) as i32;
                    rel > 0 || (rel.unsigned_abs() as usize) < len
                });
                return;
            };
            let (seq, len, data) = self.pending.swap_remove(i);
            let skip = seq.wrapping_sub(next).wrapping_neg() as usize;
            self.accept(
                next,
                len - skip,
                data.get(skip..).unwrap_or_default(),
                budget,
            );
        }
    }

    fn finish(&mut self) {
        if !self.pending.is_empty() {
            self.hole.get_or_insert(Hole::Missing {
                at: self.offset(self.next),
            });
            self.pending.clear();
        }
    }
}

/// One control connection as the capture saw it.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Capture point (the file) that saw it.
    pub point: usize,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// The client's SYN.
    pub client_syn: Option<Syn>,
    /// The server's SYN-ACK.
    pub server_syn: Option<Syn>,
    /// The client's ACK of the SYN-ACK.
    pub ack_ns: Option<i64>,
    pub first_ns: i64,
    pub last_ns: i64,
    pub segments: u64,
    pub to_server: Stream,
    pub to_client: Stream,
    pub teardown: Option<Teardown>,
    /// Its segments for the ladder, when pictures are asked for.
    pub trace: Option<Box<Trace>>,
}

/// What one end announced in its SYN (or SYN-ACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syn {
    pub at_ns: i64,
    pub isn: u32,
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
}

impl Syn {
    fn of(ts_ns: i64, tcp: &Tcp) -> Syn {
        Syn {
            at_ns: ts_ns,
            isn: tcp.seq,
            mss: tcp.mss,
            window_scale: tcp.window_scale,
            sack_permitted: tcp.sack_permitted,
        }
    }
}

impl Connection {
    pub(crate) fn new(
        point: usize,
        client: SocketAddr,
        server: SocketAddr,
        ts_ns: i64,
    ) -> Connection {
        Connection {
            point,
            client,
            server,
            client_syn: None,
            server_syn: None,
            ack_ns: None,
            first_ns: ts_ns,
            last_ns: ts_ns,
            segments: 0,
            to_server: Stream::default(),
            to_client: Stream::default(),
            teardown: None,
            trace: None,
        }
    }

    /// One segment from `from`: the handshake, the stream bytes (as many
    /// as `budget` allows) and the teardown.
    pub(crate) fn ingest(&mut self, from: Side, ts_ns: i64, tcp: &Tcp, budget: &mut usize) {
        self.segments += 1;
        self.last_ns = self.last_ns.max(ts_ns);
        let f = tcp.flags;
        match from {
            // The first SYN counts; a retransmitted one says the same.
            Side::Client if f.syn && !f.ack => {
                self.client_syn.get_or_insert(Syn::of(ts_ns, tcp));
                self.to_server.start(tcp.seq);
            }
            Side::Server if f.syn && f.ack => {
                self.server_syn.get_or_insert(Syn::of(ts_ns, tcp));
                self.to_client.start(tcp.seq);
            }
            Side::Client
                if f.ack
                    && self.ack_ns.is_none()
                    && self
                        .server_syn
                        .is_some_and(|s| tcp.ack == s.isn.wrapping_add(1)) =>
            {
                self.ack_ns = Some(ts_ns);
            }
            _ => {}
        }
        if !f.syn {
            let stream = match from {
                Side::Client => &mut self.to_server,
                Side::Server => &mut self.to_client,
            };
            stream.segment(tcp.seq, tcp.payload_len, tcp.payload, budget);
        }
        if (f.fin || f.rst) && self.teardown.is_none() {
            self.teardown = Some(Teardown {
                by: from,
                kind: if f.rst {
                    CloseKind::Rst
                } else {
                    CloseKind::Fin
                },
                at_ns: ts_ns,
            });
        }
    }

    /// Whether a SYN from the client now opens a new connection on the
    /// same ports: this one was closed, or began with another ISN.
    pub(crate) fn reopened_by(&self, tcp: &Tcp) -> bool {
        tcp.flags.syn
            && !tcp.flags.ack
            && (self.teardown.is_some() || self.client_syn.is_some_and(|s| s.isn != tcp.seq))
    }

    /// Both streams' held segments given up on: the capture has ended.
    pub(crate) fn finish(&mut self) {
        self.to_server.finish();
        self.to_client.finish();
    }

    /// SYN to the client's ACK of the SYN-ACK, as the capture point saw it.
    pub fn handshake_rtt_us(&self) -> Option<f64> {
        Some(self.ack_ns?.saturating_sub(self.client_syn?.at_ns) as f64 / 1e3)
    }

    /// How much of the handshake the capture holds.
    pub fn handshake(&self) -> HandshakeSeen {
        match (self.client_syn, self.server_syn, self.ack_ns) {
            (Some(_), Some(_), Some(_)) => HandshakeSeen::Complete,
            (Some(_), Some(_), None) => HandshakeSeen::NoFinalAck,
            (Some(_), None, _) => HandshakeSeen::NoSynAck,
            (None, _, _) => HandshakeSeen::AlreadyOpen,
        }
    }

    /// The MSS both ends can use: the smaller of the two announced.
    pub fn mss(&self) -> Option<u16> {
        let (c, s) = (
            self.client_syn.and_then(|s| s.mss),
            self.server_syn.and_then(|s| s.mss),
        );
        match (c, s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Window scaling is in force only when both ends offered it; this is
    /// the client's shift (what the server applies to the client's windows).
    pub fn window_scale(&self) -> Option<u8> {
        self.server_syn?.window_scale?;
        self.client_syn?.window_scale
    }

    /// Both ends offered SACK; unknown unless both SYNs were captured.
    pub fn sack_permitted(&self) -> Option<bool> {
        Some(self.client_syn?.sack_permitted && self.server_syn?.sack_permitted)
    }

    pub fn retransmitted(&self) -> u64 {
        self.to_server.retransmitted + self.to_client.retransmitted
    }
}

/// The connection table.
#[derive(Debug)]
pub struct TcpTable {
    control_port: u16,
    open: HashMap<(usize, SocketAddr, SocketAddr), Connection>,
    done: Vec<Connection>,
    /// Connection attempts (SYNs) to ports other than the control port.
    pub other_ports: HashMap<u16, u64>,
    /// Segments not followed because the table was full.
    pub overflow: u64,
    budget: usize,
    /// Keep each connection's segments for the ladder.
    traces: bool,
    /// Segments that traces may still keep.
    segment_budget: usize,
}

impl TcpTable {
    pub fn new(control_port: u16) -> TcpTable {
        TcpTable {
            control_port,
            open: HashMap::new(),
            done: Vec::new(),
            other_ports: HashMap::new(),
            overflow: 0,
            budget: STREAM_BUDGET,
            traces: false,
            segment_budget: SEGMENT_BUDGET,
        }
    }

    /// Keep each connection's segments for the ladder diagram.
    pub fn with_traces(mut self) -> TcpTable {
        self.traces = true;
        self
    }

    pub fn ingest(
        &mut self,
        point: usize,
        src: SocketAddr,
        dst: SocketAddr,
        ts_ns: i64,
        tcp: &Tcp,
    ) {
        let (client, server, from) = if tcp.dst_port == self.control_port {
            (src, dst, Side::Client)
        } else if tcp.src_port == self.control_port {
            (dst, src, Side::Server)
        } else {
            if tcp.flags.syn && !tcp.flags.ack {
                *self.other_ports.entry(tcp.dst_port).or_insert(0) += 1;
            }
            return;
        };
        let key = (point, client, server);
        // A new SYN on a finished connection's ports starts a new one.
        if from == Side::Client
            && let Some(old) = self.open.get(&key)
            && old.reopened_by(tcp)
            && let Some(old) = self.open.remove(&key)
        {
            self.done.push(old);
        }
        if !self.open.contains_key(&key) && self.open.len() + self.done.len() >= MAX_CONNECTIONS {
            self.overflow += 1;
            return;
        }
        let c = self
            .open
            .entry(key)
            .or_insert_with(|| Connection::new(point, client, server, ts_ns));
        let had_ack = c.ack_ns.is_some();
        c.ingest(from, ts_ns, tcp, &mut self.budget);
        if self.traces && c.trace.is_none() && self.segment_budget >= TRACE_SEGMENTS {
            self.segment_budget -= TRACE_SEGMENTS;
            c.trace = Some(Box::default());
        }
        if let Some(trace) = c.trace.as_deref_mut() {
            let f = tcp.flags;
            let stream = match from {
                Side::Client => &c.to_server,
                Side::Server => &c.to_client,
            };
            // Where the segment starts in its stream (a first segment of a
            // stream whose SYN was not seen starts it: 0).
            let offset = if f.syn { 0 } else { stream.offset(tcp.seq) };
            trace.push(
                Segment {
                    at_ns: ts_ns,
                    from,
                    syn: f.syn,
                    ack: f.ack,
                    fin: f.fin,
                    rst: f.rst,
                    offset,
                    len: u32::try_from(tcp.payload_len).unwrap_or(u32::MAX),
                    first_byte: tcp.payload.first().copied(),
                },
                !had_ack && c.ack_ns.is_some(),
            );
        }
    }

    /// Every connection, ordered by first time.
    pub fn finish(mut self) -> Vec<Connection> {
        self.done.extend(self.open.into_values());
        for c in &mut self.done {
            c.finish();
        }
        self.done.sort_by_key(|c| (c.first_ns, c.point, c.client));
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode::TcpFlags;
    use super::*;

    const CLIENT: ([u8; 4], u16) = ([127, 0, 0, 1], 40000);
    const SERVER: ([u8; 4], u16) = ([127, 0, 0, 1], 5005);

    fn seg(from_client: bool, flags: TcpFlags, seq: u32, ack: u32, payload: &[u8]) -> Tcp<'_> {
        Tcp {
            src_port: if from_client { CLIENT.1 } else { SERVER.1 },
            dst_port: if from_client { SERVER.1 } else { CLIENT.1 },
            seq,
            ack,
            flags,
            window: 65535,
            mss: None,
            window_scale: None,
            sack_permitted: false,
            payload_len: payload.len(),
            payload,
        }
    }

    fn feed(t: &mut TcpTable, ts: i64, from_client: bool, seg: &Tcp) {
        let (c, s) = (SocketAddr::from(CLIENT), SocketAddr::from(SERVER));
        if from_client {
            t.ingest(0, c, s, ts, seg);
        } else {
            t.ingest(0, s, c, ts, seg);
        }
    }

    const SYN: TcpFlags = TcpFlags {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
        psh: false,
    };
    const SYNACK: TcpFlags = TcpFlags { ack: true, ..SYN };
    const ACK: TcpFlags = TcpFlags {
        syn: false,
        ..SYNACK
    };
    const FIN: TcpFlags = TcpFlags { fin: true, ..ACK };
    const RST: TcpFlags = TcpFlags { rst: true, ..ACK };

    /// The lab's registration as in a real capture: id, port, concurrency.
    fn lab_registration(t: &mut TcpTable) {
        let mut syn = seg(true, SYN, 1000, 0, b"");
        syn.mss = Some(65495);
        syn.window_scale = Some(10);
        syn.sack_permitted = true;
        feed(t, 0, true, &syn);
        let mut synack = seg(false, SYNACK, 5000, 1001, b"");
        synack.mss = Some(65495);
        synack.window_scale = Some(10);
        synack.sack_permitted = true;
        feed(t, 28_000, false, &synack);
        feed(t, 44_000, true, &seg(true, ACK, 1001, 5001, b""));
        feed(t, 166_000, false, &seg(false, ACK, 5001, 1001, &[1, 0]));
        feed(
            t,
            252_000,
            true,
            &seg(true, ACK, 1001, 5003, &[0x56, 0x63, 0]),
        );
        feed(t, 270_000, false, &seg(false, ACK, 5003, 1004, &[2, 0]));
    }

    /// The ladder's trace: the handshake, the segments with bytes at their
    /// stream offsets, the teardown; bare ACKs after the handshake left out.
    #[test]
    fn trace_keeps_what_the_ladder_draws() {
        let mut t = TcpTable::new(5005).with_traces();
        lab_registration(&mut t);
        feed(&mut t, 280_000, true, &seg(true, ACK, 1004, 5005, b""));
        feed(&mut t, 300_000, false, &seg(false, FIN, 5005, 1004, b""));
        let conns = t.finish();
        let trace = conns[0].trace.as_deref().expect("a trace");
        let steps: Vec<(Side, bool, bool, u64, u32)> = trace
            .segments()
            .map(|s| (s.from, s.syn, s.fin, s.offset, s.len))
            .collect();
        assert_eq!(
            steps,
            vec![
                (Side::Client, true, false, 0, 0),
                (Side::Server, true, false, 0, 0),
                (Side::Client, false, false, 0, 0),
                (Side::Server, false, false, 0, 2),
                (Side::Client, false, false, 0, 3),
                (Side::Server, false, false, 2, 2),
                (Side::Server, false, true, 4, 0),
            ]
        );
        let spans = super::super::registration::message_spans(&conns[0]);
        let labels: Vec<(Side, u64, &str)> = spans
            .iter()
            .map(|s| (s.from, s.offset, s.label.as_str()))
            .collect();
        assert_eq!(
            labels,
            vec![
                (Side::Client, 0, "port 25430 (lab)"),
                (Side::Server, 0, "client id 1"),
                (Side::Server, 2, "concurrency 2"),
            ]
        );
    }

    /// Traces share one budget of segments: past it, further connections
    /// are followed without one, and the kept ones stay whole.
    #[test]
    fn traces_stop_at_their_budget() {
        let mut t = TcpTable::new(5005).with_traces();
        let server = SocketAddr::from(SERVER);
        let per = 40u32;
        let conns = SEGMENT_BUDGET as u32 / per + 10;
        for k in 0..conns {
            let client = SocketAddr::from(([127, 0, (k >> 8) as u8, k as u8], 40000));
            let mut s = seg(true, SYN, 1000, 0, b"");
            s.src_port = 40000;
            t.ingest(0, client, server, 0, &s);
            for i in 1..per {
                let mut d = seg(true, ACK, 1000 + i, 1, b"x");
                d.src_port = 40000;
                t.ingest(0, client, server, i64::from(i), &d);
            }
        }
        let conns = t.finish();
        let kept: usize = conns
            .iter()
            .filter_map(|c| c.trace.as_deref())
            .map(|tr| tr.segments().count())
            .sum();
        let traced = conns.iter().filter(|c| c.trace.is_some()).count();
        assert_eq!(traced, SEGMENT_BUDGET / TRACE_SEGMENTS);
        assert!(kept <= SEGMENT_BUDGET, "{kept}");
        // Each kept trace is whole: its SYN and every segment with bytes.
        for tr in conns.iter().filter_map(|c| c.trace.as_deref()) {
            assert_eq!(tr.segments().count(), per as usize);
        }
    }

    #[test]
    fn no_trace_unless_asked() {
        let mut t = TcpTable::new(5005);
        lab_registration(&mut t);
        assert!(t.finish()[0].trace.is_none());
    }

    #[test]
    fn handshake_and_streams() {
        let mut t = TcpTable::new(5005);
        lab_registration(&mut t);
        feed(&mut t, 300_000, false, &seg(false, FIN, 5005, 1004, b""));
        feed(&mut t, 400_000, true, &seg(true, FIN, 1004, 5006, b""));
        let conns = t.finish();
        assert_eq!(conns.len(), 1);
        let c = &conns[0];
        assert_eq!(c.handshake(), HandshakeSeen::Complete);
        assert_eq!(c.handshake_rtt_us(), Some(44.0));
        assert_eq!(
            (c.mss(), c.window_scale(), c.sack_permitted()),
            (Some(65495), Some(10), Some(true))
        );
        assert_eq!(c.to_client.bytes, [1, 0, 2, 0]);
        assert_eq!(c.to_server.bytes, [0x56, 0x63, 0]);
        assert_eq!(c.to_client.hole, None);
        assert_eq!(c.teardown.unwrap().describe(), "server FIN first");
        assert_eq!(c.retransmitted(), 0);
    }

    #[test]
    fn retransmission_and_reordering() {
        let mut t = TcpTable::new(5005);
        lab_registration(&mut t);
        // The concurrency segment again: a retransmission.
        feed(
            &mut t,
            280_000,
            false,
            &seg(false, ACK, 5003, 1004, &[2, 0]),
        );
        // Two segments out of order, then one overlapping both.
        feed(&mut t, 290_000, false, &seg(false, ACK, 5007, 1004, b"cd"));
        feed(&mut t, 291_000, false, &seg(false, ACK, 5005, 1004, b"ab"));
        feed(
            &mut t,
            292_000,
            false,
            &seg(false, ACK, 5006, 1004, b"bcdef"),
        );
        feed(&mut t, 293_000, true, &seg(true, RST, 1004, 0, b""));
        let c = &t.finish()[0];
        assert_eq!(c.to_client.bytes, b"\x01\x00\x02\x00abcdef");
        assert_eq!(c.to_client.retransmitted, 1);
        assert_eq!(c.to_client.len, 10);
        assert_eq!(c.teardown.unwrap().describe(), "client RST first");
    }

    #[test]
    fn snap_length_cut_leaves_a_hole() {
        let mut t = TcpTable::new(5005);
        lab_registration(&mut t);
        let mut s = seg(false, ACK, 5005, 1004, b"0123");
        s.payload_len = 100;
        feed(&mut t, 300_000, false, &s);
        feed(&mut t, 301_000, false, &seg(false, ACK, 5105, 1004, b"zz"));
        let c = &t.finish()[0];
        assert_eq!(c.to_client.bytes, b"\x01\x00\x02\x000123");
        assert_eq!(c.to_client.hole, Some(Hole::SnapLength { at: 8 }));
        assert_eq!(c.to_client.len, 106);
    }

    #[test]
    fn partial_connections() {
        let mut t = TcpTable::new(5005);
        // Seen from the middle: no SYN.
        feed(&mut t, 0, false, &seg(false, ACK, 7000, 1, b"xy"));
        let c = &t.finish()[0];
        assert_eq!(c.handshake(), HandshakeSeen::AlreadyOpen);
        assert_eq!(c.to_client.hole, Some(Hole::StartNotSeen));
        assert_eq!(c.handshake_rtt_us(), None);
        assert_eq!(c.sack_permitted(), None);

        let mut t = TcpTable::new(5005);
        feed(&mut t, 0, true, &seg(true, SYN, 1, 0, b""));
        assert_eq!(t.finish()[0].handshake(), HandshakeSeen::NoSynAck);
    }

    #[test]
    fn missing_segment_is_a_hole() {
        let mut t = TcpTable::new(5005);
        lab_registration(&mut t);
        feed(
            &mut t,
            300_000,
            false,
            &seg(false, ACK, 5010, 1004, b"later"),
        );
        let c = &t.finish()[0];
        assert_eq!(c.to_client.hole, Some(Hole::Missing { at: 4 }));
        assert_eq!(c.to_client.bytes, [1, 0, 2, 0]);
    }

    #[test]
    fn port_reuse_starts_a_new_connection_and_other_ports_are_counted() {
        let mut t = TcpTable::new(5005);
        lab_registration(&mut t);
        feed(&mut t, 300_000, true, &seg(true, FIN, 1004, 5005, b""));
        feed(&mut t, 900_000, true, &seg(true, SYN, 77, 0, b""));
        let other = seg(true, SYN, 1, 0, b"");
        let other = Tcp {
            dst_port: 22,
            ..other
        };
        feed(&mut t, 900_001, true, &other);
        assert_eq!(t.other_ports.get(&22), Some(&1));
        let conns = t.finish();
        assert_eq!(conns.len(), 2);
        assert_eq!(conns[1].client_syn.map(|s| s.isn), Some(77));
    }
}
