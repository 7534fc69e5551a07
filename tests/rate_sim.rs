//! The reliable mode's rate rule against a simulated bottleneck, without
//! sockets: a discrete-event simulation in virtual time drives the server's
//! [`Transfer`] and the client's [`Reception`] through a link of rate R
//! with a FIFO queue of B bytes that drops when full, random loss p after
//! the queue (a seeded PRNG), and a propagation delay d each way. The
//! client sends its feedback every 10 ms while data arrives and reports as
//! the real one does (section 5 of docs/PROTOCOL.md).
//!
//! Goodput is counted as `bench-reliable` counts it: the file's datagrams
//! over the time from the start to the client's confirmation, here in bits
//! of Ethernet frames (1066 bytes for a full datagram), so that it compares
//! with the link's rate.
//!
//! `UDPLAB_SIM_TABLE=1 cargo test --test rate_sim -- --nocapture table`
//! prints the figures of every scenario for both rules.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use udplab::engine::{
    Action, Finish, Reception, Rule, Service, Transfer, TransferConfig, feedback_interval,
};
use udplab::protocol::Mode;
use udplab::protocol::v1::{self, Announce, DataHeader, Feedback, Message, Report};

/// Bytes a data datagram adds on Ethernet/IPv4: UDP 8, IPv4 20, Ethernet 14.
const FRAME_OVERHEAD: usize = 42;
/// The client's wait for a quiet socket before it reports (client.rs QUIET).
const QUIET: Duration = Duration::from_millis(20);
const DATAGRAM_SIZE: u16 = 1024;
/// Microseconds added to the virtual time for the server's clock and the
/// client's: the two need not agree.
const SERVER_EPOCH_US: u64 = 1_700_000_000_000_000;
const CLIENT_EPOCH_US: u64 = 1_700_000_000_123_456;

/// A link: its rate may change at a moment of the run.
#[derive(Debug, Clone, Copy)]
struct Path {
    rate: f64,
    queue: usize,
    loss: f64,
    delay: Duration,
    /// (at, new rate).
    rate_change: Option<(Duration, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Outcome {
    completed: bool,
    time: Duration,
    goodput: f64,
    queue_drops: u64,
    random_drops: u64,
    sent: u64,
    rounds: u32,
    /// The server's rate at the end, bits/s of UDP payload.
    final_rate: f64,
}

/// splitmix64: small, seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[derive(Debug)]
enum Event {
    /// The server polls its transfer (generation: stale wakes are skipped).
    ServerWake(u64),
    /// A data datagram reaches the client.
    Datagram {
        seq: u32,
        retransmit: bool,
        sent_us: u64,
    },
    /// `Done` reaches the client.
    Done,
    /// The client's feedback timer.
    FeedbackTimer,
    /// The client looks whether its socket has gone quiet after `Done`.
    QuietCheck,
    /// A control message reaches the server.
    ToServer(Box<Message>),
}

/// An event due at `at`; ties go in the order they were scheduled, so a
/// run is the same every time.
#[derive(Debug)]
struct Due {
    at: Duration,
    order: u64,
    event: Event,
}

impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Due) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

struct Sim {
    base: Instant,
    now: Duration,
    events: BinaryHeap<Reverse<Due>>,
    order: u64,
    path: Path,
    rng: Rng,
    /// Departure times and sizes of the frames in the bottleneck's queue.
    queue: VecDeque<(Duration, usize)>,
    queued_bytes: usize,
    busy_until: Duration,
    announce: Announce,
    transfer: Transfer,
    wake_gen: u64,
    rx: Reception,
    fed_back: u64,
    done_at: Option<Duration>,
    last_activity: Duration,
    finished: Option<Duration>,
    queue_drops: u64,
    random_drops: u64,
    sent: u64,
    /// (virtual time, rate) after each feedback.
    rates: Vec<(Duration, f64)>,
}

impl Sim {
    fn new(path: Path, rule: Rule, file_size: u64, seed: u64) -> Sim {
        let datagrams = v1::plan(file_size, DATAGRAM_SIZE).unwrap();
        let announce = Announce {
            file_name: "sim".into(),
            file_size,
            datagrams,
            datagram_size: DATAGRAM_SIZE,
            data_port: 1,
            mode: Mode::Reliable,
            sha256: [0; 32],
        };
        let base = Instant::now();
        let transfer = Transfer::new(
            TransferConfig {
                service: Service::Reliable,
                datagrams,
                file_size,
                datagram_size: usize::from(DATAGRAM_SIZE),
                max_batch: 64,
                ceiling: None,
                deadline: Duration::from_secs(600),
                report_timeout: Duration::from_secs(30),
                rule,
            },
            base,
        );
        let mut sim = Sim {
            base,
            now: Duration::ZERO,
            events: BinaryHeap::new(),
            order: 0,
            path,
            rng: Rng(seed),
            queue: VecDeque::new(),
            queued_bytes: 0,
            busy_until: Duration::ZERO,
            rx: Reception::new(&announce),
            announce,
            transfer,
            wake_gen: 0,
            fed_back: 0,
            done_at: None,
            last_activity: Duration::ZERO,
            finished: None,
            queue_drops: 0,
            random_drops: 0,
            sent: 0,
            rates: Vec::new(),
        };
        sim.at(Duration::ZERO, Event::ServerWake(0));
        // Start reaches the client after d; its feedback timer runs from then.
        sim.at(
            path.delay + feedback_interval(Duration::ZERO),
            Event::FeedbackTimer,
        );
        sim
    }

    fn at(&mut self, t: Duration, e: Event) {
        self.order += 1;
        self.events.push(Reverse(Due {
            at: t,
            order: self.order,
            event: e,
        }));
    }

    fn run(mut self, limit: Duration) -> (Outcome, Vec<(Duration, f64)>) {
        while let Some(Reverse(Due {
            at: t, event: e, ..
        })) = self.events.pop()
        {
            if self.finished.is_some() || t > limit {
                break;
            }
            self.now = t;
            match e {
                Event::ServerWake(g) if g == self.wake_gen => self.server_step(),
                Event::ServerWake(_) => {}
                Event::Datagram {
                    seq,
                    retransmit,
                    sent_us,
                } => self.client_datagram(seq, retransmit, sent_us),
                Event::Done => {
                    self.done_at = Some(self.now);
                    self.client_check();
                }
                Event::FeedbackTimer => self.client_feedback(),
                Event::QuietCheck => self.client_check(),
                Event::ToServer(msg) => self.server_message(*msg),
            }
        }
        let time = self.finished.unwrap_or(self.now);
        let frame_bits = (usize::from(DATAGRAM_SIZE) + FRAME_OVERHEAD) as f64 * 8.0;
        let outcome = Outcome {
            completed: self.finished.is_some(),
            time,
            goodput: f64::from(self.announce.datagrams) * frame_bits / time.as_secs_f64(),
            queue_drops: self.queue_drops,
            random_drops: self.random_drops,
            sent: self.sent,
            rounds: self.transfer.repair().round,
            final_rate: self.transfer.rate().unwrap_or(0.0),
        };
        (outcome, self.rates)
    }

    fn instant(&self) -> Instant {
        self.base + self.now
    }

    fn link_rate(&self) -> f64 {
        match self.path.rate_change {
            Some((at, rate)) if self.now >= at => rate,
            _ => self.path.rate,
        }
    }

    fn server_step(&mut self) {
        loop {
            match self.transfer.poll(self.instant()) {
                Action::Send(run) => {
                    let mut bytes = 0;
                    for seq in run.first..run.first + run.count {
                        bytes += self.enter_link(seq, run.retransmit);
                    }
                    self.transfer.sent(self.instant(), bytes as u64);
                }
                Action::Wait(until) => {
                    self.wake_gen += 1;
                    let t = until.saturating_duration_since(self.base);
                    self.at(t.max(self.now), Event::ServerWake(self.wake_gen));
                    return;
                }
                Action::SendDone => {
                    let t = self.now + self.path.delay;
                    self.at(t, Event::Done);
                }
                Action::Finish(f) => {
                    assert_eq!(f, Finish::Confirmed);
                    self.finished = Some(self.now);
                    return;
                }
                Action::Abort(why) => panic!("aborted at {:?}: {why}", self.now),
            }
        }
    }

    fn server_message(&mut self, msg: Message) {
        let now = self.instant();
        match msg {
            Message::Feedback(f) => {
                self.transfer.feedback(now, &f);
                let rate = self.transfer.rate().unwrap_or(0.0);
                self.rates.push((self.now, rate));
            }
            Message::Report(r) => {
                self.transfer.report(now, &r);
            }
            other => panic!("unexpected {other:?}"),
        }
        self.server_step();
    }

    /// A datagram enters the bottleneck now; the bytes it takes there.
    fn enter_link(&mut self, seq: u32, retransmit: bool) -> usize {
        self.sent += 1;
        let payload = self.announce.payload_len(seq).unwrap_or(0);
        let frame = v1::HEADER_LEN + payload + FRAME_OVERHEAD;
        while self.queue.front().is_some_and(|&(t, _)| t <= self.now) {
            if let Some((_, size)) = self.queue.pop_front() {
                self.queued_bytes -= size;
            }
        }
        if self.queued_bytes + frame > self.path.queue {
            self.queue_drops += 1;
            return frame - FRAME_OVERHEAD;
        }
        let serialize = Duration::from_secs_f64(frame as f64 * 8.0 / self.link_rate());
        self.busy_until = self.busy_until.max(self.now) + serialize;
        self.queue.push_back((self.busy_until, frame));
        self.queued_bytes += frame;
        if self.rng.chance(self.path.loss) {
            self.random_drops += 1;
        } else {
            let sent_us = SERVER_EPOCH_US + self.now.as_micros() as u64;
            let arrive = self.busy_until + self.path.delay;
            self.at(
                arrive,
                Event::Datagram {
                    seq,
                    retransmit,
                    sent_us,
                },
            );
        }
        frame - FRAME_OVERHEAD
    }

    fn client_us(&self) -> u64 {
        CLIENT_EPOCH_US + self.now.as_micros() as u64
    }

    fn client_datagram(&mut self, seq: u32, retransmit: bool, sent_us: u64) {
        let mut d = DataHeader {
            flags: if retransmit { v1::FLAG_RETRANSMIT } else { 0 },
            seq,
            send_time_us: sent_us,
        }
        .emit()
        .to_vec();
        d.resize(
            v1::HEADER_LEN + self.announce.payload_len(seq).unwrap_or(0),
            0,
        );
        self.rx.arrive(&d, false, self.client_us());
        self.last_activity = self.now;
        if self.done_at.is_some() {
            self.client_check();
        }
    }

    fn send_to_server(&mut self, msg: Message) {
        let t = self.now + self.path.delay;
        self.at(t, Event::ToServer(Box::new(msg)));
    }

    fn client_feedback(&mut self) {
        if self.done_at.is_none() && !self.rx.complete() && self.rx.arrived != self.fed_back {
            self.fed_back = self.rx.arrived;
            let f: Feedback = self.rx.feedback(None, self.client_us());
            self.send_to_server(Message::Feedback(f));
        }
        // The client's Start arrived after one delay.
        let t = self.now + feedback_interval(self.now.saturating_sub(self.path.delay));
        self.at(t, Event::FeedbackTimer);
    }

    /// After `Done`: report once the socket is quiet (or at once when the
    /// file is whole), as client.rs does.
    fn client_check(&mut self) {
        let Some(done) = self.done_at else {
            return;
        };
        let quiet = self.now.saturating_sub(self.last_activity) >= QUIET;
        let waited = self.now - done >= Duration::from_secs(1);
        if !(self.rx.complete() || quiet || waited) {
            let t = (self.last_activity + QUIET).max(self.now + Duration::from_micros(1));
            self.at(t.min(done + Duration::from_secs(1)), Event::QuietCheck);
            return;
        }
        let missing = self.rx.missing_count();
        let (ranges, truncated) = self.rx.missing_ranges(v1::MAX_REPORT_RANGES);
        let report = Report {
            datagrams_received: self.rx.received(),
            bytes_received: self.rx.bytes,
            duplicates: self.rx.duplicates,
            malformed: self.rx.malformed,
            missing_datagrams: missing,
            kernel_drops: None,
            sha256_match: self.rx.complete(),
            missing: ranges,
            ranges_truncated: truncated,
        };
        self.send_to_server(Message::Report(report));
        self.done_at = None;
        if !self.rx.complete() {
            self.rx.next_round();
            self.last_activity = self.now;
        }
    }
}

const MBIT: f64 = 1e6;
const KIB: usize = 1024;

fn link(rate: f64, loss: f64) -> Path {
    Path {
        rate,
        queue: 256 * KIB,
        loss,
        delay: Duration::from_millis(10),
        rate_change: None,
    }
}

/// 64 MiB: at 200 Mbit/s about 2.8 s, so that the repair rounds' wait
/// (a quiet 20 ms and a round trip each) weighs a few percent.
const FILE: u64 = 64 << 20;

fn simulate(path: Path, rule: Rule, seed: u64) -> (Outcome, Vec<(Duration, f64)>) {
    Sim::new(path, rule, FILE, seed).run(Duration::from_secs(120))
}

fn describe(name: &str, rule: Rule, o: &Outcome, path: &Path) -> String {
    format!(
        "{name:<28} {rule:<6?} completed {:<5} time {:>7.3} s goodput {:>6.1} Mbit/s \
         ({:.3} of R(1-p)) queue drops {:>6} random drops {:>6} sent {:>7} rounds {:>2} \
         final rate {:>6.1} Mbit/s",
        o.completed,
        o.time.as_secs_f64(),
        o.goodput / MBIT,
        o.goodput / (path.rate * (1.0 - path.loss)),
        o.queue_drops,
        o.random_drops,
        o.sent,
        o.rounds,
        o.final_rate / MBIT
    )
}

#[test]
fn table() {
    if std::env::var_os("UDPLAB_SIM_TABLE").is_none() {
        return;
    }
    let mut halving = link(200.0 * MBIT, 0.0);
    halving.rate_change = Some((Duration::from_secs(1), 100.0 * MBIT));
    let scenarios = [
        ("no loss, 200 Mbit/s", link(200.0 * MBIT, 0.0)),
        ("1 % random loss", link(200.0 * MBIT, 0.01)),
        ("5 % random loss", link(200.0 * MBIT, 0.05)),
        ("200 -> 100 Mbit/s at 1 s", halving),
    ];
    for (name, path) in scenarios {
        for rule in [Rule::Loss, Rule::Delay] {
            let (o, rates) = simulate(path, rule, 1);
            println!("{}", describe(name, rule, &o, &path));
            if let Some((at, rate)) = path.rate_change {
                let new = payload_rate(rate);
                let after = rates.iter().filter(|&&(t, _)| t >= at);
                let followed = after.clone().find(|&&(_, r)| r <= 1.1 * new);
                let lowest = after.map(|&(_, r)| r).fold(f64::INFINITY, f64::min);
                println!(
                    "    at or below 1.1 x the new rate after {:?}; lowest {:.2} x it",
                    followed.map(|&(t, _)| t - at),
                    lowest / new
                );
            }
        }
    }
}

/// The server's rate in the bits it counts (UDP payload) for a link rate
/// (Ethernet frames).
fn payload_rate(link: f64) -> f64 {
    link * f64::from(DATAGRAM_SIZE) / (usize::from(DATAGRAM_SIZE) + FRAME_OVERHEAD) as f64
}

/// Queue drops as a fraction of the file's datagrams.
fn drop_share(o: &Outcome) -> f64 {
    o.queue_drops as f64 / v1::plan(FILE, DATAGRAM_SIZE).unwrap() as f64
}

#[test]
fn no_random_loss_fills_the_link_and_the_queue_seldom_overflows() {
    let path = link(200.0 * MBIT, 0.0);
    let (o, _) = simulate(path, Rule::Delay, 1);
    println!("{}", describe("no loss", Rule::Delay, &o, &path));
    assert!(o.completed);
    assert!(o.goodput >= 0.9 * path.rate, "{o:?}");
    // What overflows is the end of slow start: one round trip at twice
    // the link's rate.
    assert!(drop_share(&o) < 0.02, "{o:?}");
}

#[test]
fn one_percent_random_loss_is_not_congestion() {
    let path = link(200.0 * MBIT, 0.01);
    let (o, _) = simulate(path, Rule::Delay, 1);
    println!("{}", describe("1 % loss", Rule::Delay, &o, &path));
    assert!(o.completed);
    assert!(o.goodput >= 0.9 * path.rate * (1.0 - path.loss), "{o:?}");
    // v1's first rule takes every lossy interval for congestion and crawls.
    let (old, _) = simulate(path, Rule::Loss, 1);
    println!("{}", describe("1 % loss", Rule::Loss, &old, &path));
    assert!(old.goodput < 0.5 * path.rate * (1.0 - path.loss), "{old:?}");
}

#[test]
fn five_percent_random_loss_still_fills_the_link() {
    let path = link(200.0 * MBIT, 0.05);
    let (o, _) = simulate(path, Rule::Delay, 1);
    println!("{}", describe("5 % loss", Rule::Delay, &o, &path));
    assert!(o.completed);
    assert!(o.goodput >= 0.8 * path.rate * (1.0 - path.loss), "{o:?}");
}

#[test]
fn the_rate_follows_a_bottleneck_that_halves_without_collapsing() {
    let change = Duration::from_secs(1);
    let mut path = link(200.0 * MBIT, 0.0);
    path.rate_change = Some((change, 100.0 * MBIT));
    let (o, rates) = simulate(path, Rule::Delay, 1);
    println!("{}", describe("halving", Rule::Delay, &o, &path));
    assert!(o.completed);
    let new = payload_rate(100.0 * MBIT);
    let after: Vec<(Duration, f64)> = rates
        .iter()
        .copied()
        .filter(|&(t, _)| t >= change)
        .collect();
    // Within 100 ms the rate is down to the new link's (its queue fills in
    // 20 ms, and the news takes a round trip and an interval).
    let followed = after
        .iter()
        .find(|&&(_, r)| r <= 1.1 * new)
        .map(|&(t, _)| t - change);
    println!("rate at or below 1.1 x the new link's after {followed:?}");
    assert!(followed.is_some_and(|t| t <= Duration::from_millis(100)));
    // It never falls below half of it, and settles within 300 ms.
    assert!(after.iter().all(|&(_, r)| r >= 0.5 * new), "{after:?}");
    let settled = change + Duration::from_millis(300);
    for &(t, r) in after.iter().filter(|&&(t, _)| t >= settled) {
        assert!((0.8 * new..=1.2 * new).contains(&r), "{r} at {t:?}");
    }
    // Overall: within 10 % of a sender that knew the link all along.
    let file_bits = o.goodput * o.time.as_secs_f64();
    let ideal = change.as_secs_f64() + (file_bits - path.rate * change.as_secs_f64()) / 100e6;
    assert!(
        o.time.as_secs_f64() <= 1.1 * ideal,
        "{o:?}, ideal {ideal} s"
    );
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let path = link(200.0 * MBIT, 0.05);
    let a = simulate(path, Rule::Delay, 7);
    let b = simulate(path, Rule::Delay, 7);
    assert_eq!(a, b);
    let c = simulate(path, Rule::Delay, 8);
    assert_ne!(a.0.random_drops, c.0.random_drops, "the seed is used");
}
