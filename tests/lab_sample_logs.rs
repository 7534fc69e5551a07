//! Reads the original lab's real logs, in place, from
//! `<CARGO_MANIFEST_DIR>/../shared/lab-samples/`. They are not part of the
//! project: when absent, the tests fail under CI and elsewhere say they are
//! skipped ([`common::skip_or_fail`]).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::lab_samples;
use udplab::protocol::Protocol;
use udplab::transfer_log::{LogFormat, Role, TransferLog, log_file_name, parse_log_name, read_log};

/// Every `*-log.txt` of `dir`, sorted by name.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("-log.txt"))
        })
        .collect();
    files.sort();
    files
}

/// Reads one sample and checks what every lab log must satisfy.
fn read_checked(path: &Path) -> TransferLog {
    let log = read_log(path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("UTF-8 file name");
    let parsed = parse_log_name(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        log_file_name(
            parsed.role,
            parsed.client_id,
            parsed.stamp,
            &parsed.file_name,
            parsed.clients
        ),
        name,
        "file name round trip"
    );

    assert_eq!(log.format, Some(LogFormat::Lab), "{name}");
    assert_eq!(log.protocol, Some(Protocol::Lab), "{name}");
    assert_eq!(log.role, Some(parsed.role), "{name}: role vs prefix");
    assert_eq!(log.client_id, Some(parsed.client_id), "{name}: client id");
    assert_eq!(log.clients, Some(parsed.clients), "{name}: clients");
    assert_eq!(
        log.file_name.as_deref(),
        Some(parsed.file_name.as_str()),
        "{name}"
    );
    assert!(log.duration_s.is_some_and(|d| d > 0.0), "{name}: duration");
    assert!(log.rate_mb_s.is_some_and(|r| r > 0.0), "{name}: rate");
    match parsed.role {
        Role::Client => {
            assert!(log.success.is_some(), "{name}: verdict");
            assert!(log.client_port.is_some(), "{name}: client port");
            assert!(log.bytes_received.is_some(), "{name}: bytes received");
            assert_eq!(
                log.file_size, None,
                "{name}: a client log does not tell the file size"
            );
            assert_eq!(log.server_port, None, "{name}");
        }
        Role::Server => {
            assert_eq!(log.success, None, "{name}: a server log has no verdict");
            assert!(log.server_port.is_some(), "{name}: server port");
            assert!(log.file_size.is_some(), "{name}: file size");
            assert_eq!(log.bytes_sent, log.file_size, "{name}");
            assert_eq!(log.client_port, None, "{name}");
        }
    }
    log
}

fn find<'a>(logs: &'a [(PathBuf, TransferLog)], prefix: &str) -> &'a TransferLog {
    let mut found = logs.iter().filter(|(path, _)| {
        path.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix))
    });
    let (_, log) = found
        .next()
        .unwrap_or_else(|| panic!("no sample {prefix}*"));
    assert!(found.next().is_none(), "several samples {prefix}*");
    log
}

fn read_all(dir: &Path) -> Vec<(PathBuf, TransferLog)> {
    log_files(dir)
        .into_iter()
        .map(|path| {
            let log = read_checked(&path);
            (path, log)
        })
        .collect()
}

#[test]
fn logs_2022() {
    let Some(samples) = lab_samples() else {
        return;
    };
    let logs = read_all(&samples.join("logs-2022"));
    assert_eq!(logs.len(), 14, "logs-2022 holds 14 logs");
    assert!(logs.iter().all(|(_, log)| log.role == Some(Role::Client)));
    let successes = logs.iter().filter(|(_, l)| l.success == Some(true)).count();
    assert_eq!(successes, 1, "only C5-2022-10-24-00-10-05 succeeded");

    let c5 = find(&logs, "C5-2022-10-24-00-10-05-");
    assert_eq!(c5.success, Some(true));
    assert_eq!(c5.bytes_received, Some(104_857_600));
    assert_eq!(c5.client_port, Some(45_021));
    assert_eq!(c5.clients, Some(5));
    assert_eq!(c5.file_size, None);
    let duration = c5.duration_s.expect("duration");
    assert!((duration - 10.952_563_285_827_637).abs() < 1e-9);
    let rate = c5.rate_mb_s.expect("rate");
    assert!((rate - 104_857_600.0 / duration / 1e6).abs() < 1e-9);

    let c1 = find(&logs, "C1-2022-10-24-00-10-05-");
    assert_eq!(c1.success, Some(false));
    assert_eq!(c1.bytes_received, Some(104_854_528));
    assert_eq!(c1.client_port, Some(48_244));

    let c2 = find(&logs, "C2-2022-10-24-00-11-59-");
    assert_eq!(c2.file_name.as_deref(), Some("250MB.bin"));
    assert_eq!(c2.success, Some(false));
    assert_eq!(c2.bytes_received, Some(6_556_672));
    assert_eq!(c2.client_port, Some(14_338));
    assert_eq!(c2.clients, Some(5));
}

#[test]
fn run_2clients_10mb() {
    let Some(samples) = lab_samples() else {
        return;
    };
    let logs = read_all(&samples.join("run-2clients-10MB"));
    assert_eq!(logs.len(), 4, "S1, S2, C1, C2");

    for (prefix, port) in [("S1-", 5006), ("S2-", 5007)] {
        let server = find(&logs, prefix);
        assert_eq!(server.role, Some(Role::Server));
        assert_eq!(server.server_port, Some(port), "{prefix}");
        assert_eq!(server.file_size, Some(10_485_760), "{prefix}");
        assert_eq!(server.bytes_sent, Some(10_485_760), "{prefix}");
        assert_eq!(server.clients, Some(2), "{prefix}");
    }
    let s1 = find(&logs, "S1-");
    assert!((s1.duration_s.expect("duration") - 0.152_908_802_032_470_7).abs() < 1e-12);

    for (prefix, port) in [("C1-", 25_302), ("C2-", 35_155)] {
        let client = find(&logs, prefix);
        assert_eq!(client.role, Some(Role::Client));
        assert_eq!(client.success, Some(true), "{prefix}");
        assert_eq!(client.bytes_received, Some(10_485_760), "{prefix}");
        assert_eq!(client.client_port, Some(port), "{prefix}");
        assert_eq!(client.file_size, None, "{prefix}");
    }
}
