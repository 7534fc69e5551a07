//! `udplab analyze --conversations` on a run of the header cache
//! (`udplab headers`): its sessions, recognized by their bytes. A session
//! is a TCP connection whose client sends host names, each answered with
//! a UDP port (or a refusal), then 2-byte UDP requests to that port
//! answered by an HTTP response head, and `terminate` at the end.
//!
//! Per session: the connection (handshake, messages, teardown), per query
//! the UDP request and answer, the server log's hit or miss, and the
//! header compared three ways: the origin's HTTP response (when the
//! capture holds the server's connection to the origin, as on loopback),
//! the UDP answer, and the file the client stored. Then one timeline of
//! every session's queries and answers.
//!
//! Fed in the analyzer's one pass ([`SessionTable::ingest`]); memory is
//! bounded by connections, not packets: each TCP connection keeps its
//! handshake and, while it may be a session or an HTTP exchange, a few
//! KiB of its streams ([`tcp::Connection`] and its reassembly); each UDP
//! answer at most a datagram's payload, all of it within [`BUDGET`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::conversations::as_text;
use super::decode::{Decoded, Tcp, Transport, Udp};
use super::rows::{format_time, round};
use super::tcp::{self, CloseKind, Connection, Side};
use crate::headers::log::{CacheResult, ClientLog, HeadersLog, ServerLog};
use crate::headers::{Answer, MAX_DATAGRAM, MAX_MESSAGE, REQUEST_LEN, TERMINATE};

/// TCP connections followed at once; later ones are counted.
pub const MAX_CONNECTIONS: usize = 10_000;
/// Message starts kept per connection (two per query).
pub const MAX_MARKS: usize = 4096;
/// Bytes kept per direction of a connection that may be a session.
const SESSION_STREAM: usize = 64 * 1024;
/// Bytes kept of an HTTP request: enough for its Host field.
const HTTP_REQUEST: usize = 8 * 1024;
/// Bytes kept of an HTTP response: a head a datagram can carry, and room
/// to see that one is longer.
const HTTP_RESPONSE: usize = MAX_DATAGRAM + 1024;
/// UDP requests followed.
pub const MAX_REQUESTS: usize = 100_000;
/// Stream and datagram bytes kept over the whole capture.
pub const BUDGET: usize = 64 * 1024 * 1024;

/// What a connection's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No payload yet.
    Unknown,
    /// The client spoke first, a short line of text: maybe a session.
    Session,
    /// An HTTP/1 request: maybe the server asking the origin.
    Http,
    /// Neither: followed no further than its handshake.
    Other,
}

/// Where new bytes of one direction began: a message's start.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at_ns: i64,
    frame: u64,
    side: Side,
    offset: u64,
}

#[derive(Debug)]
struct Followed {
    conn: Connection,
    kind: Kind,
    marks: Vec<Mark>,
    marks_full: bool,
}

impl Followed {
    fn stream(&self, side: Side) -> &tcp::Stream {
        match side {
            Side::Client => &self.conn.to_server,
            Side::Server => &self.conn.to_client,
        }
    }

    /// Bytes kept of `side`'s stream at most, by the connection's kind.
    fn cap(&self, side: Side) -> usize {
        match (self.kind, side) {
            (Kind::Unknown | Kind::Session, _) => SESSION_STREAM,
            (Kind::Http, Side::Client) => HTTP_REQUEST,
            (Kind::Http, Side::Server) => HTTP_RESPONSE,
            (Kind::Other, _) => 0,
        }
    }

    fn classify(&mut self) {
        if self.kind != Kind::Unknown {
            return;
        }
        let (to_server, to_client) = (&self.conn.to_server, &self.conn.to_client);
        self.kind = if to_client.len > 0 && to_server.len == 0 {
            // The server spoke first: not this protocol.
            Kind::Other
        } else if to_server.len == 0 {
            return;
        } else if to_server.bytes.starts_with(b"GET ") {
            Kind::Http
        } else if to_server.len <= MAX_MESSAGE as u64
            && !to_server.bytes.is_empty()
            && to_server.bytes.iter().all(|b| (b' '..=b'~').contains(b))
        {
            Kind::Session
        } else {
            Kind::Other
        };
    }
}

/// What a mark costs of [`BUDGET`].
const MARK_SIZE: usize = std::mem::size_of::<Mark>();

/// The bytes a stream holds: in order, and out of order.
fn kept_bytes(s: &tcp::Stream) -> usize {
    s.bytes.len() + s.held()
}

/// A 2-byte datagram from a session's client to its server.
#[derive(Debug, Clone)]
struct Request {
    at_ns: i64,
    frame: u64,
    from: SocketAddr,
    to: SocketAddr,
    /// Its two bytes: the TCP port of the session it is for.
    names_port: u16,
    answer: Option<Datagram>,
}

/// The datagram that answered a request.
#[derive(Debug, Clone)]
struct Datagram {
    at_ns: i64,
    frame: u64,
    len: usize,
    payload: Kept,
}

/// A header as the capture holds it: a UDP answer's payload, an HTTP
/// response's head.
#[derive(Debug, Clone)]
enum Kept {
    Whole(Vec<u8>),
    /// The snap length or a lost segment cut it.
    Cut,
    /// Past [`BUDGET`].
    OverBudget,
}

/// The header-cache sessions of a capture.
#[derive(Debug)]
pub struct SessionTable {
    open: HashMap<(SocketAddr, SocketAddr), usize>,
    all: Vec<Followed>,
    /// (client IP, server IP) of the connections that may be sessions:
    /// the only pairs whose 2-byte datagrams are kept.
    session_hosts: HashSet<(IpAddr, IpAddr)>,
    requests: Vec<Request>,
    /// Unanswered requests by (client, server) address.
    waiting: HashMap<(SocketAddr, SocketAddr), usize>,
    budget: usize,
    /// Segments and datagrams not followed because a table was full.
    pub overflow: u64,
}

impl Default for SessionTable {
    fn default() -> SessionTable {
        SessionTable::new()
    }
}

impl SessionTable {
    pub fn new() -> SessionTable {
        SessionTable {
            open: HashMap::new(),
            all: Vec::new(),
            session_hosts: HashSet::new(),
            requests: Vec::new(),
            waiting: HashMap::new(),
            budget: BUDGET,
            overflow: 0,
        }
    }

    /// One decoded frame, the `frame`th read (from 1).
    pub fn ingest(&mut self, frame: u64, at_ns: i64, d: &Decoded) {
        match &d.transport {
            Transport::Tcp(t) => self.tcp(
                frame,
                at_ns,
                SocketAddr::new(d.src, t.src_port),
                SocketAddr::new(d.dst, t.dst_port),
                t,
            ),
            Transport::Udp(u) => self.udp(
                frame,
                at_ns,
                SocketAddr::new(d.src, u.src_port),
                SocketAddr::new(d.dst, u.dst_port),
                u,
            ),
            Transport::Icmp(_) => {}
        }
    }

    fn tcp(&mut self, frame: u64, at_ns: i64, src: SocketAddr, dst: SocketAddr, t: &Tcp) {
        let key = (src.min(dst), src.max(dst));
        let known = self.open.get(&key).copied().filter(|&i| {
            // A SYN on a closed connection's ports opens another.
            self.all
                .get(i)
                .is_none_or(|f| !(f.conn.client == src && f.conn.reopened_by(t)))
        });
        let i = match known {
            Some(i) => i,
            None => {
                if self.all.len() >= MAX_CONNECTIONS {
                    self.overflow += 1;
                    return;
                }
                // The SYN's sender is the client; without a SYN, the first
                // sender (in this protocol the client speaks first).
                let (client, server) = if t.flags.syn && t.flags.ack {
                    (dst, src)
                } else {
                    (src, dst)
                };
                self.all.push(Followed {
                    conn: Connection::new(0, client, server, at_ns),
                    kind: Kind::Unknown,
                    marks: Vec::new(),
                    marks_full: false,
                });
                self.open.insert(key, self.all.len() - 1);
                self.all.len() - 1
            }
        };
        let Some(f) = self.all.get_mut(i) else {
            return;
        };
        let side = if src == f.conn.client {
            Side::Client
        } else {
            Side::Server
        };
        let before = f.stream(side).len;
        let kept = kept_bytes(f.stream(side));
        let mut room = f.cap(side).saturating_sub(kept).min(self.budget);
        f.conn.ingest(side, at_ns, t, &mut room);
        let grew = f.stream(side).len > before;
        let kept_now = kept_bytes(f.stream(side));
        self.budget = self.budget.saturating_sub(kept_now.saturating_sub(kept));
        if grew && f.kind != Kind::Other {
            if f.marks.len() < MAX_MARKS && self.budget >= MARK_SIZE {
                self.budget -= MARK_SIZE;
                f.marks.push(Mark {
                    at_ns,
                    frame,
                    side,
                    offset: before,
                });
            } else {
                f.marks_full = true;
            }
        }
        let was = f.kind;
        f.classify();
        match (was, f.kind) {
            (Kind::Unknown, Kind::Session) => {
                self.session_hosts
                    .insert((f.conn.client.ip(), f.conn.server.ip()));
            }
            (Kind::Unknown, Kind::Other) => {
                // Nothing of it is needed: its bytes go back to the budget.
                for s in [&mut f.conn.to_server, &mut f.conn.to_client] {
                    self.budget += s.bytes.len();
                    s.bytes = Vec::new();
                }
                self.budget += f.marks.len() * MARK_SIZE;
                f.marks = Vec::new();
            }
            _ => {}
        }
    }

    fn udp(&mut self, frame: u64, at_ns: i64, src: SocketAddr, dst: SocketAddr, u: &Udp) {
        // No session and no request so far: no hash lookup per datagram of
        // a bulk transfer.
        if self.waiting.is_empty() && self.session_hosts.is_empty() {
            return;
        }
        if let Some(i) = self.waiting.remove(&(dst, src)) {
            let captured = u.payload.get(..u.payload_len).unwrap_or(u.payload);
            let payload = if captured.len() < u.payload_len {
                Kept::Cut
            } else if captured.len() > self.budget {
                Kept::OverBudget
            } else {
                self.budget -= captured.len();
                Kept::Whole(captured.to_vec())
            };
            if let Some(r) = self.requests.get_mut(i) {
                r.answer = Some(Datagram {
                    at_ns,
                    frame,
                    len: u.payload_len,
                    payload,
                });
            }
            return;
        }
        if u.payload_len != REQUEST_LEN || !self.session_hosts.contains(&(src.ip(), dst.ip())) {
            return;
        }
        let Some(&[hi, lo]) = u.payload.first_chunk::<2>() else {
            return;
        };
        let names_port = u16::from_be_bytes([hi, lo]);
        // The same request again before its answer: a second capture point's
        // copy, or a resend. The first stands.
        if let Some(&i) = self.waiting.get(&(src, dst))
            && self
                .requests
                .get(i)
                .is_some_and(|r| r.names_port == names_port)
        {
            return;
        }
        if self.requests.len() >= MAX_REQUESTS {
            self.overflow += 1;
            return;
        }
        self.waiting.insert((src, dst), self.requests.len());
        self.requests.push(Request {
            at_ns,
            frame,
            from: src,
            to: dst,
            names_port,
            answer: None,
        });
    }

    /// The sessions, in the order they began, and their timeline; `logs`
    /// are the header logs read from `--logs`.
    pub fn finish(self, logs: &[(PathBuf, HeadersLog)]) -> Sessions {
        let mut all = self.all;
        for f in &mut all {
            f.conn.finish();
        }
        all.sort_by_key(|f| f.conn.first_ns);
        let responses: Vec<HttpResponse> = all.iter().filter_map(http_response).collect();
        let mut claimed = vec![false; self.requests.len()];
        let mut sessions = Vec::new();
        for f in all.iter().filter(|f| f.kind == Kind::Session) {
            let Some(exchange) = exchange(f) else {
                continue;
            };
            let n = sessions.len() + 1;
            sessions.push(session_row(
                n,
                f,
                &exchange,
                &self.requests,
                &mut claimed,
                &responses,
                logs,
            ));
        }
        let timeline = timeline(&sessions);
        Sessions { sessions, timeline }
    }
}

/// A message of a session's connection: what one side sent before the
/// other answered.
#[derive(Debug, Clone)]
struct Message<'a> {
    at_ns: i64,
    frame: u64,
    from: Side,
    /// By the TCP lengths.
    len: u64,
    /// What the capture kept of it (all of it unless a hole cut it).
    bytes: &'a [u8],
}

/// A query as the connection carried it.
#[derive(Debug, Clone)]
struct Asked<'a> {
    name: Message<'a>,
    answer: Option<(Message<'a>, Answer)>,
}

#[derive(Debug, Clone)]
struct Exchange<'a> {
    messages: Vec<Message<'a>>,
    queries: Vec<Asked<'a>>,
    terminate: Option<Message<'a>>,
}

/// The connection's messages: runs of marks of one side joined.
fn messages(f: &Followed) -> Vec<Message<'_>> {
    let mut out: Vec<Message> = Vec::new();
    let mut starts: Vec<(usize, u64)> = Vec::new();
    for m in &f.marks {
        if out.last().is_some_and(|l| l.from == m.side) {
            continue;
        }
        starts.push((out.len(), m.offset));
        out.push(Message {
            at_ns: m.at_ns,
            frame: m.frame,
            from: m.side,
            len: 0,
            bytes: &[],
        });
    }
    // Each message ends where its side's next one begins.
    for side in [Side::Client, Side::Server] {
        let stream = f.stream(side);
        let mine: Vec<(usize, u64)> = starts
            .iter()
            .copied()
            .filter(|&(i, _)| out.get(i).is_some_and(|m| m.from == side))
            .collect();
        for (k, &(i, start)) in mine.iter().enumerate() {
            let end = mine.get(k + 1).map_or(stream.len, |&(_, o)| o);
            if let Some(m) = out.get_mut(i) {
                m.len = end.saturating_sub(start);
                let (a, b) = (start as usize, end as usize);
                let kept = stream.bytes.len();
                m.bytes = stream.bytes.get(a.min(kept)..b.min(kept)).unwrap_or(&[]);
            }
        }
    }
    out
}

/// The connection read as a session: `None` when its bytes are not one
/// (some answer neither a port nor a refusal, or no port at all).
fn exchange(f: &Followed) -> Option<Exchange<'_>> {
    let messages = messages(f);
    let mut queries: Vec<Asked> = Vec::new();
    let mut terminate = None;
    for m in &messages {
        match m.from {
            Side::Client if m.bytes == TERMINATE => terminate = Some(m.clone()),
            Side::Client => queries.push(Asked {
                name: m.clone(),
                answer: None,
            }),
            Side::Server => {
                let q = queries.last_mut().filter(|q| q.answer.is_none())?;
                q.answer = Some((m.clone(), Answer::parse(m.bytes)?));
            }
        }
    }
    queries
        .iter()
        .any(|q| matches!(q.answer, Some((_, Answer::Port(_)))))
        .then_some(Exchange {
            messages,
            queries,
            terminate,
        })
}

/// An HTTP response of the capture, by the request's Host.
#[derive(Debug)]
struct HttpResponse {
    host: String,
    request_ns: i64,
    at_ns: i64,
    frame: u64,
    head: Kept,
}

fn http_response(f: &Followed) -> Option<HttpResponse> {
    if f.kind != Kind::Http {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(&f.conn.to_server.bytes).ok()?;
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())?;
    let first = |side: Side| f.marks.iter().find(|m| m.side == side);
    let request_ns = first(Side::Client)?.at_ns;
    let response = first(Side::Server)?;
    let bytes = &f.conn.to_client.bytes;
    let head = match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => Kept::Whole(bytes.get(..end + 4)?.to_vec()),
        None => Kept::Cut,
    };
    Some(HttpResponse {
        host,
        request_ns,
        at_ns: response.at_ns,
        frame: response.frame,
        head,
    })
}

/// Several sessions in one report, with their timeline.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sessions {
    pub sessions: Vec<SessionRow>,
    pub timeline: Vec<TimelineRow>,
}

/// One session. Keys are a stable contract (docs/ANALYZE.md).
#[derive(Debug, Clone, Serialize)]
pub struct SessionRow {
    /// From 1, in the order the sessions began.
    pub session: usize,
    /// The TCP connection's ends, `ip:port`.
    pub client: String,
    pub server: String,
    /// One pair of ports from the SYN to the close, and every UDP request
    /// named the connection's client port; null when the capture lacks
    /// the SYN or the close.
    pub ports_stable: Option<bool>,
    pub handshake: SessionHandshake,
    pub messages: Vec<MessageRow>,
    /// Messages beyond [`MAX_MARKS`] are not listed.
    pub messages_not_listed: bool,
    /// The client sent `terminate`.
    pub terminated: bool,
    pub teardown: Option<SessionTeardown>,
    pub queries: Vec<QueryRow>,
    /// The logs tied to it (its client address), when given.
    pub server_log: Option<String>,
    pub client_log: Option<String>,
    #[serde(skip)]
    terminate_at: Option<(i64, u64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionHandshake {
    /// `complete`, `no final ACK`, `no SYN-ACK` or `not seen (connection
    /// already open)`.
    pub seen: tcp::HandshakeSeen,
    /// SYN to the ACK of the SYN-ACK, as the capture point saw it.
    pub rtt_us: Option<f64>,
    pub mss_syn: Option<u16>,
    pub mss_syn_ack: Option<u16>,
    pub window_scale_syn: Option<u8>,
    pub window_scale_syn_ack: Option<u8>,
    pub sack_permitted_syn: Option<bool>,
    pub sack_permitted_syn_ack: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionTeardown {
    /// The side that closed first.
    pub by: Side,
    pub kind: CloseKind,
    pub time: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageRow {
    pub time: String,
    /// The frame (from 1, in the order read) that began it.
    pub frame: u64,
    pub from: Side,
    pub len: u64,
    /// Printable ASCII as is, any other byte as `.`; what the capture kept.
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryRow {
    /// From 1, in the session's order.
    pub query: usize,
    pub name: String,
    pub asked_time: String,
    pub asked_frame: u64,
    /// The server's answer over TCP: the port, or a refusal.
    pub port: Option<u16>,
    pub refusal: Option<String>,
    pub answered_time: Option<String>,
    pub answered_frame: Option<u64>,
    pub udp_request: Option<UdpRow>,
    pub udp_answer: Option<UdpRow>,
    /// `hit`, `miss` or `refused`, from the server's log.
    pub cache: Option<CacheResult>,
    /// The client's stored file, from its log.
    pub file: Option<String>,
    /// The header's three copies compared; null for a refused query.
    pub header: Option<HeaderCopies>,
    #[serde(skip)]
    at_ns: QueryTimes,
}

/// When each step of a query was captured, for the timeline.
#[derive(Debug, Clone, Copy)]
struct QueryTimes {
    asked: i64,
    answered: Option<i64>,
    udp_request: Option<i64>,
    udp_answer: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UdpRow {
    pub from: String,
    pub to: String,
    /// UDP payload bytes.
    pub len: usize,
    pub time: String,
    pub frame: u64,
    /// A request only: the TCP port its two bytes name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names_port: Option<u16>,
}

/// The header as the origin sent it over HTTP, as the server sent it over
/// UDP, and as the client stored it.
#[derive(Debug, Clone, Serialize)]
pub struct HeaderCopies {
    pub origin_len: Option<usize>,
    pub origin_time: Option<String>,
    pub origin_frame: Option<u64>,
    pub udp_len: Option<usize>,
    pub file_len: Option<usize>,
    pub origin_vs_udp: Comparison,
    pub udp_vs_file: Comparison,
    pub origin_vs_file: Comparison,
}

/// Two copies of a header side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Comparison {
    Identical,
    /// The first byte that differs: its line (from 1) and its offset from
    /// the header's start (from 0). One copy longer than the other differs
    /// where the shorter ends.
    Differs {
        line: usize,
        offset: usize,
    },
    /// A copy the capture does not hold.
    NotInCapture,
    /// A copy the capture holds only part of (snap length, a lost
    /// segment), or one past the analyzer's budget.
    CutInCapture,
    /// No stored file: no client log, or the file is gone.
    NoFile,
}

impl Comparison {
    pub fn describe(&self) -> String {
        match self {
            Comparison::Identical => "identical".into(),
            Comparison::Differs { line, offset } => {
                format!("differs at line {line}, byte {offset}")
            }
            Comparison::NotInCapture => "not in capture".into(),
            Comparison::CutInCapture => "cut in capture".into(),
            Comparison::NoFile => "no file".into(),
        }
    }
}

/// One copy of a header, or why there is none.
type Held<'a> = Result<&'a [u8], Comparison>;

/// A captured copy, if the capture has one.
fn held(kept: Option<&Kept>) -> Held<'_> {
    match kept {
        Some(Kept::Whole(b)) => Ok(b),
        Some(Kept::Cut | Kept::OverBudget) => Err(Comparison::CutInCapture),
        None => Err(Comparison::NotInCapture),
    }
}

/// Two copies side by side: identical, the first difference, or why one
/// is missing (the first copy's reason when both are).
fn compare(a: Held, b: Held) -> Comparison {
    let (a, b) = match (a, b) {
        (Err(why), _) | (_, Err(why)) => return why,
        (Ok(a), Ok(b)) => (a, b),
    };
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if common == a.len() && common == b.len() {
        return Comparison::Identical;
    }
    Comparison::Differs {
        line: a
            .get(..common)
            .map_or(0, |p| p.iter().filter(|&&c| c == b'\n').count())
            + 1,
        offset: common,
    }
}

/// Which session an event belongs to, and what it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The client sent a name over TCP.
    Asked,
    /// The server answered it over TCP (a port or a refusal).
    Answered,
    /// The client's 2-byte datagram.
    UdpRequest,
    /// The server's datagram with the header.
    UdpAnswer,
    /// The client's `terminate`.
    Terminate,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Asked => "asked",
            Event::Answered => "answered",
            Event::UdpRequest => "udp_request",
            Event::UdpAnswer => "udp_answer",
            Event::Terminate => "terminate",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineRow {
    pub time: String,
    pub frame: u64,
    pub session: usize,
    /// Null for `terminate`.
    pub query: Option<usize>,
    pub event: Event,
    pub name: Option<String>,
    #[serde(skip)]
    at_ns: i64,
}

fn timeline(sessions: &[SessionRow]) -> Vec<TimelineRow> {
    let mut out = Vec::new();
    for s in sessions {
        let mut push = |at_ns: i64, time: String, frame: u64, query, event, name| {
            out.push(TimelineRow {
                time,
                frame,
                session: s.session,
                query,
                event,
                name,
                at_ns,
            })
        };
        for q in &s.queries {
            let name = Some(q.name.clone());
            push(
                q.at_ns.asked,
                q.asked_time.clone(),
                q.asked_frame,
                Some(q.query),
                Event::Asked,
                name.clone(),
            );
            if let (Some(t), Some(f), Some(at)) =
                (&q.answered_time, q.answered_frame, q.at_ns.answered)
            {
                push(
                    at,
                    t.clone(),
                    f,
                    Some(q.query),
                    Event::Answered,
                    name.clone(),
                );
            }
            for (row, at, event) in [
                (&q.udp_request, q.at_ns.udp_request, Event::UdpRequest),
                (&q.udp_answer, q.at_ns.udp_answer, Event::UdpAnswer),
            ] {
                if let (Some(r), Some(at)) = (row, at) {
                    push(
                        at,
                        r.time.clone(),
                        r.frame,
                        Some(q.query),
                        event,
                        name.clone(),
                    );
                }
            }
        }
        if let Some((at, frame)) = s.terminate_at {
            push(at, format_time(at), frame, None, Event::Terminate, None);
        }
    }
    out.sort_by_key(|e| (e.at_ns, e.frame));
    out
}

/// The client's stored copy: its file, read.
fn stored(path: Option<&Path>) -> Result<Vec<u8>, Comparison> {
    let path = path.ok_or(Comparison::NoFile)?;
    // A header fits a datagram: a larger file is read only as far.
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_DATAGRAM as u64 + 1).read_to_end(&mut out))
        .map_err(|_| Comparison::NoFile)?;
    Ok(out)
}

/// The server log of this session: its client address, the names in the
/// same order where there are several.
fn server_log<'a>(
    logs: &'a [(PathBuf, HeadersLog)],
    client: SocketAddr,
    names: &[&str],
) -> Option<(&'a Path, &'a ServerLog)> {
    let mut found = logs.iter().filter_map(|(p, l)| match l {
        HeadersLog::Server(s) if s.client == client => Some((p.as_path(), s)),
        _ => None,
    });
    let first = found.next()?;
    let same = |s: &ServerLog| {
        s.queries
            .iter()
            .map(|(n, _)| n.as_str())
            .eq(names.iter().copied())
    };
    if same(first.1) {
        return Some(first);
    }
    found.find(|(_, s)| same(s)).or(Some(first))
}

fn client_log<'a>(
    logs: &'a [(PathBuf, HeadersLog)],
    client: SocketAddr,
    names: &[&str],
) -> Option<(&'a Path, &'a ClientLog)> {
    let mut found = logs.iter().filter_map(|(p, l)| match l {
        HeadersLog::Client(c) if c.tcp_local == client => Some((p.as_path(), c)),
        _ => None,
    });
    let first = found.next()?;
    let same = |c: &ClientLog| {
        c.queries
            .iter()
            .map(|(n, _)| n.as_str())
            .eq(names.iter().copied())
    };
    if same(first.1) {
        return Some(first);
    }
    found.find(|(_, c)| same(c)).or(Some(first))
}

fn session_row(
    n: usize,
    f: &Followed,
    ex: &Exchange,
    requests: &[Request],
    claimed: &mut [bool],
    responses: &[HttpResponse],
    logs: &[(PathBuf, HeadersLog)],
) -> SessionRow {
    let c = &f.conn;
    let names: Vec<String> = ex
        .queries
        .iter()
        .map(|q| String::from_utf8_lossy(q.name.bytes).into_owned())
        .collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let slog = server_log(logs, c.client, &name_refs);
    let clog = client_log(logs, c.client, &name_refs);
    let mut queries = Vec::new();
    for (i, (q, name)) in ex.queries.iter().zip(&names).enumerate() {
        let next_ns = ex
            .queries
            .get(i + 1)
            .map(|q| q.name.at_ns)
            .or(ex.terminate.as_ref().map(|t| t.at_ns))
            .unwrap_or(i64::MAX);
        let (answered, answer) = match &q.answer {
            Some((m, a)) => (Some(m), Some(*a)),
            None => (None, None),
        };
        let port = match answer {
            Some(Answer::Port(p)) => Some(p),
            _ => None,
        };
        let request = port.zip(answered).and_then(|(p, m)| {
            find_request(
                requests,
                claimed,
                c.client,
                SocketAddr::new(c.server.ip(), p),
                m.at_ns,
                next_ns,
            )
        });
        let cache = slog
            .and_then(|(_, l)| l.queries.get(i))
            .filter(|(n, _)| n == name)
            .and_then(|(_, r)| *r);
        let file = clog
            .and_then(|(_, l)| l.queries.get(i))
            .filter(|(n, _)| n == name)
            .and_then(|(_, f)| f.clone());
        let udp = request.and_then(|r| r.answer.as_ref());
        let udp_copy = held(udp.map(|d| &d.payload));
        let header = port.map(|_| {
            let answered_ns = answered.map_or(i64::MAX, |m| m.at_ns);
            let origin = origin_response(responses, name, q.name.at_ns, answered_ns, udp_copy);
            let origin_copy = held(origin.map(|r| &r.head));
            let stored = stored(file.as_deref());
            let file_copy: Held = stored.as_deref().map_err(|e| *e);
            HeaderCopies {
                origin_len: origin_copy.ok().map(<[u8]>::len),
                origin_time: origin.map(|r| format_time(r.at_ns)),
                origin_frame: origin.map(|r| r.frame),
                udp_len: udp.map(|d| d.len),
                file_len: file_copy.ok().map(<[u8]>::len),
                origin_vs_udp: compare(origin_copy, udp_copy),
                udp_vs_file: compare(udp_copy, file_copy),
                origin_vs_file: compare(origin_copy, file_copy),
            }
        });
        queries.push(QueryRow {
            query: i + 1,
            name: name.clone(),
            asked_time: format_time(q.name.at_ns),
            asked_frame: q.name.frame,
            port,
            refusal: match answer {
                Some(Answer::Refused(r)) => Some(r.to_string()),
                _ => None,
            },
            answered_time: answered.map(|m| format_time(m.at_ns)),
            answered_frame: answered.map(|m| m.frame),
            udp_request: request.map(|r| UdpRow {
                from: r.from.to_string(),
                to: r.to.to_string(),
                len: REQUEST_LEN,
                time: format_time(r.at_ns),
                frame: r.frame,
                names_port: Some(r.names_port),
            }),
            udp_answer: request.zip(udp).map(|(r, d)| UdpRow {
                from: r.to.to_string(),
                to: r.from.to_string(),
                len: d.len,
                time: format_time(d.at_ns),
                frame: d.frame,
                names_port: None,
            }),
            cache,
            file: file.map(|p| p.display().to_string()),
            header,
            at_ns: QueryTimes {
                asked: q.name.at_ns,
                answered: answered.map(|m| m.at_ns),
                udp_request: request.map(|r| r.at_ns),
                udp_answer: udp.map(|d| d.at_ns),
            },
        });
    }
    let whole = c.client_syn.is_some() && c.teardown.is_some();
    let named_own_port = queries
        .iter()
        .filter_map(|q| q.udp_request.as_ref()?.names_port)
        .all(|p| p == c.client.port());
    SessionRow {
        session: n,
        client: c.client.to_string(),
        server: c.server.to_string(),
        ports_stable: whole.then_some(named_own_port),
        handshake: SessionHandshake {
            seen: c.handshake(),
            rtt_us: c.handshake_rtt_us().map(|v| round(v, 3)),
            mss_syn: c.client_syn.and_then(|s| s.mss),
            mss_syn_ack: c.server_syn.and_then(|s| s.mss),
            window_scale_syn: c.client_syn.and_then(|s| s.window_scale),
            window_scale_syn_ack: c.server_syn.and_then(|s| s.window_scale),
            sack_permitted_syn: c.client_syn.map(|s| s.sack_permitted),
            sack_permitted_syn_ack: c.server_syn.map(|s| s.sack_permitted),
        },
        messages: ex
            .messages
            .iter()
            .map(|m| MessageRow {
                time: format_time(m.at_ns),
                frame: m.frame,
                from: m.from,
                len: m.len,
                text: as_text(m.bytes),
            })
            .collect(),
        messages_not_listed: f.marks_full,
        terminated: ex.terminate.is_some(),
        teardown: c.teardown.map(|t| SessionTeardown {
            by: t.by,
            kind: t.kind,
            time: format_time(t.at_ns),
        }),
        queries,
        server_log: slog.map(|(p, _)| p.display().to_string()),
        client_log: clog.map(|(p, _)| p.display().to_string()),
        terminate_at: ex.terminate.as_ref().map(|t| (t.at_ns, t.frame)),
    }
}

/// The origin's response a query's header came from: among the responses
/// for its name asked before the server answered, the one the server sent
/// over UDP when one is (several sessions may have fetched the same name at
/// once), else the latest fetched since the query (a miss), else the latest
/// (a hit, fetched for an earlier query).
fn origin_response<'a>(
    responses: &'a [HttpResponse],
    name: &str,
    asked_ns: i64,
    answered_ns: i64,
    udp: Held,
) -> Option<&'a HttpResponse> {
    let candidates: Vec<&HttpResponse> = responses
        .iter()
        .filter(|r| r.host.eq_ignore_ascii_case(name) && r.request_ns <= answered_ns)
        .collect();
    let latest = |f: &dyn Fn(&HttpResponse) -> bool| {
        candidates
            .iter()
            .copied()
            .filter(|r| f(r))
            .max_by_key(|r| r.request_ns)
    };
    latest(&|r| matches!((&r.head, udp), (Kept::Whole(h), Ok(u)) if h.as_slice() == u))
        .or_else(|| latest(&|r| r.request_ns >= asked_ns))
        .or_else(|| latest(&|_| true))
}

/// The UDP request of a query answered with `server`'s port at `from_ns`:
/// the first from the session's client IP to that port before the next
/// query, one naming the session's port first.
fn find_request<'a>(
    requests: &'a [Request],
    claimed: &mut [bool],
    client: SocketAddr,
    server: SocketAddr,
    from_ns: i64,
    until_ns: i64,
) -> Option<&'a Request> {
    let fits = |(i, r): &(usize, &Request)| {
        !claimed.get(*i).copied().unwrap_or(true)
            && r.from.ip() == client.ip()
            && r.to == server
            && (from_ns..=until_ns).contains(&r.at_ns)
    };
    let candidates: Vec<(usize, &Request)> = requests.iter().enumerate().filter(fits).collect();
    let (i, r) = candidates
        .iter()
        .find(|(_, r)| r.names_port == client.port())
        .or(candidates.first())
        .copied()?;
    if let Some(c) = claimed.get_mut(i) {
        *c = true;
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::decode::decode;
    use pcap_parser::Linktype;

    const CLIENT: ([u8; 4], u16) = ([127, 0, 0, 1], 40000);
    const SERVER: ([u8; 4], u16) = ([127, 0, 0, 1], 50366);
    const UDP_SERVER: u16 = 50367;
    const UDP_CLIENT: u16 = 41000;
    const ORIGIN: u16 = 8080;
    const HEADER: &[u8] = b"HTTP/1.1 200 OK\r\nServer: t\r\nX-Host: a.test\r\n\r\n";

    /// Frames fed in order, one microsecond apart.
    struct Feed {
        table: SessionTable,
        frame: u64,
        /// Each frame read this many times, as from that many capture
        /// points.
        copies: u64,
    }

    impl Feed {
        fn new(copies: u64) -> Feed {
            Feed {
                table: SessionTable::new(),
                frame: 0,
                copies,
            }
        }

        fn raw(&mut self, bytes: &[u8]) {
            let d = decode(Linktype::RAW, bytes).unwrap();
            for _ in 0..self.copies {
                self.frame += 1;
                self.table.ingest(self.frame, self.frame as i64 * 1_000, &d);
            }
        }

        /// A TCP segment between `lo` (the client, `from_client`) and `hi`.
        #[allow(clippy::too_many_arguments)]
        fn tcp(
            &mut self,
            lo: u16,
            hi: u16,
            from_client: bool,
            flags: &str,
            seq: u32,
            ack: u32,
            payload: &[u8],
        ) {
            let (s, d) = if from_client { (lo, hi) } else { (hi, lo) };
            let mut b =
                etherparse::PacketBuilder::ipv4(CLIENT.0, SERVER.0, 64).tcp(s, d, seq, 65535);
            for f in flags.chars() {
                b = match f {
                    'S' => b.syn(),
                    'A' => b.ack(ack),
                    'F' => b.fin(),
                    _ => b,
                };
            }
            let mut out = Vec::new();
            b.write(&mut out, payload).unwrap();
            self.raw(&out);
        }

        fn udp(&mut self, s: u16, d: u16, payload: &[u8]) {
            let b = etherparse::PacketBuilder::ipv4(CLIENT.0, SERVER.0, 64).udp(s, d);
            let mut out = Vec::new();
            b.write(&mut out, payload).unwrap();
            self.raw(&out);
        }
    }

    /// A session of one query answered from the origin, the header as the
    /// origin sent it or `udp_header` over UDP.
    fn one_query(udp_header: &[u8], answer: &[u8]) -> Sessions {
        one_query_seen(udp_header, answer, 1)
    }

    fn one_query_seen(udp_header: &[u8], answer: &[u8], copies: u64) -> Sessions {
        let (c, s) = (CLIENT.1, SERVER.1);
        let mut f = Feed::new(copies);
        f.tcp(c, s, true, "S", 100, 0, b"");
        f.tcp(c, s, false, "SA", 500, 101, b"");
        f.tcp(c, s, true, "A", 101, 501, b"");
        f.tcp(c, s, true, "A", 101, 501, b"a.test");
        // The server asks the origin.
        let (o, p) = (45000, ORIGIN);
        f.tcp(o, p, true, "S", 7, 0, b"");
        f.tcp(o, p, false, "SA", 9, 8, b"");
        f.tcp(
            o,
            p,
            true,
            "A",
            8,
            10,
            b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        );
        let mut body = HEADER.to_vec();
        body.extend_from_slice(b"<html>");
        f.tcp(o, p, false, "A", 10, 40, &body);
        f.tcp(c, s, false, "A", 501, 107, answer);
        f.udp(UDP_CLIENT, UDP_SERVER, &c.to_be_bytes());
        f.udp(UDP_SERVER, UDP_CLIENT, udp_header);
        let at = 501 + answer.len() as u32;
        f.tcp(c, s, true, "A", 107, at, b"terminate");
        f.tcp(c, s, true, "FA", 116, at, b"");
        f.tcp(c, s, false, "FA", at, 117, b"");
        f.table.finish(&[])
    }

    #[test]
    fn a_session_of_one_query_and_its_three_copies() {
        let out = one_query(HEADER, b"50367");
        assert_eq!(out.sessions.len(), 1);
        let s = &out.sessions[0];
        assert_eq!(
            (s.client.as_str(), s.server.as_str()),
            ("127.0.0.1:40000", "127.0.0.1:50366")
        );
        assert_eq!(s.ports_stable, Some(true));
        assert!(s.terminated);
        assert_eq!(s.teardown.as_ref().map(|t| t.by), Some(Side::Client));
        assert_eq!(s.handshake.seen, tcp::HandshakeSeen::Complete);
        assert_eq!(s.handshake.rtt_us, Some(2.0));
        let texts: Vec<&str> = s.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["a.test", "50367", "terminate"]);
        let q = &s.queries[0];
        assert_eq!((q.name.as_str(), q.port), ("a.test", Some(UDP_SERVER)));
        let req = q.udp_request.as_ref().unwrap();
        assert_eq!(
            (req.len, req.names_port, req.frame),
            (2, Some(CLIENT.1), 10)
        );
        assert_eq!(q.udp_answer.as_ref().unwrap().len, HEADER.len());
        let h = q.header.as_ref().unwrap();
        assert_eq!(h.origin_vs_udp, Comparison::Identical);
        assert_eq!(h.origin_frame, Some(8));
        assert_eq!(h.udp_vs_file, Comparison::NoFile);
        assert_eq!(q.cache, None);
        let events: Vec<(u64, Event)> = out.timeline.iter().map(|e| (e.frame, e.event)).collect();
        assert_eq!(
            events,
            [
                (4, Event::Asked),
                (9, Event::Answered),
                (10, Event::UdpRequest),
                (11, Event::UdpAnswer),
                (12, Event::Terminate)
            ]
        );
    }

    #[test]
    fn a_changed_header_differs_where_it_changed() {
        let mut changed = HEADER.to_vec();
        changed[30] = b'x';
        let out = one_query(&changed, b"50367");
        let h = out.sessions[0].queries[0].header.clone().unwrap();
        assert_eq!(
            h.origin_vs_udp,
            Comparison::Differs {
                line: 3,
                offset: 30
            }
        );
    }

    #[test]
    fn answers_that_are_no_port_are_no_session() {
        assert!(one_query(HEADER, b"hello").sessions.is_empty());
        // A refusal alone is not enough to tell a session.
        assert!(
            one_query(HEADER, b"error: not a host name")
                .sessions
                .is_empty()
        );
    }

    #[test]
    fn two_capture_points_give_the_same_session() {
        let out = one_query_seen(HEADER, b"50367", 2);
        assert_eq!(out.sessions.len(), 1);
        let s = &out.sessions[0];
        assert_eq!(s.messages.len(), 3);
        let q = &s.queries[0];
        // The first copy of each frame.
        assert_eq!(q.udp_request.as_ref().map(|r| r.frame), Some(19));
        assert_eq!(q.udp_answer.as_ref().map(|r| r.frame), Some(21));
        let h = q.header.as_ref().unwrap();
        assert_eq!(h.origin_vs_udp, Comparison::Identical);
        assert_eq!(out.timeline.len(), 5);
    }

    #[test]
    fn comparisons() {
        assert_eq!(compare(Ok(b"ab\ncd"), Ok(b"ab\ncd")), Comparison::Identical);
        assert_eq!(
            compare(Ok(b"ab\ncd"), Ok(b"ab\ncx")),
            Comparison::Differs { line: 2, offset: 4 }
        );
        // A copy shorter than the other differs where it ends.
        assert_eq!(
            compare(Ok(b"ab\n"), Ok(b"ab\ncd")),
            Comparison::Differs { line: 2, offset: 3 }
        );
        assert_eq!(
            compare(Ok(b"a"), Err(Comparison::NoFile)),
            Comparison::NoFile
        );
        assert_eq!(
            compare(Err(Comparison::NotInCapture), Err(Comparison::NoFile)),
            Comparison::NotInCapture
        );
    }
}
