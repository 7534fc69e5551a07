//! [`RateControl`]: the reliable mode's sending rate, adapted to the
//! client's [`v1::Feedback`]. Two rules share the bookkeeping (intervals,
//! silence, bounds); `docs/PROTOCOL.md` section 5 says why the first is the
//! one the server uses:
//!
//! - [`Rule::Delay`]: a queue building up is the congestion signal. The
//!   client reports the smallest one-way delay of each feedback interval;
//!   its rise over the smallest ever seen is the queueing delay q. The rate
//!   is the client's delivery rate times `1 + GAIN (TARGET - q) / TARGET`,
//!   so it settles where the bottleneck holds [`TARGET_DELAY`] of queue,
//!   whatever is lost at random on the way.
//! - [`Rule::Loss`]: v1's first rule, loss above 1 % is congestion. Kept
//!   for clients that send no delay (the 29-byte feedback) and for the
//!   simulation in `tests/rate_sim.rs`, which shows what it does on a
//!   lossy path.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{FEEDBACK_INTERVAL, LOSS_THRESHOLD, MIN_RATE, SILENCE, START_RATE};
use crate::protocol::v1;

/// The queueing delay the delay rule aims to hold at the bottleneck: a
/// queue that never empties keeps the link busy, one this short adds little
/// latency and stays below the drop point of any queue deeper than it.
pub const TARGET_DELAY: Duration = Duration::from_millis(5);
/// How far one feedback moves the rate from the delivery rate at an empty
/// (or twice the target) queue: at most +1/8, at least -1/2. Small enough
/// for the loop to stay stable with a feedback that arrives three intervals
/// late (10 ms interval, 10 ms each way), large enough to fill a path whose
/// random loss is below 1/9.
pub const GAIN: f64 = 0.125;
/// Of the rate, what a sender must really have sent over an interval for it
/// to say anything about the path (below that the sender was the limit).
const BUSY: f64 = 0.8;
/// The delivery rate the delay rule follows is the largest of this long
/// (BBR's windowed maximum): a receiver that stalls a few milliseconds, as
/// one sharing its cores does, delivers less for an interval and then
/// catches up, and following each dip would lose what it could have taken.
const DELIVERY_WINDOW: Duration = Duration::from_millis(100);

/// Which rule adapts the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Queueing delay against a target, referenced to the delivery rate.
    Delay,
    /// v1's first rule: back off by 1/8 on loss above [`LOSS_THRESHOLD`].
    Loss,
}

/// The phase of [`RateControl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Doubling every clean interval, until the first sign of a queue.
    SlowStart,
    /// The rule proper.
    Avoidance,
}

/// What one feedback interval showed, from the difference of two
/// feedbacks' running counts.
#[derive(Debug, Clone, Copy)]
struct Interval {
    /// Seconds, by the client's clock when both feedbacks carry it.
    elapsed: f64,
    arrived: u64,
    /// Gaps in arrival order, or the kernel's drops if more.
    lost: u64,
    kernel_drops: u64,
    /// Bits per second the sender really sent.
    sent_rate: f64,
    /// Queueing delay, when the client measured one.
    queueing: Option<Duration>,
}

/// The previous feedback.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    client_us: Option<u64>,
    arrived: u64,
    lost: u64,
    kernel_drops: u64,
}

/// The reliable mode's sending rate, in bits per second:
///
/// - slow start at [`START_RATE`]: x2 per clean interval in which the
///   sender kept up;
/// - then per feedback interval, by the [`Rule`];
/// - no feedback for [`SILENCE`] while sending halves the rate;
/// - the rate stays within [`MIN_RATE`] and the `--rate` ceiling.
#[derive(Debug, Clone)]
pub struct RateControl {
    rule: Rule,
    rate: f64,
    ceiling: Option<f64>,
    phase: Phase,
    datagram_bits: f64,
    last_decrease: Option<Instant>,
    /// [`Rule::Loss`]: when it last raised the rate.
    last_increase: Option<Instant>,
    last: Option<Mark>,
    /// Bytes sent since the previous feedback.
    sent_bytes: u64,
    last_heard: Option<Instant>,
    /// The smallest one-way delay seen in the transfer, microseconds: the
    /// path with an empty queue (and the clocks' offset).
    base_delay_us: Option<i64>,
    /// Delivery rates of the last [`DELIVERY_WINDOW`], with their time.
    delivered: VecDeque<(Instant, f64)>,
}

impl RateControl {
    /// The delay rule; `ceiling` in bits/s (`--rate`); datagrams of
    /// `datagram_size` bytes.
    pub fn new(ceiling: Option<f64>, datagram_size: usize) -> RateControl {
        RateControl::with_rule(Rule::Delay, ceiling, datagram_size)
    }

    pub fn with_rule(rule: Rule, ceiling: Option<f64>, datagram_size: usize) -> RateControl {
        let start = ceiling.map_or(START_RATE, |c| c.min(START_RATE));
        RateControl {
            rule,
            rate: start.max(MIN_RATE),
            ceiling,
            phase: Phase::SlowStart,
            datagram_bits: datagram_size as f64 * 8.0,
            last_decrease: None,
            last_increase: None,
            last: None,
            sent_bytes: 0,
            last_heard: None,
            base_delay_us: None,
            delivered: VecDeque::new(),
        }
    }

    /// Bits per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    fn clamp(&mut self) {
        let top = self.ceiling.unwrap_or(f64::INFINITY);
        self.rate = self.rate.min(top).max(MIN_RATE);
    }

    /// `bytes` left at `now`.
    pub fn sent(&mut self, now: Instant, bytes: u64) {
        self.sent_bytes += bytes;
        self.last_heard.get_or_insert(now);
    }

    /// The client's running counts arrived at `now`.
    pub fn feedback(&mut self, now: Instant, f: &v1::Feedback) {
        self.last_heard = Some(now);
        let Some(interval) = self.interval(now, f) else {
            return;
        };
        match (self.rule, interval.queueing) {
            (Rule::Delay, Some(q)) => self.delay_rule(now, &interval, q),
            // A client that measures no delay gets the loss rule.
            _ => self.loss_rule(now, &interval),
        }
        self.clamp();
    }

    /// The interval since the previous feedback; `None` for the first one
    /// of a pass or an interval in which nothing arrived.
    fn interval(&mut self, now: Instant, f: &v1::Feedback) -> Option<Interval> {
        let timing = f.timing;
        let queueing = timing.and_then(|t| t.min_delay_us).map(|d| {
            let base = self.base_delay_us.map_or(d, |b| b.min(d));
            self.base_delay_us = Some(base);
            Duration::from_micros(d.saturating_sub(base).unsigned_abs())
        });
        let kernel_drops = f.kernel_drops.unwrap_or(0);
        let mark = Mark {
            at: now,
            client_us: timing.map(|t| t.time_us),
            arrived: f.arrived,
            lost: f.lost.max(kernel_drops),
            kernel_drops,
        };
        let sent = std::mem::take(&mut self.sent_bytes);
        let prev = self.last.replace(mark)?;
        let server_elapsed = now.saturating_duration_since(prev.at).as_secs_f64();
        let elapsed = match (prev.client_us, mark.client_us) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e6,
            _ => server_elapsed,
        };
        let arrived = mark.arrived.saturating_sub(prev.arrived);
        let lost = mark.lost.saturating_sub(prev.lost);
        if arrived + lost == 0 || elapsed <= 0.0 || server_elapsed <= 0.0 {
            return None;
        }
        Some(Interval {
            elapsed,
            arrived,
            lost,
            kernel_drops: mark.kernel_drops.saturating_sub(prev.kernel_drops),
            sent_rate: sent as f64 * 8.0 / server_elapsed,
            queueing,
        })
    }

    /// Bits per second the client took in over the interval.
    fn delivery_rate(&self, i: &Interval) -> f64 {
        i.arrived as f64 * self.datagram_bits / i.elapsed
    }

    /// The largest delivery rate of the last [`DELIVERY_WINDOW`], `rate`
    /// the newest. When the path took less for sure (a queue of twice the
    /// target or more, the client's socket overflowing), the window starts
    /// again from `rate`.
    fn windowed_delivery(&mut self, now: Instant, rate: f64, path_took_less: bool) -> f64 {
        if path_took_less {
            self.delivered.clear();
        }
        while self
            .delivered
            .front()
            .is_some_and(|&(t, _)| now.saturating_duration_since(t) > DELIVERY_WINDOW)
        {
            self.delivered.pop_front();
        }
        self.delivered.push_back((now, rate));
        self.delivered.iter().map(|&(_, r)| r).fold(rate, f64::max)
    }

    /// Queueing delay `q` against [`TARGET_DELAY`]; loss is not looked at,
    /// except the kernel's drops at the client, which no path loses at
    /// random.
    fn delay_rule(&mut self, now: Instant, i: &Interval, q: Duration) {
        let busy = i.sent_rate >= BUSY * self.rate;
        let target = TARGET_DELAY.as_secs_f64();
        let off_target = (target - q.as_secs_f64()) / target;
        let mut factor = (1.0 + GAIN * off_target).clamp(0.5, 1.0 + GAIN);
        if i.kernel_drops > 0 {
            factor = factor.min(7.0 / 8.0);
        }
        let queue_seen = q.as_secs_f64() >= target / 2.0 || i.kernel_drops > 0;
        if self.phase == Phase::SlowStart && !queue_seen {
            // Twice what was delivered, not twice the rate: the feedback of
            // the next round trip still tells of datagrams sent before the
            // last raise, and doubling on each would overshoot by 2^3.
            if busy {
                self.rate = self.rate.max(2.0 * self.delivery_rate(i));
            }
            return;
        }
        self.phase = Phase::Avoidance;
        let follow = if busy {
            // What the path delivered is what it can take, whatever it
            // lost at random: the rate follows it, above while the queue
            // is short, below while it is long.
            let path_took_less = q >= 2 * TARGET_DELAY || i.kernel_drops > 0;
            self.windowed_delivery(now, self.delivery_rate(i), path_took_less) * factor
        } else {
            // A sender below its rate learns only how long the queue is.
            self.rate * factor.min(1.0)
        };
        // Only a queue (or the client's socket overflowing) brings the rate
        // down: little delivered with no queue means little was sent then
        // (the tail of a pass, as the feedback lags the sender), or loss
        // at random, and neither says the path would take less.
        self.rate = if queue_seen {
            follow
        } else {
            follow.max(self.rate)
        };
    }

    /// v1's first rule: loss above [`LOSS_THRESHOLD`] is congestion.
    fn loss_rule(&mut self, now: Instant, i: &Interval) {
        let loss = i.lost as f64 / (i.arrived + i.lost) as f64;
        if loss > LOSS_THRESHOLD {
            match self.phase {
                Phase::SlowStart => {
                    self.phase = Phase::Avoidance;
                    self.rate = self.rate.min(self.delivery_rate(i));
                    self.last_decrease = Some(now);
                }
                Phase::Avoidance => {
                    let epoch = FEEDBACK_INTERVAL * 2;
                    if self
                        .last_decrease
                        .is_none_or(|t| now.saturating_duration_since(t) >= epoch)
                    {
                        self.rate *= 7.0 / 8.0;
                        self.last_decrease = Some(now);
                    }
                }
            }
        } else if i.sent_rate >= BUSY * self.rate
            // Its steps are per FEEDBACK_INTERVAL, however often the
            // client reports (more often early on: engine::feedback_interval).
            && self
                .last_increase
                .is_none_or(|t| now.saturating_duration_since(t) >= FEEDBACK_INTERVAL)
        {
            self.last_increase = Some(now);
            match self.phase {
                Phase::SlowStart => self.rate *= 2.0,
                Phase::Avoidance => self.rate += self.rate / 32.0,
            }
        }
    }

    /// Call while sending: halves the rate when the client has been silent
    /// for [`SILENCE`]. Returns true when it did.
    pub fn check_silence(&mut self, now: Instant) -> bool {
        match self.last_heard {
            Some(t) if now.saturating_duration_since(t) >= SILENCE => {
                self.rate /= 2.0;
                self.phase = Phase::Avoidance;
                self.last_heard = Some(now);
                self.clamp();
                true
            }
            _ => false,
        }
    }

    /// Forget the interval in progress (a new pass starts after a pause).
    pub fn restart_interval(&mut self) {
        self.last = None;
        self.sent_bytes = 0;
        self.last_heard = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds intervals of 10 ms by both clocks: `sent` datagrams of 1000
    /// bytes, `lost` of them lost, the interval's smallest delay `delay_us`
    /// (the clocks' offset included).
    struct Client {
        now: Instant,
        us: u64,
        arrived: u64,
        lost: u64,
    }

    impl Client {
        fn new(rc: &mut RateControl) -> Client {
            let c = Client {
                now: Instant::now(),
                us: 5_000_000,
                arrived: 0,
                lost: 0,
            };
            rc.feedback(c.now, &c.feedback(Some(1000)));
            c
        }

        fn feedback(&self, delay_us: Option<i64>) -> v1::Feedback {
            v1::Feedback {
                round: 0,
                arrived: self.arrived,
                lost: self.lost,
                kernel_drops: None,
                timing: Some(v1::FeedbackTiming {
                    time_us: self.us,
                    min_delay_us: delay_us,
                }),
            }
        }

        fn interval(&mut self, rc: &mut RateControl, sent: u64, lost: u64, delay_us: i64) {
            self.deliver(rc, sent, sent - lost, lost, delay_us);
        }

        /// `sent` datagrams left, `arrived` and `lost` came of them and of
        /// those queued before.
        fn deliver(
            &mut self,
            rc: &mut RateControl,
            sent: u64,
            arrived: u64,
            lost: u64,
            delay_us: i64,
        ) {
            rc.sent(self.now, sent * 1000);
            self.now += FEEDBACK_INTERVAL;
            self.us += 10_000;
            self.arrived += arrived;
            self.lost += lost;
            rc.feedback(self.now, &self.feedback(Some(delay_us)));
        }
    }

    /// Datagrams of 1000 bytes in 10 ms at `rate` bits/s.
    fn per_interval(rate: f64) -> u64 {
        (rate / 8e5).round() as u64
    }

    #[test]
    fn slow_start_doubles_what_was_delivered_until_a_queue_shows() {
        let mut rc = RateControl::new(None, 1000);
        let mut c = Client::new(&mut rc);
        // 100 Mbit/s delivered: 125 datagrams in 10 ms.
        c.interval(&mut rc, 125, 0, 1000);
        assert_eq!(rc.rate(), 200e6);
        // The next feedback still tells of 100 Mbit/s: no second doubling.
        c.interval(&mut rc, 250, 125, 1000);
        assert_eq!((rc.rate(), rc.phase()), (200e6, Phase::SlowStart));
        // Random loss with no queue is no reason to leave slow start.
        c.interval(&mut rc, 250, 25, 1000);
        assert!((rc.rate() - 2.0 * 225.0 * 8000.0 / 0.01).abs() < 1.0);
        // 3 ms of queue (over the 1000 us base): the pipe is full; the rate
        // is the delivery rate, a little above it as the queue is short.
        let r = rc.rate();
        c.interval(&mut rc, per_interval(r), 0, 4000);
        assert_eq!(rc.phase(), Phase::Avoidance);
        let delivered = per_interval(r) as f64 * 8e5;
        let want = delivered * (1.0 + GAIN * (5.0 - 3.0) / 5.0);
        assert!((rc.rate() - want).abs() < 1.0, "{} {want}", rc.rate());
    }

    fn steady(rate: f64) -> (RateControl, Client) {
        let mut rc = RateControl::new(None, 1000);
        let mut c = Client::new(&mut rc);
        c.interval(&mut rc, 125, 0, 1000);
        while rc.phase() == Phase::SlowStart && rc.rate() < rate {
            let n = per_interval(rc.rate());
            c.interval(&mut rc, n, 0, 1000);
        }
        c.interval(&mut rc, per_interval(rate), 0, 1000 + 5000);
        assert_eq!(rc.phase(), Phase::Avoidance);
        (rc, c)
    }

    #[test]
    fn random_loss_without_a_queue_never_lowers_the_rate() {
        let (mut rc, mut c) = steady(200e6);
        for _ in 0..50 {
            let before = rc.rate();
            let n = per_interval(before);
            // 20 % lost, no queue: the rate holds or climbs.
            c.interval(&mut rc, n, n / 5, 1000);
            assert!(rc.rate() >= before);
        }
        // The tail of a pass: little arrives, no queue: no cut either.
        let before = rc.rate();
        c.interval(&mut rc, 3, 0, 1000);
        assert_eq!(rc.rate(), before);
    }

    #[test]
    fn a_queue_past_the_target_brings_the_rate_below_the_delivery_rate() {
        let (mut rc, mut c) = steady(200e6);
        // The link delivers 100 Mbit/s whatever is sent; the queue grows.
        let n = per_interval(100e6);
        let sent = per_interval(rc.rate());
        c.deliver(&mut rc, sent, n, 0, 1000 + 10_000);
        // 10 ms of queue, twice the target: factor 1 - GAIN.
        assert!(
            (rc.rate() - 100e6 * (1.0 - GAIN)).abs() < 1.0,
            "{}",
            rc.rate()
        );
        // At the target, the rate is the delivery rate.
        let sent = per_interval(rc.rate());
        c.deliver(&mut rc, sent, n, 0, 1000 + 5000);
        assert!((rc.rate() - 100e6).abs() < 1.0, "{}", rc.rate());
        // However long the queue, one feedback at most halves it.
        c.deliver(&mut rc, n, n, 0, 1000 + 500_000);
        assert!((rc.rate() - 50e6).abs() < 1.0, "{}", rc.rate());
        // A sender short of its rate learns only the queue's length.
        c.deliver(&mut rc, n / 4, n, 0, 1000 + 10_000);
        assert!(
            (rc.rate() - 50e6 * (1.0 - GAIN)).abs() < 1.0,
            "{}",
            rc.rate()
        );
        // A smaller delay than ever seen is the new base: no queue.
        let before = rc.rate();
        c.interval(&mut rc, n, 0, 200);
        assert!(rc.rate() >= before);
    }

    #[test]
    fn kernel_drops_are_congestion_even_with_no_queue() {
        let (mut rc, mut c) = steady(200e6);
        rc.sent(c.now, 250_000);
        c.now += FEEDBACK_INTERVAL;
        c.us += 10_000;
        c.arrived += 200;
        let mut f = c.feedback(Some(1000));
        f.kernel_drops = Some(50);
        rc.feedback(c.now, &f);
        // Delivered 160 Mbit/s; cut by 1/8 of it.
        assert!((rc.rate() - 160e6 * 7.0 / 8.0).abs() < 1.0, "{}", rc.rate());
    }

    #[test]
    fn a_client_that_measures_no_delay_gets_the_loss_rule() {
        let mut rc = RateControl::new(None, 1000);
        let mut c = Client::new(&mut rc);
        rc.sent(c.now, 125_000);
        c.now += FEEDBACK_INTERVAL;
        c.arrived += 100;
        c.lost += 25;
        let old = v1::Feedback {
            timing: None,
            ..c.feedback(None)
        };
        rc.feedback(c.now, &old);
        // 20 % loss in slow start: down to what the client took, 80 Mbit/s.
        assert_eq!(rc.phase(), Phase::Avoidance);
        assert!((rc.rate() - 80e6).abs() < 1.0, "{}", rc.rate());
    }
}
