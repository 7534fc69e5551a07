//! `udplab analyze --conversations`: every TCP connection and UDP flow of
//! any capture, udplab's or not, as Wireshark's Conversations window and
//! `tshark -z conv,tcp -z conv,udp` list them: endpoints, frames and frame
//! bytes each way, the `frame.protocols` strings of its frames, the TCP
//! handshake and teardown, and a preview of the first payloads with the
//! share of printable bytes ("are the messages readable?").
//!
//! A table fed with decoded frames ([`ConversationTable::ingest`]) and
//! turned into rows ([`ConversationTable::finish`]); memory is bounded by
//! [`MAX_CONVERSATIONS`], and by [`MAX_PAYLOADS`] previews of
//! [`PREVIEW_BYTES`] each per conversation.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use pcap_parser::Linktype;
use serde::Serialize;

use super::decode::{Decoded, LinkType, Tcp, Transport};
use super::rows::{format_time, round};
use super::tcp::{CloseKind, HandshakeSeen};

/// Conversations followed at once; frames of others are counted as
/// skipped ("conversation table full").
pub const MAX_CONVERSATIONS: usize = 20_000;
/// Payloads previewed per conversation.
pub const MAX_PAYLOADS: usize = 8;
/// Bytes of each previewed payload shown as hex and text.
pub const PREVIEW_BYTES: usize = 64;

/// A conversation's transport, `tcp` or `udp` in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// A conversation's key: the transport and its two endpoints, the lower
/// first, so that both directions find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    proto: Proto,
    lo: SocketAddr,
    hi: SocketAddr,
}

impl Key {
    fn new(proto: Proto, src: SocketAddr, dst: SocketAddr) -> Key {
        let (lo, hi) = if src <= dst { (src, dst) } else { (dst, src) };
        Key { proto, lo, hi }
    }
}

/// TCP options of a SYN or SYN-ACK.
#[derive(Debug, Clone, Copy)]
struct Syn {
    at_ns: i64,
    mss: Option<u16>,
    window_scale: Option<u8>,
    sack_permitted: bool,
}

impl Syn {
    fn of(at_ns: i64, t: &Tcp) -> Syn {
        Syn {
            at_ns,
            mss: t.mss,
            window_scale: t.window_scale,
            sack_permitted: t.sack_permitted,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Direction {
    frames: u64,
    bytes: u64,
}

#[derive(Debug, Clone)]
struct Payload {
    at_ns: i64,
    from_a: bool,
    len: usize,
    printable: Option<f64>,
    head: Vec<u8>,
}

/// One conversation being followed.
#[derive(Debug, Clone)]
struct Conversation {
    proto: Proto,
    /// The side that sent the first frame seen.
    a: SocketAddr,
    b: SocketAddr,
    first_ns: i64,
    last_ns: i64,
    a_to_b: Direction,
    b_to_a: Direction,
    /// Frames by their layers: a few kinds per conversation.
    protocols: Vec<(Layers, u64)>,
    /// SYN and SYN-ACK, by the side that sent them.
    syn: Option<(bool, Syn)>,
    syn_ack: Option<Syn>,
    /// The ACK that completed the handshake.
    ack_ns: Option<i64>,
    /// The first FIN or RST: from a?, which, when.
    close: Option<(bool, CloseKind, i64)>,
    payloads: Vec<Payload>,
}

impl Conversation {
    fn new(proto: Proto, a: SocketAddr, b: SocketAddr, at_ns: i64) -> Conversation {
        Conversation {
            proto,
            a,
            b,
            first_ns: at_ns,
            last_ns: at_ns,
            a_to_b: Direction::default(),
            b_to_a: Direction::default(),
            protocols: Vec::new(),
            syn: None,
            syn_ack: None,
            ack_ns: None,
            close: None,
            payloads: Vec::new(),
        }
    }

    fn tcp(&mut self, from_a: bool, at_ns: i64, t: &Tcp) {
        let f = t.flags;
        if f.syn && !f.ack && self.syn.is_none() {
            self.syn = Some((from_a, Syn::of(at_ns, t)));
        } else if f.syn && f.ack && self.syn_ack.is_none() {
            self.syn_ack = Some(Syn::of(at_ns, t));
        } else if !f.syn
            && f.ack
            && self.ack_ns.is_none()
            && self.syn_ack.is_some()
            && self.syn.is_some_and(|(by_a, _)| by_a == from_a)
        {
            self.ack_ns = Some(at_ns);
        }
        if self.close.is_none() {
            if f.rst {
                self.close = Some((from_a, CloseKind::Rst, at_ns));
            } else if f.fin {
                self.close = Some((from_a, CloseKind::Fin, at_ns));
            }
        }
    }

    fn payload(&mut self, from_a: bool, at_ns: i64, len: usize, captured: &[u8]) {
        if len == 0 || self.payloads.len() >= MAX_PAYLOADS {
            return;
        }
        let captured = captured.get(..len).unwrap_or(captured);
        self.payloads.push(Payload {
            at_ns,
            from_a,
            len,
            printable: printable_share(captured),
            head: captured.get(..PREVIEW_BYTES).unwrap_or(captured).to_vec(),
        });
    }

    /// Whether a SYN now opens a new connection on the same ports: this
    /// one was closed.
    fn reopened_by(&self, t: &Tcp) -> bool {
        t.flags.syn && !t.flags.ack && self.close.is_some()
    }
}

/// The conversations of a capture, in the order they began.
#[derive(Debug, Default)]
pub struct ConversationTable {
    open: HashMap<Key, usize>,
    all: Vec<Conversation>,
    /// Frames of conversations beyond [`MAX_CONVERSATIONS`].
    pub overflow: u64,
}

impl ConversationTable {
    pub fn new() -> ConversationTable {
        ConversationTable::default()
    }

    /// One decoded frame: `frame` is its captured bytes, `orig_len` its
    /// length on the wire (what tshark's byte counts add up).
    pub fn ingest(
        &mut self,
        link_type: Linktype,
        frame: &[u8],
        at_ns: i64,
        orig_len: u32,
        d: &Decoded,
    ) {
        let (proto, sport, dport, payload_len, payload) = match &d.transport {
            Transport::Tcp(t) => (Proto::Tcp, t.src_port, t.dst_port, t.payload_len, t.payload),
            Transport::Udp(u) => (Proto::Udp, u.src_port, u.dst_port, u.payload_len, u.payload),
            Transport::Icmp(_) => return,
        };
        let src = SocketAddr::new(d.src, sport);
        let dst = SocketAddr::new(d.dst, dport);
        let key = Key::new(proto, src, dst);
        let known = self
            .open
            .get(&key)
            .copied()
            .filter(|&i| match &d.transport {
                Transport::Tcp(t) => !self.all.get(i).is_some_and(|c| c.reopened_by(t)),
                _ => true,
            });
        let i = match known {
            Some(i) => i,
            None => {
                if self.all.len() >= MAX_CONVERSATIONS {
                    self.overflow += 1;
                    return;
                }
                self.all.push(Conversation::new(proto, src, dst, at_ns));
                self.open.insert(key, self.all.len() - 1);
                self.all.len() - 1
            }
        };
        let Some(c) = self.all.get_mut(i) else {
            return;
        };
        let from_a = src == c.a;
        let dir = if from_a { &mut c.a_to_b } else { &mut c.b_to_a };
        dir.frames += 1;
        dir.bytes += u64::from(orig_len);
        c.first_ns = c.first_ns.min(at_ns);
        c.last_ns = c.last_ns.max(at_ns);
        if let Some(layers) = Layers::of(link_type, frame, d) {
            match c.protocols.iter_mut().find(|(l, _)| *l == layers) {
                Some((_, n)) => *n += 1,
                None => c.protocols.push((layers, 1)),
            }
        }
        if let Transport::Tcp(t) = &d.transport {
            c.tcp(from_a, at_ns, t);
        }
        c.payload(from_a, at_ns, payload_len, payload);
    }

    /// The rows of the report, in the order the conversations began.
    pub fn finish(self) -> Vec<ConversationRow> {
        let ConversationTable { open, mut all, .. } = self;
        drop(open);
        all.sort_by_key(|c| c.first_ns);
        // Each conversation is freed as its row is made.
        all.into_iter().map(|c| row(&c)).collect()
    }
}

/// The share of bytes that are printable ASCII (space to `~`, tab, CR,
/// LF); `None` for no captured bytes.
pub fn printable_share(bytes: &[u8]) -> Option<f64> {
    if bytes.is_empty() {
        return None;
    }
    let n = bytes
        .iter()
        .filter(|&&b| matches!(b, b' '..=b'~' | b'\t' | b'\r' | b'\n'))
        .count();
    Some(round(n as f64 / bytes.len() as f64, 3))
}

/// Bytes as text: printable ASCII as is, anything else as `.`.
pub(crate) fn as_text(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if (b' '..=b'~').contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

/// Whether a TCP payload starts like an HTTP/1 request or response.
fn looks_like_http(payload: &[u8]) -> bool {
    const STARTS: [&[u8]; 10] = [
        b"HTTP/1.",
        b"GET ",
        b"POST ",
        b"HEAD ",
        b"PUT ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
    ];
    STARTS.iter().any(|s| payload.starts_with(s))
}

/// The link layer as Wireshark's `frame.protocols` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// `eth:ethertype`, then `vlan:ethertype` per 802.1Q/802.1ad tag.
    Ethernet {
        vlan_tags: u8,
    },
    /// BSD loopback, NULL and LOOP.
    Null,
    Raw,
    /// Linux cooked SLL and SLL2 alike.
    Sll,
    Other,
}

/// What the transport header carries, as the first application layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum App {
    Nothing,
    Data,
    Http,
}

/// The layers a frame's `frame.protocols` string names, up to the first
/// application layer. A conversation counts these, cheap to compare, and
/// renders each as text once, at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    link: Link,
    ipv6: bool,
    transport: Proto,
    app: App,
}

impl Layers {
    /// The layers of a TCP or UDP frame (`None` for ICMP). A payload is
    /// `http` when a TCP payload starts like HTTP/1, else `data`.
    pub fn of(link_type: Linktype, frame: &[u8], d: &Decoded) -> Option<Layers> {
        let (transport, app) = match &d.transport {
            Transport::Tcp(t) if t.payload_len == 0 => (Proto::Tcp, App::Nothing),
            Transport::Tcp(t) if looks_like_http(t.payload) => (Proto::Tcp, App::Http),
            Transport::Tcp(_) => (Proto::Tcp, App::Data),
            Transport::Udp(u) if u.payload_len == 0 => (Proto::Udp, App::Nothing),
            Transport::Udp(_) => (Proto::Udp, App::Data),
            Transport::Icmp(_) => return None,
        };
        let link = match LinkType::from_pcap(link_type) {
            Some(LinkType::Ethernet) => Link::Ethernet {
                vlan_tags: vlan_tags(frame),
            },
            Some(LinkType::Null | LinkType::Loop) => Link::Null,
            Some(LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6) => Link::Raw,
            Some(LinkType::LinuxSll | LinkType::LinuxSll2) => Link::Sll,
            None => Link::Other,
        };
        Some(Layers {
            link,
            ipv6: d.src.is_ipv6(),
            transport,
            app,
        })
    }
}

/// The VLAN tags after an Ethernet header's addresses, as the decoder
/// steps over them.
fn vlan_tags(frame: &[u8]) -> u8 {
    let mut tags = 0u8;
    let mut at = 12;
    while let Some(&[hi, lo]) = frame.get(at..).and_then(|s| s.first_chunk::<2>()) {
        if !matches!(u16::from_be_bytes([hi, lo]), 0x8100 | 0x88a8 | 0x9100) {
            break;
        }
        tags = tags.saturating_add(1);
        at += 4;
    }
    tags
}

/// As Wireshark's `frame.protocols`, after its `frame:`:
/// `eth:ethertype:ip:udp:data`, `null:ip:tcp`, `sll:ethertype:ipv6:tcp:http`.
impl std::fmt::Display for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.link {
            Link::Ethernet { vlan_tags } => {
                f.write_str("eth:ethertype")?;
                for _ in 0..vlan_tags {
                    f.write_str(":vlan:ethertype")?;
                }
            }
            Link::Null => f.write_str("null")?,
            Link::Raw => f.write_str("raw")?,
            Link::Sll => f.write_str("sll:ethertype")?,
            Link::Other => f.write_str("frame")?,
        }
        f.write_str(if self.ipv6 { ":ipv6" } else { ":ip" })?;
        write!(f, ":{}", self.transport)?;
        match self.app {
            App::Nothing => Ok(()),
            App::Data => f.write_str(":data"),
            App::Http => f.write_str(":http"),
        }
    }
}

/// One conversation in the report. Keys are a stable contract
/// (docs/ANALYZE.md).
#[derive(Debug, Clone, Serialize)]
pub struct ConversationRow {
    pub transport: Proto,
    pub a: String,
    pub b: String,
    pub start: String,
    pub duration_s: f64,
    pub frames_a_to_b: u64,
    pub bytes_a_to_b: u64,
    pub frames_b_to_a: u64,
    pub bytes_b_to_a: u64,
    pub protocols: BTreeMap<String, u64>,
    /// TCP: true (a connection is one pair of ports; the same ports opened
    /// again after a close are another conversation). UDP: null.
    pub ports_stable: Option<bool>,
    pub handshake: Option<HandshakeRow>,
    pub teardown: Option<TeardownRow>,
    pub payloads: Vec<PayloadRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HandshakeRow {
    /// The side that sent the SYN: `a` or `b`.
    pub syn_from: &'static str,
    /// Complete, no final ACK or no SYN-ACK (a row has a handshake only
    /// when its SYN was seen).
    pub seen: HandshakeSeen,
    /// SYN to the ACK of the SYN-ACK, as the capture point saw it.
    pub rtt_us: Option<f64>,
    pub mss_syn: Option<u16>,
    pub mss_syn_ack: Option<u16>,
    pub window_scale_syn: Option<u8>,
    pub window_scale_syn_ack: Option<u8>,
    /// SACK permitted by both SYNs; null without a SYN-ACK.
    pub sack: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TeardownRow {
    /// The side that closed first: `a` or `b`.
    pub by: &'static str,
    /// `FIN` or `RST`.
    pub kind: CloseKind,
    pub time: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PayloadRow {
    pub time: String,
    /// The sender, `ip:port`.
    pub from: String,
    /// Payload bytes, by the IP and transport lengths.
    pub len: usize,
    /// Share of the captured payload that is printable ASCII; null when
    /// the snap length left none of it.
    pub printable_share: Option<f64>,
    /// The first [`PREVIEW_BYTES`] captured bytes.
    pub hex: String,
    pub text: String,
}

fn side(from_a: bool) -> &'static str {
    if from_a { "a" } else { "b" }
}

fn row(c: &Conversation) -> ConversationRow {
    let tcp = c.proto == Proto::Tcp;
    ConversationRow {
        transport: c.proto,
        a: c.a.to_string(),
        b: c.b.to_string(),
        start: format_time(c.first_ns),
        duration_s: round(c.last_ns.saturating_sub(c.first_ns) as f64 / 1e9, 6),
        frames_a_to_b: c.a_to_b.frames,
        bytes_a_to_b: c.a_to_b.bytes,
        frames_b_to_a: c.b_to_a.frames,
        bytes_b_to_a: c.b_to_a.bytes,
        protocols: c.protocols.iter().fold(BTreeMap::new(), |mut m, (l, n)| {
            *m.entry(l.to_string()).or_insert(0) += n;
            m
        }),
        ports_stable: tcp.then_some(true),
        handshake: c.syn.map(|(by_a, syn)| HandshakeRow {
            syn_from: side(by_a),
            seen: match (c.syn_ack, c.ack_ns) {
                (Some(_), Some(_)) => HandshakeSeen::Complete,
                (Some(_), None) => HandshakeSeen::NoFinalAck,
                (None, _) => HandshakeSeen::NoSynAck,
            },
            rtt_us: c
                .ack_ns
                .map(|ack| round(ack.saturating_sub(syn.at_ns) as f64 / 1e3, 3)),
            mss_syn: syn.mss,
            mss_syn_ack: c.syn_ack.and_then(|s| s.mss),
            window_scale_syn: syn.window_scale,
            window_scale_syn_ack: c.syn_ack.and_then(|s| s.window_scale),
            sack: c.syn_ack.map(|s| s.sack_permitted && syn.sack_permitted),
        }),
        teardown: c.close.map(|(by_a, kind, at)| TeardownRow {
            by: side(by_a),
            kind,
            time: format_time(at),
        }),
        payloads: c
            .payloads
            .iter()
            .map(|p| PayloadRow {
                time: format_time(p.at_ns),
                from: if p.from_a { c.a } else { c.b }.to_string(),
                len: p.len,
                printable_share: p.printable,
                hex: crate::protocol::hex(&p.head),
                text: as_text(&p.head),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::decode::decode;

    /// Ethernet, one 802.1Q tag, IPv4, UDP 1000 -> 2000, payload "hi".
    const VLAN_UDP: [u8; 48] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x81, 0x00, 0x00, 0x05, 0x08, 0x00, // eth + tag
        0x45, 0, 0, 30, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4
        0x03, 0xe8, 0x07, 0xd0, 0, 10, 0, 0, b'h', b'i', // UDP
    ];

    #[test]
    fn protocol_string_counts_vlan_tags() {
        let d = decode(Linktype::ETHERNET, &VLAN_UDP).unwrap();
        assert_eq!(
            Layers::of(Linktype::ETHERNET, &VLAN_UDP, &d)
                .unwrap()
                .to_string(),
            "eth:ethertype:vlan:ethertype:ip:udp:data"
        );
    }

    #[test]
    fn a_is_the_first_sender_and_directions_add_up() {
        let d = decode(Linktype::ETHERNET, &VLAN_UDP).unwrap();
        let mut t = ConversationTable::new();
        t.ingest(Linktype::ETHERNET, &VLAN_UDP, 1_000, 60, &d);
        t.ingest(Linktype::ETHERNET, &VLAN_UDP, 3_000, 60, &d);
        let rows = t.finish();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.a.as_str(), r.b.as_str()),
            ("10.0.0.1:1000", "10.0.0.2:2000")
        );
        assert_eq!(
            (r.frames_a_to_b, r.bytes_a_to_b, r.frames_b_to_a),
            (2, 120, 0)
        );
        assert_eq!(r.payloads.len(), 2);
        assert_eq!(r.payloads[0].text, "hi");
        assert_eq!(r.payloads[0].hex, "6869");
        assert_eq!(r.payloads[0].printable_share, Some(1.0));
        assert_eq!(r.ports_stable, None);
    }

    /// An IPv4 TCP segment between 10.0.0.1:4000 (`from_a`) and
    /// 10.0.0.2:80, as a raw-IP frame.
    fn segment(from_a: bool, flags: &str, payload: &[u8]) -> Vec<u8> {
        let (src, dst, sport, dport) = if from_a {
            ([10, 0, 0, 1], [10, 0, 0, 2], 4000, 80)
        } else {
            ([10, 0, 0, 2], [10, 0, 0, 1], 80, 4000)
        };
        let mut b = etherparse::PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, 1, 1000);
        for f in flags.chars() {
            b = match f {
                'S' => b.syn(),
                'A' => b.ack(1),
                'F' => b.fin(),
                'R' => b.rst(),
                _ => b,
            };
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn feed(t: &mut ConversationTable, at_ns: i64, frame: &[u8]) {
        let d = decode(Linktype::RAW, frame).unwrap();
        t.ingest(Linktype::RAW, frame, at_ns, frame.len() as u32, &d);
    }

    #[test]
    fn tcp_handshake_teardown_and_a_reused_port_pair() {
        let mut t = ConversationTable::new();
        feed(&mut t, 1_000, &segment(true, "S", b""));
        feed(&mut t, 2_000, &segment(false, "SA", b""));
        feed(&mut t, 5_000, &segment(true, "A", b""));
        feed(&mut t, 6_000, &segment(true, "A", b"GET / HTTP/1.1\r\n"));
        feed(&mut t, 7_000, &segment(false, "RA", b""));
        // The same ports opened again after the reset: a new connection.
        feed(&mut t, 9_000, &segment(false, "S", b""));
        let rows = t.finish();
        assert_eq!(rows.len(), 2);
        let c = &rows[0];
        assert_eq!((c.frames_a_to_b, c.frames_b_to_a), (3, 2));
        assert_eq!(c.protocols.get("raw:ip:tcp"), Some(&4));
        assert_eq!(c.protocols.get("raw:ip:tcp:http"), Some(&1));
        let h = c.handshake.as_ref().unwrap();
        assert_eq!(
            (h.syn_from, h.seen, h.rtt_us),
            ("a", HandshakeSeen::Complete, Some(4.0))
        );
        let td = c.teardown.as_ref().unwrap();
        assert_eq!((td.by, td.kind), ("b", CloseKind::Rst));
        assert_eq!(c.payloads.len(), 1);
        assert_eq!(c.payloads[0].from, "10.0.0.1:4000");
        assert_eq!(c.ports_stable, Some(true));
        // The second one was opened by the other side: it is its `a`.
        assert_eq!(rows[1].a, "10.0.0.2:80");
        assert_eq!(
            rows[1].handshake.as_ref().unwrap().seen,
            HandshakeSeen::NoSynAck
        );
        assert!(rows[1].teardown.is_none());
    }

    #[test]
    fn printable_share_of_mixed_bytes() {
        assert_eq!(printable_share(b""), None);
        assert_eq!(printable_share(b"ab\0\xff"), Some(0.5));
        assert_eq!(printable_share(b"GET /\r\n"), Some(1.0));
        assert_eq!(as_text(b"a\nb\x00"), "a.b.");
    }

    #[test]
    fn http_is_told_by_its_start() {
        assert!(looks_like_http(b"HTTP/1.1 200 OK\r\n"));
        assert!(looks_like_http(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_http(b"GETX"));
    }
}
