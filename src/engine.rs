//! The logic of a v1 transfer as plain structs fed with events and time,
//! with no sockets and no clock of their own, so that every rule is tested
//! on its own:
//!
//! - [`Pacer`]: when the next batch may leave, for a rate in bits/s.
//! - [`RateControl`] (`rate.rs`): the reliable mode's adaptive rate (slow
//!   start, then the rate the client takes in, scaled by how far the queue
//!   it measures is from a target; `docs/PROTOCOL.md` says why).
//! - [`Repair`]: the server's book of what the client has confirmed, which
//!   datagrams the current pass sends, and which repair requests it refuses.
//! - [`Reception`]: the client's book of which datagrams it has, and what
//!   each arriving datagram is (new, duplicate, late, malformed).
//! - [`Transfer`] (`transfer.rs`): the server's side of one client's
//!   transfer, the passes, repair rounds, refusals, deadline and report
//!   timeout, as a state machine fed events that returns actions.

use std::time::{Duration, Instant};

use crate::protocol::v1::{self, Report, SeqRange};

mod rate;
mod transfer;
pub use rate::{GAIN, Phase, RateControl, Rule, TARGET_DELAY};
pub use transfer::{
    Abort, Action, Finish, MAX_REJECTED, MAX_STALLED_ROUNDS, MIN_RESEND_LIMIT, RESEND_FACTOR,
    ReportTaken, Run, Service, Transfer, TransferConfig,
};

/// Bits per second below which no rate goes: a transfer always moves.
pub const MIN_RATE: f64 = 1e6;
/// The rate the reliable mode starts at, when `--rate` is not lower.
pub const START_RATE: f64 = 100e6;
/// How often the client sends its feedback while data arrives, past the
/// transfer's first [`EARLY_FEEDBACK`].
pub const FEEDBACK_INTERVAL: Duration = Duration::from_millis(10);
/// How often the client sends its feedback in the transfer's first
/// [`EARLY_FEEDBACK`], while slow start may run.
pub const EARLY_FEEDBACK_INTERVAL: Duration = Duration::from_micros(2500);
/// From the client's `Start`, how long it reports at
/// [`EARLY_FEEDBACK_INTERVAL`].
pub const EARLY_FEEDBACK: Duration = Duration::from_millis(50);
/// Loss fraction of one feedback interval above which [`Rule::Loss`]
/// backs off.
pub const LOSS_THRESHOLD: f64 = 0.01;
/// With no feedback for this long while sending, the rate is halved.
pub const SILENCE: Duration = Duration::from_millis(250);
/// The most a paced sender sends at once: this much time at its rate.
pub const BURST: Duration = Duration::from_millis(1);

/// How long the client waits from one feedback to the next, `since` its
/// `Start` came. Slow start doubles the rate once per feedback, to at most
/// twice what the client took in, so the feedback's cadence sets how fast
/// it climbs but not how far above the path it can go: reporting four
/// times as often while it runs brings it from [`START_RATE`] to a
/// loopback's gigabits four times sooner. The steady rule moves
/// the rate by [`GAIN`] per feedback, and its stability needs the feedback
/// no more frequent than the lag allows: past [`EARLY_FEEDBACK`] the client
/// reports every [`FEEDBACK_INTERVAL`].
pub fn feedback_interval(since: Duration) -> Duration {
    if since < EARLY_FEEDBACK {
        EARLY_FEEDBACK_INTERVAL
    } else {
        FEEDBACK_INTERVAL
    }
}

/// Sequence numbers one page of a [`SeqSet`] holds.
pub const PAGE_SEQS: u32 = 4096;
/// Words of one page.
const PAGE_WORDS: usize = PAGE_SEQS as usize / 64;

/// A 1-bit-per-datagram set, in pages of [`PAGE_SEQS`] bits (512 bytes)
/// allocated as their first member arrives: an announce of many datagrams
/// costs a 4-byte slot per page until datagrams come (4 MiB for the most
/// v1 can announce), and a page is allocated only for a datagram that
/// arrived. Pages with no member are read as empty without being walked,
/// so counting and listing what is absent takes time in pages, words of
/// pages with members, and ranges, not in sequence numbers.
#[derive(Debug, Clone)]
pub struct SeqSet {
    /// Per page: 0 when it has no member, else its index in `pages` + 1.
    slots: Vec<u32>,
    pages: Vec<[u64; PAGE_WORDS]>,
    len: u32,
    count: u64,
    /// The first non-member (`len` when full), kept as members arrive so
    /// that the gapless prefix costs nothing to ask for: a member filling
    /// it moves it on a word at a time.
    gap: u32,
}

impl SeqSet {
    pub fn new(len: u32) -> SeqSet {
        SeqSet {
            slots: vec![0; len.div_ceil(PAGE_SEQS) as usize],
            pages: Vec::new(),
            len,
            count: 0,
            gap: 0,
        }
    }

    /// The words of page `p`, if it has any member.
    fn page(&self, p: usize) -> Option<&[u64; PAGE_WORDS]> {
        let slot = *self.slots.get(p)?;
        (slot != 0).then(|| &self.pages[slot as usize - 1])
    }

    /// Word `w` of the set (0 in a page with no member).
    fn word(&self, w: usize) -> u64 {
        self.page(w / PAGE_WORDS)
            .map_or(0, |page| page[w % PAGE_WORDS])
    }

    pub fn contains(&self, seq: u32) -> bool {
        self.word(seq as usize / 64) & (1 << (seq % 64)) != 0
    }

    /// Add `seq`; false if it was there already or is out of range.
    pub fn insert(&mut self, seq: u32) -> bool {
        if seq >= self.len {
            return false;
        }
        let p = (seq / PAGE_SEQS) as usize;
        if self.slots[p] == 0 {
            self.pages.push([0; PAGE_WORDS]);
            // At most 2^20 pages: the index fits.
            self.slots[p] = self.pages.len() as u32;
        }
        let page = &mut self.pages[self.slots[p] as usize - 1];
        let w = &mut page[(seq % PAGE_SEQS) as usize / 64];
        let bit = 1u64 << (seq % 64);
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.count += 1;
        if seq == self.gap {
            self.gap = self.absent_from(seq);
        }
        true
    }

    /// Members.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.count == u64::from(self.len)
    }

    /// How many of `lo..hi` are not members.
    pub fn absent_between(&self, lo: u32, hi: u32) -> u64 {
        let hi = hi.min(self.len);
        if lo >= hi {
            return 0;
        }
        let (lo, hi) = (lo as usize, hi as usize);
        let (first, last) = (lo / 64, (hi - 1) / 64);
        let mut present = 0u64;
        let mut word = first;
        while word <= last {
            let Some(page) = self.page(word / PAGE_WORDS) else {
                // No member in the rest of this page.
                word = (word / PAGE_WORDS + 1) * PAGE_WORDS;
                continue;
            };
            let mut mask = u64::MAX;
            if word == first {
                mask &= u64::MAX << (lo % 64);
            }
            if word == last && hi % 64 != 0 {
                mask &= u64::MAX >> (64 - hi % 64);
            }
            present += u64::from((page[word % PAGE_WORDS] & mask).count_ones());
            word += 1;
        }
        (hi - lo) as u64 - present
    }

    /// The first non-member, if any.
    pub fn first_absent(&self) -> Option<u32> {
        (self.gap < self.len).then_some(self.gap)
    }

    /// The first non-member from `start` on, or `len`: a word at a time.
    fn absent_from(&self, start: u32) -> u32 {
        let words = (self.len as usize).div_ceil(64);
        let mut word = start as usize / 64;
        // Members below `start` in its word do not count.
        let mut below = (1u64 << (start % 64)) - 1;
        while word < words {
            let Some(page) = self.page(word / PAGE_WORDS) else {
                let seq = (word as u64 * 64).max(u64::from(start));
                return seq.min(u64::from(self.len)) as u32;
            };
            let free = !(page[word % PAGE_WORDS] | below);
            if free != 0 {
                let seq = word as u64 * 64 + u64::from(free.trailing_zeros());
                return seq.min(u64::from(self.len)) as u32;
            }
            below = 0;
            word += 1;
        }
        self.len
    }

    /// The non-members as ranges, in order, at most `max` of them; and
    /// whether any were left out. A word at a time: whole words and pages
    /// with no member, or no gap, are passed over at once.
    pub fn absent_ranges(&self, max: usize) -> (Vec<SeqRange>, bool) {
        let mut out: Vec<SeqRange> = Vec::new();
        // The range being built: its first sequence number.
        let mut open: Option<u64> = None;
        let len = u64::from(self.len);
        let words = (self.len as usize).div_ceil(64);
        let mut word = 0usize;
        while word < words {
            let base = word as u64 * 64;
            let (free, step) = match self.page(word / PAGE_WORDS) {
                // A page with no member: all of it absent.
                None => (None, PAGE_WORDS - word % PAGE_WORDS),
                Some(page) => (Some(!page[word % PAGE_WORDS]), 1),
            };
            word += step;
            let Some(free) = free else {
                open.get_or_insert(base);
                continue;
            };
            // Bit by run: `pos` is where the next run starts.
            let mut pos = 0u32;
            while pos < 64 {
                let rest = free >> pos;
                if rest & 1 == 1 {
                    let run = rest.trailing_ones();
                    open.get_or_insert(base + u64::from(pos));
                    pos += run;
                } else {
                    let run = if rest == 0 {
                        64 - pos
                    } else {
                        rest.trailing_zeros()
                    };
                    if let Some(first) = open.take() {
                        if out.len() == max {
                            return (out, true);
                        }
                        out.push(SeqRange {
                            first: first as u32,
                            last: (base + u64::from(pos) - 1) as u32,
                        });
                    }
                    pos += run;
                }
            }
        }
        if let Some(first) = open.filter(|&f| f < len) {
            if out.len() == max {
                return (out, true);
            }
            out.push(SeqRange {
                first: first as u32,
                last: (len - 1) as u32,
            });
        }
        (out, false)
    }
}

/// Lets batches leave no faster than a rate, with bursts of at most
/// [`BURST`] worth of bytes. Without a rate it never holds anything back.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Bits per second; `None` sends as fast as the kernel takes them.
    rate: Option<f64>,
    next: Option<Instant>,
}

impl Pacer {
    pub fn new(rate: Option<f64>) -> Pacer {
        Pacer { rate, next: None }
    }

    pub fn set_rate(&mut self, rate: Option<f64>) {
        self.rate = rate;
    }

    /// How long to wait before the next batch may leave (zero: now).
    pub fn wait(&self, now: Instant) -> Duration {
        match (self.rate, self.next) {
            (Some(_), Some(next)) => next.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// Account for `bytes` that left at `now`.
    pub fn sent(&mut self, now: Instant, bytes: u64) {
        let Some(rate) = self.rate else {
            return;
        };
        // Time not used is kept only up to one burst's worth.
        let floor = now.checked_sub(BURST).unwrap_or(now);
        let base = self.next.map_or(now, |n| n.max(floor));
        self.next = Some(base + Duration::from_secs_f64(bytes as f64 * 8.0 / rate));
    }

    /// Datagrams of `size` bytes per batch: one burst's worth, 1 to `max`.
    pub fn batch_len(&self, size: usize, max: usize) -> usize {
        match self.rate {
            None => max,
            Some(rate) => {
                let burst_bytes = rate / 8.0 * BURST.as_secs_f64();
                ((burst_bytes / size.max(1) as f64) as usize).clamp(1, max)
            }
        }
    }
}

/// Why a repair request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("range {first}-{last} is beyond the file's {total} datagrams")]
    OutOfRange { first: u32, last: u32, total: u32 },
    #[error("asks again for datagram {seq}, which the client confirmed before")]
    Confirmed { seq: u32 },
    #[error(
        "says {claimed} datagrams are missing but lists {listed} without saying the list is cut"
    )]
    Inconsistent { claimed: u64, listed: u64 },
    #[error("claims a matching SHA-256 while {missing} datagrams are missing")]
    ShaWithGaps { missing: u64 },
    #[error("claims {received} datagrams received and {missing} missing of the file's {total}")]
    CountsDisagree {
        received: u64,
        missing: u64,
        total: u32,
    },
    #[error(
        "claims {bytes} bytes received in {datagrams} of {total} datagrams of a {size}-byte file"
    )]
    BytesImpossible {
        bytes: u64,
        datagrams: u64,
        total: u32,
        size: u64,
    },
}

/// Check a report's counts against the file, whatever the mode: a client
/// holds at most every datagram once, what it holds and what it lacks add
/// up to the file, and its bytes fit in the datagrams it holds (all of the
/// file exactly when it holds every datagram, at most `max_payload` each,
/// and at least one byte short for each it lacks). The server has sent
/// every datagram at least once before a report is read, so a report that
/// passes claims no more than was sent.
pub fn check_figures(r: &Report, total: u32, size: u64, max_payload: u64) -> Result<(), Refusal> {
    let received = r.datagrams_received;
    if r.missing_datagrams.checked_add(received) != Some(u64::from(total)) {
        return Err(Refusal::CountsDisagree {
            received,
            missing: r.missing_datagrams,
            total,
        });
    }
    let fits = if received == u64::from(total) {
        r.bytes_received == size
    } else {
        r.bytes_received <= size.saturating_sub(r.missing_datagrams)
            && r.bytes_received <= received.saturating_mul(max_payload)
    };
    if !fits {
        return Err(Refusal::BytesImpossible {
            bytes: r.bytes_received,
            datagrams: received,
            total,
            size,
        });
    }
    Ok(())
}

/// What the server does after a valid report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The client has the file, byte-identical.
    Complete,
    /// A repair round of this many datagrams has been queued.
    Repair { datagrams: u64 },
    /// The client has every datagram but its file's SHA-256 differs: there
    /// is nothing left to resend.
    Corrupt,
}

/// The server's side of one reliable transfer: which datagrams the client
/// confirmed, what the current pass sends, and the repair rounds.
#[derive(Debug, Clone)]
pub struct Repair {
    total: u32,
    /// Datagrams the client has said it holds (every sequence number below
    /// the end of its list that the list does not name).
    confirmed: SeqSet,
    /// The current pass: ranges still to send, in order.
    queue: Vec<SeqRange>,
    /// Index into `queue` and the next sequence number of that range.
    pos: (usize, u32),
    /// 0 during the first pass; then the number of repair rounds begun.
    pub round: u32,
    pub retransmitted: u64,
    pub rejected: u64,
    /// Accepted reports in a row that confirmed no datagram not confirmed
    /// before.
    pub stalled: u32,
}

impl Repair {
    /// A transfer of `total` datagrams, its first pass queued.
    pub fn new(total: u32) -> Repair {
        let queue = if total == 0 {
            Vec::new()
        } else {
            vec![SeqRange {
                first: 0,
                last: total - 1,
            }]
        };
        Repair {
            total,
            confirmed: SeqSet::new(total),
            pos: (0, queue.first().map_or(0, |r| r.first)),
            queue,
            round: 0,
            retransmitted: 0,
            rejected: 0,
            stalled: 0,
        }
    }

    /// The next run of consecutive sequence numbers to send, at most `max`
    /// long: `(first, count)`. `None` when the pass is over.
    pub fn next_run(&mut self, max: u32) -> Option<(u32, u32)> {
        let range = *self.queue.get(self.pos.0)?;
        let first = self.pos.1;
        let count = (range.last - first).saturating_add(1).min(max.max(1));
        let after = first + (count - 1);
        if after == range.last {
            self.pos.0 += 1;
            self.pos.1 = self.queue.get(self.pos.0).map_or(0, |r| r.first);
        } else {
            self.pos.1 = after + 1;
        }
        if self.round > 0 {
            self.retransmitted += u64::from(count);
        }
        Some((first, count))
    }

    /// Datagrams the current pass has still to send.
    pub fn pass_left(&self) -> u64 {
        let Some(cur) = self.queue.get(self.pos.0) else {
            return 0;
        };
        let rest: u64 = self.queue[self.pos.0 + 1..]
            .iter()
            .map(|r| u64::from(r.last - r.first) + 1)
            .sum();
        u64::from(cur.last - self.pos.1) + 1 + rest
    }

    /// Datagrams the client has confirmed.
    pub fn confirmed(&self) -> u64 {
        self.confirmed.count()
    }

    /// Check a report against the file and against what the client said
    /// before; a valid one updates the book and queues the next round.
    /// A refused one changes nothing but the count of refusals.
    pub fn report(&mut self, r: &Report) -> Result<Next, Refusal> {
        let checked = self.check(r);
        let Ok(end) = checked else {
            self.rejected += 1;
            return checked.map(|_| Next::Complete);
        };
        let before = self.confirmed.count();
        // Everything below `end` that the list does not name, the client has.
        let mut seq = 0u32;
        for m in &r.missing {
            for s in seq..m.first {
                self.confirmed.insert(s);
            }
            // `last` < total <= u32::MAX: no overflow.
            seq = m.last + 1;
        }
        for s in seq..end {
            self.confirmed.insert(s);
        }
        if self.confirmed.count() > before {
            self.stalled = 0;
        } else {
            self.stalled += 1;
        }
        if r.missing.is_empty() && r.missing_datagrams == 0 {
            return Ok(if r.sha256_match {
                Next::Complete
            } else {
                Next::Corrupt
            });
        }
        self.queue = r.missing.clone();
        self.pos = (0, self.queue.first().map_or(0, |m| m.first));
        self.round += 1;
        Ok(Next::Repair {
            datagrams: self.pass_left(),
        })
    }

    /// Validate; returns the end of what the list covers.
    fn check(&self, r: &Report) -> Result<u32, Refusal> {
        let mut listed = 0u64;
        for m in &r.missing {
            if m.last >= self.total {
                return Err(Refusal::OutOfRange {
                    first: m.first,
                    last: m.last,
                    total: self.total,
                });
            }
            if let Some(seq) = (m.first..=m.last).find(|&s| self.confirmed.contains(s)) {
                return Err(Refusal::Confirmed { seq });
            }
            listed += u64::from(m.last - m.first) + 1;
        }
        let truncated = r.ranges_truncated && !r.missing.is_empty();
        if (!truncated && listed != r.missing_datagrams)
            || r.missing_datagrams < listed
            || r.missing_datagrams > u64::from(self.total)
        {
            return Err(Refusal::Inconsistent {
                claimed: r.missing_datagrams,
                listed,
            });
        }
        if r.sha256_match && r.missing_datagrams > 0 {
            return Err(Refusal::ShaWithGaps {
                missing: r.missing_datagrams,
            });
        }
        Ok(if truncated {
            r.missing.last().map_or(self.total, |m| m.last + 1)
        } else {
            self.total
        })
    }
}

/// What an arriving datagram was to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A datagram not held before: its file offset, and where its payload
    /// lies in the datagram.
    New {
        offset: u64,
        payload: (usize, usize),
    },
    /// Held already; ignored.
    Duplicate,
    /// Arrived after the file was whole; ignored.
    Late,
    /// Bad header, wrong length for its sequence number, out of range.
    Malformed,
}

/// The client's book of one v1 transfer.
#[derive(Debug, Clone)]
pub struct Reception {
    announce: v1::Announce,
    have: SeqSet,
    pub bytes: u64,
    /// Datagrams taken from the socket, whatever they were.
    pub arrived: u64,
    pub duplicates: u64,
    pub late: u64,
    pub malformed: u64,
    /// Received with the retransmission flag (and new).
    pub retransmitted: u64,
    /// Gaps seen in arrival order: sequence numbers still missing that an
    /// arriving datagram jumped over.
    pub lost: u64,
    /// The pass the client is in: 0, then one more per repair request.
    pub round: u32,
    last_seq: Option<u32>,
    /// The smallest one-way delay since the last feedback (see
    /// [`v1::FeedbackTiming::min_delay_us`]).
    min_delay_us: Option<i64>,
}

impl Reception {
    pub fn new(announce: &v1::Announce) -> Reception {
        Reception {
            announce: announce.clone(),
            have: SeqSet::new(announce.datagrams),
            bytes: 0,
            arrived: 0,
            duplicates: 0,
            late: 0,
            malformed: 0,
            retransmitted: 0,
            lost: 0,
            round: 0,
            last_seq: None,
            min_delay_us: None,
        }
    }

    /// Distinct datagrams held.
    pub fn received(&self) -> u64 {
        self.have.count()
    }

    pub fn complete(&self) -> bool {
        self.have.is_full()
    }

    /// A new pass begins (the client asked for a repair round): gaps are
    /// counted from the start of the list again.
    pub fn next_round(&mut self) {
        self.round += 1;
        self.last_seq = None;
    }

    /// Classify one datagram (`truncated`: the kernel cut it) taken in at
    /// `at_us` (the client's clock, microseconds since the Unix epoch).
    pub fn arrive(&mut self, datagram: &[u8], truncated: bool, at_us: u64) -> Arrival {
        self.arrived += 1;
        let Ok((header, payload)) = v1::DataHeader::parse(datagram) else {
            self.malformed += 1;
            return Arrival::Malformed;
        };
        self.note_delay(header.send_time_us, at_us);
        if truncated || self.announce.payload_len(header.seq) != Some(payload.len()) {
            self.malformed += 1;
            return Arrival::Malformed;
        }
        if self.have.is_full() {
            self.late += 1;
            return Arrival::Late;
        }
        if !self.have.insert(header.seq) {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        // Gaps: what this datagram jumped over that is still missing.
        let from = self.last_seq.map_or(0, |s| s.saturating_add(1));
        if header.seq > from {
            self.lost += self.have.absent_between(from, header.seq);
        }
        if self.last_seq.is_none_or(|s| header.seq > s) {
            self.last_seq = Some(header.seq);
        }
        if header.flags & v1::FLAG_RETRANSMIT != 0 {
            self.retransmitted += 1;
        }
        self.bytes += payload.len() as u64;
        let start = v1::HEADER_LEN;
        Arrival::New {
            offset: u64::from(header.seq) * self.announce.chunk_size() as u64,
            payload: (start, start + payload.len()),
        }
    }

    /// Missing sequence numbers as ranges, in order, at most `max` of
    /// them; and whether any were left out.
    pub fn missing_ranges(&self, max: usize) -> (Vec<SeqRange>, bool) {
        self.have.absent_ranges(max)
    }

    /// Bytes from the start of the file held without a gap: the prefix
    /// that can be hashed in order.
    pub fn held_prefix(&self) -> u64 {
        match self.have.first_absent() {
            None => self.announce.file_size,
            Some(seq) => u64::from(seq) * self.announce.chunk_size() as u64,
        }
    }

    pub fn missing_count(&self) -> u64 {
        u64::from(self.have.len()) - self.have.count()
    }

    /// Keep the smallest one-way delay of the feedback interval. Any
    /// header counts, a duplicate's too: it crossed the same queue.
    fn note_delay(&mut self, send_us: u64, at_us: u64) {
        let delay = (i128::from(at_us) - i128::from(send_us))
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        self.min_delay_us = Some(self.min_delay_us.map_or(delay, |d| d.min(delay)));
    }

    /// The running counts for the server's rate control, taken at `now_us`
    /// (the client's clock); the interval's delay starts afresh.
    pub fn feedback(&mut self, kernel_drops: Option<u64>, now_us: u64) -> v1::Feedback {
        v1::Feedback {
            round: self.round,
            arrived: self.arrived,
            lost: self.lost,
            kernel_drops,
            timing: Some(v1::FeedbackTiming {
                time_us: now_us,
                min_delay_us: self.min_delay_us.take(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Mode;
    use crate::protocol::v1::{Announce, DataHeader, FLAG_RETRANSMIT};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn seq_set_counts_and_lists_gaps() {
        let mut s = SeqSet::new(130);
        for seq in [0, 1, 63, 64, 65, 129] {
            assert!(s.insert(seq));
        }
        assert!(!s.insert(64), "twice");
        assert!(!s.insert(130), "out of range");
        assert_eq!(s.count(), 6);
        assert_eq!(s.absent_between(0, 130), 124);
        assert_eq!(s.absent_between(62, 66), 1);
        assert_eq!(s.absent_between(2, 63), 61);
        assert_eq!(s.absent_between(64, 64), 0);
        assert_eq!(s.absent_between(100, 500), 29);
        let range = |first, last| SeqRange { first, last };
        assert_eq!(
            s.absent_ranges(10),
            (vec![range(2, 62), range(66, 128)], false)
        );
        assert_eq!(s.absent_ranges(1), (vec![range(2, 62)], true));
        assert_eq!(s.first_absent(), Some(2));
    }

    /// Every member at a time of a few hundred arrivals across pages (some
    /// untouched, some full, a set ending mid-word): the ranges, counts and
    /// first gap are those of a walk over each sequence number.
    #[test]
    fn seq_set_pages_agree_with_a_walk_over_each_number() {
        let len = 5 * PAGE_SEQS + 77;
        let mut s = SeqSet::new(len);
        let mut have = vec![false; len as usize];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut seqs: Vec<u32> = (0..PAGE_SEQS + 130).collect();
        seqs.extend((0..400).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            3 * PAGE_SEQS + (x % u64::from(len - 3 * PAGE_SEQS)) as u32
        }));
        seqs.push(len - 1);
        for (i, &seq) in seqs.iter().enumerate() {
            assert_eq!(s.insert(seq), !have[seq as usize]);
            have[seq as usize] = true;
            if i % 97 != 0 && i + 1 != seqs.len() {
                continue;
            }
            let absent: Vec<u32> = (0..len).filter(|&q| !have[q as usize]).collect();
            let (ranges, cut) = s.absent_ranges(usize::MAX);
            assert_eq!(
                (ranges, cut),
                v1::ranges_from_missing(absent.iter().copied(), usize::MAX)
            );
            assert_eq!(
                s.absent_ranges(3),
                v1::ranges_from_missing(absent.iter().copied(), 3)
            );
            assert_eq!(s.first_absent(), absent.first().copied());
            assert_eq!(s.count(), u64::from(len) - absent.len() as u64);
            for (lo, hi) in [
                (0, len),
                (5, 4100),
                (4096, 3 * PAGE_SEQS + 3),
                (len - 70, len),
            ] {
                let walked = absent.iter().filter(|&&q| q >= lo && q < hi).count() as u64;
                assert_eq!(s.absent_between(lo, hi), walked, "{lo}..{hi}");
            }
        }
        let mut full = SeqSet::new(130);
        (0..130).for_each(|q| assert!(full.insert(q)));
        assert!(full.is_full());
        assert_eq!(full.absent_ranges(10), (vec![], false));
        assert_eq!(full.first_absent(), None);
    }

    /// An announce of the most datagrams v1 has costs a slot per page and
    /// nothing walked per number: a few members far apart, listed as the
    /// gaps between them.
    #[test]
    fn seq_set_of_2_to_the_32_is_cheap_to_list() {
        let mut s = SeqSet::new(u32::MAX);
        for seq in [0, 1 << 31, u32::MAX - 1] {
            assert!(s.insert(seq));
        }
        let range = |first, last| SeqRange { first, last };
        assert_eq!(
            s.absent_ranges(10),
            (
                vec![range(1, (1 << 31) - 1), range((1 << 31) + 1, u32::MAX - 2)],
                false
            )
        );
        assert_eq!(s.absent_between(1, u32::MAX), u64::from(u32::MAX) - 3);
        assert_eq!(s.first_absent(), Some(1));
        assert_eq!(s.pages.len(), 3);
    }

    #[test]
    fn pacer_holds_to_its_rate_and_bursts_at_most_one_millisecond() {
        let t0 = Instant::now();
        // 8 Mbit/s = 1 MB/s: 1000 bytes take 1 ms.
        let mut p = Pacer::new(Some(8e6));
        assert_eq!(p.batch_len(1000, 64), 1);
        assert_eq!(p.wait(t0), Duration::ZERO);
        p.sent(t0, 1000);
        assert_eq!(p.wait(t0), ms(1));
        assert_eq!(p.wait(t0 + ms(1)), Duration::ZERO);
        // Sending at its pace: 100 batches take 100 ms.
        let mut now = t0;
        for _ in 0..100 {
            now += p.wait(now);
            p.sent(now, 1000);
        }
        assert_eq!(now - t0, ms(100));
        // After a long idle time it does not make up for more than a burst.
        let later = now + Duration::from_secs(1);
        p.sent(later, 1000);
        p.sent(later, 1000);
        assert_eq!(p.wait(later), ms(1));
        // No rate: never waits, full batches.
        let mut free = Pacer::new(None);
        free.sent(t0, 1 << 30);
        assert_eq!(free.wait(t0), Duration::ZERO);
        assert_eq!(free.batch_len(1024, 64), 64);
        // 10 Gbit/s: a millisecond is 1.25 MB, batches stay at the maximum.
        assert_eq!(Pacer::new(Some(10e9)).batch_len(1024, 64), 64);
    }

    fn fb(arrived: u64, lost: u64) -> v1::Feedback {
        v1::Feedback {
            round: 0,
            arrived,
            lost,
            kernel_drops: None,
            timing: None,
        }
    }

    /// Feed one interval: `sent` datagrams of 1000 bytes over 10 ms, of which
    /// `lost` were lost.
    fn interval(
        rc: &mut RateControl,
        now: &mut Instant,
        counts: &mut (u64, u64),
        sent: u64,
        lost: u64,
    ) {
        rc.sent(*now, sent * 1000);
        *now += FEEDBACK_INTERVAL;
        counts.0 += sent - lost;
        counts.1 += lost;
        rc.feedback(*now, &fb(counts.0, counts.1));
    }

    #[test]
    fn the_client_reports_often_only_while_slow_start_may_run() {
        assert_eq!(feedback_interval(Duration::ZERO), EARLY_FEEDBACK_INTERVAL);
        assert!(EARLY_FEEDBACK_INTERVAL < FEEDBACK_INTERVAL);
        assert_eq!(feedback_interval(EARLY_FEEDBACK), FEEDBACK_INTERVAL);
        assert_eq!(feedback_interval(Duration::from_secs(5)), FEEDBACK_INTERVAL);
    }

    #[test]
    fn loss_rule_raises_once_per_feedback_interval_however_often_fed_back() {
        let mut now = Instant::now();
        let mut rc = RateControl::with_rule(Rule::Loss, None, 1000);
        rc.feedback(now, &fb(0, 0));
        let mut arrived = 0;
        // Clean 2.5 ms intervals at the rate, for 10 ms: one doubling.
        for _ in 0..4 {
            let sent = (rc.rate() / 8e3 * 0.0025) as u64;
            rc.sent(now, sent * 1000);
            now += EARLY_FEEDBACK_INTERVAL;
            arrived += sent;
            rc.feedback(now, &fb(arrived, 0));
        }
        assert_eq!(rc.rate(), 2.0 * START_RATE);
    }

    #[test]
    fn loss_rule_starts_slow_doubles_then_drops_to_what_the_client_took() {
        let mut now = Instant::now();
        let mut rc = RateControl::with_rule(Rule::Loss, None, 1000);
        assert_eq!(rc.rate(), START_RATE);
        let mut c = (0, 0);
        rc.feedback(now, &fb(0, 0));
        // 100 Mbit/s = 125 datagrams of 1000 bytes per 10 ms.
        interval(&mut rc, &mut now, &mut c, 125, 0);
        assert_eq!(rc.rate(), 200e6);
        interval(&mut rc, &mut now, &mut c, 250, 0);
        assert_eq!(rc.rate(), 400e6);
        assert_eq!(rc.phase(), Phase::SlowStart);
        // The client took only 300 of 500: 300 x 8000 bits in 10 ms.
        interval(&mut rc, &mut now, &mut c, 500, 200);
        assert_eq!(rc.phase(), Phase::Avoidance);
        assert!((rc.rate() - 240e6).abs() < 1.0, "{}", rc.rate());
    }

    #[test]
    fn loss_rule_backs_off_once_per_epoch_and_climbs_additively() {
        let mut now = Instant::now();
        let mut rc = RateControl::with_rule(Rule::Loss, Some(80e6), 1000);
        assert_eq!(rc.rate(), 80e6, "the ceiling is below the start rate");
        let mut c = (0, 0);
        rc.feedback(now, &fb(0, 0));
        // 80 Mbit/s: 100 datagrams per 10 ms. Loss in slow start.
        interval(&mut rc, &mut now, &mut c, 100, 50);
        assert!((rc.rate() - 40e6).abs() < 1.0);
        // Loss again right away: within the epoch, no second cut.
        interval(&mut rc, &mut now, &mut c, 50, 10);
        assert!((rc.rate() - 40e6).abs() < 1.0);
        // A later lossy interval cuts by 1/8.
        interval(&mut rc, &mut now, &mut c, 50, 10);
        assert!((rc.rate() - 35e6).abs() < 1.0);
        // Below the threshold counts as clean: +1/32.
        let before = rc.rate();
        interval(&mut rc, &mut now, &mut c, 44, 0);
        assert!((rc.rate() - before * 33.0 / 32.0).abs() < 1.0);
        // Clean, but the sender did not manage 80 % of the rate: no climb.
        let before = rc.rate();
        interval(&mut rc, &mut now, &mut c, 10, 0);
        assert_eq!(rc.rate(), before);
        // Climbs to the ceiling and stays there.
        for _ in 0..200 {
            let n = (rc.rate() / 8e5) as u64;
            interval(&mut rc, &mut now, &mut c, n, 0);
        }
        assert_eq!(rc.rate(), 80e6);
        // Kernel drops count as loss even where no gap was seen.
        let mut f = fb(c.0 + 50, c.1);
        f.kernel_drops = Some(c.1 + 50);
        rc.sent(now, 100_000);
        now += ms(30);
        rc.feedback(now, &f);
        assert!((rc.rate() - 70e6).abs() < 1.0);
    }

    #[test]
    fn rate_halves_when_the_client_goes_silent_and_never_stops() {
        let now = Instant::now();
        let mut rc = RateControl::with_rule(Rule::Loss, None, 1000);
        assert!(!rc.check_silence(now), "nothing sent yet");
        rc.sent(now, 1000);
        assert!(!rc.check_silence(now + ms(100)));
        assert!(rc.check_silence(now + SILENCE));
        assert_eq!(rc.rate(), START_RATE / 2.0);
        let mut t = now + SILENCE;
        for _ in 0..100 {
            t += SILENCE;
            rc.check_silence(t);
        }
        assert_eq!(rc.rate(), MIN_RATE);
    }

    fn report(missing: &[(u32, u32)], claimed: u64, truncated: bool) -> Report {
        Report {
            datagrams_received: 0,
            bytes_received: 0,
            duplicates: 0,
            malformed: 0,
            missing_datagrams: claimed,
            kernel_drops: None,
            sha256_match: false,
            missing: missing
                .iter()
                .map(|&(first, last)| SeqRange { first, last })
                .collect(),
            ranges_truncated: truncated,
        }
    }

    fn drain(r: &mut Repair, max: u32) -> Vec<(u32, u32)> {
        std::iter::from_fn(|| r.next_run(max)).collect()
    }

    #[test]
    fn repair_sends_the_first_pass_then_exactly_the_missing_ranges() {
        let mut r = Repair::new(10);
        assert_eq!(r.pass_left(), 10);
        assert_eq!(drain(&mut r, 4), [(0, 4), (4, 4), (8, 2)]);
        assert_eq!((r.pass_left(), r.retransmitted), (0, 0));
        assert_eq!(
            r.report(&report(&[(2, 3), (7, 7)], 3, false)),
            Ok(Next::Repair { datagrams: 3 })
        );
        assert_eq!(r.confirmed(), 7);
        assert_eq!(drain(&mut r, 64), [(2, 2), (7, 1)]);
        assert_eq!((r.round, r.retransmitted), (1, 3));
        // 3 arrived, 7 still missing.
        assert_eq!(
            r.report(&report(&[(7, 7)], 1, false)),
            Ok(Next::Repair { datagrams: 1 })
        );
        assert_eq!(drain(&mut r, 64), [(7, 1)]);
        let mut done = report(&[], 0, false);
        done.sha256_match = true;
        assert_eq!(r.report(&done), Ok(Next::Complete));
        assert_eq!(
            (r.confirmed(), r.round, r.retransmitted, r.rejected),
            (10, 2, 4, 0)
        );
    }

    #[test]
    fn a_cut_list_confirms_only_what_it_covers() {
        let mut r = Repair::new(100);
        drain(&mut r, 64);
        // 4 ranges listed of more: 0..=49 covered, 50.. unknown.
        let cut = report(&[(1, 1), (10, 12), (20, 20), (49, 49)], 60, true);
        assert_eq!(r.report(&cut), Ok(Next::Repair { datagrams: 6 }));
        assert_eq!(r.confirmed(), 50 - 6);
        drain(&mut r, 64);
        // Now the rest, which the server had not heard of: fine.
        assert_eq!(
            r.report(&report(&[(60, 99)], 40, false)),
            Ok(Next::Repair { datagrams: 40 })
        );
    }

    #[test]
    fn forged_reports_are_refused_counted_and_send_nothing() {
        let mut r = Repair::new(10);
        drain(&mut r, 64);
        assert_eq!(
            r.report(&report(&[(5, 5)], 1, false)),
            Ok(Next::Repair { datagrams: 1 })
        );
        drain(&mut r, 64);
        let forged = [
            // Beyond the file.
            report(&[(9, 4_000_000_000)], 1, false),
            report(&[(10, 10)], 1, false),
            // Datagrams confirmed before: a resend storm if believed.
            report(&[(0, 9)], 10, false),
            report(&[(3, 3)], 1, false),
            // Counts that do not match the list.
            report(&[(5, 5)], 7, false),
            report(&[(5, 5)], 0, false),
            report(&[], 3, false),
            report(&[(5, 5)], u64::MAX, true),
        ];
        for (i, f) in forged.iter().enumerate() {
            assert!(r.report(f).is_err(), "forged report {i} accepted");
            assert_eq!(r.next_run(64), None, "forged report {i} queued a resend");
        }
        let mut sha_lie = report(&[(5, 5)], 1, false);
        sha_lie.sha256_match = true;
        assert_eq!(r.report(&sha_lie), Err(Refusal::ShaWithGaps { missing: 1 }));
        assert_eq!((r.rejected, r.round, r.retransmitted), (9, 1, 1));
        // The honest report still works after them.
        assert_eq!(
            r.report(&report(&[(5, 5)], 1, false)),
            Ok(Next::Repair { datagrams: 1 })
        );
        // Every datagram held, but the hash differs: nothing to resend.
        drain(&mut r, 64);
        assert_eq!(r.report(&report(&[], 0, false)), Ok(Next::Corrupt));
    }

    #[test]
    fn empty_file() {
        let mut r = Repair::new(0);
        assert_eq!(r.next_run(64), None);
        let mut done = report(&[], 0, false);
        done.sha256_match = true;
        assert_eq!(r.report(&done), Ok(Next::Complete));
    }

    fn datagram(seq: u32, flags: u8, len: usize) -> Vec<u8> {
        let mut d = DataHeader {
            flags,
            seq,
            send_time_us: 1,
        }
        .emit()
        .to_vec();
        d.resize(v1::HEADER_LEN + len, seq as u8);
        d
    }

    #[test]
    fn reception_keeps_new_datagrams_and_counts_the_rest() {
        let a = Announce {
            file_name: "f".into(),
            file_size: 10 * 1008 - 8,
            datagrams: 10,
            datagram_size: 1024,
            data_port: 1,
            mode: Mode::Reliable,
            sha256: [0; 32],
        };
        let mut rx = Reception::new(&a);
        assert_eq!(
            rx.arrive(&datagram(0, 0, 1008), false, 10),
            Arrival::New {
                offset: 0,
                payload: (16, 1024)
            }
        );
        // 1 and 2 lost in the kernel: the jump to 3 counts them.
        assert!(matches!(
            rx.arrive(&datagram(3, 0, 1008), false, 10),
            Arrival::New { offset: 3024, .. }
        ));
        assert_eq!(rx.lost, 2);
        assert_eq!(
            rx.arrive(&datagram(3, 0, 1008), false, 10),
            Arrival::Duplicate
        );
        assert_eq!(rx.arrive(&datagram(4, 0, 7), false, 10), Arrival::Malformed);
        assert_eq!(
            rx.arrive(&datagram(10, 0, 1008), false, 10),
            Arrival::Malformed
        );
        assert_eq!(
            rx.arrive(&datagram(4, 0, 1008), true, 10),
            Arrival::Malformed
        );
        assert_eq!(rx.arrive(b"UL\x01", false, 10), Arrival::Malformed);
        for seq in 4..9 {
            assert!(matches!(
                rx.arrive(&datagram(seq, 0, 1008), false, 10),
                Arrival::New { .. }
            ));
        }
        // The last one is short: 1000 bytes.
        assert!(matches!(
            rx.arrive(&datagram(9, 0, 1000), false, 10),
            Arrival::New { .. }
        ));
        assert_eq!(
            rx.missing_ranges(10),
            (vec![SeqRange { first: 1, last: 2 }], false)
        );
        assert_eq!(rx.lost, 2, "no new gap");
        // Repair round: 1 and 2 come back flagged; 2's arrival does not
        // count 1 again, as 1 is no longer missing.
        rx.next_round();
        assert!(matches!(
            rx.arrive(&datagram(1, FLAG_RETRANSMIT, 1008), false, 10),
            Arrival::New { .. }
        ));
        assert!(matches!(
            rx.arrive(&datagram(2, FLAG_RETRANSMIT, 1008), false, 10),
            Arrival::New { .. }
        ));
        assert_eq!(rx.lost, 2, "a repair round jumps over nothing missing");
        assert!(rx.complete());
        assert_eq!(
            rx.arrive(&datagram(2, FLAG_RETRANSMIT, 1008), false, 10),
            Arrival::Late
        );
        assert_eq!(
            (
                rx.received(),
                rx.bytes,
                rx.duplicates,
                rx.late,
                rx.malformed,
                rx.retransmitted,
                rx.arrived
            ),
            (10, a.file_size, 1, 1, 4, 2, 16)
        );
        assert_eq!(rx.missing_count(), 0);
        let f = rx.feedback(Some(2), 77);
        assert_eq!(
            (f.round, f.arrived, f.lost, f.kernel_drops),
            (1, 16, 2, Some(2))
        );
        // Every header was stamped at 1 and taken in at 10.
        assert_eq!(
            f.timing,
            Some(v1::FeedbackTiming {
                time_us: 77,
                min_delay_us: Some(9)
            })
        );
        // The next interval starts afresh: no datagram, no delay.
        assert_eq!(rx.feedback(None, 80).timing.unwrap().min_delay_us, None);
        rx.arrive(&datagram(2, 0, 1008), false, 4);
        rx.arrive(&datagram(2, 0, 1008), false, 30);
        assert_eq!(rx.feedback(None, 90).timing.unwrap().min_delay_us, Some(3));
    }

    #[test]
    fn figures_that_no_client_can_hold_are_refused() {
        // 3 datagrams of at most 1008 bytes, 2020 bytes in all.
        let ok = |received: u64, bytes: u64, missing: u64| Report {
            datagrams_received: received,
            bytes_received: bytes,
            missing_datagrams: missing,
            ..report(&[], missing, false)
        };
        for honest in [ok(3, 2020, 0), ok(2, 2016, 1), ok(2, 1012, 1), ok(0, 0, 3)] {
            assert_eq!(check_figures(&honest, 3, 2020, 1008), Ok(()), "{honest:?}");
        }
        let lies = [
            ok(4, 2020, 0),
            ok(u64::MAX, 2020, 1),
            ok(2, 2020, 0),
            ok(3, 1 << 63, 0),
            ok(3, 2019, 0),
            ok(2, 2020, 1),
            ok(1, 1009, 2),
            ok(0, 1, 3),
        ];
        for lie in lies {
            assert!(check_figures(&lie, 3, 2020, 1008).is_err(), "{lie:?}");
        }
        assert_eq!(
            check_figures(&ok(3, 1 << 63, 0), 3, 2020, 1008)
                .unwrap_err()
                .to_string(),
            "claims 9223372036854775808 bytes received in 3 of 3 datagrams of a 2020-byte file"
        );
    }
}
