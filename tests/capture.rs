//! The built-in capture and `udplab lab`, for real: libpcap on `lo` while
//! our server and clients transfer, the file checked with tshark and
//! capinfos, and its statistics block against what libpcap reported.
//!
//! Capturing needs root or CAP_NET_RAW (CI runs as root). Where it is not
//! permitted, or a tool a test needs is missing, the test fails under CI
//! and elsewhere prints "SKIPPED: ..." and returns
//! ([`common::skip_or_fail`]).
//!
//! Control ports are drawn from 20000-27000, below Linux's ephemeral range,
//! so that the default filter's data ports (control + 1 to + 4096) never
//! take the traffic of the other test files, whose ports are ephemeral; the
//! tests of this file take turns ([`one_at_a_time`]) for the same reason.

#![cfg(feature = "capture")]

mod common;

use common::{have, skip_or_fail, text, wait_output};

use std::collections::BTreeMap;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use udplab::analyze::reader::Reader;
use udplab::transfer_log::{self, Role};

const BIN: &str = env!("CARGO_BIN_EXE_udplab");

/// Held by each test of this file: a capture's port range would otherwise
/// take another of these tests' transfers.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A control port in 20000-27000 whose next `data_ports` ports are free.
fn quiet_port(data_ports: u16) -> u16 {
    let seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for _ in 0..500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20_000 + (x % 7_000) as u16;
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && (1..=data_ports).all(|k| UdpSocket::bind(("127.0.0.1", port + k)).is_ok());
        if free {
            return port;
        }
    }
    panic!("no free control port in 20000-27000");
}

fn udplab(args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(120))
}

/// `Err(why)` when this process may not capture.
fn capture_permitted() -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let out = udplab(&[
        "capture",
        "-w",
        dir.path().join("probe.pcapng").to_str().unwrap(),
        "--duration",
        "10ms",
    ]);
    let err = text(&out.stderr);
    if !out.status.success() && err.contains("no permission") {
        return Err(err.trim().to_string());
    }
    assert!(out.status.success(), "probe capture failed: {err}");
    Ok(())
}

macro_rules! require_capture {
    () => {
        let _turn = one_at_a_time();
        if let Err(why) = capture_permitted() {
            skip_or_fail(format_args!("capture not permitted here: {why}"));
            return;
        }
    };
}

/// A `udplab capture` running in the background, started once libpcap is
/// live (it says "capturing on" on stderr only after the filter is in).
struct Capturing {
    child: Child,
}

impl Capturing {
    fn start(args: &[&str]) -> Capturing {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let start = Instant::now();
        let mut buf = [0u8; 256];
        while !text(&seen).contains("capturing on") {
            use std::io::Read;
            let n = stderr.read(&mut buf).unwrap();
            assert!(n > 0, "capture ended before it started: {}", text(&seen));
            seen.extend_from_slice(&buf[..n]);
            assert!(start.elapsed() < Duration::from_secs(20));
        }
        child.stderr = Some(stderr);
        Capturing { child }
    }

    /// Ctrl-C, as a user would stop it.
    fn interrupt(self) -> Output {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        wait_output(self.child, Duration::from_secs(20))
    }
}

/// "N packets captured" and libpcap's "R received, D dropped" from the
/// capture's stdout.
fn reported_counts(stdout: &str) -> (u64, u64, u64) {
    let num = |s: &str| s.replace(',', "").parse::<u64>().unwrap();
    let mut captured = None;
    let mut libpcap = None;
    for line in stdout.lines() {
        if let Some(rest) = line
            .split(" packets captured")
            .next()
            .filter(|_| line.contains(" packets captured"))
        {
            captured = Some(num(rest));
        }
        if let Some(rest) = line.strip_prefix("libpcap: ") {
            let parts: Vec<&str> = rest.split(", ").collect();
            let first = |p: &str| num(p.split(' ').next().unwrap());
            libpcap = Some((first(parts[0]), first(parts[1])));
        }
    }
    let (r, d) = libpcap.unwrap_or_else(|| panic!("no libpcap line in {stdout}"));
    (
        captured.unwrap_or_else(|| panic!("no count in {stdout}")),
        r,
        d,
    )
}

/// tshark's count of UDP frames per source port, and of TCP frames cut
/// short by the snap length.
fn tshark_udp_by_port(path: &Path) -> (BTreeMap<u16, u64>, u64) {
    let out = Command::new("tshark")
        .args(["-r", path.to_str().unwrap(), "-T", "fields"])
        .args([
            "-e",
            "udp.srcport",
            "-e",
            "tcp.srcport",
            "-e",
            "frame.len",
            "-e",
            "frame.cap_len",
        ])
        .output()
        .expect("tshark (scripts/test installs it)");
    assert!(out.status.success(), "tshark: {}", text(&out.stderr));
    let mut udp = BTreeMap::new();
    let mut tcp_cut = 0;
    for line in text(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if let Ok(port) = f[0].parse::<u16>() {
            *udp.entry(port).or_default() += 1;
        } else if !f[1].is_empty() && f[2] != f[3] {
            tcp_cut += 1;
        }
    }
    (udp, tcp_cut)
}

/// The Interface Statistics Block's received, dropped and delivered
/// counts as tshark's pcapng file dissector reads them.
fn tshark_isb(path: &Path) -> (u64, u64, u64) {
    let out = Command::new("tshark")
        .args([
            "-r",
            path.to_str().unwrap(),
            "-X",
            "read_format:MIME Files Format",
        ])
        .args(["-T", "fields"])
        .args(["-e", "pcapng.options.option.data.interface.received"])
        .args(["-e", "pcapng.options.option.data.interface.dropped"])
        .args([
            "-e",
            "pcapng.options.option.data.interface.delivered_to_user",
        ])
        .output()
        .expect("tshark");
    assert!(out.status.success(), "tshark: {}", text(&out.stderr));
    let s = text(&out.stdout);
    let f: Vec<u64> = s.trim().split('\t').map(|v| v.parse().unwrap()).collect();
    (f[0], f[1], f[2])
}

fn capinfos_count(path: &Path) -> u64 {
    let out = Command::new("capinfos")
        .args(["-c", "-M", path.to_str().unwrap()])
        .output()
        .expect("capinfos (scripts/test installs it)");
    assert!(out.status.success(), "capinfos: {}", text(&out.stderr));
    let s = text(&out.stdout);
    let line = s.lines().find(|l| l.contains("Number of packets")).unwrap();
    line.rsplit(' ').next().unwrap().trim().parse().unwrap()
}

fn server_logs(dir: &Path) -> BTreeMap<u16, transfer_log::TransferLog> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let log = transfer_log::read_log(&e.unwrap().path()).unwrap();
        if log.role == Some(Role::Server) {
            out.insert(log.client_id.unwrap(), log);
        }
    }
    out
}

#[test]
fn a_capture_during_a_transfer_holds_every_data_frame_and_libpcap_s_counts() {
    require_capture!();
    let dir = tempfile::tempdir().unwrap();
    let port = quiet_port(3);
    let pcap = dir.path().join("run.pcapng");
    let cap = Capturing::start(&[
        "capture",
        "-w",
        pcap.to_str().unwrap(),
        "--port",
        &port.to_string(),
    ]);

    let (file, _) = common::write_file(dir.path(), "3MiB.bin", 3 << 20, 7);
    let logs = dir.path().join("logs");
    let server = Command::new(BIN)
        .args([
            "-q",
            "server",
            "--clients",
            "2",
            "--rounds",
            "1",
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--port",
            &port.to_string(),
            "--file",
            file.to_str().unwrap(),
        ])
        .args([
            "--log-dir",
            logs.to_str().unwrap(),
            "--barrier-timeout",
            "30s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let clients: Vec<Child> = (1..=2)
        .map(|k| {
            Command::new(BIN)
                .args(["-q", "client", "--server", &format!("127.0.0.1:{port}")])
                .args(["--out", dir.path().join(format!("c{k}")).to_str().unwrap()])
                .args(["--log-dir", logs.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in clients {
        let out = wait_output(c, Duration::from_secs(60));
        assert!(out.status.code().is_some(), "{}", text(&out.stderr));
    }
    let out = wait_output(server, Duration::from_secs(60));
    assert!(out.status.code().is_some(), "{}", text(&out.stderr));
    let out = cap.interrupt();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let (captured, received, dropped) = reported_counts(&stdout);
    assert!(stdout.contains("stop requested"), "{stdout}");

    // Complete under its own name; no partial file left.
    assert!(pcap.exists());
    assert!(!dir.path().join("run.pcapng.part").exists());

    // Another reader agrees on the packets written.
    assert_eq!(capinfos_count(&pcap), captured);

    // The statistics block carries what libpcap reported, and on lo (the
    // kernel filter keeps one copy of each packet) every packet libpcap
    // counted was either written or dropped, once: without the kernel's
    // `inbound`, `received` would be twice the packets.
    let mut reader = Reader::open(std::slice::from_ref(&pcap)).unwrap();
    while reader.next_packet().is_some() {}
    let iface = &reader.files()[0].interfaces[0];
    assert_eq!(iface.name.as_deref(), Some("lo"));
    assert_eq!(iface.packets, captured);
    let stats = iface.stats.expect("an Interface Statistics Block");
    assert_eq!(stats.received, Some(received));
    assert_eq!(stats.dropped, Some(dropped));
    assert_eq!(stats.delivered, Some(captured));
    assert_eq!(
        tshark_isb(&pcap),
        (received, dropped, captured),
        "tshark reads the ISB"
    );
    // Packets already in the ring when the filter went in are written but
    // were counted before it: a few at most, from the other tests.
    assert!(received <= captured + dropped, "{stdout}");
    assert!(captured + dropped - received <= 50, "{stdout}");

    // Every data datagram the server sent is in the file, when the capture
    // dropped nothing; control segments are whole.
    let sent = server_logs(&logs);
    assert_eq!(sent.len(), 2);
    let (udp, tcp_cut) = tshark_udp_by_port(&pcap);
    assert_eq!(tcp_cut, 0, "control segments cut by the snap length");
    if dropped == 0 {
        for (id, log) in &sent {
            assert_eq!(
                udp.get(&(port + id)).copied(),
                log.datagrams_sent,
                "client {id}: frames from port {}",
                port + id
            );
        }
    } else {
        eprintln!("NOTE: the capture dropped {dropped} packets; frame counts not compared");
    }
}

#[test]
fn duration_and_count_stop_the_capture_with_a_complete_file() {
    require_capture!();
    let dir = tempfile::tempdir().unwrap();
    let port = quiet_port(1);
    let p = dir.path().join("d.pcapng");
    let out = udplab(&[
        "capture",
        "-w",
        p.to_str().unwrap(),
        "--duration",
        "300ms",
        "--port",
        &port.to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("duration reached"), "{stdout}");
    // Quiet, unless other tests' ICMP errors on lo come by.
    assert_eq!(capinfos_count(&p), reported_counts(&stdout).0);

    // --count: ICMP port unreachables, which the default filter takes.
    let p = dir.path().join("c.pcapng");
    let cap = Capturing::start(&[
        "capture",
        "-w",
        p.to_str().unwrap(),
        "--count",
        "3",
        "--port",
        &port.to_string(),
    ]);
    let closed = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut child = cap.child;
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        tx.send_to(b"x", closed).ok();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "--count never reached"
        );
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("packet count reached"));
    assert_eq!(capinfos_count(&p), 3);
}

/// Where capture is permitted (root), run `f` as user nobody with a copy
/// of the binary nobody can execute; `Err(what is missing)` where it cannot.
fn as_nobody(args: &[&str], cwd: &Path) -> Result<Output, String> {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if uid != 0 {
        return Err(format!(
            "needs root to run udplab as an unprivileged user (uid is {uid})"
        ));
    }
    if !have("setpriv") {
        return Err("needs setpriv to run udplab as an unprivileged user".into());
    }
    use std::os::unix::fs::PermissionsExt;
    let bin = cwd.join("udplab");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(cwd, std::fs::Permissions::from_mode(0o777)).unwrap();
    let child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Ok(wait_output(child, Duration::from_secs(120)))
}

#[test]
fn without_the_right_to_capture_the_error_says_what_to_do() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = match as_nobody(&["capture", "-w", "x.pcapng"], dir.path()) {
        Ok(out) => out,
        Err(why) => {
            skip_or_fail(why);
            return;
        }
    };
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no permission to capture on lo"), "{err}");
    assert!(
        err.contains("sudo") && err.contains("setcap cap_net_raw,cap_net_admin=eip"),
        "{err}"
    );
    assert!(!dir.path().join("x.pcapng").exists());
    assert!(!dir.path().join("x.pcapng.part").exists());
}

#[test]
fn the_lab_without_the_right_to_capture_reports_from_the_logs() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let port = quiet_port(2).to_string();
    let args = [
        "lab",
        "--clients",
        "2",
        "--size",
        "1MiB",
        "--port",
        &port,
        "--recv-buffer",
        "16MiB",
    ];
    let out = match as_nobody(&args, dir.path()) {
        Ok(out) => out,
        Err(why) => {
            skip_or_fail(why);
            return;
        }
    };
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("capture: none (no permission to capture on lo"),
        "{stdout}"
    );
    let report = only_report(&dir.path().join("runs"));
    assert_eq!(report["captures"].as_array().unwrap().len(), 0);
    let clients = report["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 2);
    for c in clients {
        assert!(c["wire_data_bytes"].is_null(), "{c}");
        assert_eq!(c["sent_bytes"], 1 << 20);
        assert!(c["received_bytes"].as_u64().is_some(), "{c}");
    }
    assert!(
        report["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("no capture (no permission"),
        "{}",
        report["warnings"]
    );
}

/// The report.json of the one run under `runs`.
fn only_report(runs: &Path) -> Value {
    let dirs = common::run_dirs(runs);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    common::report_json(&dirs[0])
}

#[test]
fn the_lab_with_three_clients_puts_on_the_wire_what_the_server_sent() {
    require_capture!();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let port = quiet_port(3).to_string();
    let out = udplab(&[
        "lab",
        "--clients",
        "3",
        "--size",
        "4MiB",
        "--port",
        &port,
        "--dir",
        runs.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let report = only_report(&runs);
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(
        stdout.contains(&format!("run directory: {}", run.display())),
        "{stdout}"
    );
    assert!(run.join("capture.pcapng").is_file());
    assert!(!run.join("received").exists(), "received files are removed");
    assert!(!run.join("4MiB.bin").exists(), "the made file is removed");
    // The page beside report.json draws every client's capture.
    let page = std::fs::read_to_string(run.join("report.html")).unwrap();
    for k in 1..=3 {
        for picture in ["time-sequence", "io", "ladder"] {
            let id = format!("<figure id=\"client-{k}-{picture}\">");
            assert!(page.contains(&id), "report.html lacks {id}");
        }
    }
    assert!(page.contains("<figure id=\"run-timeline\">"));

    let sent = server_logs(&run.join("logs"));
    let clients = report["clients"].as_array().unwrap();
    let ids: Vec<&Value> = clients.iter().map(|c| &c["client_id"]).collect();
    assert_eq!(ids, [1, 2, 3], "clients in the report");
    let control = report["control"].as_array().unwrap();
    assert_eq!(control.len(), 3);
    for c in control {
        assert_eq!(c["handshake"], "complete", "{c}");
    }
    let dropped = report["captures"][0]["dropped"].as_u64().unwrap();
    for (c, k) in clients.iter().zip(1u16..) {
        assert_eq!(c["client_id"], k);
        let log = &sent[&k];
        if dropped == 0 {
            assert_eq!(c["wire_data_frames"].as_u64(), log.datagrams_sent, "{c}");
            assert_eq!(c["wire_data_bytes"].as_u64(), log.bytes_sent, "{c}");
            assert_eq!(c["wire_frame_len"], 1066);
            assert_eq!(c["lost_before_capture_bytes"], 0);
            let lost_after = c["lost_after_capture_bytes"].as_i64().unwrap();
            let received = c["received_bytes"].as_i64().unwrap();
            assert_eq!(received + lost_after, 4 << 20, "{c}");
        } else {
            eprintln!("NOTE: the capture dropped {dropped} packets");
            assert!(c["verdict"].as_str().unwrap().starts_with("cannot tell"));
        }
    }
}

/// The reliable mode under a capture: the analyzer counts the resent
/// datagrams by the retransmission flag of their v1 headers, and they are
/// exactly the ones the server's logs say it resent.
#[test]
fn the_capture_counts_the_datagrams_the_reliable_mode_resent() {
    require_capture!();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let port = quiet_port(2).to_string();
    // Receive buffers far too small: the kernel drops, the repairs resend.
    let out = udplab(&[
        "lab",
        "--clients",
        "2",
        "--size",
        "3MiB",
        "--mode",
        "reliable",
        "--recv-buffer",
        "4KiB",
        "--port",
        &port,
        "--dir",
        runs.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let report = only_report(&runs);
    let run = common::run_dirs(&runs).remove(0);
    let sent = server_logs(&run.join("logs"));
    assert_eq!(report["captures"][0]["dropped"], 0, "{report}");
    let mut resent = 0;
    let clients = report["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 2, "{report}");
    for (c, k) in clients.iter().zip(1u16..) {
        let log = &sent[&k];
        assert_eq!(log.success, Some(true), "{:?}", log.error);
        assert_eq!(c["mode"], "reliable", "{c}");
        assert_eq!(c["success"], true, "{c}");
        assert_eq!(c["received_bytes"], 3 << 20, "{c}");
        assert_eq!(c["loss_pct"], 0.0, "{c}");
        assert_eq!(
            c["wire_retransmitted"].as_u64(),
            log.datagrams_retransmitted,
            "{c}"
        );
        assert_eq!(
            c["datagrams_retransmitted"].as_u64(),
            log.datagrams_retransmitted
        );
        assert_eq!(
            c["wire_distinct_datagrams"].as_u64(),
            log.datagrams_total,
            "{c}"
        );
        assert_eq!(c["wire_data_frames"].as_u64(), log.datagrams_sent, "{c}");
        assert!(c["goodput_mb_s"].as_f64().unwrap() > 0.0, "{c}");
        assert!(
            c["goodput_mb_s"].as_f64().unwrap() <= c["throughput_mb_s"].as_f64().unwrap(),
            "{c}"
        );
        resent += log.datagrams_retransmitted.unwrap();
        // The page draws the repair: the copies at the capture point, the
        // client's requests for them, its reports in the ladder.
        let page = std::fs::read_to_string(run.join("report.html")).unwrap();
        let figure = |name: &str| {
            let id = format!("<figure id=\"client-{k}-{name}\">");
            let at = page.find(&id).unwrap_or_else(|| panic!("no {id}"));
            let len = page[at..].find("</figure>").unwrap();
            page[at..at + len].to_string()
        };
        let copies = c["wire_retransmitted"].as_u64().unwrap();
        let ts = figure("time-sequence");
        if copies > 0 {
            assert!(
                ts.contains(&format!(": {copies} repair copies")),
                "{ts:.800}"
            );
            assert!(ts.contains("the client asked for a repair round ("));
        }
        let ladder = figure("ladder");
        assert!(ladder.contains("done (") && ladder.contains("report ("));
    }
    assert!(resent > 0, "4 KiB buffers lost nothing: nothing to count");
}

#[test]
fn an_interface_that_disappears_leaves_a_part_file_and_one_clear_error() {
    require_capture!();
    let missing: Vec<&str> = ["unshare", "ip"]
        .into_iter()
        .filter(|tool| !have(tool))
        .collect();
    if !missing.is_empty() {
        skip_or_fail(format_args!(
            "needs {} to make an interface in a network namespace",
            missing.join(" and ")
        ));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gone.pcapng");
    // A veth pair in a network namespace of its own, deleted under the
    // running capture.
    let script = format!(
        "ip link add v0 type veth peer name v1 && ip link set v0 up || exit 99
         {BIN} capture -i v0 -w {} & pid=$!
         sleep 0.5; ip link del v0; wait $pid; echo exit=$?",
        out.display()
    );
    let child = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let res = wait_output(child, Duration::from_secs(30));
    if res.status.code() == Some(99) {
        skip_or_fail(format_args!(
            "no veth interfaces here: {}",
            text(&res.stderr).trim()
        ));
        return;
    }
    let (stdout, stderr) = (text(&res.stdout), text(&res.stderr));
    assert!(stdout.contains("exit=1"), "{stdout}{stderr}");
    let part = dir.path().join("gone.pcapng.part");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(&format!(
            "the packets read so far are in {}",
            part.display()
        )),
        "{stderr}"
    );
    assert!(part.exists(), "the partial file is kept");
    assert!(!out.exists(), "nothing under the final name");
}
