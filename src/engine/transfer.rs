//! [`Transfer`]: the server's side of one client's transfer as a state
//! machine without I/O. It is fed events (a batch sent, feedback, a report,
//! time passing) and answers with the next [`Action`]: send this run of
//! datagrams, wait until then, send `Done`, finish, or abort and why. The
//! server's sender thread is the I/O around it; `tests/rate_sim.rs` drives
//! it with virtual time through a simulated bottleneck.

use std::time::{Duration, Instant};

use super::{Next, Pacer, RateControl, Refusal, Repair, Rule, check_figures};
use crate::protocol::v1::{self, Report};

/// Most refused repair requests a client may send before the server gives
/// up on it.
pub const MAX_REJECTED: u64 = 8;

/// Most repair rounds in a row that may confirm nothing new: a client
/// that keeps asking for what it never confirms is given up.
pub const MAX_STALLED_ROUNDS: u32 = 8;

/// Repair rounds resend at most this many times the file's datagrams in
/// all (and at least [`MIN_RESEND_LIMIT`]), so that one client cannot make
/// the server send more than a few copies of the file.
pub const RESEND_FACTOR: u64 = 4;

/// The resend limit of a small file, in datagrams: a few lost again on a
/// lossy path must not end it.
pub const MIN_RESEND_LIMIT: u64 = 1024;

/// What the client is served, which decides how a transfer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The lab's protocol: one pass, no `Done`, no report.
    Lab,
    /// v1 blast: one pass, `Done`, then the client's one report.
    Blast,
    /// v1 reliable: repair rounds until the client confirms the file, at a
    /// rate adapted to its feedback.
    Reliable,
}

/// What a [`Transfer`] is set up with.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    pub service: Service,
    /// Datagrams in the file.
    pub datagrams: u32,
    /// The file's size in bytes, to check the client's report against.
    pub file_size: u64,
    /// Bytes of a full datagram on the wire (header and chunk), for pacing.
    pub datagram_size: usize,
    /// Most datagrams in one [`Run`].
    pub max_batch: usize,
    /// `--rate`, bits per second.
    pub ceiling: Option<f64>,
    /// Reliable: give up when the client has not confirmed the file within
    /// this time from the start.
    pub deadline: Duration,
    /// How long the client may take to report after `Done`, and
    /// (reliable) go without feedback while a pass is sent.
    pub report_timeout: Duration,
    /// Reliable: how the rate adapts ([`Rule::Delay`] unless comparing).
    pub rule: Rule,
}

/// Consecutive datagrams to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub first: u32,
    pub count: u32,
    /// A repair round's: set [`v1::FLAG_RETRANSMIT`] in their headers.
    pub retransmit: bool,
}

/// How a transfer ended well (for the server; the client may still say
/// its file is incomplete, in blast).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Lab: every datagram was sent; nothing more can be known.
    Sent,
    /// Blast: the client's one report came.
    Reported,
    /// Reliable: the client confirmed the file's SHA-256.
    Confirmed,
}

/// Why the server gives up on a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Abort {
    #[error(
        "deadline passed: {confirmed} of {total} datagrams confirmed after {rounds} repair round(s)"
    )]
    Deadline {
        confirmed: u64,
        total: u32,
        rounds: u32,
    },
    #[error(
        "the client stopped answering: no report for {} after {}",
        humantime::format_duration(*.waited),
        pass_name(*.round)
    )]
    ReportTimeout { waited: Duration, round: u32 },
    #[error("{count} repair requests refused; the last {last}")]
    Refused { count: u64, last: Refusal },
    #[error("the client holds every datagram but its file's SHA-256 differs")]
    Corrupt,
    #[error(
        "the client stopped answering: no feedback for {} while sending {}",
        humantime::format_duration(*.waited),
        pass_name(*.round)
    )]
    FeedbackTimeout { waited: Duration, round: u32 },
    #[error(
        "{rounds} repair rounds in a row confirmed nothing new ({confirmed} of {total} datagrams \
         confirmed)"
    )]
    NoProgress {
        rounds: u32,
        confirmed: u64,
        total: u32,
    },
    #[error(
        "the client asks for {requested} more datagrams after {resent} resent; at most {limit} \
         are resent ({RESEND_FACTOR} x the file)"
    )]
    ResendLimit {
        requested: u64,
        resent: u64,
        limit: u64,
    },
    #[error("refused the client's report: {0}")]
    InvalidReport(Refusal),
}

fn pass_name(round: u32) -> String {
    if round == 0 {
        "the first pass".to_string()
    } else {
        format!("repair round {round}")
    }
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these datagrams now, then report them with [`Transfer::sent`].
    Send(Run),
    /// Nothing is due before this instant, unless a message comes.
    Wait(Instant),
    /// The pass is over: send `Done`. The report is awaited from now.
    SendDone,
    Finish(Finish),
    /// Tell the client why, and stop.
    Abort(Abort),
}

/// What a report was to the transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportTaken {
    /// Valid: the client's figures, worth logging. What follows comes from
    /// [`Transfer::poll`].
    Accepted(Next),
    /// Refused and counted; nothing is resent for it.
    Refused(Refusal),
    /// No report was awaited: the pass is still being sent.
    Unexpected,
}

#[derive(Debug, Clone)]
enum State {
    Sending,
    /// `Done` went out at `since`.
    AwaitReport {
        since: Instant,
    },
    Finished(Finish),
    Aborted(Abort),
}

/// One client's transfer, from the first pass to its end.
#[derive(Debug, Clone)]
pub struct Transfer {
    cfg: TransferConfig,
    repair: Repair,
    pacer: Pacer,
    /// Reliable mode: the adaptive rate.
    rate: Option<RateControl>,
    deadline: Option<Instant>,
    /// When the client last sent feedback or a report.
    last_heard: Instant,
    state: State,
}

impl Transfer {
    /// A transfer whose first pass starts at `now`.
    pub fn new(cfg: TransferConfig, now: Instant) -> Transfer {
        let reliable = cfg.service == Service::Reliable;
        Transfer {
            repair: Repair::new(cfg.datagrams),
            pacer: Pacer::new(cfg.ceiling),
            rate: reliable
                .then(|| RateControl::with_rule(cfg.rule, cfg.ceiling, cfg.datagram_size)),
            deadline: reliable.then(|| now + cfg.deadline),
            last_heard: now,
            state: State::Sending,
            cfg,
        }
    }

    /// What to do at `now`.
    pub fn poll(&mut self, now: Instant) -> Action {
        match &self.state {
            State::Sending => self.poll_sending(now),
            State::AwaitReport { since } => self.poll_report(*since, now),
            State::Finished(f) => Action::Finish(*f),
            State::Aborted(a) => Action::Abort(a.clone()),
        }
    }

    fn poll_sending(&mut self, now: Instant) -> Action {
        if let Some(abort) = self.deadline_passed(now) {
            return self.abort(abort);
        }
        // A frozen or vanished client would otherwise hold its sender at
        // the slowest rate for as long as the pass takes.
        if self.rate.is_some() && now >= self.last_heard + self.cfg.report_timeout {
            return self.abort(Abort::FeedbackTimeout {
                waited: self.cfg.report_timeout,
                round: self.repair.round,
            });
        }
        if let Some(rate) = &mut self.rate {
            rate.check_silence(now);
            self.pacer.set_rate(Some(rate.rate()));
        }
        let wait = self.pacer.wait(now);
        if !wait.is_zero() {
            return Action::Wait(now + wait);
        }
        let max = self
            .pacer
            .batch_len(self.cfg.datagram_size, self.cfg.max_batch) as u32;
        if let Some((first, count)) = self.repair.next_run(max) {
            return Action::Send(Run {
                first,
                count,
                retransmit: self.repair.round > 0,
            });
        }
        if self.cfg.service == Service::Lab {
            self.state = State::Finished(Finish::Sent);
            return Action::Finish(Finish::Sent);
        }
        self.state = State::AwaitReport { since: now };
        Action::SendDone
    }

    fn poll_report(&mut self, since: Instant, now: Instant) -> Action {
        if let Some(abort) = self.deadline_passed(now) {
            return self.abort(abort);
        }
        let timeout = since + self.cfg.report_timeout;
        if now >= timeout {
            return self.abort(Abort::ReportTimeout {
                waited: self.cfg.report_timeout,
                round: self.repair.round,
            });
        }
        Action::Wait(self.deadline.map_or(timeout, |d| d.min(timeout)))
    }

    fn deadline_passed(&self, now: Instant) -> Option<Abort> {
        self.deadline
            .filter(|&d| now >= d)
            .map(|_| Abort::Deadline {
                confirmed: self.repair.confirmed(),
                total: self.cfg.datagrams,
                rounds: self.repair.round,
            })
    }

    fn abort(&mut self, abort: Abort) -> Action {
        self.state = State::Aborted(abort.clone());
        Action::Abort(abort)
    }

    /// The [`Run`] that [`Action::Send`] asked for left at `now`:
    /// `wire_bytes` in all, headers included.
    pub fn sent(&mut self, now: Instant, wire_bytes: u64) {
        self.pacer.sent(now, wire_bytes);
        if let Some(rate) = &mut self.rate {
            rate.sent(now, wire_bytes);
        }
    }

    /// The client's feedback arrived at `now`. Between passes it is passed
    /// over: it tells of the pass's tail trickling in, not of the path.
    pub fn feedback(&mut self, now: Instant, f: &v1::Feedback) {
        self.last_heard = now;
        if let (Some(rate), State::Sending) = (&mut self.rate, &self.state) {
            rate.feedback(now, f);
        }
    }

    /// The client's report arrived at `now`.
    pub fn report(&mut self, now: Instant, r: &Report) -> ReportTaken {
        if !matches!(self.state, State::AwaitReport { .. }) {
            return ReportTaken::Unexpected;
        }
        self.last_heard = now;
        let figures = check_figures(
            r,
            self.cfg.datagrams,
            self.cfg.file_size,
            self.cfg.datagram_size as u64,
        );
        if self.cfg.service != Service::Reliable {
            // Blast has one report: an impossible one ends the transfer.
            return match figures {
                Ok(()) => {
                    self.state = State::Finished(Finish::Reported);
                    ReportTaken::Accepted(if r.sha256_match {
                        Next::Complete
                    } else {
                        Next::Corrupt
                    })
                }
                Err(refusal) => {
                    self.repair.rejected += 1;
                    self.state = State::Aborted(Abort::InvalidReport(refusal.clone()));
                    ReportTaken::Refused(refusal)
                }
            };
        }
        // Counts no client can hold are a refusal like the book's own.
        let taken = figures.inspect_err(|_| self.repair.rejected += 1);
        match taken.and_then(|()| self.repair.report(r)) {
            Ok(next) => {
                self.state = match next {
                    Next::Complete => State::Finished(Finish::Confirmed),
                    Next::Corrupt => State::Aborted(Abort::Corrupt),
                    Next::Repair { datagrams } => match self.over_limits(datagrams) {
                        Some(abort) => State::Aborted(abort),
                        None => {
                            if let Some(rate) = &mut self.rate {
                                rate.restart_interval();
                            }
                            State::Sending
                        }
                    },
                };
                ReportTaken::Accepted(next)
            }
            Err(refusal) => {
                self.state = if self.repair.rejected >= MAX_REJECTED {
                    State::Aborted(Abort::Refused {
                        count: self.repair.rejected,
                        last: refusal.clone(),
                    })
                } else {
                    // A refusal is an answer: the report timeout starts again.
                    State::AwaitReport { since: now }
                };
                ReportTaken::Refused(refusal)
            }
        }
    }

    /// Whether a repair round of `requested` datagrams would take this
    /// client past what one client may make the server resend.
    fn over_limits(&self, requested: u64) -> Option<Abort> {
        let repair = &self.repair;
        if repair.stalled >= MAX_STALLED_ROUNDS {
            return Some(Abort::NoProgress {
                rounds: repair.stalled,
                confirmed: repair.confirmed(),
                total: self.cfg.datagrams,
            });
        }
        let limit = (RESEND_FACTOR * u64::from(self.cfg.datagrams)).max(MIN_RESEND_LIMIT);
        (repair.retransmitted + requested > limit).then_some(Abort::ResendLimit {
            requested,
            resent: repair.retransmitted,
            limit,
        })
    }

    /// Why the transfer was given up, once it has been.
    pub fn aborted(&self) -> Option<&Abort> {
        match &self.state {
            State::Aborted(a) => Some(a),
            _ => None,
        }
    }

    pub fn service(&self) -> Service {
        self.cfg.service
    }

    /// The current pass (0 the first, then repair rounds) and its book.
    pub fn repair(&self) -> &Repair {
        &self.repair
    }

    /// The sending rate, bits per second: the adaptive one (reliable), or
    /// the ceiling.
    pub fn rate(&self) -> Option<f64> {
        self.rate
            .as_ref()
            .map(RateControl::rate)
            .or(self.cfg.ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::v1::SeqRange;

    fn cfg(service: Service, datagrams: u32) -> TransferConfig {
        TransferConfig {
            service,
            datagrams,
            file_size: u64::from(datagrams) * 984,
            datagram_size: 1000,
            max_batch: 64,
            ceiling: None,
            deadline: Duration::from_secs(600),
            report_timeout: Duration::from_secs(30),
            rule: Rule::Delay,
        }
    }

    /// An honest client's report on a file of `total` full datagrams (984
    /// bytes each, as [`cfg`] has it) lacking `missing`.
    fn report(total: u32, missing: &[(u32, u32)], sha256_match: bool) -> Report {
        let missing: Vec<SeqRange> = missing
            .iter()
            .map(|&(first, last)| SeqRange { first, last })
            .collect();
        let lacking: u64 = missing
            .iter()
            .map(|m| u64::from(m.last - m.first) + 1)
            .sum();
        let received = u64::from(total).saturating_sub(lacking);
        Report {
            datagrams_received: received,
            bytes_received: received * 984,
            duplicates: 0,
            malformed: 0,
            missing_datagrams: lacking,
            kernel_drops: None,
            sha256_match,
            missing,
            ranges_truncated: false,
        }
    }

    /// Poll and send until the transfer asks for something else.
    fn send_pass(t: &mut Transfer, now: &mut Instant) -> (Vec<Run>, Action) {
        let mut runs = Vec::new();
        loop {
            match t.poll(*now) {
                Action::Send(run) => {
                    t.sent(*now, u64::from(run.count) * 1000);
                    runs.push(run);
                }
                Action::Wait(until) => *now = until,
                other => return (runs, other),
            }
        }
    }

    #[test]
    fn rounds_resend_the_report_until_the_client_confirms() {
        let mut now = Instant::now();
        let mut t = Transfer::new(cfg(Service::Reliable, 100), now);
        let (runs, next) = send_pass(&mut t, &mut now);
        assert_eq!(next, Action::SendDone);
        assert_eq!(runs.iter().map(|r| r.count).sum::<u32>(), 100);
        assert!(runs.iter().all(|r| !r.retransmit));
        assert!(matches!(t.poll(now), Action::Wait(_)), "awaits the report");
        assert_eq!(
            t.report(now, &report(100, &[(5, 6), (90, 90)], false)),
            ReportTaken::Accepted(Next::Repair { datagrams: 3 })
        );
        let (runs, next) = send_pass(&mut t, &mut now);
        let resent: Vec<(u32, u32, bool)> = runs
            .iter()
            .map(|r| (r.first, r.count, r.retransmit))
            .collect();
        assert_eq!(resent, [(5, 2, true), (90, 1, true)]);
        assert_eq!(next, Action::SendDone);
        assert_eq!(
            t.report(now, &report(100, &[], true)),
            ReportTaken::Accepted(Next::Complete)
        );
        assert_eq!(t.poll(now), Action::Finish(Finish::Confirmed));
        assert_eq!((t.repair().round, t.repair().retransmitted), (1, 3));
    }

    #[test]
    fn a_report_mid_pass_is_unexpected() {
        let now = Instant::now();
        let mut t = Transfer::new(cfg(Service::Reliable, 1000), now);
        assert!(matches!(t.poll(now), Action::Send(_)));
        assert_eq!(
            t.report(now, &report(1000, &[], true)),
            ReportTaken::Unexpected
        );
    }

    #[test]
    fn refusals_restart_the_wait_then_give_up() {
        let mut now = Instant::now();
        let mut t = Transfer::new(cfg(Service::Reliable, 10), now);
        send_pass(&mut t, &mut now);
        for i in 1..=MAX_REJECTED {
            now += Duration::from_secs(20);
            let v = t.report(now, &report(10, &[(10, 10)], false));
            assert!(matches!(
                v,
                ReportTaken::Refused(Refusal::OutOfRange { .. })
            ));
            if i < MAX_REJECTED {
                // 20 s after the refusal, 40 s after Done: still waiting.
                assert!(matches!(
                    t.poll(now + Duration::from_secs(20)),
                    Action::Wait(_)
                ));
            }
        }
        let Action::Abort(why) = t.poll(now) else {
            panic!("not given up");
        };
        assert!(
            why.to_string().contains("8 repair requests refused"),
            "{why}"
        );
        assert_eq!(t.repair().retransmitted, 0);
    }

    #[test]
    fn a_silent_client_times_out_and_the_deadline_ends_a_slow_one() {
        let mut now = Instant::now();
        let mut t = Transfer::new(cfg(Service::Reliable, 10), now);
        send_pass(&mut t, &mut now);
        let done = now;
        assert_eq!(
            t.poll(done + Duration::from_secs(29)),
            Action::Wait(done + Duration::from_secs(30))
        );
        let Action::Abort(why) = t.poll(done + Duration::from_secs(30)) else {
            panic!("no timeout");
        };
        assert_eq!(
            why.to_string(),
            "the client stopped answering: no report for 30s after the first pass"
        );

        let mut slow = cfg(Service::Reliable, 10);
        slow.deadline = Duration::from_secs(10);
        let start = Instant::now();
        let mut now = start;
        let mut t = Transfer::new(slow, now);
        send_pass(&mut t, &mut now);
        assert_eq!(t.poll(now), Action::Wait(start + Duration::from_secs(10)));
        assert_eq!(
            t.poll(start + Duration::from_secs(10)),
            Action::Abort(Abort::Deadline {
                confirmed: 0,
                total: 10,
                rounds: 0
            })
        );
    }

    #[test]
    fn lab_ends_with_the_pass_blast_with_one_report() {
        let mut now = Instant::now();
        let mut lab = Transfer::new(cfg(Service::Lab, 3), now);
        assert_eq!(
            send_pass(&mut lab, &mut now).1,
            Action::Finish(Finish::Sent)
        );
        let mut blast = Transfer::new(cfg(Service::Blast, 3), now);
        assert_eq!(send_pass(&mut blast, &mut now).1, Action::SendDone);
        // Blast believes no list: it resends nothing either way.
        assert_eq!(
            blast.report(now, &report(3, &[(1, 1)], false)),
            ReportTaken::Accepted(Next::Corrupt)
        );
        assert_eq!(blast.poll(now), Action::Finish(Finish::Reported));
        assert_eq!(blast.rate(), None);
    }

    #[test]
    fn a_client_that_never_confirms_anything_is_given_up_within_the_resend_limit() {
        let mut now = Instant::now();
        let total = 2000;
        let mut t = Transfer::new(cfg(Service::Reliable, total), now);
        send_pass(&mut t, &mut now);
        let mut resent = 0u64;
        let why = loop {
            let everything = report(total, &[(0, total - 1)], false);
            assert!(matches!(
                t.report(now, &everything),
                ReportTaken::Accepted(Next::Repair { .. })
            ));
            let (runs, next) = send_pass(&mut t, &mut now);
            resent += runs.iter().map(|r| u64::from(r.count)).sum::<u64>();
            match next {
                Action::SendDone => {}
                Action::Abort(why) => break why,
                other => panic!("{other:?}"),
            }
        };
        // Four whole copies resent, the fifth refused.
        assert_eq!(resent, RESEND_FACTOR * u64::from(total));
        assert_eq!(t.repair().retransmitted, resent);
        assert_eq!(
            why,
            Abort::ResendLimit {
                requested: u64::from(total),
                resent,
                limit: RESEND_FACTOR * u64::from(total),
            }
        );
    }

    #[test]
    fn rounds_that_confirm_nothing_new_are_given_up_and_progress_resets_the_count() {
        let mut now = Instant::now();
        // A small file: the resend limit (1024 datagrams) is far away.
        let mut t = Transfer::new(cfg(Service::Reliable, 10), now);
        send_pass(&mut t, &mut now);
        // Progress: 9 and 8 confirmed one after the other.
        for missing in [(0, 8), (0, 7)] {
            t.report(now, &report(10, &[missing], false));
            send_pass(&mut t, &mut now);
        }
        assert_eq!(t.repair().stalled, 0);
        let mut rounds = 0;
        let why = loop {
            t.report(now, &report(10, &[(0, 7)], false));
            match send_pass(&mut t, &mut now).1 {
                Action::SendDone => rounds += 1,
                Action::Abort(why) => break why,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(rounds, MAX_STALLED_ROUNDS - 1);
        assert_eq!(
            why,
            Abort::NoProgress {
                rounds: MAX_STALLED_ROUNDS,
                confirmed: 2,
                total: 10
            }
        );
        assert!(why.to_string().contains("confirmed nothing new"), "{why}");
    }

    #[test]
    fn a_client_silent_while_the_pass_is_sent_is_given_up_after_the_report_timeout() {
        let start = Instant::now();
        let mut c = cfg(Service::Reliable, 1_000_000);
        c.report_timeout = Duration::from_secs(2);
        let mut t = Transfer::new(c, start);
        let mut now = start;
        let mut fed = false;
        let why = loop {
            match t.poll(now) {
                Action::Send(run) => t.sent(now, u64::from(run.count) * 1000),
                Action::Wait(until) => now = until,
                Action::Abort(why) => break why,
                other => panic!("{other:?}"),
            }
            // Feedback for the first second, then nothing.
            if !fed || now - start < Duration::from_secs(1) {
                t.feedback(
                    now,
                    &v1::Feedback {
                        round: 0,
                        arrived: 1,
                        lost: 0,
                        kernel_drops: None,
                        timing: None,
                    },
                );
                fed = true;
            }
        };
        assert!(t.repair().pass_left() > 0, "the pass was not over");
        let waited = now - start;
        assert!(
            waited >= Duration::from_secs(3) && waited < Duration::from_millis(3100),
            "{waited:?}"
        );
        assert_eq!(
            why.to_string(),
            "the client stopped answering: no feedback for 2s while sending the first pass"
        );
    }

    #[test]
    fn an_impossible_blast_report_is_refused_and_ends_the_transfer() {
        let mut now = Instant::now();
        let mut blast = Transfer::new(cfg(Service::Blast, 3), now);
        send_pass(&mut blast, &mut now);
        let mut lie = report(3, &[], true);
        lie.bytes_received = 1 << 63;
        assert!(matches!(
            blast.report(now, &lie),
            ReportTaken::Refused(Refusal::BytesImpossible { .. })
        ));
        let Action::Abort(why) = blast.poll(now) else {
            panic!("an impossible report accepted");
        };
        assert!(matches!(why, Abort::InvalidReport(_)), "{why}");
        assert_eq!(blast.repair().rejected, 1);
    }
}
