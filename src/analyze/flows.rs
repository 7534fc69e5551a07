//! UDP flows: one per (capture point, source, destination), each with what a
//! file transfer needs counted: frames, the lab's name and size datagrams,
//! data datagrams and how many carried a full chunk, silences, ICMP
//! port-unreachable replies, and for udplab's v1 headers the sequence
//! numbers (missing ranges, duplicates, reordering, RFC 3550 jitter).
//!
//! Memory grows with the number of flows, never with the number of packets:
//! a flow keeps counters and, for v1, one bit per sequence number.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::decode::{Icmp, Udp};
use super::series::{BIN_BUDGET, Binned};
use crate::protocol::{Protocol, lab, v1};

/// The most flows the table follows; datagrams of further flows are counted
/// as skipped, so that a capture of a port scan cannot exhaust memory.
pub const MAX_FLOWS: usize = 32_768;
/// Sequence numbers tracked per v1 flow (one bit each: 4 MiB per flow).
pub const MAX_TRACKED_SEQ: u32 = 1 << 25;
/// Bits of sequence bitmap over all flows (8 MiB), beyond which further
/// flows are counted without their sequence detail.
const SEQ_BUDGET_BITS: u64 = 1 << 26;

/// A directed UDP flow: from `src` to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// One flow, as far as the capture saw it.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Index of the capture point (the file) that saw it.
    pub point: usize,
    pub key: FlowKey,
    /// The transfer protocol its datagrams turned out to speak; `None` while
    /// nothing is recognisable (or ever).
    pub protocol: Option<Protocol>,
    /// Every datagram of the flow.
    pub frames: u64,
    /// Sum of UDP payload lengths.
    pub payload_bytes: u64,
    pub first_ns: i64,
    pub last_ns: i64,
    /// The longest time between two consecutive datagrams, and when it began.
    pub longest_silence_ns: i64,
    pub longest_silence_at_ns: Option<i64>,
    /// The lab's name datagram, if seen (lossy UTF-8).
    pub file_name: Option<String>,
    /// The lab's size datagram, if seen.
    pub file_size: Option<u64>,
    /// Datagrams that were neither name, size nor (for v1) a valid header.
    pub other_frames: u64,
    pub data: DataStats,
    pub seq: Option<SeqStats>,
    /// ICMP port-unreachable messages quoting a datagram of this flow.
    pub icmp_unreachable: u64,
    pub first_icmp_ns: Option<i64>,
    /// Its data datagrams binned by time, when pictures are asked for.
    pub series: Option<Box<Binned>>,
}

/// The data datagrams of a flow.
#[derive(Debug, Clone, Default)]
pub struct DataStats {
    pub frames: u64,
    /// Data datagrams whose UDP payload is a full datagram (the chunk size).
    pub full_frames: u64,
    /// File bytes carried (v1 headers excluded).
    pub bytes: u64,
    /// File bytes of the largest data datagram (a full chunk, but for a
    /// file shorter than one).
    pub max_file_bytes: u64,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    /// Frame lengths (as on the link) of the full frames, with counts; the
    /// first few distinct lengths only.
    pub full_frame_lens: Vec<(u32, u64)>,
}

impl DataStats {
    /// The most common frame length of the full frames.
    pub fn full_frame_len(&self) -> Option<u32> {
        self.full_frame_lens
            .iter()
            .max_by_key(|&&(len, n)| (n, std::cmp::Reverse(len)))
            .map(|&(len, _)| len)
    }

    /// File bytes of a full data datagram, as far as the flow shows it.
    pub fn chunk(&self) -> Option<u64> {
        (self.max_file_bytes > 0).then_some(self.max_file_bytes)
    }

    /// Seconds from the first to the last data datagram.
    pub fn duration_s(&self) -> Option<f64> {
        Some(self.last_ns?.saturating_sub(self.first_ns?) as f64 / 1e9)
    }
}

/// Sequence-number facts of a v1 flow.
#[derive(Debug, Clone, Default)]
pub struct SeqStats {
    /// One bit per sequence number seen, up to [`MAX_TRACKED_SEQ`].
    seen: Vec<u64>,
    /// Distinct sequence numbers seen.
    pub distinct: u64,
    /// File bytes carried by the first copy of each distinct sequence
    /// number (v1 headers excluded): what the wire delivered of the file.
    pub distinct_bytes: u64,
    pub duplicates: u64,
    /// Datagrams with the retransmission flag.
    pub retransmitted: u64,
    /// Datagrams that arrived after one with a higher sequence number.
    pub reordered: u64,
    pub highest: Option<u32>,
    /// Datagrams whose sequence number was beyond what could be tracked.
    pub untracked: u64,
    /// RFC 3550 interarrival jitter, microseconds.
    pub jitter_us: f64,
    last_transit_us: Option<i64>,
}

impl SeqStats {
    fn record(
        &mut self,
        seq: u32,
        file_bytes: usize,
        retransmit: bool,
        arrival_ns: i64,
        send_us: u64,
    ) {
        if retransmit {
            self.retransmitted += 1;
        }
        if seq >= MAX_TRACKED_SEQ {
            self.untracked += 1;
            return;
        }
        let word = (seq / 64) as usize;
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        let bit = 1u64 << (seq % 64);
        // `word` is in bounds: resized just above.
        let slot = &mut self.seen[word];
        if *slot & bit != 0 {
            self.duplicates += 1;
            return;
        }
        *slot |= bit;
        self.distinct += 1;
        self.distinct_bytes += file_bytes as u64;
        match self.highest {
            Some(h) if seq < h => self.reordered += 1,
            _ => self.highest = Some(seq),
        }
        // RFC 3550 appendix A.8: J += (|D| - J) / 16, D the change in transit
        // time. Clocks of sender and capture need not agree: only the change
        // matters.
        let send_us = i64::try_from(send_us).unwrap_or(i64::MAX);
        let transit = arrival_ns.div_euclid(1000).saturating_sub(send_us);
        if let Some(prev) = self.last_transit_us {
            let d = transit.saturating_sub(prev).unsigned_abs() as f64;
            self.jitter_us += (d - self.jitter_us) / 16.0;
        }
        self.last_transit_us = Some(transit);
    }

    pub fn was_seen(&self, seq: u32) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1u64 << (seq % 64)) != 0)
    }

    /// How many sequence numbers below `count` were seen; `None` past what
    /// is tracked.
    pub fn distinct_below(&self, count: u32) -> Option<u64> {
        match count.checked_sub(1) {
            Some(last) => self.seen_in(0, last),
            None => Some(0),
        }
    }

    /// How many sequence numbers in `first..=last` were seen; `None` past
    /// what is tracked.
    pub fn seen_in(&self, first: u32, last: u32) -> Option<u64> {
        if last >= MAX_TRACKED_SEQ || last < first {
            return (last < first).then_some(0);
        }
        let mut n = 0u64;
        let mut seq = first;
        while seq <= last {
            let word = (seq / 64) as usize;
            let w = self.seen.get(word).copied().unwrap_or(0);
            let lo = seq % 64;
            let hi = if last / 64 == seq / 64 { last % 64 } else { 63 };
            let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
            n += u64::from((w & mask).count_ones());
            match (word as u32 + 1).checked_mul(64) {
                Some(next) => seq = next,
                None => break,
            }
        }
        Some(n)
    }

    /// Inclusive ranges of sequence numbers in `0..count` never seen; at most
    /// `limit` ranges, with the total number of missing numbers.
    pub fn missing(&self, count: u32, limit: usize) -> (Vec<(u32, u32)>, u64) {
        let mut ranges = Vec::new();
        let mut total = 0u64;
        let mut start: Option<u32> = None;
        let end = count.min(MAX_TRACKED_SEQ);
        let mut seq = 0u32;
        while seq < end {
            // Skip whole words seen in full.
            if seq.is_multiple_of(64)
                && start.is_none()
                && end - seq >= 64
                && self.seen.get((seq / 64) as usize) == Some(&u64::MAX)
            {
                seq += 64;
                continue;
            }
            if self.was_seen(seq) {
                if let Some(s) = start.take() {
                    total += u64::from(seq - s);
                    if ranges.len() < limit {
                        ranges.push((s, seq - 1));
                    }
                }
            } else if start.is_none() {
                start = Some(seq);
            }
            seq += 1;
        }
        if let Some(s) = start {
            total += u64::from(end - s);
            if ranges.len() < limit {
                ranges.push((s, end - 1));
            }
        }
        (ranges, total)
    }

    fn bits(&self) -> u64 {
        self.seen.len() as u64 * 64
    }
}

/// Where a flow is in the lab's opening (name, size, data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    Start,
    AfterName,
    Data,
}

#[derive(Debug)]
struct State {
    flow: Flow,
    opening: Opening,
}

/// The flow table: fed one UDP datagram or ICMP error at a time.
#[derive(Debug)]
pub struct FlowTable {
    /// Payload length of a full data datagram (the lab's chunk).
    chunk: usize,
    /// The flows in order of appearance, found through `index`: a vector
    /// of states and a map of small indices take far less memory than a
    /// map of states at its spare capacity.
    flows: Vec<State>,
    index: HashMap<(usize, FlowKey), u32>,
    /// The last flow looked up: consecutive datagrams are mostly of one flow.
    last: Option<((usize, FlowKey), u32)>,
    /// ICMP errors quoting a flow not (yet) in the table.
    icmp_orphans: HashMap<(usize, FlowKey), (u64, i64)>,
    /// Datagrams not followed because the table was full.
    pub overflow: u64,
    seq_bits: u64,
    /// Bin each flow's data datagrams by time (for the pictures).
    series: bool,
    /// Bins over all flows.
    bins: usize,
}

impl FlowTable {
    pub fn new(chunk: usize) -> FlowTable {
        FlowTable {
            chunk,
            flows: Vec::new(),
            index: HashMap::new(),
            last: None,
            icmp_orphans: HashMap::new(),
            overflow: 0,
            seq_bits: 0,
            series: false,
            bins: 0,
        }
    }

    /// Bin each flow's data datagrams by time, for the pictures.
    pub fn with_series(mut self) -> FlowTable {
        self.series = true;
        self
    }

    /// One data datagram into its flow's series, while the budget lasts.
    fn bin(&mut self, i: usize, ts_ns: i64, place: u32, bytes: usize, new: bool, resent: bool) {
        if !self.series {
            return;
        }
        let Some(state) = self.flows.get_mut(i) else {
            return;
        };
        let series = &mut state.flow.series;
        if series.is_none() && self.bins < BIN_BUDGET {
            *series = Some(Box::new(Binned::new(ts_ns)));
        }
        if let Some(b) = series.as_mut() {
            self.bins += b.push(ts_ns, place, bytes as u64, new, resent);
        }
    }

    /// One UDP datagram of `frame_len` bytes on the link, seen at `point`.
    pub fn ingest_udp(
        &mut self,
        point: usize,
        key: FlowKey,
        ts_ns: i64,
        frame_len: u32,
        udp: &Udp,
    ) {
        let Some(i) = self.slot(point, key, ts_ns) else {
            self.overflow += 1;
            return;
        };
        let Some(state) = self.flows.get_mut(i) else {
            return;
        };
        let f = &mut state.flow;
        if f.frames > 0 {
            let gap = ts_ns.saturating_sub(f.last_ns);
            if gap > f.longest_silence_ns {
                f.longest_silence_ns = gap;
                f.longest_silence_at_ns = Some(f.last_ns);
            }
        }
        f.frames += 1;
        f.payload_bytes += udp.payload_len as u64;
        f.last_ns = f.last_ns.max(ts_ns);

        let full = udp.payload_len == self.chunk;
        // v1 is recognised by its header; the lab's opening by position.
        if f.protocol != Some(Protocol::Lab)
            && udp.payload.get(..3) == Some(&[v1::MAGIC[0], v1::MAGIC[1], v1::VERSION])
            && let Ok((header, _)) = v1::DataHeader::parse(udp.payload)
        {
            f.protocol = Some(Protocol::V1);
            state.opening = Opening::Data;
            let file_bytes = udp.payload_len.saturating_sub(v1::HEADER_LEN);
            f.data.record(ts_ns, frame_len, file_bytes, full);
            let budget_left = self.seq_bits < SEQ_BUDGET_BITS;
            let seq = f.seq.get_or_insert_with(SeqStats::default);
            let grows = (header.seq / 64) as usize >= seq.seen.len();
            let new = !seq.was_seen(header.seq);
            let resent = header.flags & v1::FLAG_RETRANSMIT != 0;
            if budget_left || !grows {
                let before = seq.bits();
                seq.record(
                    header.seq,
                    file_bytes,
                    header.flags & v1::FLAG_RETRANSMIT != 0,
                    ts_ns,
                    header.send_time_us,
                );
                self.seq_bits += seq.bits() - before;
            } else {
                seq.untracked += 1;
            }
            self.bin(i, ts_ns, header.seq, file_bytes, new, resent);
            return;
        }
        if f.protocol == Some(Protocol::V1) {
            f.other_frames += 1;
            return;
        }
        match state.opening {
            Opening::Start if looks_like_name(udp) => {
                f.file_name = Some(String::from_utf8_lossy(udp.payload).into_owned());
                f.protocol = Some(Protocol::Lab);
                state.opening = Opening::AfterName;
            }
            Opening::AfterName
                if udp.payload_len == lab::SIZE_DATAGRAM_LEN
                    && udp.payload.len() == lab::SIZE_DATAGRAM_LEN =>
            {
                f.file_size = lab::parse_size(udp.payload).ok();
                state.opening = Opening::Data;
            }
            _ => {
                // A flow first seen mid-transfer: bare chunks are the lab's.
                if f.protocol.is_none() && full {
                    f.protocol = Some(Protocol::Lab);
                }
                state.opening = Opening::Data;
                if f.protocol == Some(Protocol::Lab) {
                    f.data.record(ts_ns, frame_len, udp.payload_len, full);
                    let place = u32::try_from(f.data.frames - 1).unwrap_or(u32::MAX);
                    self.bin(i, ts_ns, place, udp.payload_len, true, false);
                } else {
                    f.other_frames += 1;
                }
            }
        }
    }

    /// The index of the flow `(point, key)`, added if new and there is room.
    fn slot(&mut self, point: usize, key: FlowKey, ts_ns: i64) -> Option<usize> {
        if let Some((k, i)) = self.last
            && k == (point, key)
        {
            return Some(i as usize);
        }
        let i = match self.index.get(&(point, key)) {
            Some(&i) => i,
            None => {
                if self.flows.len() >= MAX_FLOWS {
                    return None;
                }
                let i = self.flows.len() as u32;
                self.flows.push(State {
                    flow: Flow::new(point, key, ts_ns),
                    opening: Opening::Start,
                });
                self.index.insert((point, key), i);
                i
            }
        };
        self.last = Some(((point, key), i));
        Some(i as usize)
    }

    /// An ICMP message; port-unreachable errors are charged to the flow
    /// they quote.
    pub fn ingest_icmp(&mut self, point: usize, ts_ns: i64, icmp: &Icmp) {
        let (true, Some(q)) = (icmp.port_unreachable, icmp.quoted) else {
            return;
        };
        let key = FlowKey {
            src: SocketAddr::new(q.src, q.src_port),
            dst: SocketAddr::new(q.dst, q.dst_port),
        };
        let known = self.index.get(&(point, key)).copied();
        if let Some(state) = known.and_then(|i| self.flows.get_mut(i as usize)) {
            state.flow.icmp_unreachable += 1;
            state.flow.first_icmp_ns.get_or_insert(ts_ns);
        } else if self.icmp_orphans.len() < MAX_FLOWS {
            let e = self.icmp_orphans.entry((point, key)).or_insert((0, ts_ns));
            e.0 += 1;
        }
    }

    /// Every flow, ordered by capture point, then first time, then key.
    pub fn finish(self) -> Vec<Flow> {
        let mut orphans = self.icmp_orphans;
        drop(self.index);
        let mut flows: Vec<Flow> = self
            .flows
            .into_iter()
            .map(|s| {
                let mut f = s.flow;
                if let Some((n, at)) = orphans.remove(&(f.point, f.key)) {
                    f.icmp_unreachable += n;
                    f.first_icmp_ns = Some(f.first_icmp_ns.map_or(at, |t| t.min(at)));
                }
                f
            })
            .collect();
        flows.sort_by_key(|f| (f.point, f.first_ns, f.key));
        flows
    }
}

impl Flow {
    fn new(point: usize, key: FlowKey, ts_ns: i64) -> Flow {
        Flow {
            point,
            key,
            protocol: None,
            frames: 0,
            payload_bytes: 0,
            first_ns: ts_ns,
            last_ns: ts_ns,
            longest_silence_ns: 0,
            longest_silence_at_ns: None,
            file_name: None,
            file_size: None,
            other_frames: 0,
            data: DataStats::default(),
            seq: None,
            icmp_unreachable: 0,
            first_icmp_ns: None,
            series: None,
        }
    }
}

impl DataStats {
    fn record(&mut self, ts_ns: i64, frame_len: u32, file_bytes: usize, full: bool) {
        self.frames += 1;
        self.bytes += file_bytes as u64;
        self.max_file_bytes = self.max_file_bytes.max(file_bytes as u64);
        self.first_ns.get_or_insert(ts_ns);
        self.last_ns = Some(self.last_ns.map_or(ts_ns, |t| t.max(ts_ns)));
        if full {
            self.full_frames += 1;
            if let Some(e) = self.full_frame_lens.iter_mut().find(|e| e.0 == frame_len) {
                e.1 += 1;
            } else if self.full_frame_lens.len() < 8 {
                self.full_frame_lens.push((frame_len, 1));
            }
        }
    }
}

/// The lab's first datagram: a short file name, captured whole, printable.
fn looks_like_name(udp: &Udp) -> bool {
    let p = udp.payload;
    !p.is_empty()
        && udp.payload_len == p.len()
        && p.len() <= lab::MAX_NAME_LEN
        && std::str::from_utf8(p).is_ok_and(|s| !s.chars().any(char::is_control))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sport: u16, dport: u16) -> FlowKey {
        FlowKey {
            src: SocketAddr::from(([127, 0, 0, 1], sport)),
            dst: SocketAddr::from(([127, 0, 0, 1], dport)),
        }
    }

    fn udp(payload: &[u8], payload_len: usize) -> Udp<'_> {
        Udp {
            src_port: 5006,
            dst_port: 40000,
            payload_len,
            payload,
        }
    }

    #[test]
    fn lab_opening_then_chunks_cut_by_snaplen() {
        let mut t = FlowTable::new(1024);
        let k = key(5006, 40000);
        t.ingest_udp(0, k, 1_000, 52, &udp(b"100MB.bin", 9));
        t.ingest_udp(0, k, 2_000, 50, &udp(&2100u64.to_le_bytes(), 8));
        let chunk = [0xAB; 30];
        t.ingest_udp(0, k, 3_000, 1066, &udp(&chunk, 1024));
        t.ingest_udp(0, k, 9_000, 1066, &udp(&chunk, 1024));
        t.ingest_udp(0, k, 10_000, 94, &udp(&chunk, 52));
        let flows = t.finish();
        assert_eq!(flows.len(), 1);
        let f = &flows[0];
        assert_eq!(f.protocol, Some(Protocol::Lab));
        assert_eq!(f.file_name.as_deref(), Some("100MB.bin"));
        assert_eq!(f.file_size, Some(2100));
        assert_eq!(f.frames, 5);
        assert_eq!(f.data.frames, 3);
        assert_eq!(f.data.full_frames, 2);
        assert_eq!(f.data.bytes, 2100);
        assert_eq!(f.data.full_frame_len(), Some(1066));
        assert_eq!(f.longest_silence_ns, 6_000);
        assert_eq!(f.longest_silence_at_ns, Some(3_000));
        assert_eq!(f.data.duration_s(), Some(7e-6));
    }

    #[test]
    fn flow_seen_from_the_middle_is_lab_data() {
        let mut t = FlowTable::new(1024);
        let chunk = [b'a'; 40];
        t.ingest_udp(0, key(5006, 1), 0, 1066, &udp(&chunk, 1024));
        let f = &t.finish()[0];
        assert_eq!(
            (f.protocol, f.data.frames, f.file_name.clone()),
            (Some(Protocol::Lab), 1, None)
        );
    }

    fn v1_datagram(seq: u32, flags: u8, send_us: u64) -> Vec<u8> {
        let mut d = v1::DataHeader {
            flags,
            seq,
            send_time_us: send_us,
        }
        .emit()
        .to_vec();
        d.extend_from_slice(&[0; 14]);
        d
    }

    #[test]
    fn v1_sequence_facts() {
        let mut t = FlowTable::new(1024);
        let k = key(5006, 40000);
        // 0, 1, 3, 2 (reordered), 3 again (duplicate), 5 retransmitted; 4 missing.
        for (i, (seq, flags)) in [
            (0, 0),
            (1, 0),
            (3, 0),
            (2, 0),
            (3, 0),
            (5, v1::FLAG_RETRANSMIT),
        ]
        .into_iter()
        .enumerate()
        {
            let d = v1_datagram(seq, flags, 1000 + i as u64 * 10);
            // Arrivals every 10 µs apart except one 30 µs late: jitter > 0.
            let at = if i == 2 { 40_000 } else { (i as i64) * 10_000 };
            t.ingest_udp(0, k, 1_000_000 + at, 1066, &udp(&d, 1024));
        }
        let f = &t.finish()[0];
        assert_eq!(f.protocol, Some(Protocol::V1));
        assert_eq!(f.data.frames, 6);
        assert_eq!(f.data.full_frames, 6);
        assert_eq!(f.data.bytes, 6 * 1008);
        let s = f.seq.as_ref().unwrap();
        assert_eq!(
            (s.distinct, s.duplicates, s.reordered, s.retransmitted),
            (5, 1, 1, 1)
        );
        assert_eq!(s.highest, Some(5));
        assert!(s.jitter_us > 0.0);
        assert_eq!(s.missing(8, 10), (vec![(4, 4), (6, 7)], 3));
        assert_eq!(s.missing(8, 1), (vec![(4, 4)], 3));
    }

    /// A reliable-mode flow: a first pass of datagrams 0-4 with 2 and 4
    /// never on the wire, then a repair round resending 1, 2 and 4 with the
    /// retransmission flag (1 had crossed the capture point already: its
    /// copy was lost after it). The last datagram (4) is short.
    #[test]
    fn v1_repair_round_counts_copies_and_distinct_file_bytes() {
        let mut t = FlowTable::new(1024);
        let k = key(5006, 40000);
        let datagram = |seq: u32, flags: u8| {
            let len = if seq == 4 { 100 } else { 1024 };
            let mut d = v1_datagram(seq, flags, 0);
            d.resize(len, 0);
            d
        };
        let first_pass = [0, 1, 3].map(|s| (s, 0));
        let repair = [1, 2, 4].map(|s| (s, v1::FLAG_RETRANSMIT));
        for (i, (seq, flags)) in first_pass.into_iter().chain(repair).enumerate() {
            let d = datagram(seq, flags);
            let len = d.len();
            t.ingest_udp(0, k, i as i64 * 1_000, 42 + len as u32, &udp(&d, len));
        }
        let f = &t.finish()[0];
        assert_eq!(f.protocol, Some(Protocol::V1));
        // Every copy counts in the data: 5 full datagrams and the short one.
        assert_eq!(f.data.frames, 6);
        assert_eq!(f.data.bytes, 5 * 1008 + 84);
        let s = f.seq.as_ref().unwrap();
        assert_eq!(
            (s.distinct, s.duplicates, s.retransmitted, s.untracked),
            (5, 1, 3, 0)
        );
        // The file's bytes once each: 4 full chunks and the short last one.
        assert_eq!(s.distinct_bytes, 4 * 1008 + 84);
        assert_eq!(s.missing(5, 10), (vec![], 0));
    }

    /// Pictures asked for: each data datagram in its flow's bins, at its
    /// sequence number, a copy of one already seen not counted again in
    /// the goodput; the opening datagrams of the lab's protocol are not
    /// data. Not asked for: no series at all.
    #[test]
    fn series_bins_data_datagrams_only_when_asked() {
        let k = key(5006, 40000);
        let mut t = FlowTable::new(1024).with_series();
        for (i, seq) in [0u32, 1, 1, 3].into_iter().enumerate() {
            let d = v1_datagram(seq, 0, 0);
            t.ingest_udp(0, k, i as i64 * 1_000, 1066, &udp(&d, 1024));
        }
        let lab = key(5007, 40001);
        t.ingest_udp(0, lab, 0, 52, &udp(b"f.bin", 5));
        t.ingest_udp(0, lab, 1, 50, &udp(&2048u64.to_le_bytes(), 8));
        t.ingest_udp(0, lab, 2, 1066, &udp(&[0; 8], 1024));
        t.ingest_udp(0, lab, 3, 1066, &udp(&[0; 8], 1024));
        let flows = t.finish();
        let b = flows[0].series.as_deref().expect("v1 series");
        assert_eq!(b.bins.len(), 1);
        let bin = b.bins[0];
        assert_eq!((bin.frames, bin.lo, bin.hi), (4, 0, 3));
        assert_eq!((bin.bytes, bin.new_bytes), (4 * 1008, 3 * 1008));
        let b = flows[1].series.as_deref().expect("lab series");
        assert_eq!((b.bins[0].frames, b.bins[0].lo, b.bins[0].hi), (2, 0, 1));

        let mut t = FlowTable::new(1024);
        t.ingest_udp(0, k, 0, 1066, &udp(&v1_datagram(0, 0, 0), 1024));
        assert!(t.finish()[0].series.is_none());
    }

    #[test]
    fn missing_skips_full_words() {
        let mut s = SeqStats::default();
        for seq in (0..200).filter(|&q| q != 130) {
            s.record(seq, 8, false, 0, 0);
        }
        assert_eq!(s.missing(200, 10), (vec![(130, 130)], 1));
        assert_eq!(s.missing(64, 10), (vec![], 0));
        assert_eq!(SeqStats::default().missing(3, 10), (vec![(0, 2)], 3));
    }

    #[test]
    fn v1_flow_ignores_headerless_datagrams() {
        let mut t = FlowTable::new(1024);
        let k = key(5006, 40000);
        t.ingest_udp(0, k, 0, 1066, &udp(&v1_datagram(0, 0, 0), 1024));
        t.ingest_udp(0, k, 1, 100, &udp(b"junk", 4));
        let f = &t.finish()[0];
        assert_eq!((f.data.frames, f.other_frames), (1, 1));
    }

    #[test]
    fn icmp_is_charged_to_the_quoted_flow_even_before_it() {
        use super::super::decode::QuotedUdp;
        let mut t = FlowTable::new(1024);
        let k = key(5006, 40000);
        let icmp = Icmp {
            port_unreachable: true,
            icmp_type: 3,
            code: 3,
            quoted: Some(QuotedUdp {
                src: k.src.ip(),
                dst: k.dst.ip(),
                src_port: 5006,
                dst_port: 40000,
            }),
        };
        t.ingest_icmp(0, 5, &icmp);
        t.ingest_udp(0, k, 10, 1066, &udp(&[0; 8], 1024));
        t.ingest_icmp(0, 20, &icmp);
        t.ingest_icmp(1, 20, &icmp); // another capture point: not this flow
        let flows = t.finish();
        assert_eq!(flows.len(), 1);
        assert_eq!(
            (flows[0].icmp_unreachable, flows[0].first_icmp_ns),
            (2, Some(5))
        );
    }

    #[test]
    fn the_table_stops_growing_at_its_cap() {
        let mut t = FlowTable::new(1024);
        for i in 0..MAX_FLOWS + 5 {
            let k = FlowKey {
                src: SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], (i >> 16) as u16)),
                dst: SocketAddr::from(([127, 0, 0, 1], 9)),
            };
            t.ingest_udp(0, k, i as i64, 60, &udp(b"x", 1));
        }
        // A known flow still counts when the table is full.
        let first = FlowKey {
            src: SocketAddr::from(([10, 0, 0, 0], 0)),
            dst: SocketAddr::from(([127, 0, 0, 1], 9)),
        };
        t.ingest_udp(0, first, 0, 60, &udp(b"x", 1));
        assert_eq!(t.overflow, 5);
        assert_eq!(t.finish().len(), MAX_FLOWS);
    }

    #[test]
    fn flows_are_separate_per_point_and_ordered() {
        let mut t = FlowTable::new(1024);
        t.ingest_udp(1, key(1, 2), 5, 60, &udp(b"x", 1));
        t.ingest_udp(0, key(3, 4), 9, 60, &udp(b"x", 1));
        t.ingest_udp(0, key(1, 2), 7, 60, &udp(b"x", 1));
        let order: Vec<_> = t.finish().iter().map(|f| (f.point, f.first_ns)).collect();
        assert_eq!(order, vec![(0, 7), (0, 9), (1, 5)]);
    }
}
