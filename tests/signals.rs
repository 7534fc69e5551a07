//! SIGTERM, as `kill`, a service manager or a container runtime sends it,
//! takes the Ctrl-C path in every long-running subcommand: real processes,
//! stopped midway with kill(2), must leave what a Ctrl-C leaves (a client's
//! log and no file that looks complete, a capture's statistics block under
//! the file's final name, a suite's summary and no test file); `analyze`,
//! with nothing to finish, ends at once.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{Proc, StderrLines, files_with_prefix, listener_with_free_data_ports};
use udplab::transfer_log;

const BIN: &str = env!("CARGO_BIN_EXE_udplab");

fn terminate(child: &Child) {
    // SAFETY: kill(2) on a child this test started and has not reaped.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
}

/// A port that was free a moment ago, with `data_ports` free ports after it.
fn free_port(data_ports: u16) -> u16 {
    listener_with_free_data_ports(data_ports)
        .local_addr()
        .unwrap()
        .port()
}

/// Every file under `dir`, at any depth.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A child's stdout, read on a thread as it comes.
struct StdoutText {
    text: Arc<Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl StdoutText {
    fn of(child: &mut Child) -> StdoutText {
        let stdout = child.stdout.take().expect("stdout is piped");
        let text = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&text);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        StdoutText {
            text,
            reader: Some(reader),
        }
    }

    fn all(mut self) -> String {
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.text.lock().unwrap().clone()
    }
}

/// A client stopped by SIGTERM mid-transfer exits through the Ctrl-C path:
/// an exit status (not death by the signal), its log saying "interrupted",
/// the bytes it got under `NAME.incomplete`, no `.part` and nothing under
/// the file's own name. The server, stopped the same way, leaves its log.
#[test]
fn sigterm_stops_a_client_mid_transfer_like_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = common::write_file(dir.path(), "term.bin", 8 << 20, 41);
    let port = free_port(3).to_string();
    let logs = dir.path().join("logs");
    let out_dir = dir.path().join("out");
    // 16 Mbit/s: the 8 MiB take 4 s, the client is stopped within the first.
    let mut server = Command::new(BIN)
        .args(["server", "--bind", "127.0.0.1", "--port", &port])
        .args(["--rate", "16Mbit", "--rounds", "1"])
        .arg("--file")
        .arg(&file)
        .arg("--log-dir")
        .arg(&logs)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map(Proc)
        .unwrap();
    thread::sleep(Duration::from_millis(200));
    let mut client = Command::new(BIN)
        .args(["client", "--server", &format!("127.0.0.1:{port}")])
        .arg("--out")
        .arg(&out_dir)
        .arg("--log-dir")
        .arg(&logs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(Proc)
        .unwrap();
    let client_err = StderrLines::of(&mut client.0);
    assert!(
        client_err.wait_for("announced term.bin", Duration::from_secs(10)),
        "no announce"
    );
    thread::sleep(Duration::from_millis(500));
    terminate(&client.0);
    let status = common::wait_with_timeout(&mut client.0, Duration::from_secs(10));
    let err = client_err.all();
    assert_eq!(status.code(), Some(2), "{status:?}: {err}");
    assert!(err.contains("interrupted"), "{err}");

    let log = files_with_prefix(&logs, "C1-");
    assert_eq!(log.len(), 1, "{err}");
    let log = transfer_log::read_log(&log[0]).unwrap();
    assert_eq!(log.success, Some(false));
    assert_eq!(log.error.as_deref(), Some("interrupted"));
    let got = log.bytes_received.unwrap();
    assert!(got > 0 && got < 8 << 20, "{got} bytes");
    let kept: Vec<String> = files_under(&out_dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept, ["term.bin.incomplete"]);

    terminate(&server.0);
    let status = common::wait_with_timeout(&mut server.0, Duration::from_secs(10));
    let err = {
        let mut s = String::new();
        use std::io::Read;
        server
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    assert!(status.code().is_some(), "{status:?}: {err}");
    assert_eq!(files_with_prefix(&logs, "S1-").len(), 1, "{err}");
}

/// `udplab capture` stopped by SIGTERM while packets come in: the file
/// under its final name (no `.part`), read to its end by the project's
/// reader and by capinfos, with its Interface Statistics Block.
#[cfg(feature = "capture")]
#[test]
fn sigterm_stops_a_capture_with_its_statistics_block() {
    use common::text;
    use std::net::UdpSocket;
    use std::time::Instant;
    use udplab::analyze::reader::Reader;

    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("term.pcapng");
    // The default filter takes UDP from the ports above the control port.
    let (port, data) = (0..500)
        .find_map(|_| {
            let port = free_port(1);
            UdpSocket::bind(("127.0.0.1", port + 1))
                .ok()
                .map(|s| (port, s))
        })
        .expect("a free port pair");
    let mut cap = Command::new(BIN)
        .args(["capture", "-w"])
        .arg(&pcap)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(Proc)
        .unwrap();
    let err = StderrLines::of(&mut cap.0);
    let start = Instant::now();
    while !err.wait_for("capturing on", Duration::from_millis(50)) {
        if let Ok(Some(status)) = cap.0.try_wait() {
            let err = err.all();
            if err.contains("no permission") {
                common::skip_or_fail(format_args!("capture not permitted here: {err}"));
                return;
            }
            panic!("the capture ended before it started ({status:?}): {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "capture not live"
        );
    }
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200u32 {
        data.send_to(&i.to_be_bytes(), sink.local_addr().unwrap())
            .unwrap();
    }
    thread::sleep(Duration::from_millis(200));
    terminate(&cap.0);
    let status = common::wait_with_timeout(&mut cap.0, Duration::from_secs(10));
    let err = err.all();
    let mut stdout = String::new();
    {
        use std::io::Read;
        cap.0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
    }
    assert_eq!(status.code(), Some(0), "{status:?}: {err}");
    assert!(stdout.contains("stop requested"), "{stdout}");
    assert!(pcap.exists(), "{err}");
    assert!(!dir.path().join("term.pcapng.part").exists());

    let mut reader = Reader::open(std::slice::from_ref(&pcap)).unwrap();
    let mut packets = 0u64;
    while reader.next_packet().is_some() {
        packets += 1;
    }
    let facts = &reader.files()[0];
    assert!(facts.error.is_none(), "{:?}", facts.error);
    assert!(packets >= 200, "{packets} packets");
    let iface = &facts.interfaces[0];
    let stats = iface.stats.expect("an Interface Statistics Block");
    assert_eq!(stats.delivered, Some(packets));

    match Command::new("capinfos")
        .args(["-c", "-M"])
        .arg(&pcap)
        .output()
    {
        Ok(out) => {
            assert!(out.status.success(), "capinfos: {}", text(&out.stderr));
            let s = text(&out.stdout);
            assert!(
                s.contains(&format!("Number of packets:   {packets}")),
                "{s}"
            );
        }
        Err(e) => common::skip_or_fail(format_args!("capinfos: {e}")),
    }
}

/// `udplab lab --suite` stopped by SIGTERM during its first test: the tests
/// that ran are summed up, the exit status says it was stopped (1), and
/// the made test file is gone (nor is any `.part` of it left).
#[test]
fn sigterm_stops_the_suite_with_its_summary_and_no_test_file() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let port = free_port(11).to_string();
    let mut lab = Command::new(BIN)
        .args(["lab", "--suite", "--no-capture", "--port", &port])
        .arg("--dir")
        .arg(&runs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(Proc)
        .unwrap();
    let out = StdoutText::of(&mut lab.0);
    let err = StderrLines::of(&mut lab.0);
    assert!(
        err.wait_for("receiving from", Duration::from_secs(60)),
        "test 1 did not start"
    );
    terminate(&lab.0);
    let status = common::wait_with_timeout(&mut lab.0, Duration::from_secs(30));
    let (out, err) = (out.all(), err.all());
    assert_eq!(status.code(), Some(1), "{status:?}: {err}");
    assert!(out.contains("Test 1: 100 MiB to 1 client"), "{out}");
    assert!(out.contains("Summary: loss per test"), "{out}");
    assert!(out.contains("suite directory: "), "{out}");
    assert!(err.contains("interrupted"), "{err}");
    let left: Vec<PathBuf> = files_under(&runs)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".bin") || name.ends_with(".part")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `udplab analyze`, which has nothing to finish, ends at once on SIGTERM
/// (a caught signal it never looked at would leave it reading): here it
/// waits on a FIFO whose writer stays open.
#[test]
fn sigterm_ends_analyze_at_once() {
    use std::os::unix::process::ExitStatusExt;

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("capture.pcap");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut analyze = Command::new(BIN)
        .args(["analyze", "--format", "json"])
        .arg(&fifo)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map(Proc)
        .unwrap();
    // A pcap header and no packet yet; the writer stays open.
    let mut header = Vec::new();
    header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    header.extend_from_slice(&[
        2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
    ]);
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    std::io::Write::write_all(&mut writer, &header).unwrap();
    thread::sleep(Duration::from_millis(300));
    assert!(
        analyze.0.try_wait().unwrap().is_none(),
        "analyze ended early"
    );
    terminate(&analyze.0);
    let status = common::wait_with_timeout(&mut analyze.0, Duration::from_secs(3));
    drop(writer);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}
