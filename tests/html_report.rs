//! `udplab analyze --html` and `--plots` on the real captures in captures/:
//! the page holds one time-sequence and one throughput picture per client
//! whose data was captured, one ladder per client whose registration was,
//! the run's timeline and bars, and nothing from outside itself; the SVG
//! files of `--plots` are the page's pictures. Then the page is opened in
//! a headless chromium: it draws (the screenshot is not blank), every
//! picture is in its DOM, and the console stays silent.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The capture directories of captures/ and their control ports (as in
/// tests/analyze_captures.rs).
const CASES: &[(&str, &str, u16)] = &[
    ("lab-2clients-lossless", "capture.pcap", 25010),
    ("v1-4clients-lossy", "capture.pcap", 25020),
    ("lab-3clients-lossy", "capture.pcap", 25030),
    ("v1-2clients-sll", "capture.pcap", 25040),
    ("v1-2clients-sll2", "capture.pcap", 25050),
    ("v1-2clients-ipv6", "capture.pcap", 25060),
    ("v1-client-killed", "capture.pcap", 25070),
    ("v1-3clients-capture-drops", "capture.pcapng", 25080),
    ("v1-3clients-udplab-capture", "capture.pcapng", 25090),
];

/// What one run of `analyze --html --plots` made.
struct Made {
    report: Value,
    html: String,
    html_path: PathBuf,
    plots: Vec<PathBuf>,
}

fn analyze(captures: &[PathBuf], logs: &Path, port: u16, out: &Path) -> Made {
    let html_path = out.join("report.html");
    let plots_dir = out.join("plots");
    let o = Command::new(env!("CARGO_BIN_EXE_udplab"))
        .arg("analyze")
        .args(captures)
        .arg("--logs")
        .arg(logs)
        .args(["--port", &port.to_string(), "--format", "json", "--html"])
        .arg(&html_path)
        .arg("--plots")
        .arg(&plots_dir)
        .output()
        .expect("run udplab analyze");
    assert!(
        o.status.success() || !o.stdout.is_empty(),
        "udplab analyze {captures:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report: Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let html = std::fs::read_to_string(&html_path).expect("the page was written");
    let mut plots: Vec<PathBuf> = std::fs::read_dir(&plots_dir)
        .expect("the plots directory was made")
        .map(|e| e.unwrap().path())
        .collect();
    plots.sort();
    Made {
        report,
        html,
        html_path,
        plots,
    }
}

/// The ids of the page's figures.
fn figure_ids(html: &str) -> BTreeSet<String> {
    html.split("<figure id=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

/// The text of the figure with `id`.
fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<figure id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no figure {id}"));
    let len = html[start..].find("</figure>").unwrap();
    &html[start..start + len]
}

/// The page must need nothing from outside: the only address allowed is
/// SVG's namespace name, which no browser fetches.
fn assert_self_contained(html: &str, what: &str) {
    let stripped = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for bad in [
        "http://", "https://", "//cdn", "<script", "<link", "<img", "@import", "url(", "<iframe",
    ] {
        assert!(!stripped.contains(bad), "{what}: the page holds {bad:?}");
    }
}

fn stem(row: &Value, i: usize) -> String {
    match row["client_id"].as_u64() {
        Some(id) => format!("client-{id}"),
        None => format!("client-n{}", i + 1),
    }
}

/// Checks the page and the plots of one analysis against its report.
fn check(made: &Made, what: &str, points: usize) {
    assert!(made.html.starts_with("<!DOCTYPE html>"), "{what}");
    assert!(made.html.trim_end().ends_with("</html>"), "{what}");
    assert_self_contained(&made.html, what);
    let ids = figure_ids(&made.html);
    let clients = made.report["clients"].as_array().unwrap();
    assert!(!clients.is_empty(), "{what}: no client");
    let mut want = BTreeSet::new();
    want.insert("run-bytes".to_string());
    if clients
        .iter()
        .any(|r| r["wire_data_frames"].as_u64() > Some(0))
    {
        want.insert("run-timeline".to_string());
    }
    for (i, r) in clients.iter().enumerate() {
        let s = stem(r, i);
        let frames = r["wire_data_frames"].as_u64().unwrap_or(0);
        if frames > 0 {
            want.insert(format!("{s}-time-sequence"));
            want.insert(format!("{s}-io"));
            // Every capture point has its series, and the datagrams are
            // drawn (one rectangle per non-empty time bin at least).
            let ts = figure(&made.html, &format!("{s}-time-sequence"));
            let legend_points = ts.matches(": ").count();
            assert!(legend_points >= points, "{what} {s}: legend {ts:.300}");
            for p in r["path"].as_array().unwrap() {
                let n = p["data_frames"].as_u64().unwrap();
                assert!(
                    ts.contains(&format!("{n} datagrams")),
                    "{what} {s}: the legend counts the {n} datagrams at {}",
                    p["capture"]
                );
            }
            assert!(
                ts.matches("<rect").count() > 2,
                "{what} {s}: no datagrams drawn"
            );
            let io = figure(&made.html, &format!("{s}-io"));
            assert!(
                io.matches("<polyline").count() >= points,
                "{what} {s}: a throughput line per point"
            );
        }
        if r["control_seen"] == true {
            want.insert(format!("{s}-ladder"));
            let ladder = figure(&made.html, &format!("{s}-ladder"));
            for step in ["SYN", "SYN-ACK", "port "] {
                assert!(ladder.contains(step), "{what} {s}: ladder lacks {step}");
            }
        }
        // The client's verdict is on the page.
        let verdict = r["verdict"].as_str().unwrap();
        let shown = verdict
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;");
        assert!(made.html.contains(&shown), "{what} {s}: verdict missing");
    }
    assert_eq!(ids, want, "{what}: the page's pictures");
    // One bar per client, its shares named in the legend.
    let bars = figure(&made.html, "run-bytes");
    for (i, r) in clients.iter().enumerate() {
        let name = match r["client_id"].as_u64() {
            Some(id) => format!("client {id}"),
            None => format!("client at {}", r["client"].as_str().unwrap()),
        };
        assert!(bars.contains(&name), "{what}: no bar named {name} ({i})");
    }
    if clients
        .iter()
        .any(|r| r["received_bytes"].as_u64() > Some(0))
    {
        assert!(bars.contains("delivered ("), "{what}: delivered share");
    }
    // --plots: the same pictures, one SVG file each.
    let files: BTreeSet<String> = made
        .plots
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(text.starts_with("<?xml"), "{}", p.display());
            assert!(text.contains("<svg") && text.trim_end().ends_with("</svg>"));
            p.file_stem().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(files, want, "{what}: --plots files");
}

#[test]
fn every_capture_case_makes_a_whole_page() {
    for &(dir, file, port) in CASES {
        let case = Path::new("captures").join(dir);
        let out = tempfile::tempdir().unwrap();
        let made = analyze(&[case.join(file)], &case.join("logs"), port, out.path());
        check(&made, dir, 1);
    }
}

/// The loss the client reported is shaded and named with where the
/// account places it: for v1 the client's own missing sequence numbers.
#[test]
fn missing_datagrams_are_shaded_and_their_place_named() {
    let case = Path::new("captures/v1-4clients-lossy");
    let out = tempfile::tempdir().unwrap();
    let made = analyze(
        &[case.join("capture.pcap")],
        &case.join("logs"),
        25020,
        out.path(),
    );
    for (i, r) in made.report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let ts = figure(&made.html, &format!("{}-time-sequence", stem(r, i)));
        let drops = r["kernel_drops"].as_u64().unwrap();
        assert!(drops > 0, "the case is lossy");
        assert!(
            ts.contains("missing at the client: ")
                && ts.contains(&format!("socket buffer ({drops} kernel drops)")),
            "client {i}: {ts:.400}"
        );
    }
}

/// A client gone before it reported lists nothing missing: its loss is
/// still named in the legend, with its ICMP errors.
#[test]
fn a_loss_with_no_list_is_named() {
    let case = Path::new("captures/v1-client-killed");
    let out = tempfile::tempdir().unwrap();
    let made = analyze(
        &[case.join("capture.pcap")],
        &case.join("logs"),
        25070,
        out.path(),
    );
    let gone = figure(&made.html, "client-1-time-sequence");
    let icmp = made.report["clients"][0]["icmp_port_unreachable"]
        .as_u64()
        .unwrap();
    assert!(
        gone.contains(&format!(
            "lost, no list of which datagrams: the client had closed its socket ({icmp} ICMP errors)"
        )),
        "{gone:.600}"
    );
    let whole = figure(&made.html, "client-2-time-sequence");
    assert!(!whole.contains("missing at the client") && !whole.contains("lost, no list"));
}

/// Two capture points (the same file read as a second one): each draws
/// its series in both plots.
#[test]
fn each_capture_point_has_its_series() {
    let case = Path::new("captures/v1-2clients-sll");
    let out = tempfile::tempdir().unwrap();
    let second = out.path().join("second.pcap");
    std::fs::copy(case.join("capture.pcap"), &second).unwrap();
    let made = analyze(
        &[case.join("capture.pcap"), second.clone()],
        &case.join("logs"),
        25040,
        out.path(),
    );
    check(&made, "two points", 2);
    let ts = figure(&made.html, "client-1-time-sequence");
    assert!(ts.contains(&format!("at {}", second.display())));
}

/// The headless browser's verdict on the page: a screenshot with ink on
/// it, every picture in the DOM, no console message.
#[test]
fn chromium_draws_the_page() {
    let Some(chromium) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
    else {
        common::skip_or_fail("chromium is not installed (apt-get install chromium)");
        return;
    };
    let case = Path::new("captures/v1-4clients-lossy");
    let out = tempfile::tempdir().unwrap();
    let made = analyze(
        &[case.join("capture.pcap")],
        &case.join("logs"),
        25020,
        out.path(),
    );
    let url = format!(
        "file://{}",
        std::fs::canonicalize(&made.html_path).unwrap().display()
    );
    let profile = out.path().join("profile");
    // Output to files: chromium's logging can outgrow a pipe that no one
    // reads while the test waits for it.
    let browser = |args: &[&str]| {
        let log = |name: &str| std::fs::File::create(out.path().join(name)).unwrap();
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(log("stdout"))
            .stderr(log("stderr"))
            .spawn()
            .expect("start chromium");
        let status = common::wait_with_timeout(&mut child, Duration::from_secs(90));
        let read = |name: &str| std::fs::read(out.path().join(name)).unwrap();
        std::process::Output {
            status,
            stdout: read("stdout"),
            stderr: read("stderr"),
        }
    };
    let png = out.path().join("page.png");
    let shot = browser(&[
        &format!("--screenshot={}", png.display()),
        "--window-size=1200,3000",
    ]);
    let dom = browser(&["--dump-dom"]);
    for (what, o) in [("screenshot", &shot), ("dump-dom", &dom)] {
        let stderr = String::from_utf8_lossy(&o.stderr);
        // The page has no script: any console line is the page's fault
        // (a failed load, a parse error), unlike chromium's own warnings
        // about D-Bus or the GPU.
        for line in stderr.lines() {
            assert!(
                !line.contains(":CONSOLE") && !line.contains("Uncaught"),
                "{what}: {line}"
            );
        }
        assert!(o.status.success(), "{what}: {stderr}");
    }
    // The DOM holds every picture.
    let dom = String::from_utf8_lossy(&dom.stdout);
    let figures = figure_ids(&made.html).len();
    assert!(figures >= 10);
    assert_eq!(
        dom.matches("<svg").count(),
        figures,
        "svg elements in the DOM"
    );
    assert_eq!(dom.matches("<figure").count(), figures);
    // The screenshot is not blank: a good share of its pixels are ink.
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png).expect("the screenshot was written"),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert_eq!((info.width, info.height), (1200, 3000));
    let pixels = &buf[..info.buffer_size()];
    let ink = pixels
        .chunks(channels)
        .filter(|p| p.iter().take(3).any(|&c| c < 200))
        .count();
    let total = (info.width * info.height) as usize;
    assert!(
        ink * 100 > total,
        "only {ink} of {total} pixels are not white"
    );
    // Several colours: the plots are drawn, not only text.
    let coloured = pixels
        .chunks(channels)
        .filter(|p| {
            let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
            (r - g).abs() > 60 || (g - b).abs() > 60 || (r - b).abs() > 60
        })
        .count();
    assert!(coloured * 200 > total, "only {coloured} coloured pixels");
}

/// A page that cannot be written is one clear line and no file, partial
/// or whole.
#[test]
fn an_unwritable_page_is_one_clear_line() {
    let case = Path::new("captures/v1-2clients-sll");
    let out = tempfile::tempdir().unwrap();
    let page = out.path().join("no-such-dir").join("report.html");
    let o = Command::new(env!("CARGO_BIN_EXE_udplab"))
        .arg("analyze")
        .arg(case.join("capture.pcap"))
        .args(["--port", "25040", "--html"])
        .arg(&page)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(&page.display().to_string()), "{stderr}");
    assert!(!out.path().join("no-such-dir").exists());
}
