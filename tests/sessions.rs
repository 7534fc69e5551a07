//! `udplab analyze --conversations` on a real run of the header cache: a
//! `udplab headers server` asking a local HTTP origin, one and then two
//! concurrent `udplab headers client`s with repeated names, all captured
//! on lo by tcpdump. The sessions the analyzer finds are checked against
//! what the test knows (the names, the origin's headers, the files), the
//! logs, and tshark's reading of the same capture (handshake options,
//! initial RTT, frame times).
//!
//! The tests need root (tcpdump on lo), tcpdump and tshark.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Proc, StderrLines, skip_or_fail, wait_output};

const BIN: &str = env!("CARGO_BIN_EXE_udplab");

/// `Err(what is missing)` unless tcpdump on lo, tshark and editcap can run here.
fn can_capture() -> Result<(), String> {
    common::can_capture_with(&["tcpdump", "tshark", "editcap"])
}

/// What the origin sends for `host`: a few lines that differ per host.
fn header_for(host: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nServer: test-origin\r\nContent-Length: 11\r\nset-cookie: host={host}; Path=/\r\nX-Host: {host}\r\nCache-Control: no-cache\r\n\r\n"
    )
    .into_bytes()
}

/// A local HTTP origin answering every host with [`header_for`] and a body.
fn start_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || respond(stream));
        }
    });
    addr
}

fn respond(mut stream: TcpStream) {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&req).into_owned();
    let host = text
        .lines()
        .find_map(|l| l.strip_prefix("Host: "))
        .unwrap_or("")
        .to_owned();
    let mut answer = header_for(&host);
    answer.extend_from_slice(b"hello there");
    let _ = stream.write_all(&answer);
}

/// A run: the capture, the logs and each client's output directory.
struct Run {
    _dir: tempfile::TempDir,
    cap: PathBuf,
    logs: PathBuf,
    outs: Vec<PathBuf>,
    udp_port: u16,
}

/// The server's ports, from its first line:
/// `headers server: tcp 127.0.0.1:PORT udp PORT cache ...`.
fn server_ports(stderr: &str) -> (u16, u16) {
    let line = stderr
        .lines()
        .find(|l| l.contains("headers server: tcp "))
        .unwrap();
    let w: Vec<&str> = line.split_whitespace().collect();
    let at = w.iter().position(|&x| x == "tcp").unwrap();
    let tcp: SocketAddr = w[at + 1].parse().unwrap();
    let udp: u16 = w[at + 3].parse().unwrap();
    (tcp.port(), udp)
}

/// The server, tcpdump on its ports and the origin's, and the clients
/// each asking its names, all at once.
fn run_once(clients: &[&[&str]]) -> Result<Run, String> {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let origin = start_origin();
    let mut server = Proc(
        Command::new(BIN)
            .args(["headers", "server", "--bind", "127.0.0.1"])
            .args(["--port", "0", "--udp-port", "0"])
            .arg("--cache")
            .arg(dir.path().join("cache.txt"))
            .arg("--origin")
            .arg(origin.to_string())
            .arg("--log-dir")
            .arg(&logs)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let server_err = StderrLines::of(&mut server.0);
    // The text after the ports: the line is whole.
    assert!(server_err.wait_for(" cache ", Duration::from_secs(10)));
    let (tcp_port, udp_port) = server_ports(&server_err.snapshot());
    let cap = dir.path().join("cap.pcap");
    let mut tcpdump = Proc(
        Command::new("tcpdump")
            // Immediate mode: each packet is written as it comes, none
            // waits in a kernel block when the capture is stopped.
            .args([
                "-i",
                "lo",
                "-n",
                "-s",
                "0",
                "-B",
                "8192",
                "-U",
                "--immediate-mode",
            ])
            .args(["-Z", "root", "-w"])
            .arg(&cap)
            .arg(format!(
                "tcp port {tcp_port} or udp port {udp_port} or tcp port {}",
                origin.port()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let tcpdump_err = StderrLines::of(&mut tcpdump.0);
    assert!(
        tcpdump_err.wait_for("listening on", Duration::from_secs(10)),
        "tcpdump did not start"
    );
    wait_until_capturing(&cap, udp_port);
    let server_addr = format!("127.0.0.1:{tcp_port}");
    let mut outs = Vec::new();
    let children: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(k, names)| {
            let out = dir.path().join(format!("out{k}"));
            outs.push(out.clone());
            Command::new(BIN)
                .args(["headers", "client", "--server", &server_addr])
                .arg("--out")
                .arg(&out)
                .arg("--log-dir")
                .arg(&logs)
                .args(*names)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = wait_output(child, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "client: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Each session's log is written once its client has closed.
    let start = Instant::now();
    while server_logs(&logs) < clients.len() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "server logs missing"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // The last FIN and ACK reach the capture before it stops.
    thread::sleep(Duration::from_millis(200));
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(tcpdump.0.id() as i32, libc::SIGINT) };
    let status = common::wait_with_timeout(&mut tcpdump.0, Duration::from_secs(10));
    let said = tcpdump_err.all();
    assert!(status.success(), "tcpdump: {said}");
    drop(server);
    if !said.contains("\n0 packets dropped by kernel") {
        return Err(said);
    }
    Ok(Run {
        _dir: dir,
        cap,
        logs,
        outs,
        udp_port,
    })
}

/// [`run_once`] until tcpdump drops nothing (a busy machine may make it
/// drop: such a capture misses part of what the run did), at most 3 times.
fn run(clients: &[&[&str]]) -> Run {
    let mut said = String::new();
    for _ in 0..3 {
        match run_once(clients) {
            Ok(run) => return run,
            Err(e) => {
                eprintln!("tcpdump dropped packets, running again: {e}");
                said = e;
            }
        }
    }
    panic!("tcpdump dropped packets in 3 runs: {said}");
}

/// Sends 1-byte datagrams to the server's UDP port (which it ignores: a
/// request has 2 bytes) until the capture file holds one: tcpdump says
/// "listening on" a moment before it keeps what it sees.
fn wait_until_capturing(cap: &Path, udp_port: u16) {
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    // A pcap file's header is 24 bytes; a packet makes it longer.
    while std::fs::metadata(cap).map_or(0, |m| m.len()) <= 24 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "tcpdump keeps nothing"
        );
        probe.send_to(b"p", ("127.0.0.1", udp_port)).unwrap();
        thread::sleep(Duration::from_millis(20));
    }
}

fn server_logs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("headers-server-")
                })
                .count()
        })
        .unwrap_or(0)
}

fn analyze(run: &Run) -> Value {
    analyze_captures(run, &[&run.cap])
}

/// `udplab analyze` on `caps` read together, with the run's logs.
fn analyze_captures(run: &Run, caps: &[&Path]) -> Value {
    let out = Command::new(BIN)
        .args(["--quiet", "analyze"])
        .args(caps)
        .args(["--conversations", "--format", "json", "--logs"])
        .arg(&run.logs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "analyze: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn tshark(cap: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(cap).args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.stderr(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "tshark");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// An RFC 3339 time of the report, in µs since the epoch.
fn micros(t: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap())
        .unwrap()
        .timestamp_micros()
}

/// tshark's `frame.time_epoch` in µs.
fn epoch_micros(s: &str) -> i64 {
    let (sec, frac) = s.split_once('.').unwrap();
    sec.parse::<i64>().unwrap() * 1_000_000 + frac[..6].parse::<i64>().unwrap()
}

fn port_of(addr: &Value) -> u16 {
    addr.as_str().unwrap().parse::<SocketAddr>().unwrap().port()
}

/// What every session of a run must show, whatever the interleaving:
/// its names in order, the server's UDP port, the two datagrams' sizes,
/// the same ports throughout, `terminate` and the client closing first,
/// and the header identical three ways.
fn check_sessions(run: &Run, a: &Value, clients: &[&[&str]]) {
    let sessions = a["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), clients.len(), "{a:#}");
    let mut by_names: Vec<&[&str]> = clients.to_vec();
    for s in sessions {
        let names: Vec<&str> = s["queries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["name"].as_str().unwrap())
            .collect();
        let k = by_names
            .iter()
            .position(|c| *c == names.as_slice())
            .unwrap_or_else(|| panic!("a session asked {names:?}"));
        by_names.remove(k);
        assert_eq!(s["ports_stable"], true, "{s:#}");
        assert_eq!(s["terminated"], true);
        assert_eq!(s["teardown"]["by"], "client");
        assert_eq!(s["handshake"]["seen"], "complete");
        let used = a["logs"]["used"].as_array().unwrap();
        assert!(used.contains(&s["server_log"]) && used.contains(&s["client_log"]));
        let client_port = port_of(&s["client"]);
        // Messages: name, port, ..., terminate, alternating.
        let messages = s["messages"].as_array().unwrap();
        assert_eq!(messages.len(), names.len() * 2 + 1);
        for (i, m) in messages.iter().enumerate() {
            let from = if i % 2 == 0 { "client" } else { "server" };
            assert_eq!(m["from"], from, "{m}");
            let text = if i == messages.len() - 1 {
                "terminate".to_string()
            } else if i % 2 == 0 {
                names[i / 2].to_string()
            } else {
                run.udp_port.to_string()
            };
            assert_eq!(m["text"], text.as_str());
            assert_eq!(m["len"], text.len());
        }
        for (i, q) in s["queries"].as_array().unwrap().iter().enumerate() {
            assert_eq!(q["query"], i + 1);
            assert_eq!(q["port"], run.udp_port, "{q:#}");
            let req = &q["udp_request"];
            assert_eq!(req["len"], 2);
            assert_eq!(req["names_port"], client_port);
            assert_eq!(port_of(&req["to"]), run.udp_port);
            let ans = &q["udp_answer"];
            assert_eq!(ans["len"], header_for(names[i]).len());
            assert_eq!(ans["from"], req["to"]);
            assert_eq!(ans["to"], req["from"]);
            assert!(micros(&ans["time"]) >= micros(&req["time"]));
            let h = &q["header"];
            for pair in ["origin_vs_udp", "udp_vs_file", "origin_vs_file"] {
                assert_eq!(h[pair]["result"], "identical", "{pair}: {q:#}");
            }
            let len = header_for(names[i]).len();
            assert_eq!(
                (&h["origin_len"], &h["udp_len"], &h["file_len"]),
                (&Value::from(len), &Value::from(len), &Value::from(len))
            );
            assert!(
                q["file"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("{}.txt", names[i]))
            );
            // A miss was fetched while the query waited.
            if q["cache"] == "miss" {
                assert!(
                    micros(&h["origin_time"]) >= micros(&q["asked_time"]),
                    "{q:#}"
                );
                assert!(micros(&h["origin_time"]) <= micros(&q["answered_time"]));
            }
        }
        // The repeat in a session is answered from the cache.
        for (i, q) in s["queries"].as_array().unwrap().iter().enumerate() {
            if names[..i].contains(&names[i]) {
                assert_eq!(q["cache"], "hit", "{q:#}");
            }
        }
    }
    check_handshakes(run, sessions);
    check_timeline(run, a);
}

/// MSS, window scale and SACK-permitted of each SYN and SYN-ACK, and the
/// initial RTT, as tshark reads them.
fn check_handshakes(run: &Run, sessions: &[Value]) {
    for s in sessions {
        let port = port_of(&s["client"]);
        let h = &s["handshake"];
        let fields = [
            "tcp.flags.ack",
            "tcp.options.mss_val",
            "tcp.options.wscale.shift",
            "tcp.options.sack_perm",
        ];
        let syns = tshark(
            &run.cap,
            &format!("tcp.port == {port} && tcp.flags.syn == 1"),
            &fields,
        );
        assert_eq!(syns.len(), 2, "{syns:?}");
        for row in &syns {
            let suffix = if row[0] == "1" { "syn_ack" } else { "syn" };
            assert_eq!(
                h[format!("mss_{suffix}")].to_string(),
                row[1],
                "MSS of the {suffix}"
            );
            assert_eq!(h[format!("window_scale_{suffix}")].to_string(), row[2]);
            assert_eq!(h[format!("sack_permitted_{suffix}")], !row[3].is_empty());
        }
        let rtt = tshark(
            &run.cap,
            &format!("tcp.port == {port} && tcp.analysis.initial_rtt"),
            &["tcp.analysis.initial_rtt"],
        );
        let tshark_us: f64 = rtt[0][0].parse::<f64>().unwrap() * 1e6;
        let ours = h["rtt_us"].as_f64().unwrap();
        assert!(
            (ours - tshark_us).abs() < 0.5,
            "RTT {ours} us, tshark {tshark_us} us"
        );
    }
}

/// The timeline in frame order, each event's time the frame's as tshark
/// reads it, each event on the frame it names.
fn check_timeline(run: &Run, a: &Value) {
    let frames: HashMap<u64, Vec<String>> = tshark(
        &run.cap,
        "frame",
        &[
            "frame.number",
            "frame.time_epoch",
            "tcp.srcport",
            "udp.srcport",
            "udp.length",
        ],
    )
    .into_iter()
    .map(|r| (r[0].parse().unwrap(), r))
    .collect();
    let events = a["session_timeline"].as_array().unwrap();
    let sessions = a["sessions"].as_array().unwrap();
    let queries: usize = sessions
        .iter()
        .map(|s| s["queries"].as_array().unwrap().len())
        .sum();
    assert_eq!(events.len(), queries * 4 + sessions.len());
    let mut last = (0i64, 0u64);
    for e in events {
        let frame = e["frame"].as_u64().unwrap();
        let f = &frames[&frame];
        let at = epoch_micros(&f[1]);
        assert_eq!(micros(&e["time"]), at, "{e}");
        assert!((at, frame) > last, "timeline out of order at {e}");
        last = (at, frame);
        let s = &sessions[e["session"].as_u64().unwrap() as usize - 1];
        let client = port_of(&s["client"]).to_string();
        let server = port_of(&s["server"]).to_string();
        match e["event"].as_str().unwrap() {
            "asked" | "terminate" => assert_eq!(f[2], client),
            "answered" => assert_eq!(f[2], server),
            "udp_request" => {
                assert_eq!(f[4], "10");
                assert_ne!(f[3], run.udp_port.to_string());
            }
            "udp_answer" => assert_eq!(f[3], run.udp_port.to_string()),
            other => panic!("event {other}"),
        }
    }
    // Each event is its query's step, as the session lists it: who asked
    // first and who got a header first are the timeline's order.
    let mut want: Vec<(u64, u64, &str, u64)> = Vec::new();
    for s in sessions {
        let n = s["session"].as_u64().unwrap();
        for q in s["queries"].as_array().unwrap() {
            let k = q["query"].as_u64().unwrap();
            want.push((n, k, "asked", q["asked_frame"].as_u64().unwrap()));
            want.push((n, k, "answered", q["answered_frame"].as_u64().unwrap()));
            want.push((
                n,
                k,
                "udp_request",
                q["udp_request"]["frame"].as_u64().unwrap(),
            ));
            want.push((
                n,
                k,
                "udp_answer",
                q["udp_answer"]["frame"].as_u64().unwrap(),
            ));
        }
        let terminate = s["messages"].as_array().unwrap().last().unwrap();
        want.push((n, 0, "terminate", terminate["frame"].as_u64().unwrap()));
    }
    want.sort_by_key(|w| w.3);
    let got: Vec<(u64, u64, &str, u64)> = events
        .iter()
        .map(|e| {
            (
                e["session"].as_u64().unwrap(),
                e["query"].as_u64().unwrap_or(0),
                e["event"].as_str().unwrap(),
                e["frame"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn one_client_a_miss_then_a_hit_and_the_header_the_same_three_ways() {
    if let Err(why) = can_capture() {
        skip_or_fail(why);
        return;
    }
    let clients: &[&[&str]] = &[&["a.test", "b.test", "a.test"]];
    let r = run(clients);
    let a = analyze(&r);
    check_sessions(&r, &a, clients);
    assert_eq!(a["logs"]["used"].as_array().unwrap().len(), 2);
    let q = a["sessions"][0]["queries"].as_array().unwrap();
    let cache: Vec<&str> = q.iter().map(|q| q["cache"].as_str().unwrap()).collect();
    assert_eq!(cache, ["miss", "miss", "hit"]);
    // The hit's header came from the first query's fetch.
    assert_eq!(
        q[2]["header"]["origin_frame"],
        q[0]["header"]["origin_frame"]
    );
    // One session: the timeline is its queries in order.
    let order: Vec<(u64, &str)> = a["session_timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["query"].as_u64().unwrap_or(0),
                e["event"].as_str().unwrap(),
            )
        })
        .collect();
    let mut want = Vec::new();
    for k in 1..=3 {
        for e in ["asked", "answered", "udp_request", "udp_answer"] {
            want.push((k, e));
        }
    }
    want.push((0, "terminate"));
    assert_eq!(order, want);

    // A stored file altered on disk: the first difference, where it is.
    let path = r.outs[0].join("b.test.txt");
    let mut stored = std::fs::read(&path).unwrap();
    let header = header_for("b.test");
    assert_eq!(stored, header);
    let line3 = header
        .split(|&b| b == b'\n')
        .take(2)
        .map(|l| l.len() + 1)
        .sum::<usize>();
    stored[line3 + 5] ^= 0x20;
    std::fs::write(&path, &stored).unwrap();
    std::fs::remove_file(r.outs[0].join("a.test.txt")).unwrap();
    let a = analyze(&r);
    let q = a["sessions"][0]["queries"].as_array().unwrap();
    let h = &q[1]["header"];
    assert_eq!(h["origin_vs_udp"]["result"], "identical");
    for pair in ["udp_vs_file", "origin_vs_file"] {
        assert_eq!(h[pair]["result"], "differs", "{h:#}");
        assert_eq!(h[pair]["line"], 3);
        assert_eq!(h[pair]["offset"], line3 + 5);
    }
    for q in [&q[0], &q[2]] {
        assert_eq!(q["header"]["udp_vs_file"]["result"], "no_file");
        assert_eq!(q["header"]["origin_vs_udp"]["result"], "identical");
        assert_eq!(q["header"]["file_len"], Value::Null);
    }

    // The same capture read twice, as from two capture points: the same
    // session, each step at its first copy.
    let twice = analyze_captures(&r, &[&r.cap, &r.cap]);
    let s = &twice["sessions"].as_array().unwrap()[..];
    assert_eq!(s.len(), 1, "{twice:#}");
    assert_eq!(s[0]["messages"].as_array().unwrap().len(), 7);
    for (q, one) in s[0]["queries"].as_array().unwrap().iter().zip(q) {
        assert_eq!(q["header"]["origin_vs_udp"]["result"], "identical");
        assert_eq!(q["udp_answer"]["len"], one["udp_answer"]["len"]);
        assert_eq!(q["udp_answer"]["time"], one["udp_answer"]["time"]);
    }

    // Frames cut to 100 bytes: the short messages are whole, the headers
    // (in the HTTP response and the UDP answer) are not.
    let cut = r.cap.with_file_name("cut.pcap");
    let done = Command::new("editcap")
        .args(["-s", "100"])
        .arg(&r.cap)
        .arg(&cut)
        .status()
        .unwrap();
    assert!(done.success());
    let a = analyze_captures(&r, &[&cut]);
    let s = &a["sessions"][0];
    assert_eq!(s["messages"][0]["text"], "a.test");
    for q in s["queries"].as_array().unwrap() {
        let h = &q["header"];
        assert_eq!(h["origin_vs_udp"]["result"], "cut_in_capture", "{h:#}");
        assert_eq!(h["origin_len"], Value::Null);
        assert_eq!(
            q["udp_answer"]["len"],
            header_for(q["name"].as_str().unwrap()).len()
        );
    }
}

#[test]
fn two_concurrent_clients_with_repeated_names_one_timeline() {
    if let Err(why) = can_capture() {
        skip_or_fail(why);
        return;
    }
    let clients: &[&[&str]] = &[
        &["a.test", "c.test", "a.test", "d.test"],
        &["c.test", "a.test", "c.test"],
    ];
    let r = run(clients);
    let a = analyze(&r);
    check_sessions(&r, &a, clients);
    // Each name was fetched at least once: some query for it was a miss.
    let all: Vec<&Value> = a["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["queries"].as_array().unwrap())
        .collect();
    for name in ["a.test", "c.test", "d.test"] {
        assert!(
            all.iter()
                .any(|q| q["name"] == name && q["cache"] == "miss"),
            "{name}"
        );
    }
    // Both sessions are in the one timeline.
    let sessions: std::collections::BTreeSet<u64> = a["session_timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["session"].as_u64().unwrap())
        .collect();
    assert_eq!(sessions.into_iter().collect::<Vec<_>>(), [1, 2]);
    // The table says who asked first, query by query, as the timeline does.
    let out = Command::new(BIN)
        .args(["--quiet", "analyze"])
        .arg(&r.cap)
        .args(["--conversations", "--logs"])
        .arg(&r.logs)
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    let first_asked = a["session_timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "asked")
        .unwrap()["session"]
        .clone();
    assert!(
        table.contains(&format!("  query 1: asked by session {first_asked}, ")),
        "{table}"
    );
    assert!(table.contains("Header-cache sessions\nsession 1: client "));
}

#[test]
fn a_broken_header_log_is_named_and_a_capture_without_sessions_has_none() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("headers-server-x.txt"),
        "role: headers-server\nclient: nowhere\nqueries: 1\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["analyze", "captures/lab-2clients-lossless/capture.pcap"])
        .args(["--conversations", "--format", "json", "--logs"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("headers-server-x.txt: log not used: client \"nowhere\" is not ip:port"),
        "{stderr}"
    );
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The first lab's transfers: conversations, and no session among them.
    assert!(!a["conversations"].as_array().unwrap().is_empty());
    assert_eq!(a["sessions"], serde_json::json!([]));
    assert_eq!(a["session_timeline"], serde_json::json!([]));
    // Without --conversations the keys are absent.
    let out = Command::new(BIN)
        .args([
            "--quiet",
            "analyze",
            "captures/lab-2clients-lossless/capture.pcap",
        ])
        .args(["--format", "json"])
        .output()
        .unwrap();
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(a.get("sessions").is_none() && a.get("session_timeline").is_none());
}
