//! `udplab analyze` on a reliable-mode transfer: a capture written here,
//! byte by byte, of one v1 client whose first pass lost datagrams on both
//! sides of the capture point and whose repair round resent them with the
//! retransmission flag, with both sides' logs.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use udplab::protocol::v1;
use udplab::protocol::{Mode, Protocol};
use udplab::transfer_log::{self, Role, TransferLog};

const PORT: u16 = 26100;
const DATAGRAMS: u32 = 100;
const CHUNK: u64 = 1008;
const LAST: u64 = 580;
const FILE: u64 = (DATAGRAMS as u64 - 1) * CHUNK + LAST;
/// Lost after the capture point in the first pass (the client's kernel
/// dropped them): on the wire twice.
const DROPPED: std::ops::Range<u32> = 10..20;
/// Lost before the capture point in the first pass: on the wire once.
const NEVER_SEEN: u32 = 50;
const RESENT: u64 = 11;

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet/IPv4/UDP frame from 127.0.0.1:`src` to 127.0.0.1:`dst`.
fn frame(src: u16, dst: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut f = vec![0; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&src.to_be_bytes());
    f.extend_from_slice(&dst.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fn datagram(seq: u32, flags: u8) -> Vec<u8> {
    let mut d = v1::DataHeader {
        flags,
        seq,
        send_time_us: 0,
    }
    .emit()
    .to_vec();
    let len = if seq == DATAGRAMS - 1 { LAST } else { CHUNK };
    d.resize(v1::HEADER_LEN + len as usize, 0xAB);
    d
}

/// The capture: the first pass without `NEVER_SEEN`, then the repair round
/// (`DROPPED` and `NEVER_SEEN`, flagged), a datagram every 100 µs.
fn write_capture(path: &Path) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let first = (0..DATAGRAMS).filter(|&s| s != NEVER_SEEN).map(|s| (s, 0));
    let repair = DROPPED
        .chain([NEVER_SEEN])
        .map(|s| (s, v1::FLAG_RETRANSMIT));
    for (i, (seq, flags)) in first.chain(repair).enumerate() {
        let f = frame(PORT + 1, 40000, &datagram(seq, flags));
        let us = i as u32 * 100;
        out.extend_from_slice(&1_795_000_000u32.to_le_bytes());
        out.extend_from_slice(&us.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&f);
    }
    fs::write(path, out).unwrap();
}

fn write_logs(dir: &Path) {
    let common = TransferLog {
        protocol: Some(Protocol::V1),
        file_name: Some("f.bin".into()),
        file_size: Some(FILE),
        client_id: Some(1),
        server_port: Some(PORT + 1),
        client_port: Some(40000),
        datagrams_total: Some(u64::from(DATAGRAMS)),
        mode: Some(Mode::Reliable),
        repair_rounds: Some(1),
        success: Some(true),
        ..TransferLog::default()
    };
    let server = TransferLog {
        role: Some(Role::Server),
        datagrams_sent: Some(u64::from(DATAGRAMS) + RESENT),
        bytes_sent: Some(FILE + RESENT * CHUNK),
        datagrams_retransmitted: Some(RESENT),
        final_rate_mbit_s: Some(150.5),
        reports_rejected: Some(0),
        rate_mb_s: Some(9.5),
        goodput_mb_s: Some(8.7),
        ..common.clone()
    };
    let client = TransferLog {
        role: Some(Role::Client),
        datagrams_received: Some(u64::from(DATAGRAMS)),
        bytes_received: Some(FILE),
        duplicates: Some(0),
        late: Some(0),
        kernel_drops: Some(DROPPED.len() as u64),
        datagrams_retransmitted: Some(RESENT),
        goodput_mb_s: Some(8.5),
        ..common
    };
    transfer_log::write_log(dir, "server-1.log", &server).unwrap();
    transfer_log::write_log(dir, "client-1.log", &client).unwrap();
}

/// `udplab analyze` of the capture written by [`run`] in `dir`.
fn analyze(dir: &Path, format: &str) -> Output {
    udplab_analyze(&dir.join("reliable.pcap"), &dir.join("logs"), PORT, format)
}

/// `udplab analyze capture --logs logs`, which must exit with status 0.
fn udplab_analyze(capture: &Path, logs: &Path, port: u16, format: &str) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_udplab"))
        .arg("analyze")
        .arg(capture)
        .arg("--logs")
        .arg(logs)
        .args(["--port", &port.to_string(), "--format", format])
        .output()
        .expect("run udplab analyze");
    assert_eq!(
        out.status.code(),
        Some(0),
        "udplab analyze {}: {}",
        capture.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("logs")).unwrap();
    write_capture(&dir.path().join("reliable.pcap"));
    write_logs(&dir.path().join("logs"));
    dir
}

#[test]
fn reliable_transfer_is_accounted_in_copies() {
    let dir = run();
    let report: Value = serde_json::from_slice(&analyze(dir.path(), "json").stdout).unwrap();
    let rows = report["clients"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    let wire_frames = u64::from(DATAGRAMS) - 1 + RESENT;
    let wire_bytes = FILE - CHUNK + RESENT * CHUNK;
    assert_eq!(r["mode"], "reliable");
    assert_eq!(r["mode_source"], "server_log");
    assert_eq!(r["wire_data_frames"], wire_frames);
    assert_eq!(r["wire_data_bytes"], wire_bytes);
    assert_eq!(r["wire_retransmitted"], RESENT);
    assert_eq!(r["wire_distinct_datagrams"], DATAGRAMS);
    assert_eq!(r["datagrams_retransmitted"], RESENT);
    assert_eq!(r["repair_rounds"], 1);
    assert_eq!(r["final_rate_mbit_s"], 150.5);
    assert_eq!(r["reports_rejected"], 0);
    assert_eq!(r["late"], 0);
    // Sent beyond the file: one copy lost before the capture point, ten
    // after it; the file itself arrived whole.
    assert!(r["sent_bytes"].as_u64().unwrap() > FILE);
    assert_eq!(r["lost_before_capture_bytes"], CHUNK);
    assert_eq!(r["lost_after_capture_bytes"], DROPPED.len() as u64 * CHUNK);
    assert_eq!(r["loss_pct"], 0.0);
    assert_eq!(r["success"], true);
    assert_eq!(
        r["verdict"],
        "delivered whole after 1 repair round; 11 datagrams resent (1 lost before the \
         capture point, 10 after it: the client's kernel dropped 10 datagrams)"
    );
    // First to last data datagram: (wire frames - 1) x 100 µs.
    let secs = (wire_frames - 1) as f64 * 100e-6;
    let rate = |bytes: u64| (bytes as f64 / secs / 1e6 * 1000.0).round() / 1000.0;
    assert_eq!(r["throughput_mb_s"].as_f64(), Some(rate(wire_bytes)));
    assert_eq!(r["throughput_mb_s"], r["rate_mb_s"]);
    assert_eq!(r["throughput_source"], "capture");
    assert_eq!(r["goodput_mb_s"].as_f64(), Some(rate(FILE)));
    assert_eq!(r["goodput_source"], "capture");
    let flow = &report["flows"][0]["v1"];
    assert_eq!(
        (
            &flow["retransmitted"],
            &flow["duplicates"],
            &flow["missing"]
        ),
        (&Value::from(RESENT), &Value::from(10), &Value::from(0))
    );
}

#[test]
fn table_and_csv_show_resent_datagrams_and_goodput() {
    let dir = run();
    let table = String::from_utf8(analyze(dir.path(), "table").stdout).unwrap();
    assert!(table.contains("throughput / goodput MB/s"), "{table}");
    assert!(table.contains("resent (rounds)"), "{table}");
    assert!(table.contains("11 (1)"), "{table}");
    assert!(
        table.contains("client 1: delivered whole after 1 repair round; 11 datagrams resent"),
        "{table}"
    );
    let csv = String::from_utf8(analyze(dir.path(), "csv").stdout).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for key in [
        "mode",
        "wire_retransmitted",
        "wire_distinct_datagrams",
        "datagrams_retransmitted",
        "repair_rounds",
        "throughput_mb_s",
        "goodput_mb_s",
    ] {
        assert!(header.contains(&key), "{key} in {header:?}");
    }
    assert_eq!(header.last(), Some(&"verdict"));
    let row = lines.next().unwrap();
    let at = header.iter().position(|k| *k == "repair_rounds").unwrap();
    assert_eq!(row.split(',').nth(at), Some("1"), "{row}");
}

/// A blast capture (no repair anywhere) keeps the table as it was: no
/// `resent` column, the kernel's drops right after the rates.
#[test]
fn blast_tables_have_no_resent_column() {
    let dir = Path::new("captures/v1-4clients-lossy");
    let (capture, logs) = (dir.join("capture.pcap"), dir.join("logs"));
    // What the JSON says of the repairs: none, for each of the 4 clients.
    let report: Value =
        serde_json::from_slice(&udplab_analyze(&capture, &logs, 25020, "json").stdout).unwrap();
    let rows = report["clients"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{report}");
    for r in rows {
        assert_eq!(r["mode"], Value::Null, "{r}");
        assert_eq!(r["wire_retransmitted"], 0, "{r}");
        assert_eq!(r["datagrams_retransmitted"], Value::Null, "{r}");
        assert_eq!(r["repair_rounds"], Value::Null, "{r}");
        assert!(r["kernel_drops"].as_u64().is_some_and(|n| n > 0), "{r}");
    }

    let table = String::from_utf8(udplab_analyze(&capture, &logs, 25020, "table").stdout).unwrap();
    assert!(
        table.contains("throughput / goodput MB/s ┆ kernel drops ┆ success"),
        "{table}"
    );
    assert!(!table.contains("resent (rounds)"), "{table}");
    for r in rows {
        let verdict = format!(
            "client {}: {}",
            r["client_id"],
            r["verdict"].as_str().unwrap()
        );
        assert!(table.contains(&verdict), "{verdict} in {table}");
    }
}
