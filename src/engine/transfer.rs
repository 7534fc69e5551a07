//! [`Transfer`]: the server's side of one client's transfer as a state
//! machine without I/O. It is fed events (a batch sent, feedback, a report,
//! time passing) and answers with the next [`Action`]: send this run of
//! datagrams, wait until then, send `Done`, finish, or abort and why. The
//! server's sender thread is the I/O around it; `tests/rate_sim.rs` drives
//! it with virtual time through a simulated bottleneck.

use std::time::{Duration, Instant};

use super::{Next, Pacer, RateControl, Refusal, Repair, Rule};
use crate::protocol::v1::{self, Report};

/// Most refused repair requests a client may send before the server gives
/// up on it.
pub const MAX_REJECTED: u64 = 8;

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
    /// Bytes of a full datagram on the wire (header and chunk), for pacing.
    pub datagram_size: usize,
    /// Most datagrams in one [`Run`].
    pub max_batch: usize,
    /// `--rate`, bits per second.
    pub ceiling: Option<f64>,
    /// Reliable: give up when the client has not confirmed the file within
    /// this time from the start.
    pub deadline: Duration,
    /// How long the client may take to report after `Done`.
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
        if let (Some(rate), State::Sending) = (&mut self.rate, &self.state) {
            rate.feedback(now, f);
        }
    }

    /// The client's report arrived at `now`.
    pub fn report(&mut self, now: Instant, r: &Report) -> ReportTaken {
        if !matches!(self.state, State::AwaitReport { .. }) {
            return ReportTaken::Unexpected;
        }
        if self.cfg.service != Service::Reliable {
            self.state = State::Finished(Finish::Reported);
            return ReportTaken::Accepted(if r.sha256_match {
                Next::Complete
            } else {
                Next::Corrupt
            });
        }
        match self.repair.report(r) {
            Ok(next) => {
                self.state = match next {
                    Next::Complete => State::Finished(Finish::Confirmed),
                    Next::Corrupt => State::Aborted(Abort::Corrupt),
                    Next::Repair { .. } => {
                        if let Some(rate) = &mut self.rate {
                            rate.restart_interval();
                        }
                        State::Sending
                    }
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
            datagram_size: 1000,
            max_batch: 64,
            ceiling: None,
            deadline: Duration::from_secs(600),
            report_timeout: Duration::from_secs(30),
            rule: Rule::Delay,
        }
    }

    fn report(missing: &[(u32, u32)], sha256_match: bool) -> Report {
        let missing: Vec<SeqRange> = missing
            .iter()
            .map(|&(first, last)| SeqRange { first, last })
            .collect();
        Report {
            datagrams_received: 0,
            bytes_received: 0,
            duplicates: 0,
            malformed: 0,
            missing_datagrams: missing
                .iter()
                .map(|m| u64::from(m.last - m.first) + 1)
                .sum(),
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
            t.report(now, &report(&[(5, 6), (90, 90)], false)),
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
            t.report(now, &report(&[], true)),
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
        assert_eq!(t.report(now, &report(&[], true)), ReportTaken::Unexpected);
    }

    #[test]
    fn refusals_restart_the_wait_then_give_up() {
        let mut now = Instant::now();
        let mut t = Transfer::new(cfg(Service::Reliable, 10), now);
        send_pass(&mut t, &mut now);
        for i in 1..=MAX_REJECTED {
            now += Duration::from_secs(20);
            let v = t.report(now, &report(&[(10, 10)], false));
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
            blast.report(now, &report(&[(1, 1)], false)),
            ReportTaken::Accepted(Next::Corrupt)
        );
        assert_eq!(blast.poll(now), Action::Finish(Finish::Reported));
        assert_eq!(blast.rate(), None);
    }
}
