//! `udplab analyze` on damaged and unexpected input: a one-line error or a
//! counted warning, never a panic, and the report of what could be read.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const CAPTURE: &str = "captures/lab-2clients-lossless/capture.pcap";
const LOGS: &str = "captures/lab-2clients-lossless/logs";
const PORT: &str = "25010";

fn analyze(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_udplab"))
        .arg("analyze")
        .args(args)
        .output()
        .expect("run udplab analyze")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

/// Exactly one line on stderr, holding `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn truncated_capture_reports_how_far_it_read_and_what_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pcap");
    let mut bytes = fs::read(CAPTURE).unwrap();
    bytes.truncate(bytes.len() - 50);
    fs::write(&path, &bytes).unwrap();

    let out = analyze(&[
        path.to_str().unwrap(),
        "--logs",
        LOGS,
        "--port",
        PORT,
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "a damaged file is an error");
    let err = stderr(&out);
    assert!(
        err.contains("ends in the middle of a record after") && err.contains("packets"),
        "{err}"
    );
    let report = json(&out);
    let capture = &report["captures"][0];
    assert!(
        capture["error"]
            .as_str()
            .unwrap()
            .contains("middle of a record")
    );
    // Everything before the cut is counted: one packet short of the whole.
    let whole = json(&analyze(&[CAPTURE, "--port", PORT, "--format", "json"]));
    assert_eq!(
        capture["packets"].as_u64().unwrap() + 1,
        whole["captures"][0]["packets"].as_u64().unwrap()
    );
    assert_eq!(report["clients"].as_array().unwrap().len(), 2);
}

/// The offset of the `n`th block after the section header of a pcapng file.
fn pcapng_block(bytes: &[u8], n: usize) -> usize {
    let mut at = 0;
    for _ in 0..=n {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        at += len as usize;
    }
    at
}

#[test]
fn corrupt_pcapng_block_stops_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.pcapng");
    let mut bytes = fs::read("captures/derived/mixed.pcapng").unwrap();
    let at = pcapng_block(&bytes, 500);
    bytes[at + 4..at + 8].copy_from_slice(&7u32.to_le_bytes());
    fs::write(&path, &bytes).unwrap();

    let out = analyze(&[path.to_str().unwrap(), "--port", PORT, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("corrupt block at byte {at}")),
        "{err}"
    );
    let report = json(&out);
    assert!(report["captures"][0]["packets"].as_u64().unwrap() > 400);
}

#[test]
fn unknown_link_type_is_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lt147.pcap");
    let mut bytes = fs::read(CAPTURE).unwrap();
    // pcap header: link type at bytes 20..24 (little-endian file).
    bytes[20..24].copy_from_slice(&147u32.to_le_bytes());
    fs::write(&path, &bytes).unwrap();

    let out = analyze(&[path.to_str().unwrap(), "--port", PORT, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    let packets = report["captures"][0]["packets"].as_u64().unwrap();
    assert_eq!(report["skipped"]["link type 147 not supported"], packets);
    assert_eq!(report["captures"][0]["link_types"][0], "LINKTYPE_147");
    assert_eq!(report["clients"].as_array().unwrap().len(), 0);
}

#[test]
fn malformed_packets_are_counted_by_reason() {
    // A pcap of three Ethernet frames: ARP, an IPv4 header cut short, and
    // a UDP length larger than its IP packet.
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let eth = |ethertype: [u8; 2], rest: &[u8]| {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype);
        f.extend_from_slice(rest);
        f
    };
    frames.push(eth([0x08, 0x06], &[0; 28]));
    frames.push(eth([0x08, 0x00], &[0x45, 0, 0]));
    let mut ip = vec![
        0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
    ];
    ip.extend_from_slice(&[0x13, 0x8e, 0x9c, 0x40, 0x04, 0x08, 0, 0]); // UDP length 1032
    frames.push(eth([0x08, 0x00], &ip));

    let mut pcap = Vec::new();
    pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    pcap.extend_from_slice(&[0; 8]);
    pcap.extend_from_slice(&65535u32.to_le_bytes());
    pcap.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        pcap.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        pcap.extend_from_slice(&0u32.to_le_bytes());
        pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
        pcap.extend_from_slice(f);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.pcap");
    fs::write(&path, &pcap).unwrap();

    let out = analyze(&[path.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    let skipped = &report["skipped"];
    assert_eq!(skipped["not IP (EtherType 0x0806)"], 1, "{skipped}");
    assert_eq!(skipped["truncated IPv4 header"], 1, "{skipped}");
    assert_eq!(skipped["malformed UDP header"], 1, "{skipped}");
    // The table says so too.
    let out = analyze(&[path.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("truncated IPv4 header: 1"), "{table}");
}

#[test]
fn files_that_are_not_captures_get_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    fs::write(&text, "these are not packets\n").unwrap();
    let empty = dir.path().join("empty.pcap");
    fs::write(&empty, b"").unwrap();
    let missing = dir.path().join("missing.pcap");

    assert_one_line_error(
        &analyze(&[text.to_str().unwrap()]),
        "is not a pcap or pcapng file",
    );
    assert_one_line_error(&analyze(&[empty.to_str().unwrap()]), "is empty");
    assert_one_line_error(&analyze(&[missing.to_str().unwrap()]), "cannot open");
    assert_one_line_error(
        &analyze(&[CAPTURE, "--logs", missing.to_str().unwrap()]),
        "cannot read logs",
    );
}

#[test]
fn logs_of_other_runs_are_not_used() {
    // The logs of two runs in one directory: only the captured run's count.
    let dir = tempfile::tempdir().unwrap();
    for case in ["lab-2clients-lossless", "v1-4clients-lossy"] {
        for entry in fs::read_dir(Path::new("captures").join(case).join("logs")).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let out = analyze(&[
        CAPTURE,
        "--logs",
        dir.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    let report = json(&out);
    assert_eq!(report["logs"]["used"].as_array().unwrap().len(), 4);
    assert_eq!(report["logs"]["unused"], 8);
    for row in report["clients"].as_array().unwrap() {
        assert_eq!(row["received_bytes"], 1_048_576);
        assert!(row["client_log"].as_str().unwrap().contains("1MiB.bin"));
    }
}

#[test]
fn control_port_is_found_when_not_given() {
    let out = analyze(&[CAPTURE, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("using control port 25010"),
        "{}",
        stderr(&out)
    );
    let report = json(&out);
    assert_eq!(report["control_port"], 25010);
    assert_eq!(report["clients"].as_array().unwrap().len(), 2);
    // A port given explicitly is kept, and the report says where to look.
    let out = analyze(&[CAPTURE, "--port", "5005"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("try --port 25010"), "{table}");
}

/// A pcap of `n` TCP SYNs to port 5005 on 127.0.0.1, each from its own
/// address: `n` one-packet conversations, each a control connection.
fn syn_flood_pcap(path: &Path, n: u32) {
    let mut out = Vec::with_capacity(24 + n as usize * 70);
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..n {
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&(40_000 + (i % 20_000) as u16).to_be_bytes());
        tcp.extend_from_slice(&5005u16.to_be_bytes());
        tcp.extend_from_slice(&i.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 0, 5 << 4, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(20 + tcp.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0, 0, 64, 6, 0, 0, 10]);
        ip.extend_from_slice(&i.to_be_bytes()[1..]);
        ip.extend_from_slice(&[127, 0, 0, 1]);
        ip.extend_from_slice(&tcp);
        let mut frame = vec![0; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&ip);
        out.extend_from_slice(&(1_700_000_000 + i / 1000).to_le_bytes());
        out.extend_from_slice(&((i % 1000) * 1000).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    fs::write(path, out).unwrap();
}

/// `udplab analyze ARGS`: its stdout and its peak resident set in bytes,
/// measured by GNU time (the process's own rusage: a process spawned
/// straight from this one starts out with this test process's peak, which
/// wait4 would count as the child's).
fn analyze_peak_rss(args: &[&str]) -> (String, u64) {
    let time = Path::new("/usr/bin/time");
    assert!(
        time.exists(),
        "no /usr/bin/time (GNU time; scripts/test installs it)"
    );
    let figures = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(time)
        .arg("-o")
        .arg(figures.path())
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_udplab"))
        .arg("analyze")
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "udplab analyze {args:?}: {}",
        out.status
    );
    let kib: u64 = fs::read_to_string(figures.path())
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("GNU time's %M");
    (String::from_utf8(out.stdout).unwrap(), kib * 1024)
}

/// The terminal table of a capture with more control connections and
/// conversations than a table can hold lists the first 1,000 of each and
/// says how many more there are (`--format json` has them all); its
/// memory stays as bounded as the JSON's, under the 64 MB the README
/// promises (it held every row as table cells, and their rendering, at
/// once: some 90 MB on this capture).
#[test]
fn the_table_of_a_flood_of_connections_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("syn-flood.pcap");
    syn_flood_pcap(&pcap, 21_000);
    let file = pcap.to_str().unwrap();
    let (table, table_rss) = analyze_peak_rss(&["--conversations", file]);
    assert!(
        table.contains("  9,000 more control connections not listed"),
        "{}",
        &table[table.len().saturating_sub(2000)..]
    );
    assert!(
        table.contains("  19,000 more conversations not listed"),
        "{}",
        &table[table.len().saturating_sub(2000)..]
    );
    let (json, json_rss) = analyze_peak_rss(&["--conversations", "--format", "json", file]);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["control"].as_array().unwrap().len(), 10_000);
    assert_eq!(json["conversations"].as_array().unwrap().len(), 20_000);
    assert!(
        table_rss < 64_000_000,
        "table: {table_rss} bytes (JSON: {json_rss})"
    );
    assert!(
        table_rss < json_rss + 16_000_000,
        "table: {table_rss} bytes, JSON: {json_rss}"
    );
}

/// A pcap of `n` v1 data datagrams to 127.0.0.1, one flow each, from
/// the data ports of control port 5005 (5006 on): `n` clients, each with
/// a series to draw.
fn v1_flows_pcap(path: &Path, n: u32) {
    let mut out = Vec::with_capacity(24 + n as usize * 90);
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..n {
        let mut payload = b"UL\x01\x00".to_vec();
        payload.extend_from_slice(&(i * 7919 % (1 << 20)).to_be_bytes());
        payload.extend_from_slice(&[0; 8 + 16]);
        let mut udp = Vec::new();
        udp.extend_from_slice(&(5006 + i as u16).to_be_bytes());
        udp.extend_from_slice(&40_000u16.to_be_bytes());
        udp.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&payload);
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(20 + udp.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 10]);
        ip.extend_from_slice(&i.to_be_bytes()[1..]);
        ip.extend_from_slice(&[127, 0, 0, 1]);
        ip.extend_from_slice(&udp);
        let mut frame = vec![0; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&ip);
        out.extend_from_slice(&(1_700_000_000 + i / 1000).to_le_bytes());
        out.extend_from_slice(&((i % 1000) * 1000).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    fs::write(path, out).unwrap();
}

/// The page of a capture with thousands of clients draws the first 64
/// and says how many more there are (its table lists them all); its
/// memory stays near the JSON's (it drew every client, and held every
/// picture and the whole page at once: tens of MB more).
#[test]
fn the_page_of_a_flood_of_clients_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("many-clients.pcap");
    v1_flows_pcap(&pcap, 3000);
    let file = pcap.to_str().unwrap();
    let page = dir.path().join("page.html");
    let common = ["--format", "json", "--port", "5005", file];
    // The page first: a child's peak also counts this process's peak so
    // far (the child starts out sharing its memory), which only grows, so
    // the JSON's figure is inflated at least as much as the page's.
    let mut args = vec!["--html", page.to_str().unwrap()];
    args.extend(common);
    let (_, html_rss) = analyze_peak_rss(&args);
    let (json, json_rss) = analyze_peak_rss(&common);
    let json: Value = serde_json::from_str(&json).unwrap();
    let clients = json["clients"].as_array().unwrap().len();
    assert_eq!(clients, 3000);
    let html = fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<section class=\"client\">").count(), 64);
    assert!(
        html.contains("2,936 more clients not drawn"),
        "{}",
        &html[html.len().saturating_sub(2000)..]
    );
    assert_eq!(
        html.matches("<tr><td>client ").count(),
        clients,
        "the table lists all"
    );
    assert!(html.len() < 8_000_000, "page: {} bytes", html.len());
    assert!(
        html_rss < json_rss + 16_000_000,
        "--html: {html_rss} bytes, JSON: {json_rss}"
    );
}

#[test]
fn csv_has_one_row_per_client() {
    let out = analyze(&[CAPTURE, "--logs", LOGS, "--port", PORT, "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("client_id,protocol,server_port,client_port"));
    assert!(lines[1].starts_with("1,lab,25011,"), "{}", lines[1]);
    assert!(lines[1].ends_with(",no loss"), "{}", lines[1]);
}

#[test]
fn two_captures_of_one_run_merge_without_double_counting() {
    // The same run captured twice (as at the server and at the client):
    // each client's wire column is one capture's, not the sum.
    let out = analyze(&[
        CAPTURE,
        "captures/derived/null.pcap",
        "--logs",
        LOGS,
        "--port",
        PORT,
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["captures"].as_array().unwrap().len(), 2);
    assert_eq!(
        report["control"].as_array().unwrap().len(),
        2,
        "connections count once"
    );
    for row in report["clients"].as_array().unwrap() {
        assert_eq!(row["wire_full_frames"], 1024);
        assert_eq!(row["verdict"], "no loss");
    }
    assert_eq!(
        report["flows"].as_array().unwrap().len(),
        4,
        "a flow per capture"
    );
}

#[test]
fn our_logs_are_found_by_their_header_whatever_their_name() {
    let dir = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(LOGS).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        fs::copy(entry.path(), dir.path().join(format!("renamed-{name}.log"))).unwrap();
    }
    fs::write(dir.path().join("notes.txt"), "not a log\n").unwrap();
    let out = analyze(&[
        CAPTURE,
        "--logs",
        dir.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    let report = json(&out);
    assert_eq!(report["logs"]["used"].as_array().unwrap().len(), 4);
    assert_eq!(
        report["logs"]["unused"], 0,
        "notes.txt is not read as a log"
    );
    for row in report["clients"].as_array().unwrap() {
        assert_eq!(row["received_bytes"], 1_048_576);
    }
}

/// Copies of `logs` in `into`, client `k`'s log with `key: value` set.
fn logs_with(logs: &str, into: &Path, k: u16, key: &str, value: &str) {
    fs::create_dir_all(into).unwrap();
    let prefix = format!("C{k}-");
    let mut edited = false;
    for entry in fs::read_dir(logs).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let mut text = fs::read_to_string(&path).unwrap();
        if name.starts_with(&prefix) {
            let old = text
                .lines()
                .find(|l| l.starts_with(&format!("{key}: ")))
                .unwrap_or_else(|| panic!("{name} has no {key}"))
                .to_owned();
            text = text.replace(&old, &format!("{key}: {value}"));
            edited = true;
        }
        fs::write(into.join(&name), text).unwrap();
    }
    assert!(edited, "no log of client {k} in {logs}");
}

/// Whether a report's text holds a negative percentage.
fn negative_percent(text: &str) -> bool {
    text.split_whitespace().any(|w| {
        w.trim_end_matches('%')
            .parse::<f64>()
            .is_ok_and(|v| v < 0.0 && w.contains('.'))
    })
}

#[test]
fn a_log_claiming_more_received_than_the_file_is_flagged_not_believed() {
    // A real capture of 1 MiB to each of 2 clients; client 1's log claims
    // more than the file: once as much again, once 2^63 bytes.
    for claimed in ["2097152", "9223372036854775808"] {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        logs_with(LOGS, &logs, 1, "bytes_received", claimed);
        let logs = logs.to_str().unwrap();
        let out = analyze(&[CAPTURE, "--logs", logs, "--port", PORT, "--format", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let report = json(&out);
        let rows = report["clients"].as_array().unwrap();
        let row = |k: u64| {
            rows.iter()
                .find(|r| r["client_id"] == k)
                .unwrap_or_else(|| panic!("no row of client {k}"))
        };
        let one = row(1);
        let flag = &one["account"]["inconsistent_source"];
        assert_eq!(flag["source"], "client_log", "{one:#}");
        assert_eq!(flag["claim"], "bytes_over_file");
        assert_eq!(flag["claimed"].to_string(), claimed);
        assert_eq!(flag["limit"], 1_048_576);
        assert_eq!(
            one["account"]["capture_blind"]["why"],
            "inconsistent_source"
        );
        // The claim is no fact: no loss, no bytes received, nothing placed.
        assert_eq!(one["loss_pct"], Value::Null);
        assert_eq!(one["received_bytes"], Value::Null);
        assert_eq!(one["lost_after_capture_bytes"], Value::Null);
        let places = one["account"]["places"].as_array().unwrap();
        assert!(
            places.iter().all(|p| p["place"] != "delivered"),
            "{places:?}"
        );
        let verdict = one["verdict"].as_str().unwrap();
        assert!(
            verdict.starts_with("cannot tell: the client log is inconsistent"),
            "{verdict}"
        );
        // The other client's account is whole.
        assert_eq!(row(2)["loss_pct"], 0.0);
        assert_eq!(row(2)["account"]["inconsistent_source"], Value::Null);

        for format in ["table", "csv"] {
            let out = analyze(&[CAPTURE, "--logs", logs, "--port", PORT, "--format", format]);
            assert!(out.status.success(), "{}", stderr(&out));
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(!negative_percent(&text), "{format}: {text}");
            // The claim appears only as what the flag names.
            assert!(
                text.lines()
                    .filter(|l| l.contains(claimed))
                    .all(|l| l.contains("is inconsistent: it claims")),
                "{format} shows the claim as a figure: {text}"
            );
        }
    }
}

#[test]
fn a_v1_client_log_claiming_more_datagrams_than_the_file_is_flagged() {
    for (key, claim) in [
        ("datagrams_received", "datagrams_over_file"),
        ("missing_datagrams", "missing_over_file"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        logs_with("captures/v1-2clients-sll/logs", &logs, 2, key, "5000");
        let out = analyze(&[
            "captures/v1-2clients-sll/capture.pcap",
            "--logs",
            logs.to_str().unwrap(),
            "--port",
            "25040",
            "--format",
            "json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let report = json(&out);
        let two = report["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["client_id"] == 2)
            .unwrap();
        let flag = &two["account"]["inconsistent_source"];
        assert_eq!(flag["claim"], claim, "{two:#}");
        assert_eq!(flag["source"], "client_log");
        assert_eq!(flag["claimed"], 5000);
        assert_eq!(flag["limit"], 1041);
        assert!(
            two["verdict"]
                .as_str()
                .unwrap()
                .starts_with("cannot tell: the client log is inconsistent"),
            "{two:#}"
        );
    }
}
