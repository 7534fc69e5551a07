//! The client against a hostile server or peer, over loopback: an announce
//! of a file too large to take, names as long as the file system allows,
//! terminal escapes in what a peer says, and datagrams forged from another
//! address during a real transfer. The hostile side is written here with
//! the crate's protocol types; each test is bounded in time.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use udplab::client;
use udplab::control;
use udplab::protocol::Mode;
use udplab::protocol::lab::PortMessage;
use udplab::protocol::v1::{self, Message};
use udplab::shutdown::Shutdown;
use udplab::text::NAME_MAX;
use udplab::transfer_log::{self, Role};

const BIN: &str = env!("CARGO_BIN_EXE_udplab");

/// An announce of `datagrams` datagrams of `datagram_size` bytes, the file
/// as large as that makes it.
fn announce_of(name: &str, datagrams: u32, datagram_size: u16, data_port: u16) -> v1::Announce {
    let chunk = u64::from(datagram_size) - v1::HEADER_LEN as u64;
    v1::Announce {
        file_name: name.into(),
        file_size: u64::from(datagrams) * chunk,
        datagrams,
        datagram_size,
        data_port,
        mode: Mode::Blast,
        sha256: [0; 32],
    }
}

/// A fake v1 server for one client: registers it, sends `announce` and
/// `Start`, then hands back what the client sends on the control
/// connection until it closes it (at most 10 s).
fn announce_and_listen(
    listener: TcpListener,
    announce: v1::Announce,
) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut client = accept_raw(&listener);
        assert_eq!(client.tag, v1::VERSION);
        control::send(
            &mut client.tcp,
            &Message::Announce(announce),
            Duration::from_secs(1),
        )
        .unwrap();
        let _ = control::send(
            &mut client.tcp,
            &Message::Start { time_us: 0 },
            Duration::from_secs(1),
        );
        client
            .tcp
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut said = Vec::new();
        let _ = client.tcp.read_to_end(&mut said);
        said
    })
}

/// The abort reason in what a client sent on its control connection.
fn abort_reason(said: &[u8]) -> Option<String> {
    let mut rest = said;
    while let Ok(Some((msg, used))) = Message::decode(rest) {
        if let Message::Abort { reason } = msg {
            return Some(reason);
        }
        rest = &rest[used..];
    }
    None
}

/// Everything in `dir`, dot files included (none when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// An announce of 2^32 - 1 datagrams (4.3 TB) is refused at once, by
/// `--max-size`, with a line naming the size and the option; the server is
/// told why; nothing is allocated, and the log says it.
#[test]
fn an_announce_over_max_size_is_refused_before_anything_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let announce = announce_of("huge.bin", u32::MAX, 1024, addr.port() + 1);
    let size = announce.file_size;
    let fake = announce_and_listen(listener, announce);
    let out = dir.path().join("out");
    let logs = dir.path().join("logs");
    let started = Instant::now();
    let o = client::run(client_config(addr, &out, &logs), Shutdown::new()).unwrap();
    let took = started.elapsed();
    let said = fake.join().unwrap();
    assert!(took < Duration::from_secs(3), "the refusal took {took:?}");
    assert!(!o.complete && o.output.is_none());
    let error = o.log.error.clone().unwrap();
    assert!(
        error.contains(&size.to_string()) && error.contains("--max-size"),
        "{error}"
    );
    let reason = abort_reason(&said).expect("the client told the server");
    assert!(reason.contains("--max-size"), "{reason}");
    assert!(entries(&out).is_empty(), "{:?}", entries(&out));
    let log = transfer_log::read_log(o.log_path.as_ref().unwrap()).unwrap();
    assert_eq!(log.success, Some(false));
    assert_eq!(log.file_size, Some(size));
    assert!(log.error.unwrap().contains("--max-size"));
}

/// With `--max-size` out of the way, an announce larger than the output's
/// file system has free (281 TB, the most v1 can announce) is refused too,
/// naming the free space; the binary says so in one line on stderr and
/// exits 2 (a transfer that failed), leaving no file.
#[test]
fn an_announce_over_the_free_space_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let announce = announce_of("vast.bin", u32::MAX, v1::MAX_DATAGRAM_SIZE, addr.port() + 1);
    let size = announce.file_size;
    let fake = announce_and_listen(listener, announce);
    let out = dir.path().join("out");
    let child = Command::new(BIN)
        .args(["-q", "client", "--server", &addr.to_string(), "--max-size"])
        .arg(format!("{}", u64::MAX / 2))
        .arg("--out")
        .arg(&out)
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = wait_output(child, Duration::from_secs(20));
    let said = fake.join().unwrap();
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    let refusal: Vec<&str> = err.lines().filter(|l| l.contains("refusing")).collect();
    assert_eq!(refusal.len(), 1, "{err}");
    assert!(
        refusal[0].contains(&size.to_string()) && refusal[0].contains("free"),
        "{err}"
    );
    assert!(abort_reason(&said).is_some_and(|r| r.contains("free")));
    assert!(entries(&out).is_empty(), "{:?}", entries(&out));
}

/// What [`run_measured`] saw of a process.
struct Measured {
    /// Exit code: 137 when it was killed past its limit.
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// User and system time.
    cpu: Duration,
    /// Peak resident set, bytes.
    rss: u64,
}

/// `udplab ARGS` to its end (killed past `limit`), measured by GNU time:
/// its own rusage, not that of a process spawned from this one (which
/// starts out with this test process's peak), `None` without
/// `/usr/bin/time` or `timeout`.
fn run_measured(args: &[&std::ffi::OsStr], limit: Duration) -> Option<Measured> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        skip_or_fail("no /usr/bin/time to measure the client with");
        return None;
    }
    let figures = tempfile::NamedTempFile::new().unwrap();
    let Ok(child) = Command::new(time)
        .arg("-o")
        .arg(figures.path())
        .args(["-f", "%M %U %S", "timeout", "--foreground", "-s", "KILL"])
        .arg(format!("{}", limit.as_secs()))
        .arg(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        skip_or_fail("/usr/bin/time does not run");
        return None;
    };
    let output = wait_output(child, limit + Duration::from_secs(10));
    let figures = std::fs::read_to_string(figures.path()).unwrap();
    // A killed child makes time say so on a line of its own first.
    let last = figures.lines().last().unwrap_or_default();
    let f: Vec<f64> = last.split(' ').map(|x| x.parse().unwrap()).collect();
    Some(Measured {
        code: output.status.code(),
        stdout: text(&output.stdout),
        stderr: text(&output.stderr),
        cpu: Duration::from_secs_f64(f[1] + f[2]),
        rss: f[0] as u64 * 1024,
    })
}

/// An announce of 2^32 - 1 datagrams of 17 bytes (one file byte each: a
/// 4 GiB file, under `--max-size`) followed by a thousand datagrams, every
/// other one of a run, and a few far apart, then `Done`: the client's book
/// and its report cost what the datagrams that came justify, not what the
/// announce claims (a bitmap of 2^32 bits is 512 MiB, and a walk over each
/// missing sequence number billions of steps). Its report lists the gaps
/// exactly, and it ends with its one summary line, incomplete, exit 2.
#[test]
fn a_vast_announce_of_tiny_datagrams_costs_what_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let announce = announce_of("tiny.bin", u32::MAX, 17, addr.port() + 1);
    let sent: Vec<u32> = (0..2_000u32)
        .step_by(2)
        .chain([1 << 20, 1 << 31, u32::MAX - 2])
        .collect();
    // The gaps between what is sent, and after it to the last datagram.
    let mut gaps: Vec<(u32, u32)> = sent
        .windows(2)
        .filter(|w| w[1] > w[0] + 1)
        .map(|w| (w[0] + 1, w[1] - 1))
        .collect();
    gaps.push((u32::MAX - 1, u32::MAX - 1));
    let expected = sent.len() as u64;
    let fake = thread::spawn(move || {
        let data = data_socket(&listener);
        let mut client = accept_raw(&listener);
        announce_and_start(&mut client.tcp, announce);
        let wait = Duration::from_secs(1);
        // All of them fit in the client's receive buffer: none is lost.
        for &seq in &sent {
            data.send_to(&v1_datagram(seq, 0, &[seq as u8]), client.udp_to)
                .unwrap();
        }
        let done = v1::Done {
            datagrams_sent: sent.len() as u64,
            bytes_sent: sent.len() as u64,
            duration_us: 1,
        };
        control::send(&mut client.tcp, &Message::Done(done), wait).unwrap();
        client
            .tcp
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut said = Vec::new();
        let _ = client.tcp.read_to_end(&mut said);
        said
    });
    let out = dir.path().join("out");
    let logs = dir.path().join("logs");
    let run = run_measured(
        &[
            "client".as_ref(),
            "--server".as_ref(),
            addr.to_string().as_ref(),
            "--recv-buffer".as_ref(),
            "4MiB".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
            "--log-dir".as_ref(),
            logs.as_os_str(),
        ],
        Duration::from_secs(10),
    );
    let said = fake.join().unwrap();
    let Some(run) = run else {
        return;
    };
    let (cpu, rss) = (run.cpu, run.rss);
    eprintln!("client: {cpu:?} CPU, {} MB peak RSS", rss / 1_000_000);
    let err = &run.stderr;
    assert!(
        cpu < Duration::from_secs(1),
        "the client took {cpu:?} of CPU"
    );
    assert!(rss < 64_000_000, "the client's peak RSS was {rss} bytes");
    assert_eq!(run.code, Some(2), "{err}");
    let missing = u64::from(u32::MAX) - expected;
    let summary: Vec<&str> = run.stdout.lines().collect();
    assert!(
        summary[0].ends_with(&format!(
            "{expected} datagrams, kernel drops 0, foreign datagrams 0, INCOMPLETE"
        )),
        "{}",
        run.stdout
    );
    let mut rest = &said[..];
    let mut report = None;
    while let Ok(Some((msg, used))) = Message::decode(rest) {
        if let Message::Report(r) = msg {
            report = Some(r);
        }
        rest = &rest[used..];
    }
    let report = report.expect("the client reported");
    assert_eq!(report.datagrams_received, expected);
    assert_eq!(report.missing_datagrams, missing);
    let listed: Vec<(u32, u32)> = report.missing.iter().map(|r| (r.first, r.last)).collect();
    assert_eq!(listed, gaps);
    assert!(!report.ranges_truncated);
    let log = transfer_log::read_log(&files_with_prefix(&logs, "C1-")[0]).unwrap();
    assert_eq!(log.success, Some(false));
    assert_eq!(log.missing_datagrams, Some(missing));
    assert_eq!(
        log.error.as_deref(),
        Some(format!("{missing} of {} datagrams missing", u32::MAX).as_str())
    );
    let ranges = log.missing_ranges.as_deref().unwrap();
    assert_eq!(
        v1::parse_ranges(ranges).unwrap(),
        (report.missing.clone(), false)
    );
}

/// When sizing the file fails (here: a file size limit, `ulimit -f`, with
/// SIGXFSZ ignored so that the call fails rather than kills), the client
/// says why and no empty temporary file is left.
#[test]
fn a_failed_sizing_leaves_no_empty_part_file() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // 10,080,000 bytes, far over the limit of 64 blocks of 512 bytes.
    let fake = announce_and_listen(
        listener,
        announce_of("limited.bin", 10_000, 1024, addr.port() + 1),
    );
    let out = dir.path().join("out");
    let logs = dir.path().join("logs");
    let script = format!(
        "trap '' XFSZ; ulimit -f 64; exec '{BIN}' -q client --server {addr} --out '{}' --log-dir '{}'",
        out.display(),
        logs.display()
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = wait_output(child, Duration::from_secs(20));
    fake.join().unwrap();
    // A local I/O error: exit status 1, one line naming the file.
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("sizing") && err.contains(&out.display().to_string()),
        "{err}"
    );
    assert!(entries(&out).is_empty(), "left behind: {:?}", entries(&out));
    // The log is small enough for the limit, and tells the same.
    let log = files_with_prefix(&logs, "C1-");
    assert_eq!(log.len(), 1, "{:?}", entries(&logs));
    let log = transfer_log::read_log(&log[0]).unwrap();
    assert!(log.error.unwrap().contains("sizing"));
}

/// A file whose name takes all of NAME_MAX's 255 bytes is received under
/// that name, twice (the second, a collision, under a name cut to fit),
/// and both sides write their logs, which name the file in full.
#[test]
fn a_name_of_255_bytes_is_received_and_both_sides_log_it() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{}x.bin", "ñ".repeat(125));
    assert_eq!(name.len(), NAME_MAX);
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let (file, data) = write_file(&src, &name, 50_000, 7);
    let logs = dir.path().join("logs");
    let server = start_server(&file, 1, &logs, |c| c.rounds = Some(2));
    let out = dir.path().join("out");
    let first = receive(server.addr, &out, &logs).unwrap();
    let second = receive(server.addr, &out, &logs).unwrap();
    server.join().unwrap();
    assert_received(&first, &data);
    assert_received(&second, &data);
    assert_eq!(first.output.as_deref(), Some(out.join(&name).as_path()));
    let other = second.output.clone().unwrap();
    let other = other.file_name().unwrap().to_str().unwrap();
    assert!(other.len() <= NAME_MAX && other.ends_with(".1"), "{other}");
    assert_eq!(entries(&out).len(), 2, "{:?}", entries(&out));

    for (role, prefix) in [(Role::Client, "C"), (Role::Server, "S")] {
        let written = files_with_prefix(&logs, prefix);
        assert_eq!(written.len(), 2, "{role} logs: {:?}", entries(&logs));
        for path in written {
            let log_name = path.file_name().unwrap().to_str().unwrap();
            assert!(log_name.len() <= NAME_MAX);
            let log = transfer_log::read_log(&path).unwrap();
            assert_eq!(log.role, Some(role));
            assert_eq!(log.file_name.as_deref(), Some(name.as_str()));
            assert_eq!(log.success, Some(true));
        }
    }
    // No temporary file of either side is left.
    assert!(entries(&logs).iter().all(|n| !n.starts_with('.')));
}

/// A server that dies halfway through a file of a 250-byte name: the
/// partial file is kept as `.incomplete` under a name cut to fit, and the
/// client's log is written.
#[test]
fn a_long_name_cut_short_is_kept_as_incomplete_under_a_name_that_fits() {
    let dir = tempfile::tempdir().unwrap();
    let name = "l".repeat(250);
    let data = bytes(20 * 1008, 3);
    let listener = listener_with_free_data_ports(1);
    let addr = listener.local_addr().unwrap();
    let payload = data.clone();
    let long = name.clone();
    let fake = thread::spawn(move || {
        let mut client = accept_raw(&listener);
        let mut announce = announce_of(&long, 20, 1024, addr.port() + 1);
        announce.file_size = payload.len() as u64;
        announce_and_start(&mut client.tcp, announce);
        let udp = data_socket(&listener);
        for (seq, chunk) in payload.chunks(1008).enumerate().take(10) {
            udp.send_to(&v1_datagram(seq as u32, 0, chunk), client.udp_to)
                .unwrap();
        }
        thread::sleep(Duration::from_millis(200));
    });
    let out = dir.path().join("out");
    let logs = dir.path().join("logs");
    let o = receive(addr, &out, &logs).unwrap();
    fake.join().unwrap();
    assert!(!o.complete);
    let kept = o.output.clone().expect("the partial file is kept");
    let kept_name = kept.file_name().unwrap().to_str().unwrap();
    assert!(kept_name.len() <= NAME_MAX, "{kept_name}");
    assert!(kept_name.ends_with(".incomplete") && kept_name.starts_with("llll"));
    assert_eq!(
        std::fs::read(&kept).unwrap()[..10 * 1008],
        data[..10 * 1008]
    );
    assert_eq!(entries(&out), vec![kept_name.to_string()]);
    let log = transfer_log::read_log(o.log_path.as_ref().unwrap()).unwrap();
    assert_eq!(log.file_name.as_deref(), Some(name.as_str()));
    assert_eq!(log.output.as_deref(), Some(kept.to_str().unwrap()));
}

/// Terminal escapes the server puts in an abort reason reach neither the
/// terminal nor the log: written out as `\x1b`. Before the announce (the
/// binary's one-line error) and mid-transfer (the log's error).
#[test]
fn escapes_in_an_abort_reason_are_written_out() {
    const REASON: &str = "\x1b]0;owned\x07\x1b[2J\x1b[1;31mgone\u{9b}0m";
    const SHOWN: &str = "\\x1b]0;owned\\x07\\x1b[2J\\x1b[1;31mgone\\u{9b}0m";
    for mid_transfer in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let fake = thread::spawn(move || {
            let mut client = accept_raw(&listener);
            if mid_transfer {
                let announce = announce_of("x.bin", 10, 1024, addr.port() + 1);
                announce_and_start(&mut client.tcp, announce);
            }
            let abort = Message::Abort {
                reason: REASON.into(),
            };
            control::send(&mut client.tcp, &abort, Duration::from_secs(1)).unwrap();
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
        });
        let logs = dir.path().join("logs");
        let child = Command::new(BIN)
            .args(["-q", "client", "--server", &addr.to_string(), "--out"])
            .arg(dir.path().join("out"))
            .arg("--log-dir")
            .arg(&logs)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = wait_output(child, Duration::from_secs(20));
        let _ = done_tx.send(());
        fake.join().unwrap();
        let (out, err) = (text(&output.stdout), text(&output.stderr));
        assert_eq!(
            output.status.code(),
            Some(if mid_transfer { 2 } else { 1 }),
            "{err}"
        );
        for said in [&out, &err] {
            assert!(!said.contains(['\x1b', '\x07', '\u{9b}']), "{said:?}");
        }
        assert!(err.contains(SHOWN), "{err:?}");
        let log = files_with_prefix(&logs, "C1-");
        assert_eq!(log.len(), 1);
        let raw = std::fs::read_to_string(&log[0]).unwrap();
        assert!(!raw.contains(['\x1b', '\x07', '\u{9b}']), "{raw:?}");
        assert!(raw.contains(SHOWN), "{raw:?}");
    }
}

/// The server's side: a v1 client that aborts with escapes in its reason
/// leaves them written out in the server's log and on its console.
#[test]
fn escapes_in_a_client_abort_are_written_out_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "f.bin", 2_000_000, 9);
    let logs = dir.path().join("logs");
    let server = start_server(&file, 1, &logs, |c| c.rate = Some(8e6));
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut id = [0u8; 2];
    control::read_field(&mut tcp, &mut id, "client number", Duration::from_secs(5)).unwrap();
    let port = PortMessage {
        port: udp.local_addr().unwrap().port(),
        version: v1::VERSION,
    };
    control::write_all(&mut tcp, &port.emit(), "port", Duration::from_secs(5)).unwrap();
    let mut n = [0u8; 2];
    control::read_field(&mut tcp, &mut n, "concurrency", Duration::from_secs(5)).unwrap();
    // Abort once the transfer is on (a word while waiting for the round
    // would only get the client dropped).
    let mut reader = control::Reader::new();
    for what in ["announce", "start"] {
        reader.read(&mut tcp, what, Duration::from_secs(5)).unwrap();
    }
    let abort = Message::Abort {
        reason: "\x1b[2Jbye\x07".into(),
    };
    control::send(&mut tcp, &abort, Duration::from_secs(5)).unwrap();
    let summary = server.join().unwrap();
    drop(tcp);
    assert_eq!(summary.tally().failed, 1);
    let log = files_with_prefix(&logs, "S1-");
    assert_eq!(log.len(), 1);
    let raw = std::fs::read_to_string(&log[0]).unwrap();
    assert!(!raw.contains(['\x1b', '\x07']), "{raw:?}");
    assert!(
        raw.contains("the client aborted: \\x1b[2Jbye\\x07"),
        "{raw:?}"
    );
}

/// The local UDP port of the one UDP socket process `pid` holds, once it
/// has one (from /proc/<pid>/fd and /proc/net/udp).
fn udp_port_of(pid: u32, limit: Duration) -> Option<u16> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|l| {
                let l = l.to_string_lossy().into_owned();
                Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
            })
            .collect();
        let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(9).is_some_and(|i| inodes.iter().any(|x| x == i)) {
                let port = fields[1].rsplit_once(':')?.1;
                return u16::from_str_radix(port, 16).ok();
            }
        }
        thread::sleep(Duration::from_millis(2));
    }
    None
}

/// During a real transfer (our server, the client binary), forgers on
/// 127.0.0.2 and on another port of 127.0.0.1 send a forged datagram for
/// every sequence number at the client's data port, again and again. The
/// file stays byte-identical; the forged ones are counted as foreign, in
/// the log and the summary.
#[test]
fn forged_data_from_another_address_is_counted_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let size = 1_500_000usize;
    let (file, data) = write_file(dir.path(), "real.bin", size, 11);
    let logs = dir.path().join("logs");
    // About 1.5 s at 8 Mbit/s: time for the forgers to be first.
    let server = start_server(&file, 1, &logs, |c| c.rate = Some(8e6));
    let out = dir.path().join("out");
    let child = Command::new(BIN)
        .args(["-q", "client", "--server", &server.addr.to_string()])
        .args(["--recv-buffer", "16MiB", "--out"])
        .arg(&out)
        .arg("--log-dir")
        .arg(&logs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let port = udp_port_of(child.id(), Duration::from_secs(5)).expect("the client's UDP port");
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let stop = Arc::new(AtomicBool::new(false));
    let forgers: Vec<_> = ["127.0.0.2:0", "127.0.0.1:0"]
        .into_iter()
        .map(|bind| {
            let stop = stop.clone();
            let sock = UdpSocket::bind(bind).unwrap();
            thread::spawn(move || {
                let forged = vec![0xEE; 1008];
                let datagrams = size.div_ceil(1008);
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for seq in 0..datagrams {
                        let len = (size - seq * 1008).min(1008);
                        let _ = sock.send_to(&v1_datagram(seq as u32, 0, &forged[..len]), target);
                        sent += 1;
                    }
                    thread::sleep(Duration::from_millis(200));
                }
                sent
            })
        })
        .collect();
    let output = wait_output(child, Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = forgers.into_iter().map(|f| f.join().unwrap()).sum();
    server.join().unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert_eq!(std::fs::read(out.join("real.bin")).unwrap(), data);
    let log = files_with_prefix(&logs, "C1-");
    let log = transfer_log::read_log(&log[0]).unwrap();
    let foreign = log.foreign_datagrams.expect("a foreign count");
    assert!(
        foreign > 0 && foreign <= sent,
        "foreign {foreign} of {sent} forged"
    );
    assert_eq!(log.duplicates, Some(0));
    assert_eq!(log.malformed, Some(0));
    assert!(
        stdout.contains(&format!("foreign datagrams {foreign},")),
        "{stdout}"
    );
}

/// The `--legacy` client: a forged name datagram from another IP, sent
/// before the server's, is not taken; chunks forged from another port of
/// the server's IP are not either (the lab's protocol names no data port:
/// the port the name came from is the one). The file is the server's.
#[test]
fn legacy_client_takes_data_only_from_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(60 * 1024, 5);
    let listener = listener_with_free_data_ports(1);
    let addr = listener.local_addr().unwrap();
    let payload = data.clone();
    let fake = thread::spawn(move || {
        let client = accept_raw(&listener);
        let to = client.udp_to;
        let elsewhere = UdpSocket::bind("127.0.0.2:0").unwrap();
        elsewhere.send_to(b"evil.bin", to).unwrap();
        elsewhere.send_to(&7u64.to_le_bytes(), to).unwrap();
        thread::sleep(Duration::from_millis(50));
        let udp = data_socket(&listener);
        let other_port = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.send_to(b"lab.bin", to).unwrap();
        other_port.send_to(&1u64.to_le_bytes(), to).unwrap();
        udp.send_to(&(payload.len() as u64).to_le_bytes(), to)
            .unwrap();
        for chunk in payload.chunks(1024) {
            other_port.send_to(&[0xEE; 1024], to).unwrap();
            udp.send_to(chunk, to).unwrap();
            elsewhere.send_to(&[0xDD; 1024], to).unwrap();
        }
        thread::sleep(Duration::from_millis(100));
    });
    let out = dir.path().join("out");
    let mut cfg = client_config(addr, &out, &dir.path().join("logs"));
    cfg.legacy = true;
    cfg.idle_timeout = Duration::from_millis(300);
    let o = client::run(cfg, Shutdown::new()).unwrap();
    fake.join().unwrap();
    assert_received(&o, &data);
    assert_eq!(o.output.as_deref(), Some(out.join("lab.bin").as_path()));
    // Two before the name, one before the size, two per chunk (those
    // that came before the file was whole).
    let foreign = o.log.foreign_datagrams.unwrap();
    assert!(foreign >= 3 + 2 * 59, "{foreign}");
    let log = transfer_log::read_log(o.log_path.as_ref().unwrap()).unwrap();
    assert_eq!(log.foreign_datagrams, Some(foreign));
}

/// The header cache's server logs the names a client asks for: one with
/// terminal escapes in it is refused, and logged with them written out.
#[test]
fn escapes_in_a_header_query_are_written_out_in_the_server_log() {
    use std::io::Write;
    use udplab::headers::{origin::Origin, server as hserver};
    let dir = tempfile::tempdir().unwrap();
    // An origin that is never asked: the name is refused first.
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg =
        hserver::Config::new("127.0.0.1:0".parse().unwrap(), dir.path().join("cache.txt"));
    cfg.origin = Origin::Fixed(origin.local_addr().unwrap());
    cfg.log_dir = Some(dir.path().to_owned());
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let server = thread::spawn(move || hserver::run(listener, cfg, stop));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let peer = s.local_addr().unwrap();
    s.write_all(b"\x1b]0;owned\x07\x1b[2J").unwrap();
    let mut answer = [0u8; 64];
    let n = s.read(&mut answer).unwrap();
    assert_eq!(&answer[..n], b"error: not a host name");
    s.write_all(b"terminate").unwrap();
    let _ = s.read(&mut answer);
    drop(s);
    let log = dir
        .path()
        .join(format!("headers-server-{}-{}.txt", peer.ip(), peer.port()));
    let started = Instant::now();
    while !log.exists() && started.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(10));
    }
    shutdown.trigger();
    server.join().unwrap().unwrap();
    let raw = std::fs::read_to_string(&log).unwrap();
    assert!(!raw.contains(['\x1b', '\x07']), "{raw:?}");
    assert!(
        raw.contains("query_1_name: \\x1b]0;owned\\x07\\x1b[2J\n"),
        "{raw:?}"
    );
}

/// A server listening on the wildcard sends its data from the address the
/// client reached it at (here 127.0.0.2), not from the one the kernel's
/// route would pick (127.0.0.1): the client, which takes data from that
/// address only, gets the whole file and counts nothing foreign.
#[test]
fn a_server_on_the_wildcard_sends_from_the_address_the_client_reached() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "wild.bin", 300_000, 13);
    let listener = (0..200)
        .find_map(|_| {
            let l = TcpListener::bind("0.0.0.0:0").ok()?;
            let data_port = l.local_addr().ok()?.port().checked_add(1)?;
            UdpSocket::bind(("0.0.0.0", data_port)).ok()?;
            Some(l)
        })
        .expect("a control port with a free data port");
    let port = listener.local_addr().unwrap().port();
    let logs = dir.path().join("logs");
    let mut cfg = udplab::server::Config::new(file.clone(), 1);
    cfg.bind_ip = "0.0.0.0".parse().unwrap();
    cfg.log_dir = logs.clone();
    cfg.rounds = Some(1);
    cfg.progress = false;
    cfg.report_timeout = Duration::from_secs(10);
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let server = thread::spawn(move || udplab::server::run(listener, cfg, stop));
    let reached = SocketAddr::from(([127, 0, 0, 2], port));
    let o = receive(reached, &dir.path().join("out"), &logs);
    shutdown.trigger();
    server.join().unwrap().unwrap();
    let o = o.unwrap();
    assert_received(&o, &data);
    assert_eq!(o.log.foreign_datagrams, Some(0));
    let s = transfer_log::read_log(&files_with_prefix(&logs, "S1-")[0]).unwrap();
    assert_eq!(s.server_ip, Some(reached.ip()));
}
