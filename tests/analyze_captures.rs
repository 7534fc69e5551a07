//! `udplab analyze` on the real captures in captures/ (made by
//! scripts/make-captures with our server, our clients and tcpdump on
//! loopback), checked two ways:
//! - against facts counted independently of the analyzer (tshark and the
//!   logs, in captures/facts.json);
//! - against the whole JSON report kept beside each capture
//!   (`expected.json`), so that any change of output is seen. After a
//!   deliberate change, `UDPLAB_BLESS=1 cargo test --test analyze_captures`
//!   rewrites them; review the diff.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// One case of captures/: the directory holding its captures and logs,
/// its files, and the run's control port.
struct Case {
    dir: &'static str,
    port: u16,
    files: Files,
}

/// The capture files of a case.
enum Files {
    /// capture.pcap (tcpdump).
    Pcap,
    /// capture.pcapng (dumpcap, udplab's capturer).
    Pcapng,
    /// One file of captures/derived, its report in FILE.expected.json.
    Derived(&'static str),
    /// A run on the lab's path: one file per capture point, in the path's
    /// order, with the kernel's counters in counters.json.
    Points(&'static [&'static str]),
}

const CASES: &[Case] = &[
    case("lab-2clients-lossless", 25010),
    case("v1-4clients-lossy", 25020),
    case("lab-3clients-lossy", 25030),
    case("v1-2clients-sll", 25040),
    case("v1-2clients-sll2", 25050),
    case("v1-2clients-ipv6", 25060),
    case("v1-client-killed", 25070),
    pcapng("v1-3clients-capture-drops", 25080),
    pcapng("v1-3clients-udplab-capture", 25090),
    pcapng("v1-2clients-reliable", 25110),
    PATH_CASE,
    derived("null.pcap"),
    derived("null-be.pcap"),
    derived("loop.pcap"),
    derived("raw.pcap"),
    derived("ns-be.pcap"),
    derived("mixed.pcapng"),
];

/// The run through the lab's path (`udplab lab --link`).
const PATH_CASE: Case = Case {
    dir: "link-2clients-lossy",
    port: 25120,
    files: Files::Points(&["server.pcapng", "client.pcapng"]),
};

const fn case(name: &'static str, port: u16) -> Case {
    Case {
        dir: name,
        port,
        files: Files::Pcap,
    }
}

const fn pcapng(name: &'static str, port: u16) -> Case {
    Case {
        dir: name,
        port,
        files: Files::Pcapng,
    }
}

const fn derived(file: &'static str) -> Case {
    Case {
        dir: "derived",
        port: 25010,
        files: Files::Derived(file),
    }
}

impl Case {
    /// The capture files, the logs and the expected report.
    fn paths(&self) -> (Vec<PathBuf>, PathBuf, PathBuf) {
        let dir = Path::new("captures").join(self.dir);
        let (captures, expected) = match self.files {
            Files::Pcap => (vec![dir.join("capture.pcap")], dir.join("expected.json")),
            Files::Pcapng => (vec![dir.join("capture.pcapng")], dir.join("expected.json")),
            Files::Derived(file) => (
                vec![dir.join(file)],
                dir.join(format!("{file}.expected.json")),
            ),
            Files::Points(files) => (
                files.iter().map(|f| dir.join(f)).collect(),
                dir.join("expected.json"),
            ),
        };
        (captures, dir.join("logs"), expected)
    }

    /// The case's facts in facts.json (of its one capture file).
    fn facts<'a>(&self, facts: &'a Value) -> &'a Value {
        match self.files {
            Files::Derived(file) => &facts[self.dir][file],
            _ => &facts[self.dir],
        }
    }
}

fn udplab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_udplab"))
}

fn analyze_json(capture: &Path, logs: &Path, port: u16) -> Value {
    analyze_points(&[capture.to_path_buf()], logs, port)
}

/// `analyze` of several capture points at once.
fn analyze_points(captures: &[PathBuf], logs: &Path, port: u16) -> Value {
    let out = udplab()
        .arg("analyze")
        .args(captures)
        .arg("--logs")
        .arg(logs)
        .args(["--port", &port.to_string(), "--format", "json"])
        .output()
        .expect("run udplab analyze");
    assert!(
        out.status.success(),
        "udplab analyze {captures:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("analyze --format json prints JSON")
}

fn facts() -> Value {
    let text = std::fs::read_to_string("captures/facts.json").expect("captures/facts.json");
    serde_json::from_str(&text).expect("facts.json is JSON")
}

fn num(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The client row whose server port is `port`.
fn row_for_port(report: &Value, port: u64) -> &Value {
    report["clients"]
        .as_array()
        .expect("clients array")
        .iter()
        .find(|r| r["server_port"].as_u64() == Some(port))
        .unwrap_or_else(|| panic!("no client row for server port {port}"))
}

#[test]
fn reports_match_independent_facts() {
    let facts = facts();
    for case in CASES {
        // The path's case has two capture points: its own test below.
        let (captures, logs, _) = case.paths();
        let [capture] = &captures[..] else {
            continue;
        };
        let report = analyze_json(capture, &logs, case.port);
        let f = case.facts(&facts);
        // The capturer's own drop count, from its statistics block.
        let isb_dropped = f
            .get("isb")
            .and_then(Value::as_array)
            .map(|isb| isb.iter().filter_map(|i| num(&i["dropped"])).sum::<u64>());
        assert_eq!(
            report["captures"][0]["dropped"].as_u64(),
            isb_dropped,
            "{}: capture drops",
            capture.display()
        );
        let ports = f["ports"].as_object().expect("ports in facts");
        assert_eq!(
            report["clients"].as_array().map(Vec::len),
            Some(ports.len()),
            "{}: one row per data port",
            capture.display()
        );
        for (port, p) in ports {
            let port: u64 = port.parse().unwrap();
            let row = row_for_port(&report, port);
            let what = format!("{} port {port}", capture.display());
            assert_eq!(
                row["wire_full_frames"].as_u64(),
                num(&p["full_1032"]),
                "{what}: full frames"
            );
            let lab = row["protocol"] == "lab";
            let opening = if lab { 2 } else { 0 };
            assert_eq!(
                row["wire_data_frames"].as_u64().map(|n| n + opening),
                num(&p["udp_frames"]),
                "{what}: data frames (+ name and size for the lab's protocol)"
            );
            assert_eq!(
                row["icmp_port_unreachable"].as_u64(),
                num(&p["icmp_port_unreachable"]),
                "{what}: ICMP"
            );
            // The most common full-frame length is the one reported.
            let lens = p["full_frame_len"].as_object().expect("frame lengths");
            let most = lens
                .iter()
                .max_by_key(|(_, n)| num(n))
                .map(|(len, _)| len.parse::<u64>().unwrap());
            assert_eq!(row["wire_frame_len"].as_u64(), most, "{what}: frame length");
        }
        let Some(clients) = f.get("clients").and_then(Value::as_object) else {
            continue;
        };
        for (id, c) in clients {
            let row = report["clients"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["client_id"].as_u64() == id.parse().ok())
                .unwrap_or_else(|| panic!("{}: no row for client {id}", capture.display()));
            let what = format!("{} client {id}", capture.display());
            assert_eq!(
                row["sent_bytes"].as_u64(),
                num(&c["bytes_sent"]),
                "{what}: sent"
            );
            assert_eq!(
                row["received_bytes"].as_u64(),
                num(&c["bytes_received"]),
                "{what}: received"
            );
            assert_eq!(
                row["kernel_drops"].as_u64(),
                num(&c["kernel_drops"]),
                "{what}: kernel drops"
            );
            assert_eq!(
                row["client_port"].as_u64(),
                num(&c["client_port"]),
                "{what}: client port"
            );
            let verdict = row["verdict"].as_str().unwrap();
            if isb_dropped.is_some_and(|n| n > 0) {
                // A capture that lost packets cannot place the loss.
                assert_eq!(row["lost_before_capture_bytes"], Value::Null, "{what}");
                assert_eq!(row["lost_after_capture_bytes"], Value::Null, "{what}");
                assert!(
                    verdict.starts_with("cannot tell: the capture dropped"),
                    "{what}: {verdict}"
                );
                assert!(
                    verdict.contains("(receiver socket buffer)"),
                    "{what}: {verdict}"
                );
                continue;
            }
            // The other cases were captured without capture loss: lost
            // before the capture point is zero, and loss after it is what
            // the client's kernel dropped.
            assert_eq!(row["lost_before_capture_bytes"].as_i64(), Some(0), "{what}");
            if let (Some(sent), Some(got)) = (num(&c["bytes_sent"]), num(&c["bytes_received"])) {
                assert_eq!(
                    row["lost_after_capture_bytes"].as_i64(),
                    Some(sent as i64 - got as i64),
                    "{what}"
                );
                if row["mode"] == "reliable" {
                    // What the first pass lost, repair rounds resent: the
                    // file is whole, the copies lost are the socket's drops.
                    let drops = num(&c["kernel_drops"]).unwrap();
                    assert!(
                        verdict.starts_with("delivered whole after ")
                            && verdict.ends_with(&format!(
                                "the client's kernel dropped {drops} datagrams)"
                            )),
                        "{what}: {verdict}"
                    );
                } else if sent == got {
                    assert_eq!(verdict, "no loss", "{what}");
                } else {
                    assert!(
                        verdict.contains("receiver socket buffer"),
                        "{what}: {verdict}"
                    );
                }
            }
        }
    }
}

#[test]
fn reports_match_expected_json() {
    let bless = std::env::var_os("UDPLAB_BLESS").is_some();
    for case in CASES {
        let (captures, logs, expected) = case.paths();
        let report = analyze_points(&captures, &logs, case.port);
        if bless {
            let text = serde_json::to_string_pretty(&report).unwrap() + "\n";
            std::fs::write(&expected, text).unwrap();
            continue;
        }
        let text = std::fs::read_to_string(&expected)
            .unwrap_or_else(|e| panic!("{}: {e}", expected.display()));
        let want: Value = serde_json::from_str(&text).unwrap();
        assert!(
            report == want,
            "{captures:?} differ from {}:\n{}",
            expected.display(),
            serde_json::to_string_pretty(&report).unwrap()
        );
    }
}

#[test]
fn killed_client_is_seen_through_icmp() {
    let report = analyze_json(
        Path::new("captures/v1-client-killed/capture.pcap"),
        Path::new("captures/v1-client-killed/logs"),
        25070,
    );
    let row = row_for_port(&report, 25071);
    assert!(row["icmp_port_unreachable"].as_u64().unwrap() > 0);
    assert_eq!(
        row["received_bytes"],
        Value::Null,
        "no client log: null, not 0"
    );
    let verdict = row["verdict"].as_str().unwrap();
    assert!(verdict.contains("the client had gone"), "{verdict}");
    assert!(
        verdict.ends_with("the server sent only 322560 of 8388608 bytes"),
        "{verdict}"
    );
    // The v1 headers on the wire show where the sending stopped: the
    // server's log says the file takes 8323 datagrams, 320 went out.
    let flow = report["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["src"] == "127.0.0.1:25071")
        .expect("client 1's flow");
    assert_eq!(flow["v1"]["expected"], 8323);
    assert_eq!(flow["v1"]["missing"], 8323 - 320);
    assert_eq!(
        flow["v1"]["missing_ranges"],
        serde_json::json!([[320, 8322]])
    );
}

#[test]
fn v1_control_messages_are_decoded() {
    let report = analyze_json(
        Path::new("captures/v1-4clients-lossy/capture.pcap"),
        Path::new("captures/v1-4clients-lossy/logs"),
        25020,
    );
    let control = report["control"].as_array().unwrap();
    assert_eq!(control.len(), 4);
    for c in control {
        assert_eq!(c["protocol"], "v1");
        assert_eq!(c["handshake"], "complete");
        assert_eq!(c["mss"], 65495);
        assert_eq!(c["sack_permitted"], true);
        assert!(c["handshake_rtt_us"].as_f64().unwrap() > 0.0);
    }
    // Missing sequence numbers on the wire: none (the loss was after it).
    for f in report["flows"].as_array().unwrap() {
        if f["kind"] == "v1" {
            assert_eq!(f["v1"]["missing"], 0, "{f}");
            assert_eq!(f["v1"]["duplicates"], 0);
        }
    }
}

/// The original lab's own run (shared/lab-samples, not part of this
/// repository): a failure under CI where it is absent, elsewhere skipped.
#[test]
fn lab_sample_run() {
    let Some(samples) = common::lab_samples() else {
        return;
    };
    let dir = samples.join("run-2clients-10MB");
    let report = analyze_json(&dir.join("run.pcap"), &dir, 5005);
    let clients = report["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 2);
    for row in clients {
        assert_eq!(row["wire_full_frames"], 10_240);
        assert_eq!(row["wire_frame_len"], 1066);
        assert_eq!(row["sent_bytes"], 10_485_760);
        assert_eq!(row["wire_data_bytes"], 10_485_760);
        assert_eq!(row["received_bytes"], 10_485_760);
        assert_eq!(row["lost_before_capture_bytes"], 0);
        assert_eq!(row["lost_after_capture_bytes"], 0);
        assert_eq!(row["loss_pct"], 0.0);
        assert_eq!(row["verdict"], "no loss");
        assert_eq!(
            row["kernel_drops"],
            Value::Null,
            "the lab's logs do not tell"
        );
    }
    assert_eq!(report["logs"]["used"].as_array().unwrap().len(), 4);
}

/// The case captured by `udplab capture`: its statistics block, as tshark
/// reads it, says what libpcap counted (run.txt) and every packet is in the
/// file once; the control messages, kept whole, are read from the wire.
#[test]
fn our_own_capture_states_its_counts_and_keeps_control_whole() {
    let f = &facts()["v1-3clients-udplab-capture"];
    let printed = &f["udplab_capture"];
    let isb = &f["isb"][0];
    assert_eq!(num(&isb["received"]), num(&printed["received"]));
    assert_eq!(num(&isb["dropped"]), num(&printed["dropped"]));
    assert_eq!(num(&isb["delivered_to_user"]), num(&printed["captured"]));
    assert_eq!(num(&printed["captured"]), num(&f["packets"]));
    assert_eq!(
        num(&printed["received"]),
        num(&f["packets"]),
        "each packet counted once on lo"
    );

    let dir = Path::new("captures/v1-3clients-udplab-capture");
    let report = analyze_json(&dir.join("capture.pcapng"), &dir.join("logs"), 25090);
    let control = report["control"].as_array().unwrap();
    assert_eq!(control.len(), 3);
    for c in control {
        assert_eq!(c["note"], Value::Null, "control bytes read in full: {c}");
        let messages: Vec<&str> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        assert!(
            messages[0].starts_with("server: announce 2MiB.bin (2097152 bytes"),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.starts_with("client: report (")),
            "{messages:?}"
        );
    }
}

/// The run of the second lab (`udplab lab headers`, captures/headers-2clients):
/// `analyze --conversations` against the facts tshark counted (the
/// sessions and the origin's connections, a UDP flow per query with its
/// header's length, every frame once) and against the whole report kept
/// beside it, blessed as the others are.
#[test]
fn the_header_lab_case_has_its_conversations() {
    let dir = Path::new("captures/headers-2clients");
    let capture = dir.join("capture.pcapng");
    let out = udplab()
        .arg("analyze")
        .arg(&capture)
        .arg("--logs")
        .arg(dir.join("logs"))
        .args(["--port", "5005", "--conversations", "--format", "json"])
        .output()
        .expect("run udplab analyze");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();

    let facts = &facts()["headers-2clients"];
    let port = |k: &str| facts[k].as_u64().unwrap();
    let convs = report["conversations"].as_array().expect("conversations");
    let b_port = |c: &Value| -> u64 {
        let b = c["b"].as_str().unwrap();
        b.rsplit_once(':').unwrap().1.parse().unwrap()
    };
    let of = |proto: &str, p: u64| {
        convs
            .iter()
            .filter(|c| c["transport"] == proto && b_port(c) == p)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("tcp", port("tcp_port")).len() as u64, port("sessions"));
    assert_eq!(
        of("tcp", port("origin_port")).len() as u64,
        port("origin_connections")
    );
    let udp = of("udp", port("udp_port"));
    let requests: u64 = facts["udp_requests"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(num)
        .sum();
    assert_eq!(udp.len() as u64, requests, "a UDP flow per query");
    // Each flow's answer: Ethernet, IPv4 and UDP around the header.
    let mut lengths = std::collections::BTreeMap::new();
    for c in &udp {
        assert_eq!(c["frames_a_to_b"], 1, "{c}");
        assert_eq!(c["frames_b_to_a"], 1, "{c}");
        let header = c["bytes_b_to_a"].as_u64().unwrap() - 42;
        *lengths.entry(header.to_string()).or_insert(0u64) += 1;
    }
    let want: std::collections::BTreeMap<String, u64> = facts["udp_headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), num(v).unwrap()))
        .collect();
    assert_eq!(lengths, want);
    let frames: u64 = convs
        .iter()
        .map(|c| c["frames_a_to_b"].as_u64().unwrap() + c["frames_b_to_a"].as_u64().unwrap())
        .sum();
    assert_eq!(frames, port("packets"), "every frame in one conversation");
    assert_eq!(report["captures"][0]["dropped"], 0);
    assert_eq!(
        report["clients"].as_array().map(Vec::len),
        Some(0),
        "no file transfer in it"
    );

    // The report's questions, per session: a miss per origin connection
    // (the server fetched each name once), the header the same three ways
    // (the capture's HTTP answer, the UDP datagram, the client's stored
    // file under clients/), and one timeline holding every query's events.
    let sessions = report["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len() as u64, port("sessions"));
    let queries: Vec<&Value> = sessions
        .iter()
        .flat_map(|s| s["queries"].as_array().unwrap())
        .collect();
    assert_eq!(queries.len() as u64, requests);
    let misses = queries.iter().filter(|q| q["cache"] == "miss").count() as u64;
    assert_eq!(misses, port("origin_connections"));
    for q in &queries {
        for side in ["origin_vs_udp", "udp_vs_file", "origin_vs_file"] {
            assert_eq!(q["header"][side]["result"], "identical", "{side}: {q}");
        }
    }
    let answered = report["session_timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "udp_answer")
        .count() as u64;
    assert_eq!(answered, requests);

    let expected = dir.join("expected.json");
    if std::env::var_os("UDPLAB_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&report).unwrap() + "\n";
        std::fs::write(&expected, text).unwrap();
        return;
    }
    let text = std::fs::read_to_string(&expected)
        .unwrap_or_else(|e| panic!("{}: {e}", expected.display()));
    let want: Value = serde_json::from_str(&text).unwrap();
    assert!(
        report == want,
        "{} differs from {}:\n{}",
        capture.display(),
        expected.display(),
        serde_json::to_string_pretty(&report).unwrap()
    );
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The reliable-mode run (`udplab lab --mode reliable`, 64 KiB receive
/// buffers): every copy the server sent is on the wire, the copies beyond
/// the first are the datagrams the clients' kernels dropped, resent in the
/// rounds the logs count, and each file arrived whole.
#[test]
fn the_reliable_case_resends_what_the_sockets_dropped() {
    let dir = Path::new("captures/v1-2clients-reliable");
    let report = analyze_json(&dir.join("capture.pcapng"), &dir.join("logs"), 25110);
    let f = &facts()["v1-2clients-reliable"];
    let rows = report["clients"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let id = row["client_id"].as_u64().unwrap().to_string();
        let c = &f["clients"][&id];
        let port = row["server_port"].as_u64().unwrap().to_string();
        let p = &f["ports"][&port];
        let what = format!("client {id}");
        assert_eq!(row["mode"], "reliable", "{what}");
        let total = row["datagrams_total"].as_u64().unwrap();
        let sent = num(&c["datagrams_sent"]).unwrap();
        assert_eq!(
            num(&p["udp_frames"]),
            Some(sent),
            "{what}: every copy captured"
        );
        let drops = row["kernel_drops"].as_u64().unwrap();
        assert!(drops > 0, "{what}: the first pass lost nothing");
        assert_eq!(
            row["wire_retransmitted"].as_u64(),
            Some(sent - total),
            "{what}"
        );
        assert_eq!(
            row["datagrams_retransmitted"].as_u64(),
            Some(drops),
            "{what}"
        );
        assert_eq!(
            row["wire_distinct_datagrams"].as_u64(),
            Some(total),
            "{what}"
        );
        assert!(row["repair_rounds"].as_u64() >= Some(1), "{what}");
        assert_eq!(row["received_bytes"], row["file_size"], "{what}");
        assert_eq!(row["success"], true, "{what}");
        let flow = report["flows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|fl| fl["src"] == format!("127.0.0.1:{port}"))
            .unwrap_or_else(|| panic!("{what}: no flow"));
        assert_eq!(flow["v1"]["missing"], 0, "{what}: {flow}");
        assert_eq!(
            flow["v1"]["duplicates"].as_u64(),
            Some(sent - total),
            "{what}"
        );
    }
}

/// The run through the lab's path (`udplab lab --link`, 100 Mbit/s and 1 %
/// loss), read as its two capture points: each client's flow is at both,
/// with the frames tshark counted in each file, and what the network lost
/// between them is what the router's queue and loss rule (and the veths)
/// counted, as the kernel told in counters.json.
#[test]
fn the_path_case_places_its_loss_in_the_network() {
    let (captures, logs, _) = PATH_CASE.paths();
    let report = analyze_points(&captures, &logs, PATH_CASE.port);
    let facts = facts();
    let f = PATH_CASE.facts(&facts);
    let counters = read_json(
        &Path::new("captures")
            .join(PATH_CASE.dir)
            .join("counters.json"),
    );
    let points: Vec<String> = captures.iter().map(|p| p.display().to_string()).collect();
    let file_facts: Vec<&Value> = captures
        .iter()
        .map(|p| &f[p.file_name().unwrap().to_str().unwrap()])
        .collect();

    let caps = report["captures"].as_array().unwrap();
    assert_eq!(caps.len(), 2);
    for (c, ff) in caps.iter().zip(&file_facts) {
        let isb_dropped: u64 = ff["isb"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| num(&i["dropped"]))
            .sum();
        assert_eq!(c["dropped"].as_u64(), Some(isb_dropped), "{c}");
        assert_eq!(c["packets"].as_u64(), num(&ff["packets"]), "{c}");
    }

    let k = &counters["counters"];
    let network = num(&k["router"]["queue"]["drops"]).unwrap()
        + num(&k["router"]["loss_rule"]["packets"]).unwrap()
        + k["links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| num(&l["tx_dropped"]).unwrap())
            .sum::<u64>();
    assert!(
        num(&k["router"]["loss_rule"]["packets"]).unwrap() > 0,
        "the loss rule took none"
    );

    let rows = report["clients"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let mut lost_between = 0;
    for row in rows {
        let id = row["client_id"].as_u64().unwrap().to_string();
        let port = row["server_port"].as_u64().unwrap().to_string();
        let what = format!("client {id}");
        // Each point's data frames of the client's flow, as tshark counted
        // them in that file.
        let path = row["path"].as_array().unwrap();
        assert_eq!(path.len(), 2, "{what}: {path:?}");
        let mut frames = Vec::new();
        for ((p, point), ff) in path.iter().zip(&points).zip(&file_facts) {
            assert_eq!(p["capture"], point.as_str(), "{what}: the path's order");
            let n = p["data_frames"].as_u64().unwrap();
            assert_eq!(
                Some(n),
                num(&ff["ports"][&port]["udp_frames"]),
                "{what} at {point}"
            );
            frames.push(n);
        }
        lost_between += frames[0] - frames[1];
        // The sender's host lost nothing, nor did the receiver's: the
        // clients' sockets dropped nothing, as their logs say.
        let c = &file_facts[0]["clients"][&id];
        assert_eq!(num(&c["datagrams_sent"]), Some(frames[0]), "{what}: sent");
        assert_eq!(row["lost_before_capture_bytes"], 0, "{what}");
        assert_eq!(row["lost_after_capture_bytes"], 0, "{what}");
        assert_eq!(
            row["kernel_drops"].as_u64(),
            num(&c["kernel_drops"]),
            "{what}"
        );
        assert_eq!(
            row["received_bytes"].as_u64(),
            num(&c["bytes_received"]),
            "{what}"
        );
        // What left the sender's host and did not arrive was lost between
        // the points.
        let between = row["lost_between_captures_bytes"].as_u64().unwrap();
        assert!(between > 0, "{what}");
        assert_eq!(
            between + row["received_bytes"].as_u64().unwrap(),
            row["sent_bytes"].as_u64().unwrap(),
            "{what}"
        );
        let verdict = row["verdict"].as_str().unwrap();
        assert_eq!(
            verdict,
            format!("{between} bytes lost in the network (between the capture points)"),
            "{what}"
        );
    }
    assert_eq!(
        lost_between, network,
        "network loss: the captures' difference vs the router's and the veths' drops"
    );
    // The receiver host's and the sender host's counters: nothing there.
    assert_eq!(num(&k["receiver_host"]["udp_rcvbuf_errors"]), Some(0));
    assert_eq!(num(&k["sender_host"]["udp_sndbuf_errors"]), Some(0));
}
