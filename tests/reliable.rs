//! The reliable mode end to end on loopback: real servers and clients, and
//! test peers that speak v1 byte for byte to drive the cases a real peer
//! never produces (a client that drops datagrams on purpose, forges its
//! repair requests or goes silent; a server that sends duplicates and late
//! datagrams).

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::v1_peer::Peer;
use common::*;
use sha2::{Digest, Sha256};
use udplab::client;
use udplab::control;
use udplab::net;
use udplab::protocol::v1::{self, Message, Report, SeqRange};
use udplab::shutdown::Shutdown;
use udplab::transfer_log;

/// A v1 client made of raw sockets, driven by the test: the shared raw
/// peer, with the passes and counts these tests need.
struct RawV1(Peer);

impl RawV1 {
    fn register(server: SocketAddr) -> RawV1 {
        RawV1(Peer::register(server))
    }

    /// Receive until the server's `Done` and a quiet 100 ms after it:
    /// (sequence number, flags) of every data datagram, in arrival order.
    fn pass(&mut self) -> Vec<(u32, u8)> {
        let mut got = Vec::new();
        let mut done: Option<Instant> = None;
        let mut buf = vec![0u8; 2048];
        self.0.udp.set_nonblocking(true).unwrap();
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < Duration::from_secs(20), "no Done");
            let ready = net::poll_readable(
                [self.0.udp.as_raw_fd(), self.0.tcp.as_raw_fd()],
                Duration::from_millis(20),
            )
            .unwrap();
            let mut quiet = true;
            while let Ok(n) = self.0.udp.recv(&mut buf) {
                let (h, _) = v1::DataHeader::parse(&buf[..n]).unwrap();
                got.push((h.seq, h.flags));
                quiet = false;
            }
            if ready[1] {
                assert!(self.0.reader.fill(&mut self.0.tcp).unwrap() > 0, "closed");
                while let Some(msg) = self.0.reader.next_message().unwrap() {
                    match msg {
                        Message::Start { .. } => {}
                        Message::Done(_) => done = Some(Instant::now()),
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            if quiet && done.is_some_and(|t| t.elapsed() >= Duration::from_millis(100)) {
                return got;
            }
        }
    }

    fn send(&mut self, msg: &Message) {
        self.0.tcp.write_all(&msg.encode()).unwrap();
    }

    /// Datagrams that arrive within `wait`.
    fn count_arrivals(&mut self, wait: Duration) -> usize {
        let mut buf = vec![0u8; 2048];
        self.0.udp.set_read_timeout(Some(wait)).unwrap();
        self.0.udp.set_nonblocking(false).unwrap();
        let mut n = 0;
        while self.0.udp.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    }
}

/// An honest report of a client of `announce` that lacks `missing`.
fn report(announce: &v1::Announce, missing: &[u32], sha256_match: bool) -> Message {
    let (ranges, truncated) = v1::ranges_from_missing(missing.iter().copied(), 4096);
    let lacking: u64 = missing
        .iter()
        .map(|&s| announce.payload_len(s).unwrap() as u64)
        .sum();
    Message::Report(Report {
        datagrams_received: u64::from(announce.datagrams) - missing.len() as u64,
        bytes_received: announce.file_size - lacking,
        duplicates: 0,
        malformed: 0,
        missing_datagrams: missing.len() as u64,
        kernel_drops: None,
        sha256_match,
        missing: ranges,
        ranges_truncated: truncated,
    })
}

fn reliable(cfg: &mut udplab::server::Config) {
    cfg.mode = udplab::protocol::Mode::Reliable;
}

fn server_log(summary: &udplab::server::Summary, id: u16) -> transfer_log::TransferLog {
    let o = summary
        .outcomes
        .iter()
        .find(|o| o.client_id == id)
        .expect("an outcome for the client");
    transfer_log::read_log(o.log_path.as_ref().unwrap()).unwrap()
}

#[test]
fn the_server_resends_exactly_the_reported_datagrams_flagged_round_after_round() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "r.bin", 300 * 1008 - 5, 3);
    let logs = dir.path().join("logs");
    let server = start_server(&file, 1, &logs, reliable);
    let mut c = RawV1::register(server.addr);
    assert_eq!(c.0.announce.mode, udplab::protocol::Mode::Reliable);
    let total = c.0.announce.datagrams;
    assert_eq!(total, 300);

    let first = c.pass();
    assert_eq!(first.len(), 300);
    assert!(first.iter().all(|&(_, f)| f == 0), "first pass flagged");
    // Pretend every seventh datagram, and the last, were lost.
    let lost: Vec<u32> = (0..total)
        .filter(|s| s % 7 == 3 || *s == total - 1)
        .collect();
    c.send(&report(&c.0.announce, &lost, false));
    let round1 = c.pass();
    let resent: Vec<u32> = round1.iter().map(|&(s, _)| s).collect();
    assert_eq!(resent, lost, "round 1 resends exactly the list, in order");
    assert!(round1.iter().all(|&(_, f)| f & v1::FLAG_RETRANSMIT != 0));
    // Datagram 3 is lost again.
    c.send(&report(&c.0.announce, &[3], false));
    assert_eq!(c.pass(), [(3, v1::FLAG_RETRANSMIT)]);
    c.send(&report(&c.0.announce, &[], true));
    let summary = server.join().unwrap();
    let s = server_log(&summary, 1);
    assert_eq!(s.success, Some(true), "{:?}", s.error);
    assert_eq!(s.mode, Some(udplab::protocol::Mode::Reliable));
    assert_eq!(s.repair_rounds, Some(2));
    assert_eq!(s.datagrams_retransmitted, Some(lost.len() as u64 + 1));
    assert_eq!(s.datagrams_sent, Some(300 + lost.len() as u64 + 1));
    assert_eq!(s.reports_rejected, Some(0));
    assert!(s.final_rate_mbit_s.unwrap() >= 1.0);
    assert!(s.goodput_mb_s.is_some());
}

#[test]
fn forged_repair_requests_are_refused_counted_and_resend_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "f.bin", 200 * 1008, 4);
    let logs = dir.path().join("logs");
    let server = start_server(&file, 1, &logs, reliable);
    let mut c = RawV1::register(server.addr);
    let total = c.0.announce.datagrams;
    assert_eq!(c.pass().len(), 200);
    c.send(&report(&c.0.announce, &[10, 11, 150], false));
    assert_eq!(c.pass().len(), 3);
    // Forged: beyond the file, and all of it again although the client
    // confirmed all but three. Neither may bring a single datagram.
    let beyond = Message::Report(Report {
        datagrams_received: 0,
        bytes_received: 0,
        duplicates: 0,
        malformed: 0,
        missing_datagrams: 1,
        kernel_drops: None,
        sha256_match: false,
        missing: vec![SeqRange {
            first: 5000,
            last: 5000,
        }],
        ranges_truncated: false,
    });
    c.send(&beyond);
    let everything: Vec<u32> = (0..total).collect();
    c.send(&report(&c.0.announce, &everything, false));
    assert_eq!(
        c.count_arrivals(Duration::from_millis(500)),
        0,
        "resend storm"
    );
    // The honest report still works after them.
    c.send(&report(&c.0.announce, &[], true));
    let summary = server.join().unwrap();
    let s = server_log(&summary, 1);
    assert_eq!(s.success, Some(true), "{:?}", s.error);
    assert_eq!(s.reports_rejected, Some(2));
    assert_eq!(s.datagrams_retransmitted, Some(3));
    assert_eq!(s.repair_rounds, Some(1));
}

#[test]
fn a_client_that_keeps_forging_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "g.bin", 50 * 1008, 5);
    let logs = dir.path().join("logs");
    let server = start_server(&file, 1, &logs, reliable);
    let mut c = RawV1::register(server.addr);
    assert_eq!(c.pass().len(), 50);
    c.send(&report(&c.0.announce, &[1], false));
    assert_eq!(c.pass().len(), 1);
    for _ in 0..udplab::server::MAX_REJECTED {
        c.send(&report(&c.0.announce, &[0], false));
    }
    let summary = server.join().unwrap();
    let s = server_log(&summary, 1);
    assert_eq!(s.success, Some(false));
    assert_eq!(s.reports_rejected, Some(udplab::server::MAX_REJECTED));
    let error = s.error.unwrap();
    assert!(error.contains("repair requests refused"), "{error}");
    assert_eq!(s.datagrams_retransmitted, Some(1));
}

#[test]
fn a_client_silent_mid_repair_is_given_up_and_the_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "s.bin", 2_000_000, 6);
    let logs = dir.path().join("logs");
    let server = start_server(&file, 2, &logs, |cfg| {
        reliable(cfg);
        cfg.report_timeout = Duration::from_secs(1);
    });
    let addr = server.addr;
    let out = dir.path().join("out");
    let logs2 = logs.clone();
    let real = thread::spawn(move || receive(addr, &out, &logs2));
    // Let the real client register first: it becomes client 1.
    thread::sleep(Duration::from_millis(200));
    let mut silent = RawV1::register(addr);
    silent.pass();
    silent.send(&report(&silent.0.announce, &[7, 8, 9], false));
    assert_eq!(silent.pass().len(), 3);
    // ... and says nothing more, its connection open.
    let started = Instant::now();
    let summary = server.join().unwrap();
    let waited = started.elapsed();
    assert_received(&real.join().unwrap().unwrap(), &data);
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(server_log(&summary, 1).success, Some(true));
    let s = server_log(&summary, 2);
    assert_eq!(s.success, Some(false));
    let error = s.error.unwrap();
    assert!(
        error.contains("stopped answering") && error.contains("repair round 1"),
        "{error}"
    );
    drop(silent);
}

/// The client's next report, past its feedback.
fn next_report(tcp: &mut TcpStream, reader: &mut control::Reader) -> Report {
    loop {
        match reader.read(tcp, "report", Duration::from_secs(10)).unwrap() {
            Message::Feedback(_) => {}
            Message::Report(r) => return r,
            other => panic!("expected a report, got {other:?}"),
        }
    }
}

/// A server made of raw sockets that sends datagram 4 late, twice, and some
/// duplicates and junk on the way.
#[test]
fn the_client_ignores_and_counts_duplicate_late_and_junk_datagrams() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(10 * 1008 - 100, 8);
    let listener = listener_with_free_data_ports(1);
    let addr = listener.local_addr().unwrap();
    let payload = data.clone();
    let fake = thread::spawn(move || {
        let RawClient {
            mut tcp,
            udp_to: to,
            ..
        } = accept_raw(&listener);
        let announce = v1::Announce {
            file_name: "d.bin".into(),
            file_size: payload.len() as u64,
            datagrams: 10,
            datagram_size: 1024,
            data_port: addr.port() + 1,
            mode: udplab::protocol::Mode::Reliable,
            sha256: Sha256::digest(&payload).into(),
        };
        announce_and_start(&mut tcp, announce);
        let udp = data_socket(&listener);
        let datagram = |seq: u32, flags: u8| {
            v1_datagram(seq, flags, payload.chunks(1008).nth(seq as usize).unwrap())
        };
        for seq in [0, 1, 2, 2, 3, 5, 6, 1, 7, 8, 9] {
            udp.send_to(&datagram(seq, 0), to).unwrap();
        }
        udp.send_to(b"not a datagram", to).unwrap();
        let done = Message::Done(v1::Done {
            datagrams_sent: 11,
            bytes_sent: 0,
            duration_us: 1,
        });
        tcp.write_all(&done.encode()).unwrap();
        let mut reader = control::Reader::new();
        let r = next_report(&mut tcp, &mut reader);
        assert_eq!(r.missing, [SeqRange { first: 4, last: 4 }]);
        assert_eq!((r.duplicates, r.malformed), (2, 1));
        // The repair, then the same datagram again and an old one: late.
        udp.send_to(&datagram(4, v1::FLAG_RETRANSMIT), to).unwrap();
        udp.send_to(&datagram(4, v1::FLAG_RETRANSMIT), to).unwrap();
        udp.send_to(&datagram(0, 0), to).unwrap();
        tcp.write_all(&done.encode()).unwrap();
        let r = next_report(&mut tcp, &mut reader);
        assert!(r.sha256_match && r.missing.is_empty(), "{r:?}");
    });
    let out = dir.path().join("out");
    let o = client::run(
        client_config(addr, &out, &dir.path().join("logs")),
        Shutdown::new(),
    )
    .unwrap();
    fake.join().unwrap();
    assert_received(&o, &data);
    let log = transfer_log::read_log(o.log_path.as_ref().unwrap()).unwrap();
    assert_eq!(log.mode, Some(udplab::protocol::Mode::Reliable));
    assert_eq!(log.datagrams_received, Some(10));
    assert_eq!(log.duplicates, Some(2));
    assert_eq!(log.malformed, Some(1));
    // The second copy of 4 and the old 0 came after the file was whole.
    assert_eq!(log.late, Some(2));
    assert_eq!(log.datagrams_retransmitted, Some(1));
    assert_eq!(log.repair_rounds, Some(1));
    assert_eq!(log.success, Some(true));
}

/// Real clients with receive buffers far too small for the rate: the
/// kernel drops datagrams, the repair rounds bring them back.
#[test]
fn tiny_receive_buffers_lose_datagrams_and_every_file_still_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "t.bin", 6 << 20, 9);
    let logs = dir.path().join("logs");
    let server = start_server(&file, 3, &logs, reliable);
    let addr = server.addr;
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let out = dir.path().join(format!("out{i}"));
            let logs = logs.clone();
            thread::spawn(move || {
                let mut cfg = client_config(addr, &out, &logs);
                cfg.recv_buffer = Some(4096);
                client::run(cfg, Shutdown::new())
            })
        })
        .collect();
    let outcomes: Vec<_> = clients
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    let summary = server.join().unwrap();
    let mut drops = 0;
    let mut resent = 0;
    for o in &outcomes {
        assert_received(o, &data);
        let c = transfer_log::read_log(o.log_path.as_ref().unwrap()).unwrap();
        assert_eq!(c.sha256_match, Some(true));
        let s = server_log(&summary, c.client_id.unwrap());
        assert_eq!(s.success, Some(true), "{:?}", s.error);
        drops += c.kernel_drops.unwrap();
        resent += s.datagrams_retransmitted.unwrap();
        // Whatever the kernel dropped came again, flagged.
        assert!(s.datagrams_retransmitted.unwrap() >= c.kernel_drops.unwrap());
        assert!(c.datagrams_retransmitted.unwrap() >= 1 || c.kernel_drops == Some(0));
        assert_eq!(
            c.repair_rounds.unwrap() > 0,
            s.datagrams_retransmitted.unwrap() > 0
        );
    }
    assert!(
        drops > 0,
        "4 KiB buffers lost nothing: the test proves no repair"
    );
    assert!(resent >= drops);
}

/// CPU time of a process so far, from /proc/<pid>/stat (utime + stime).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_millis(ticks * 1000 / hz))
}

#[test]
fn a_rate_ceiling_paces_the_sender_without_burning_a_core() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "p.bin", 5_000_000, 10);
    let logs = dir.path().join("logs");
    let listener = listener_with_free_data_ports(2);
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut server = Command::new(env!("CARGO_BIN_EXE_udplab"))
        .args(["--quiet", "server", "--bind", "127.0.0.1", "--rounds", "1"])
        .args(["--rate", "40Mbit", "--port", &port.to_string()])
        .arg("--file")
        .arg(&file)
        .arg("--log-dir")
        .arg(&logs)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        thread::sleep(Duration::from_millis(20));
    }
    // The probe connection left without registering: the round is still
    // the real client's.
    let pid = server.id();
    let sampler = thread::spawn(move || {
        let mut last = Duration::ZERO;
        while let Some(t) = cpu_time(pid) {
            last = t;
            thread::sleep(Duration::from_millis(20));
        }
        last
    });
    let out = dir.path().join("out");
    let o = receive(addr, &out, &logs).unwrap();
    assert!(server.wait().unwrap().success());
    let cpu = sampler.join().unwrap();
    assert_received(&o, &data);
    let s = transfer_log::read_log(
        &files_with_prefix(&logs, "S")
            .into_iter()
            .find(|p| transfer_log::read_log(p).is_ok_and(|l| l.success == Some(true)))
            .expect("the server's log of the transfer"),
    )
    .unwrap();
    // 5 MB of file in 1024-byte datagrams at 40 Mbit/s: about 1.02 s.
    let wire_bits = s.datagrams_sent.unwrap() as f64 * 1024.0 * 8.0;
    let secs = s.duration_s.unwrap();
    let rate = wire_bits / secs;
    assert!((34e6..=42e6).contains(&rate), "{rate} bit/s over {secs} s");
    assert_eq!(s.rate_limit_mbit_s, Some(40.0));
    // Idle between batches: far from a core's worth of CPU.
    assert!(
        cpu.as_secs_f64() < 0.35 * secs,
        "the server used {cpu:?} of CPU in {secs} s"
    );
}
