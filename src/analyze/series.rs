//! What the pictures of a run are drawn from, gathered in the analyzer's
//! one pass only when pictures are asked for (`--html`, `--plots`): per
//! UDP flow its data datagrams binned by time, per control connection the
//! segments of its registration.
//!
//! Memory stays bounded by the number of flows and connections, never by
//! packets: a flow's bins have a fixed width that doubles (neighbouring
//! bins merged in pairs) whenever the flow outgrows [`MAX_BINS`], and a
//! connection keeps its first and last few segments.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::correlate::{CapturePoint, Transfer};
use super::registration::{Carried, Span, framed_from, message_spans};
use super::rows::reported_missing;
use super::tcp::Side;
use crate::protocol::Protocol;
use crate::protocol::v1::{self, SeqRange};

/// Bins per flow at most; a flow that outgrows them has its bins merged
/// in pairs.
pub const MAX_BINS: usize = 1024;
/// The width of a flow's bins before any merge.
const FIRST_WIDTH_NS: i64 = 1_000_000;
/// Bins over all flows; flows beyond it are drawn without a series.
pub const BIN_BUDGET: usize = 1 << 19;

/// The data datagrams of one flow that fell in one time bin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bin {
    /// Data datagrams (every copy).
    pub frames: u32,
    /// Of them, copies with the v1 retransmission flag.
    pub retransmitted: u32,
    /// File bytes carried (every copy).
    pub bytes: u64,
    /// File bytes of datagrams not seen before in the flow: its goodput.
    pub new_bytes: u64,
    /// The lowest and highest place in the flow (v1 sequence number, or
    /// for the lab's protocol the datagram's number in the flow).
    pub lo: u32,
    pub hi: u32,
}

impl Bin {
    fn add(&mut self, place: u32, bytes: u64, new: bool, retransmitted: bool) {
        if self.frames == 0 {
            self.lo = place;
            self.hi = place;
        } else {
            self.lo = self.lo.min(place);
            self.hi = self.hi.max(place);
        }
        self.frames = self.frames.saturating_add(1);
        self.retransmitted = self.retransmitted.saturating_add(u32::from(retransmitted));
        self.bytes += bytes;
        if new {
            self.new_bytes += bytes;
        }
    }

    fn merge(&mut self, other: &Bin) {
        if other.frames == 0 {
            return;
        }
        if self.frames == 0 {
            *self = *other;
            return;
        }
        self.lo = self.lo.min(other.lo);
        self.hi = self.hi.max(other.hi);
        self.frames = self.frames.saturating_add(other.frames);
        self.retransmitted = self.retransmitted.saturating_add(other.retransmitted);
        self.bytes += other.bytes;
        self.new_bytes += other.new_bytes;
    }
}

/// A flow's data datagrams in fixed time bins from its first one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binned {
    /// The start of the first bin (the first data datagram's time).
    pub origin_ns: i64,
    pub width_ns: i64,
    pub bins: Vec<Bin>,
}

impl Binned {
    pub fn new(origin_ns: i64) -> Binned {
        Binned {
            origin_ns,
            width_ns: FIRST_WIDTH_NS,
            bins: Vec::new(),
        }
    }

    /// One data datagram at `ts_ns`; returns how many bins were added (for
    /// the table's budget). A datagram stamped before the origin (files
    /// merged with clocks apart) counts in the first bin.
    pub fn push(
        &mut self,
        ts_ns: i64,
        place: u32,
        bytes: u64,
        new: bool,
        retransmitted: bool,
    ) -> usize {
        let offset = ts_ns.saturating_sub(self.origin_ns).max(0);
        let mut index = offset / self.width_ns;
        while index >= MAX_BINS as i64 {
            self.merge_pairs();
            index = offset / self.width_ns;
        }
        let index = index as usize;
        let before = self.bins.len();
        if self.bins.len() <= index {
            self.bins.resize(index + 1, Bin::default());
        }
        if let Some(b) = self.bins.get_mut(index) {
            b.add(place, bytes, new, retransmitted);
        }
        self.bins.len().saturating_sub(before)
    }

    /// Doubles the width: bins 2k and 2k+1 become bin k.
    fn merge_pairs(&mut self) {
        let merged: Vec<Bin> = self
            .bins
            .chunks(2)
            .map(|pair| {
                let mut b = pair.first().copied().unwrap_or_default();
                if let Some(second) = pair.get(1) {
                    b.merge(second);
                }
                b
            })
            .collect();
        self.bins = merged;
        self.width_ns = self.width_ns.saturating_mul(2);
    }

    /// The start of bin `i`, in ns.
    pub fn start_ns(&self, i: usize) -> i64 {
        self.origin_ns
            .saturating_add(self.width_ns.saturating_mul(i as i64))
    }

    /// The end of the last bin holding data.
    pub fn end_ns(&self) -> i64 {
        self.start_ns(self.bins.len())
    }
}

/// One TCP segment of a control connection, as the ladder draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub at_ns: i64,
    pub from: Side,
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    /// Where its payload starts in its direction's stream.
    pub offset: u64,
    pub len: u32,
    /// The first payload byte captured: a v1 frame's kind when a message
    /// starts the segment.
    pub first_byte: Option<u8>,
}

/// Segments kept over all connections (about 2.5 MiB), each trace taking
/// its most ([`TRACE_SEGMENTS`]) when it starts; connections beyond it
/// are drawn without a ladder.
pub const SEGMENT_BUDGET: usize = 1 << 16;
/// Segments kept from the start of a connection, and from its end.
pub const HEAD_SEGMENTS: usize = 48;
const TAIL_SEGMENTS: usize = 16;
/// The most segments one trace keeps.
pub const TRACE_SEGMENTS: usize = HEAD_SEGMENTS + TAIL_SEGMENTS;

/// The segments of a control connection that the ladder shows: the
/// handshake, those carrying bytes and the teardown, the first and last
/// few of them when there are many.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub head: Vec<Segment>,
    pub tail: VecDeque<Segment>,
    /// Segments between the head and the tail that were not kept.
    pub skipped: u64,
    /// The handshake's last ACK was kept.
    ack_kept: bool,
}

impl Trace {
    /// One segment; bare ACKs are kept only for the handshake.
    pub fn push(&mut self, s: Segment, handshake_ack: bool) {
        let bare_ack = !(s.syn || s.fin || s.rst) && s.len == 0;
        if bare_ack {
            let the_handshakes = handshake_ack && !self.ack_kept;
            if !the_handshakes {
                return;
            }
            self.ack_kept = true;
        }
        if self.head.len() < HEAD_SEGMENTS {
            self.head.push(s);
            return;
        }
        if self.tail.len() == TAIL_SEGMENTS {
            self.tail.pop_front();
            self.skipped += 1;
        }
        self.tail.push_back(s);
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.head.iter().chain(self.tail.iter())
    }
}

/// What one client's pictures are drawn from.
#[derive(Debug, Clone, Default)]
pub struct ClientSeries {
    /// Its data flow at each capture point, in path order: the point's
    /// label and the flow's bins.
    pub flows: Vec<(String, Binned)>,
    /// Its registration, when the control connection was captured.
    pub ladder: Option<Ladder>,
    /// v1: the sequence numbers the client reported missing, and whether
    /// its list was cut short.
    pub missing: Option<(Vec<SeqRange>, bool)>,
}

/// One segment of the ladder: the segment, the kinds of control message
/// that start in it, and its label.
#[derive(Debug, Clone)]
pub struct Step {
    pub segment: Segment,
    pub carries: Vec<Carried>,
    pub label: String,
}

/// A control connection's segments, each with the messages it carries.
#[derive(Debug, Clone)]
pub struct Ladder {
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// The capture point that saw it.
    pub point: String,
    pub steps: Vec<Step>,
    /// Segments left out between the first and the last ones.
    pub skipped: u64,
}

impl ClientSeries {
    /// From a joined transfer; `None` when its flows and connection were
    /// followed without pictures.
    pub fn of(t: &Transfer, points: &[CapturePoint]) -> Option<ClientSeries> {
        let label = |point: usize| {
            points
                .get(point)
                .map(|p| p.label.clone())
                .unwrap_or_default()
        };
        let flows: Vec<(String, Binned)> = t
            .flows
            .iter()
            .filter_map(|f| Some((label(f.point), f.series.as_deref()?.clone())))
            .collect();
        let speaks_v1 = t.registration.and_then(|r| r.protocol()) == Some(Protocol::V1);
        let ladder = t.connection.and_then(|c| {
            let trace = c.trace.as_deref()?;
            Some(Ladder {
                client: c.client,
                server: c.server,
                point: label(c.point),
                steps: label_segments(trace, &message_spans(c), speaks_v1),
                skipped: trace.skipped,
            })
        });
        if flows.is_empty() && ladder.is_none() {
            return None;
        }
        Some(ClientSeries {
            flows,
            ladder,
            missing: reported_missing(t),
        })
    }

    /// Times of the client's reports that data followed: each asks for a
    /// repair round (the reliable mode).
    pub fn repair_requests(&self) -> Vec<i64> {
        let end = self.data_end_ns().unwrap_or(i64::MIN);
        let Some(l) = &self.ladder else {
            return Vec::new();
        };
        l.steps
            .iter()
            .filter(|s| s.segment.from == Side::Client && s.carries.contains(&Carried::Report))
            .map(|s| s.segment.at_ns)
            .filter(|&t| t < end)
            .collect()
    }

    /// The first data datagram over every capture point.
    pub fn data_start_ns(&self) -> Option<i64> {
        self.flows.iter().map(|(_, b)| b.origin_ns).min()
    }

    /// The end of the last data bin over every capture point.
    pub fn data_end_ns(&self) -> Option<i64> {
        self.flows.iter().map(|(_, b)| b.end_ns()).max()
    }
}

/// Each segment with what it carries: its flags, and the control messages
/// that start in its bytes.
fn label_segments(trace: &Trace, spans: &[Span], v1: bool) -> Vec<Step> {
    trace
        .segments()
        .map(|s| {
            let mut parts: Vec<String> = Vec::new();
            let mut carries = Vec::new();
            let flags = [
                (s.syn && !s.ack, "SYN"),
                (s.syn && s.ack, "SYN-ACK"),
                (s.fin, "FIN"),
                (s.rst, "RST"),
            ];
            parts.extend(flags.iter().filter(|f| f.0).map(|f| f.1.to_string()));
            if s.len == 0 && !(s.syn || s.fin || s.rst) {
                parts.push("ACK".into());
            }
            if s.len > 0 {
                let end = s.offset + u64::from(s.len);
                let here: Vec<&Span> = spans
                    .iter()
                    .filter(|m| m.from == s.from && (s.offset..end).contains(&m.offset))
                    .collect();
                carries.extend(here.iter().map(|m| m.what));
                let carried: Vec<&str> = here.iter().map(|m| m.label.as_str()).collect();
                let framed = s.offset >= framed_from(s.from);
                let kind = s
                    .first_byte
                    .filter(|_| framed && v1)
                    .and_then(v1::kind_name);
                if let (true, Some(kind)) = (carried.is_empty(), kind) {
                    // The capture cut the message: its kind is all it shows.
                    parts.push(format!("{kind} ({} bytes, cut by the capture)", s.len));
                } else if carried.is_empty() {
                    parts.push(format!("{} bytes", s.len));
                } else {
                    parts.push(carried.join(", "));
                }
            }
            Step {
                segment: *s,
                carries,
                label: parts.join(" "),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_merge_in_pairs_and_keep_every_datagram() {
        let mut b = Binned::new(1_000);
        let mut added = 0;
        // One datagram per ms for 5000 ms: more than MAX_BINS bins of 1 ms.
        for i in 0..5000u32 {
            added += b.push(1_000 + i64::from(i) * 1_000_000, i, 100, i % 2 == 0, i == 7);
        }
        assert!(b.bins.len() <= MAX_BINS);
        assert_eq!(b.width_ns, 8_000_000);
        assert!(added >= b.bins.len());
        let frames: u64 = b.bins.iter().map(|x| u64::from(x.frames)).sum();
        let bytes: u64 = b.bins.iter().map(|x| x.bytes).sum();
        let new: u64 = b.bins.iter().map(|x| x.new_bytes).sum();
        let resent: u32 = b.bins.iter().map(|x| x.retransmitted).sum();
        assert_eq!((frames, bytes, new, resent), (5000, 500_000, 250_000, 1));
        assert_eq!((b.bins[0].lo, b.bins[0].hi), (0, 7));
        assert_eq!(b.bins.last().map(|x| x.hi), Some(4999));
        assert!(b.end_ns() > 1_000 + 4999 * 1_000_000);
    }

    #[test]
    fn early_datagram_counts_in_the_first_bin() {
        let mut b = Binned::new(10_000_000);
        b.push(10_000_000, 3, 10, true, false);
        b.push(5, 1, 10, true, false);
        assert_eq!(b.bins.len(), 1);
        assert_eq!((b.bins[0].lo, b.bins[0].hi, b.bins[0].frames), (1, 3, 2));
    }

    fn seg(at_ns: i64, len: u32) -> Segment {
        Segment {
            at_ns,
            from: Side::Client,
            syn: false,
            ack: true,
            fin: false,
            rst: false,
            offset: 0,
            len,
            first_byte: None,
        }
    }

    #[test]
    fn trace_keeps_head_and_tail() {
        let mut t = Trace::default();
        t.push(seg(0, 0), true);
        t.push(seg(1, 0), true); // a second bare ACK: not the handshake's
        for i in 0..100 {
            t.push(seg(10 + i, 5), false);
        }
        assert_eq!(t.head.len(), HEAD_SEGMENTS);
        assert_eq!(t.tail.len(), TAIL_SEGMENTS);
        assert_eq!(t.skipped, 101 - (HEAD_SEGMENTS + TAIL_SEGMENTS) as u64);
        assert_eq!(t.segments().last().map(|s| s.at_ns), Some(109));
        assert_eq!(t.head[1].at_ns, 10);
    }
}
