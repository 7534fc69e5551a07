//! `udplab lab headers` for real, with 2 and with 10 clients: the run
//! directory, one origin request per distinct name, every stored header
//! byte for byte what the origin serves, the server's hits and misses, and
//! the capture's TCP connections and UDP flows (by the project's reader,
//! through the report, and by tshark).
//!
//! Capturing needs root or CAP_NET_RAW and the `capture` feature; where
//! the run could not capture, the capture's checks fail under CI and are
//! skipped elsewhere ([`common::skip_or_fail`]). The rest runs anywhere.

mod common;

use common::{skip_or_fail, text, wait_output};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use udplab::headers::cache::Cache;
use udplab::headers::local_origin::header_for;
use udplab::lab::headers::{ANALYZE_PORT, DEFAULT_NAMES};

const BIN: &str = env!("CARGO_BIN_EXE_udplab");

/// Names each client asks by default.
const QUERIES: usize = DEFAULT_NAMES.len();

fn udplab(args: &[&str]) -> std::process::Output {
    let child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(60))
}

/// A `key: value` log.
fn log(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The ports of the run, from the summary's first line:
/// `header server 127.0.0.1:T (udp U), origin http://127.0.0.1:O`.
fn ports(stdout: &str) -> (u16, u16, u16) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("header server "))
        .unwrap_or_else(|| panic!("no header server line: {stdout}"));
    let nums: Vec<u16> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    // 127 0 0 1 T U 127 0 0 1 O
    assert_eq!(nums.len(), 11, "{line}");
    (nums[4], nums[5], nums[10])
}

fn lab(clients: usize) {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let n = clients.to_string();
    let out = udplab(&[
        "lab",
        "headers",
        "--clients",
        &n,
        "--port",
        "0",
        "--udp-port",
        "0",
        "--origin-port",
        "0",
        "--dir",
        runs.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let dirs = files(&runs);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let run = &dirs[0];
    assert!(name_of(run).ends_with("-headers"), "{run:?}");
    assert!(
        stdout.contains(&format!("run directory: {}", run.display())),
        "{stdout}"
    );
    let (tcp, udp, origin) = ports(&stdout);

    let distinct: BTreeSet<&str> = DEFAULT_NAMES.iter().copied().collect();
    assert!(
        stdout.contains(&format!(
            "origin: {0} requests for {0} distinct names, one each",
            distinct.len()
        )),
        "{stdout}"
    );

    // The origin's own count: one request per distinct name.
    let logs = run.join("logs");
    let o = log(&logs.join("http-origin.txt"));
    assert_eq!(o["requests"], distinct.len().to_string(), "{o:?}");
    assert_eq!(o["bad_requests"], "0");
    let asked: BTreeSet<&str> = (1..=distinct.len())
        .map(|k| {
            assert_eq!(o[&format!("host_{k}_requests")], "1", "{o:?}");
            o[&format!("host_{k}_name")].as_str()
        })
        .collect();
    assert_eq!(asked, distinct);

    // Each client stored each name once, as the origin serves it.
    let stored = files(&run.join("clients"));
    let want: Vec<String> = (1..=clients).map(|k| k.to_string()).collect();
    let mut got: Vec<String> = stored.iter().map(|p| name_of(p)).collect();
    got.sort_by_key(|k| k.parse::<usize>().unwrap());
    assert_eq!(got, want);
    for c in &stored {
        let names: BTreeSet<String> = files(c).iter().map(|p| name_of(p)).collect();
        let expected: BTreeSet<String> = distinct.iter().map(|n| format!("{n}.txt")).collect();
        assert_eq!(names, expected, "{c:?}");
        for name in &distinct {
            let bytes = std::fs::read(c.join(format!("{name}.txt"))).unwrap();
            assert!(bytes == header_for(name), "{c:?}/{name}.txt differs");
        }
    }
    let cache = Cache::load(&run.join("cache.txt")).unwrap();
    assert_eq!(cache.len(), distinct.len());
    for name in &distinct {
        assert_eq!(
            cache.get(name).unwrap().as_ref(),
            header_for(name).as_slice()
        );
    }

    // The logs: one per client, one per session; the server's misses are
    // the origin's requests, the rest hits.
    let (mut client_logs, mut server_logs) = (0, 0);
    let (mut hits, mut misses) = (0, 0);
    for p in files(&logs) {
        let name = name_of(&p);
        let l = log(&p);
        if name.starts_with("headers-client-") {
            client_logs += 1;
            assert_eq!(l["queries"], QUERIES.to_string(), "{name}");
            assert_eq!(l["stored"], QUERIES.to_string(), "{name}");
        } else if name.starts_with("headers-server-") {
            server_logs += 1;
            assert_eq!(l["end"], "terminated", "{name}");
            assert_eq!(l["cache_saved"], "true", "{name}");
            hits += l["hits"].parse::<usize>().unwrap();
            misses += l["misses"].parse::<usize>().unwrap();
        } else {
            assert_eq!(name, "http-origin.txt");
        }
    }
    assert_eq!((client_logs, server_logs), (clients, clients));
    assert_eq!(misses, distinct.len());
    assert_eq!(hits, clients * QUERIES - distinct.len());

    let report = common::report_json(run);
    let capture = run.join("capture.pcapng");
    if let Some(reason) = stdout
        .lines()
        .find_map(|l| l.strip_prefix("capture: none ("))
    {
        assert!(!capture.exists());
        assert_eq!(report["captures"].as_array().unwrap().len(), 0);
        if cfg!(feature = "capture") {
            skip_or_fail(format_args!("the lab could not capture: {reason}"));
        }
        return;
    }
    check_capture(&capture, &report, clients, (tcp, udp, origin));
}

/// The capture holds the sessions, the origin's connections and a UDP
/// flow per query, each a 2-byte request and a header; report.json is
/// `analyze --conversations` of it.
fn check_capture(
    capture: &Path,
    report: &Value,
    clients: usize,
    (tcp, udp, origin): (u16, u16, u16),
) {
    assert!(capture.is_file());
    let port_of = |a: &Value| -> u16 {
        a.as_str()
            .unwrap()
            .rsplit_once(':')
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    let convs = report["conversations"].as_array().expect("conversations");
    let distinct: BTreeSet<&str> = DEFAULT_NAMES.iter().copied().collect();
    let (mut sessions, mut fetches, mut flows) = (0, 0, Vec::new());
    for c in convs {
        let (a, b) = (port_of(&c["a"]), port_of(&c["b"]));
        match c["transport"].as_str().unwrap() {
            "tcp" if b == tcp => sessions += 1,
            "tcp" if b == origin => {
                fetches += 1;
                assert_eq!(c["handshake"]["seen"], "complete", "{c}");
                let protocols = c["protocols"].as_object().unwrap();
                assert!(
                    protocols.keys().any(|p| p.ends_with(":http")),
                    "the origin speaks HTTP: {c}"
                );
            }
            "udp" if b == udp => {
                // A query's fresh port is the kernel's choice: a later
                // query of the run may get the same one, and the two are
                // then one flow (the same four addresses and ports).
                let queries = c["frames_a_to_b"].as_u64().unwrap();
                assert!(queries >= 1, "{c}");
                assert_eq!(c["frames_b_to_a"], queries, "{c}");
                // Ethernet, IPv4 and UDP around each 2-byte request.
                assert_eq!(c["bytes_a_to_b"], queries * (14 + 20 + 8 + 2), "{c}");
                flows.push((queries, c["bytes_b_to_a"].as_u64().unwrap() - 42 * queries));
                assert_ne!(a, udp);
            }
            other => panic!("a conversation not of the run ({other}): {c}"),
        }
    }
    assert_eq!(sessions, clients);
    assert_eq!(fetches, distinct.len());
    // A UDP request per query, and each header's datagram as long as the
    // header.
    let mut want: Vec<u64> = (0..clients)
        .flat_map(|_| DEFAULT_NAMES.iter().map(|n| header_for(n).len() as u64))
        .collect();
    want.sort_unstable();
    let queries: u64 = flows.iter().map(|&(q, _)| q).sum();
    assert_eq!(queries, want.len() as u64, "one UDP request per query");
    let header_bytes: u64 = flows.iter().map(|&(_, b)| b).sum();
    assert_eq!(header_bytes, want.iter().sum::<u64>());
    for &(_, len) in flows.iter().filter(|&&(q, _)| q == 1) {
        assert!(want.binary_search(&len).is_ok(), "no header is {len} bytes");
    }

    // report.json is what `analyze --conversations` says of the capture.
    // Read as it comes: the JSON is larger than a pipe holds.
    let again = Command::new(BIN)
        .args([
            "analyze",
            capture.to_str().unwrap(),
            "--logs",
            capture.with_file_name("logs").to_str().unwrap(),
            "--port",
            &ANALYZE_PORT.to_string(),
            "--conversations",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again.stderr));
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert!(&again == report, "report.json is not analyze's output");

    // The sessions view, with the run's logs: one session per client, a
    // miss per distinct name over the run (the server fetches a name once),
    // and every header the same as the origin sent it, as the server sent
    // it and as the client stored it.
    let sessions = report["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), clients);
    let mut misses = 0;
    for s in sessions {
        assert_eq!(s["ports_stable"], true, "{s}");
        assert_eq!(s["teardown"]["by"], "client", "{s}");
        let queries = s["queries"].as_array().unwrap();
        assert_eq!(queries.len(), DEFAULT_NAMES.len(), "{s}");
        for q in queries {
            match q["cache"].as_str() {
                Some("miss") => misses += 1,
                Some("hit") => {}
                other => panic!("cache {other:?}: {q}"),
            }
            for side in ["origin_vs_udp", "udp_vs_file", "origin_vs_file"] {
                assert_eq!(q["header"][side]["result"], "identical", "{side}: {q}");
            }
        }
    }
    assert_eq!(misses, distinct.len());

    // tshark's own count of the frames.
    let Ok(t) = Command::new("tshark")
        .args([
            "-r",
            capture.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "udp.length",
            "-e",
            "http.response.code",
        ])
        .output()
    else {
        skip_or_fail("tshark is not installed");
        return;
    };
    assert!(t.status.success(), "{}", text(&t.stderr));
    let rows = text(&t.stdout);
    let udp_frames = rows
        .lines()
        .filter(|l| !l.starts_with('\t') && !l.is_empty())
        .count();
    let http_responses = rows
        .lines()
        .filter(|l| l.split('\t').nth(1).is_some_and(|c| !c.is_empty()))
        .count();
    assert_eq!(udp_frames, 2 * clients * QUERIES, "tshark's UDP frames");
    assert_eq!(http_responses, distinct.len(), "tshark's HTTP responses");
}

#[test]
fn two_clients() {
    lab(2);
}

#[test]
fn ten_clients() {
    lab(10);
}

#[test]
fn a_name_that_is_no_host_name_or_a_taken_port_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = udplab(&[
        "lab",
        "headers",
        "--names",
        "www.twitch.tv,../etc",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "udplab: error: --names: \"../etc\" is not a host name"
    );
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let out = udplab(&[
        "lab",
        "headers",
        "--no-capture",
        "--port",
        &port,
        "--origin-port",
        "0",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("header server port 127.0.0.1:{port} is not free")),
        "{err}"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "no run directory left behind"
    );
}

#[test]
fn without_a_capture_the_run_happens_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = udplab(&[
        "lab",
        "headers",
        "--no-capture",
        "--clients",
        "1",
        "--names",
        "www.twitch.tv,example.org,www.twitch.tv",
        "--port",
        "0",
        "--udp-port",
        "0",
        "--origin-port",
        "0",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("capture: none (not asked for (--no-capture)); the report is empty"),
        "{stdout}"
    );
    assert!(
        stdout.contains("origin: 2 requests for 2 distinct names, one each"),
        "{stdout}"
    );
    let run = &files(dir.path())[0];
    assert!(!run.join("capture.pcapng").exists());
    let report = common::report_json(run);
    assert!(
        report["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("no capture (not asked for"),
        "{report}"
    );
    let stored = std::fs::read(run.join("clients/1/www.twitch.tv.txt")).unwrap();
    assert!(stored == header_for("www.twitch.tv"));
}
