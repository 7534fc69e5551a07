//! `udplab lab` without a capture, as any user can run it: the transfer on
//! loopback, the report from the logs, the run directory, bad arguments.

mod common;

use common::{report_json as report, run_dirs, text};

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_udplab");

fn udplab(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// A control port whose data ports are free right now (released for the
/// lab to bind).
fn free_port(clients: u16) -> String {
    let l = common::listener_with_free_data_ports(clients);
    l.local_addr().unwrap().port().to_string()
}

#[test]
fn without_a_capture_the_lab_reports_from_the_logs_in_a_fresh_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let port = free_port(2);
    let out = udplab(&[
        "lab",
        "--no-capture",
        "--clients",
        "2",
        "--size",
        "2MiB",
        "--port",
        &port,
        "--dir",
        runs.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("capture: none (not asked for (--no-capture)); the wire columns are empty"),
        "{stdout}"
    );
    let dirs = run_dirs(&runs);
    assert_eq!(dirs.len(), 1);
    let run = &dirs[0];
    assert!(stdout.contains(&format!("run directory: {}", run.display())));
    assert!(!run.join("capture.pcapng").exists());
    assert!(!run.join("received").exists());
    assert!(!run.join("2MiB.bin").exists());
    let logs: Vec<PathBuf> = run_dirs(&run.join("logs"));
    assert_eq!(logs.len(), 4, "{logs:?}");
    // The page beside report.json: the logs' account as bars, and no
    // picture of a wire that was not captured.
    let page = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(page.contains("<figure id=\"run-bytes\">"), "{page:.500}");
    assert!(!page.contains("time-sequence"));

    let r = report(run);
    assert_eq!(r["captures"].as_array().unwrap().len(), 0);
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("no capture (not asked for")
    );
    let clients = r["clients"].as_array().unwrap();
    let ids: Vec<u64> = clients
        .iter()
        .map(|c| c["client_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2]);
    for c in clients {
        assert!(c["wire_data_bytes"].is_null(), "{c}");
        assert!(c["lost_before_capture_bytes"].is_null(), "{c}");
        assert_eq!(c["sent_bytes"], 2 << 20);
        assert!(
            c["server_log"].is_string() && c["client_log"].is_string(),
            "{c}"
        );
        let received = c["received_bytes"].as_u64().unwrap();
        let verdict = c["verdict"].as_str().unwrap();
        if received == 2 << 20 {
            assert_eq!(
                verdict,
                "no loss (by the logs; no data flow in the capture)"
            );
        } else {
            // Loopback loses only in the receiving socket: the kernel's
            // count closes the account.
            assert!(
                verdict.contains("by the logs, the client's kernel dropped all"),
                "{verdict}"
            );
        }
    }
}

#[test]
fn the_lab_speaks_the_original_protocol_too() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let port = free_port(1);
    let out = udplab(&[
        "lab",
        "--no-capture",
        "--protocol",
        "lab",
        "--clients",
        "1",
        "--size",
        "1MiB",
        "--recv-buffer",
        "16MiB",
        "--keep-files",
        "--port",
        &port,
        "--dir",
        runs.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let run = &run_dirs(&runs)[0];
    let r = report(run);
    let c = &r["clients"][0];
    assert_eq!(c["protocol"], "lab", "{c}");
    assert_eq!(c["received_bytes"], 1 << 20, "{c}");
    // --keep-files keeps the made file and the received copy, identical.
    let sent = std::fs::read(run.join("1MiB.bin")).unwrap();
    let got = std::fs::read(run.join("received/c1/1MiB.bin")).unwrap();
    assert!(sent == got, "the received copy differs");
}

#[test]
fn a_port_in_use_or_a_missing_file_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let out = udplab(&[
        "lab",
        "--no-capture",
        "--port",
        &port,
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("control port 127.0.0.1:{port} is not free")),
        "{err}"
    );

    let out = udplab(&[
        "lab",
        "--file",
        "/nonexistent/file.bin",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(
        err.trim(),
        "udplab: error: --file /nonexistent/file.bin: no such file"
    );
}
