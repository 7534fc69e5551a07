//! `udplab analyze --format jsonl`: three runs of captures/ appended to one
//! file at once, the file read by DuckDB (its Python package) as it is,
//! and the per-run sums of its query checked against the JSON reports of
//! the same runs; each line is the report's client row with the run's id
//! and captures before it. A capture read only in part and a write the
//! file size limit cuts short leave the file as it was.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Map, Value};

use common::skip_or_fail;

/// Runs of captures/ (directory, capture, control port): two pcap files of
/// the two protocols, and a pcapng whose capturer dropped packets (its
/// loss columns null).
const RUNS: &[(&str, &str, u16)] = &[
    ("v1-4clients-lossy", "capture.pcap", 25020),
    ("lab-3clients-lossy", "capture.pcap", 25030),
    ("v1-3clients-capture-drops", "capture.pcapng", 25080),
];

/// The keys a line has before the client row's.
const OWN_KEYS: [&str; 3] = ["run_id", "captures", "analyzed_at"];

fn capture(run: &str, file: &str) -> String {
    format!("captures/{run}/{file}")
}

fn analyze(capture: &str, run: &str, port: u16, format: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_udplab"));
    cmd.args(["-q", "analyze", capture, "--logs"])
        .arg(format!("captures/{run}/logs"))
        .args(["--port", &port.to_string(), "--format", format]);
    cmd
}

/// `udplab analyze ... --format jsonl >> path`.
fn append_to(path: &Path, mut cmd: Command) -> Command {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the lines file");
    cmd.stdout(Stdio::from(file)).stderr(Stdio::piped());
    cmd
}

fn report(run: &str, file: &str, port: u16) -> Value {
    let out = analyze(&capture(run, file), run, port, "json")
        .output()
        .expect("run udplab analyze");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--format json prints JSON")
}

/// Each line of `text` as a JSON object, each ending in a line break.
fn parse_lines(text: &str) -> Vec<Map<String, Value>> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a line is cut short"
    );
    text.lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(Value::Object(m)) => m,
            other => panic!("not a JSON object ({other:?}): {l}"),
        })
        .collect()
}

/// A Python with DuckDB: the one on PATH, or the system's.
fn python_with_duckdb() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import duckdb"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The query of docs/ANALYZE.md, per run: clients and the byte sums.
const QUERY: &str = "
import duckdb, json, sys
rows = duckdb.sql('''
    SELECT run_id, any_value(captures) AS captures, count(*) AS clients,
           sum(sent_bytes) AS sent, sum(wire_data_bytes) AS wire,
           sum(received_bytes) AS received,
           sum(lost_before_capture_bytes) AS lost_before,
           sum(lost_after_capture_bytes) AS lost_after
    FROM read_json_auto(?)
    GROUP BY run_id ORDER BY run_id
''', params=[sys.argv[1]]).fetchall()
print(json.dumps([[str(v) if v is not None and not isinstance(v, (int, list)) else v
                   for v in r] for r in rows]))
";

/// The sum of a key over the report's clients, null where every one is
/// (as SQL's sum).
fn sum(report: &Value, key: &str) -> Value {
    let values: Vec<i64> = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r[key].as_i64())
        .collect();
    if values.is_empty() {
        Value::Null
    } else {
        Value::from(values.iter().sum::<i64>())
    }
}

#[test]
fn three_runs_in_one_file_sum_in_duckdb_as_their_reports() {
    let Some(python) = python_with_duckdb() else {
        skip_or_fail("the DuckDB Python package is not installed (pip install duckdb)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lines_path = dir.path().join("runs.jsonl");

    // The three analyses append to the same file at once.
    let children: Vec<_> = RUNS
        .iter()
        .map(|&(run, file, port)| {
            append_to(
                &lines_path,
                analyze(&capture(run, file), run, port, "jsonl"),
            )
            .spawn()
            .expect("run udplab analyze")
        })
        .collect();
    for child in children {
        let out = common::wait_output(child, std::time::Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let text = fs::read_to_string(&lines_path).unwrap();
    let lines = parse_lines(&text);
    let reports: Vec<Value> = RUNS.iter().map(|&(r, f, p)| report(r, f, p)).collect();
    let clients: usize = reports
        .iter()
        .map(|r| r["clients"].as_array().unwrap().len())
        .sum();
    assert_eq!(lines.len(), clients, "one line per client row");

    // Per run: its lines are its report's client rows, in order, after the
    // run's own keys.
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (&(run, file, _), report)) in RUNS.iter().zip(&reports).enumerate() {
        let path = capture(run, file);
        let mine: Vec<&Map<String, Value>> = lines
            .iter()
            .filter(|l| l["captures"] == Value::from(vec![path.clone()]))
            .collect();
        let rows = report["clients"].as_array().unwrap();
        assert_eq!(mine.len(), rows.len(), "{run}: lines");
        let id = mine[0]["run_id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 16, "{id}");
        assert!(id.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
        for (line, row) in mine.iter().zip(rows) {
            let keys: Vec<&str> = line.keys().map(String::as_str).collect();
            assert_eq!(keys[..3], OWN_KEYS, "{run}");
            assert_eq!(
                line["run_id"],
                Value::from(id.as_str()),
                "{run}: one id a run"
            );
            let at = line["analyzed_at"].as_str().unwrap();
            assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
            let rest: Map<String, Value> = line
                .iter()
                .skip(OWN_KEYS.len())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(&Value::Object(rest), row, "{run}: the report's client row");
        }
        assert_eq!(ids.insert(id, i), None, "{run}: another run has its id");
    }

    // DuckDB reads the file as it is; its per-run sums are the reports'.
    let out = Command::new(python)
        .args(["-c", QUERY])
        .arg(&lines_path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Vec<Vec<Value>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result.len(), RUNS.len(), "{result:?}");
    for row in &result {
        let id = row[0].as_str().unwrap();
        let i = ids[id];
        let (run, file, _) = RUNS[i];
        let report = &reports[i];
        assert_eq!(row[1], Value::from(vec![capture(run, file)]), "{run}");
        assert_eq!(
            row[2].as_u64(),
            Some(report["clients"].as_array().unwrap().len() as u64),
            "{run}: clients"
        );
        for (col, key) in [
            (3, "sent_bytes"),
            (4, "wire_data_bytes"),
            (5, "received_bytes"),
            (6, "lost_before_capture_bytes"),
            (7, "lost_after_capture_bytes"),
        ] {
            assert_eq!(row[col], sum(report, key), "{run}: sum of {key}");
        }
    }
    // Something to sum: the runs received bytes and lost some.
    assert!(result.iter().all(|r| r[5].as_i64().is_some_and(|n| n > 0)));
    assert!(result.iter().any(|r| r[7].as_i64().is_some_and(|n| n > 0)));
}

#[test]
fn run_id_is_the_captures_not_their_path() {
    let (run, file, port) = RUNS[0];
    let id = |capture: &str| -> String {
        let out = analyze(capture, run, port, "jsonl").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = parse_lines(&String::from_utf8(out.stdout).unwrap());
        assert!(!lines.is_empty());
        let ids: Vec<&Value> = lines.iter().map(|l| &l["run_id"]).collect();
        assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
        ids[0].as_str().unwrap().to_string()
    };
    let here = id(&capture(run, file));
    assert_eq!(
        id(&capture(run, file)),
        here,
        "the same capture, the same id"
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("elsewhere.pcap");
    fs::copy(capture(run, file), &copy).unwrap();
    assert_eq!(id(copy.to_str().unwrap()), here, "a copy is the same run");
    let (other, other_file, _) = RUNS[1];
    assert_ne!(id(&capture(other, other_file)), here);
}

/// A file of lines from an earlier analysis.
fn earlier_lines(dir: &Path) -> (PathBuf, Vec<u8>) {
    let (run, file, port) = RUNS[1];
    let path = dir.join("runs.jsonl");
    let out = append_to(&path, analyze(&capture(run, file), run, port, "jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = fs::read(&path).unwrap();
    assert!(!before.is_empty());
    (path, before)
}

fn assert_failed_and_unchanged(out: &Output, path: &Path, before: &[u8], needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let after = fs::read(path).unwrap();
    assert!(
        after == before,
        "the file is not as it was: {} bytes, then {}",
        before.len(),
        after.len()
    );
}

#[test]
fn a_capture_read_in_part_adds_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let (path, before) = earlier_lines(dir.path());
    let (run, file, port) = RUNS[0];
    let cut = dir.path().join("cut.pcap");
    let mut bytes = fs::read(capture(run, file)).unwrap();
    bytes.truncate(bytes.len() - 50);
    fs::write(&cut, &bytes).unwrap();
    let out = append_to(&path, analyze(cut.to_str().unwrap(), run, port, "jsonl"))
        .output()
        .unwrap();
    assert_failed_and_unchanged(&out, &path, &before, "no line written");
    assert!(String::from_utf8_lossy(&out.stderr).contains("middle of a record"));
}

#[test]
fn a_write_cut_short_is_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let (path, before) = earlier_lines(dir.path());
    // The file may grow by less than one run's lines: the kernel writes
    // up to the limit, then refuses (EFBIG, SIGXFSZ ignored).
    let limit = before.len() as u64 + 1000;
    let (run, file, port) = RUNS[0];
    let mut cmd = append_to(&path, analyze(&capture(run, file), run, port, "jsonl"));
    // SAFETY: setrlimit and signal are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_failed_and_unchanged(&out, &path, &before, "File too large");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().count(),
        1,
        "one line"
    );
    // Whole, the same run's lines would have passed the limit.
    let whole = analyze(&capture(run, file), run, port, "jsonl")
        .output()
        .unwrap();
    assert!(whole.stdout.len() as u64 > 1000);
}
