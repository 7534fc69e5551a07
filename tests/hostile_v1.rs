//! Hostile v1 peers against a real server on loopback: a reliable-mode
//! client that asks for the whole file after every pass, a real `udplab
//! client` frozen (SIGSTOP) just after its transfer starts, and blast
//! clients whose report or abort no honest client sends. Each is bounded in
//! time: a server that does not give up is stopped, and the test fails.

mod common;

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::v1_peer::{PassEnd, Peer};
use common::*;
use udplab::engine::{Abort, RESEND_FACTOR, Refusal};
use udplab::protocol::Mode;
use udplab::protocol::v1::Message;
use udplab::server::{self, Ending};
use udplab::transfer_log;

/// Stop the server if it has not ended by `limit`, so that a server that
/// never gives up fails the test instead of hanging it.
fn join_within(server: RunningServer, limit: Duration) -> (server::Summary, Duration) {
    let start = Instant::now();
    while !server.handle.is_finished() && start.elapsed() < limit {
        thread::sleep(Duration::from_millis(20));
    }
    let timely = server.handle.is_finished();
    server.shutdown.trigger();
    let summary = server.join().expect("the server ran");
    assert!(timely, "the server still served after {limit:?}");
    (summary, start.elapsed())
}

fn outcome(summary: &server::Summary, id: u16) -> &server::Outcome {
    summary
        .outcomes
        .iter()
        .find(|o| o.client_id == id)
        .expect("an outcome for the client")
}

fn reliable(cfg: &mut server::Config) {
    cfg.mode = Mode::Reliable;
}

#[test]
fn a_client_that_reports_everything_missing_after_every_pass_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "amp.bin", 2 << 20, 41);
    let logs = dir.path().join("logs");
    let server = start_server(&file, 1, &logs, |cfg| {
        reliable(cfg);
        cfg.deadline = Duration::from_secs(120);
    });
    let mut peer = Peer::register(server.addr);
    let total = u64::from(peer.announce.datagrams);
    let mut round = 0;
    let mut received = 0;
    let reason = loop {
        let (got, end) = peer.pass(round);
        received += got;
        match end {
            PassEnd::Done => {}
            PassEnd::Abort(reason) => break reason,
        }
        assert!(
            round <= RESEND_FACTOR as u32 + 1,
            "{round} repair rounds of the whole file and no end"
        );
        let report = peer.nothing_held();
        peer.send(&report);
        round += 1;
    };
    let (summary, _) = join_within(server, Duration::from_secs(30));
    let o = outcome(&summary, 1);
    assert_eq!(o.ending, Ending::Failed);
    let Some(Abort::ResendLimit { resent, limit, .. }) = o.gave_up else {
        panic!("given up for another reason: {:?}", o.gave_up);
    };
    assert_eq!(limit, RESEND_FACTOR * total);
    assert!(resent <= limit);
    // The first pass and at most the limit's copies, all counted.
    let log = transfer_log::read_log(o.log_path.as_ref().unwrap()).unwrap();
    let sent = log.datagrams_sent.unwrap();
    assert!(sent <= total + limit, "{sent} datagrams sent for {total}");
    assert_eq!(log.datagrams_retransmitted, Some(resent));
    assert!(received <= sent);
    let error = log.error.unwrap();
    assert!(
        error.contains("at most") && error.contains("resent"),
        "{error}"
    );
    assert!(reason.contains("resent"), "the client was told: {reason}");
}

/// A `udplab client` process; killed (and woken first, if stopped) when
/// dropped.
struct ClientProcess(Child);

impl Drop for ClientProcess {
    fn drop(&mut self) {
        // SAFETY: signalling our own child, which has not been reaped.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGCONT);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_frozen_client_is_given_up_within_the_report_timeout_and_the_other_is_served() {
    let dir = tempfile::tempdir().unwrap();
    // 6 MiB at 20 Mbit/s: 2.5 s of sending, longer than the report timeout.
    let (file, data) = write_file(dir.path(), "frozen.bin", 6 << 20, 42);
    let logs = dir.path().join("logs");
    let report_timeout = Duration::from_secs(2);
    let server = start_server(&file, 2, &logs, |cfg| {
        reliable(cfg);
        cfg.report_timeout = report_timeout;
        cfg.rate = Some(20e6);
    });
    let addr = server.addr;
    let out = dir.path().join("out");
    let (honest_out, honest_logs) = (out.join("honest"), logs.clone());
    let honest = thread::spawn(move || receive(addr, &honest_out, &honest_logs));
    // The honest client registers first: it is client 1.
    thread::sleep(Duration::from_millis(300));
    let mut child = Command::new(env!("CARGO_BIN_EXE_udplab"))
        .arg("client")
        .arg("--server")
        .arg(addr.to_string())
        .arg("--out")
        .arg(out.join("frozen"))
        .arg("--log-dir")
        .arg(dir.path().join("frozen-logs"))
        .args(["--recv-buffer", "1MiB", "--start-timeout", "20s"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = StderrLines::of(&mut child);
    let frozen = ClientProcess(child);
    assert!(
        stderr.wait_for("registered as client 2", Duration::from_secs(10)),
        "the client did not register"
    );
    // Its registration fills the round: the transfer starts at once.
    thread::sleep(Duration::from_millis(30));
    // SAFETY: signalling our own child.
    assert_eq!(
        unsafe { libc::kill(frozen.0.id() as i32, libc::SIGSTOP) },
        0
    );
    let stopped = SystemTime::now();

    let (summary, _) = join_within(server, Duration::from_secs(20));
    assert_received(&honest.join().unwrap().unwrap(), &data);
    assert_eq!(outcome(&summary, 1).ending, Ending::Delivered);
    let o = outcome(&summary, 2);
    assert_eq!(o.ending, Ending::Failed);
    assert!(
        matches!(o.gave_up, Some(Abort::FeedbackTimeout { round: 0, .. })),
        "{:?}",
        o.gave_up
    );
    let log = transfer_log::read_log(o.log_path.as_ref().unwrap()).unwrap();
    let end = SystemTime::from(log.end.unwrap());
    let held = end.duration_since(stopped).unwrap_or_default();
    assert!(
        held < report_timeout + Duration::from_millis(1500),
        "held {held:?} after the client froze"
    );
    assert!(log.bytes_sent.unwrap() < data.len() as u64, "sent it all");
    let error = log.error.unwrap();
    assert!(error.contains("no feedback for 2s"), "{error}");
    drop(frozen);
}

/// A blast-mode server and one raw peer that receives the whole pass.
fn blast_peer(dir: &std::path::Path) -> (RunningServer, Peer) {
    let (file, _) = write_file(dir, "blast.bin", 100 * 1008 + 7, 43);
    let server = start_server(&file, 1, &dir.join("logs"), |_| {});
    let mut peer = Peer::register(server.addr);
    assert_eq!(peer.announce.mode, Mode::Blast);
    assert!(matches!(peer.pass(0).1, PassEnd::Done));
    (server, peer)
}

#[test]
fn a_blast_report_claiming_more_than_the_file_is_refused_not_logged_as_fact() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut peer) = blast_peer(dir.path());
    let mut lie = peer.everything_held();
    lie.bytes_received = 1 << 63;
    peer.send(&Message::Report(lie));
    let (summary, _) = join_within(server, Duration::from_secs(10));
    let o = outcome(&summary, 1);
    assert_eq!(o.ending, Ending::Failed);
    assert!(
        matches!(
            o.gave_up,
            Some(Abort::InvalidReport(Refusal::BytesImpossible { .. }))
        ),
        "{:?}",
        o.gave_up
    );
    let path = o.log_path.as_ref().unwrap();
    let log = transfer_log::read_log(path).unwrap();
    assert_eq!(log.bytes_received, None, "an impossible figure logged");
    assert_eq!(log.datagrams_received, None);
    assert_eq!(log.sha256_match, None);
    assert_eq!(log.success, Some(false));
    assert_eq!(log.reports_rejected, Some(1));
    let error = log.error.unwrap();
    assert!(error.contains("refused the client's report"), "{error}");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        !text.lines().any(|l| l.starts_with("bytes_received:")),
        "{text}"
    );
}

#[test]
fn a_blast_report_whose_counts_disagree_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut peer) = blast_peer(dir.path());
    let mut lie = peer.everything_held();
    lie.datagrams_received = u64::MAX;
    peer.send(&Message::Report(lie));
    let (summary, _) = join_within(server, Duration::from_secs(10));
    let o = outcome(&summary, 1);
    assert!(
        matches!(
            o.gave_up,
            Some(Abort::InvalidReport(Refusal::CountsDisagree { .. }))
        ),
        "{:?}",
        o.gave_up
    );
    let log = transfer_log::read_log(o.log_path.as_ref().unwrap()).unwrap();
    assert_eq!(log.datagrams_received, None);
}

#[test]
fn an_honest_blast_report_is_still_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut peer) = blast_peer(dir.path());
    let report = peer.everything_held();
    peer.send(&Message::Report(report));
    let (summary, _) = join_within(server, Duration::from_secs(10));
    let o = outcome(&summary, 1);
    assert_eq!(o.ending, Ending::Delivered);
    assert_eq!(o.gave_up, None);
    let log = transfer_log::read_log(o.log_path.as_ref().unwrap()).unwrap();
    assert_eq!(log.bytes_received, Some(100 * 1008 + 7));
}

#[test]
fn a_client_s_abort_reason_reaches_the_log_with_its_control_characters_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut peer) = blast_peer(dir.path());
    peer.send(&Message::Abort {
        reason: "can't: \u{1b}[2J\rbytes_received: 9\u{7}".into(),
    });
    let (summary, _) = join_within(server, Duration::from_secs(10));
    let o = outcome(&summary, 1);
    assert_eq!(o.ending, Ending::Failed);
    let path = o.log_path.as_ref().unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "raw control characters in the log: {text:?}"
    );
    let log = transfer_log::read_log(path).unwrap();
    assert_eq!(log.bytes_received, None);
    let error = log.error.unwrap();
    assert!(error.contains("the client aborted"), "{error}");
    assert!(
        error.contains("can't: \\x1b[2J\\x0dbytes_received: 9\\x07"),
        "{error}"
    );
}
