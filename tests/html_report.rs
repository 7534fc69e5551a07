//! `udplab analyze --html` and `--plots` on the real captures in captures/:
//! the page holds one time-sequence and one throughput picture per client
//! whose data was captured, one ladder per client whose registration was,
//! the run's timeline and bars, and nothing from outside itself; the SVG
//! files of `--plots` are the page's pictures. Then the page is opened in
//! a headless chromium, every case's page in turn: it draws (the
//! screenshot is not blank), every picture is in its DOM, and the console
//! stays silent.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The capture directories of captures/ with a file transfer, their
/// capture files (one per capture point, in the path's order) and control
/// ports (as in tests/analyze_captures.rs).
const CASES: &[(&str, &[&str], u16)] = &[
    ("lab-2clients-lossless", &["capture.pcap"], 25010),
    ("v1-4clients-lossy", &["capture.pcap"], 25020),
    ("lab-3clients-lossy", &["capture.pcap"], 25030),
    ("v1-2clients-sll", &["capture.pcap"], 25040),
    ("v1-2clients-sll2", &["capture.pcap"], 25050),
    ("v1-2clients-ipv6", &["capture.pcap"], 25060),
    ("v1-client-killed", &["capture.pcap"], 25070),
    ("v1-3clients-capture-drops", &["capture.pcapng"], 25080),
    ("v1-3clients-udplab-capture", &["capture.pcapng"], 25090),
    ("v1-2clients-reliable", &["capture.pcapng"], 25110),
    (
        "link-2clients-lossy",
        &["server.pcapng", "client.pcapng"],
        25120,
    ),
];

/// The case without a file transfer: the second lab's run, whose page
/// says so and has no picture.
const HEADERS_CASE: (&str, &[&str], u16) = ("headers-2clients", &["capture.pcapng"], 5005);

/// A case's capture files and its logs.
fn case_paths(dir: &str, files: &[&str]) -> (Vec<PathBuf>, PathBuf) {
    let case = Path::new("captures").join(dir);
    (
        files.iter().map(|f| case.join(f)).collect(),
        case.join("logs"),
    )
}

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
    for &(dir, files, port) in CASES {
        let (captures, logs) = case_paths(dir, files);
        let out = tempfile::tempdir().unwrap();
        let made = analyze(&captures, &logs, port, out.path());
        check(&made, dir, files.len());
    }
}

/// The reliable mode's pictures: each client's repair requests marked
/// across both plots, the repair copies drawn in the time-sequence plot
/// with as many as the report counts, and the IO graph naming the
/// sender's line its sending rate.
#[test]
fn the_reliable_case_shows_its_repair_rounds() {
    let (captures, logs) = case_paths("v1-2clients-reliable", &["capture.pcapng"]);
    let out = tempfile::tempdir().unwrap();
    let made = analyze(&captures, &logs, 25110, out.path());
    let point = captures[0].display().to_string();
    for (i, r) in made.report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let s = stem(r, i);
        assert_eq!(r["mode"], "reliable");
        let copies = r["wire_retransmitted"].as_u64().unwrap();
        assert!(copies > 0, "{s}: the case resent nothing");
        let ts = figure(&made.html, &format!("{s}-time-sequence"));
        let io = figure(&made.html, &format!("{s}-io"));
        assert!(
            ts.contains(&format!("at {point}: {copies} repair copies")),
            "{s}: {ts:.800}"
        );
        for (what, fig) in [("time sequence", ts), ("io", io)] {
            assert!(
                fig.contains("the client asked for a repair round ("),
                "{s} {what}: no repair marks"
            );
        }
        assert!(
            io.contains(&format!("sending rate at {point}")),
            "{s}: {io:.800}"
        );
    }
}

/// The path's case: each client's plots have a series per capture point
/// (the server host's and the client host's, with their datagram counts),
/// and the bars show what the network lost, as the report counts it.
#[test]
fn the_path_case_shows_both_points_and_the_network_s_loss() {
    let (captures, logs) = case_paths("link-2clients-lossy", &["server.pcapng", "client.pcapng"]);
    let out = tempfile::tempdir().unwrap();
    let made = analyze(&captures, &logs, 25120, out.path());
    let rows = made.report["clients"].as_array().unwrap();
    let mut network = 0;
    for (i, r) in rows.iter().enumerate() {
        let s = stem(r, i);
        let ts = figure(&made.html, &format!("{s}-time-sequence"));
        let io = figure(&made.html, &format!("{s}-io"));
        let path = r["path"].as_array().unwrap();
        assert_eq!(path.len(), 2, "{s}");
        for (p, file) in path.iter().zip(&captures) {
            let point = file.display().to_string();
            assert_eq!(p["capture"], point.as_str());
            let n = p["data_frames"].as_u64().unwrap();
            assert!(
                ts.contains(&format!("at {point}: {n} datagrams")),
                "{s}: {point} in {ts:.800}"
            );
            assert!(
                io.contains(&format!("throughput at {point}")),
                "{s}: {point}"
            );
        }
        assert!(
            path[0]["data_frames"].as_u64() > path[1]["data_frames"].as_u64(),
            "{s}: the network lost nothing"
        );
        // The client's missing datagrams, shaded, placed in the network.
        let missing =
            r["datagrams_total"].as_u64().unwrap() - path[1]["data_frames"].as_u64().unwrap();
        assert!(
            ts.contains(&format!(
                "missing at the client: {missing} datagrams: lost in the network\n"
            )),
            "{s}: {ts:.800}"
        );
        network += r["lost_between_captures_bytes"].as_u64().unwrap();
    }
    let bars = figure(&made.html, "run-bytes");
    let shown = format!(
        "lost in the network ({:.3} x 10^6 bytes)",
        network as f64 / 1e6
    );
    assert!(
        network > 0 && bars.contains(&shown),
        "{shown}: {bars:.1200}"
    );
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

/// Chromium's whole time for every case's page, one page at a time.
const CHROMIUM_BUDGET: Duration = Duration::from_secs(100);
/// At most this long for one page.
const CHROMIUM_PAGE_LIMIT: Duration = Duration::from_secs(30);

/// The headless browser's verdict on the page of every case of captures/:
/// a screenshot with ink on it, every picture in the DOM, no console
/// message. One chromium at a time, each given the screenshot and the
/// DOM dump in one run, with a limit per page and for all of them.
#[test]
fn chromium_draws_the_page() {
    let Some(chromium) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
    else {
        common::skip_or_fail("chromium is not installed (apt-get install chromium)");
        return;
    };
    let start = std::time::Instant::now();
    for &(dir, files, port) in CASES.iter().chain([&HEADERS_CASE]) {
        let (captures, logs) = case_paths(dir, files);
        let out = tempfile::tempdir().unwrap();
        let made = analyze(&captures, &logs, port, out.path());
        let left = CHROMIUM_BUDGET.saturating_sub(start.elapsed());
        assert!(
            !left.is_zero(),
            "{dir}: chromium took over {CHROMIUM_BUDGET:?} for the pages before it"
        );
        let page = Page::open(
            chromium,
            &made.html_path,
            out.path(),
            left.min(CHROMIUM_PAGE_LIMIT),
        );
        page.check(&made, dir);
    }
}

/// What chromium made of one page: its console, its DOM, its screenshot.
struct Page {
    stderr: String,
    dom: String,
    png: PathBuf,
}

impl Page {
    /// The page at `html` opened in a headless `chromium`, screenshot and
    /// DOM dump in one run; killed, and the test failed, after `limit`.
    fn open(chromium: &str, html: &Path, out: &Path, limit: Duration) -> Page {
        let url = format!("file://{}", std::fs::canonicalize(html).unwrap().display());
        let png = out.join("page.png");
        // Output to files: chromium's logging can outgrow a pipe that no one
        // reads while the test waits for it.
        let log = |name: &str| std::fs::File::create(out.join(name)).unwrap();
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1200,3000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", out.join("profile").display()))
            .arg(format!("--screenshot={}", png.display()))
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(log("stdout"))
            .stderr(log("stderr"))
            .spawn()
            .expect("start chromium");
        let status = common::wait_with_timeout(&mut child, limit);
        let read = |name: &str| {
            String::from_utf8_lossy(&std::fs::read(out.join(name)).unwrap()).into_owned()
        };
        let stderr = read("stderr");
        assert!(status.success(), "{}: {stderr}", html.display());
        Page {
            stderr,
            dom: read("stdout"),
            png,
        }
    }

    fn check(&self, made: &Made, what: &str) {
        // The page has no script: any console line is the page's fault
        // (a failed load, a parse error), unlike chromium's own warnings
        // about D-Bus or the GPU.
        for line in self.stderr.lines() {
            assert!(
                !line.contains(":CONSOLE") && !line.contains("Uncaught"),
                "{what}: {line}"
            );
        }
        // The DOM holds every picture, and the page's end.
        let figures = figure_ids(&made.html);
        assert_eq!(
            self.dom.matches("<svg").count(),
            figures.len(),
            "{what}: svg elements in the DOM"
        );
        assert_eq!(self.dom.matches("<figure").count(), figures.len(), "{what}");
        for id in &figures {
            assert!(
                self.dom.contains(&format!("<figure id=\"{id}\">")),
                "{what}: {id} not in the DOM"
            );
        }
        assert!(
            self.dom.trim_end().ends_with("</html>"),
            "{what}: the DOM is cut short"
        );
        // The screenshot is not blank: a good share of its pixels are ink.
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(&self.png).expect("the screenshot was written"),
        ));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let channels = info.color_type.samples();
        assert_eq!((info.width, info.height), (1200, 3000), "{what}");
        let pixels = &buf[..info.buffer_size()];
        let ink = pixels
            .chunks(channels)
            .filter(|p| p.iter().take(3).any(|&c| c < 200))
            .count();
        let total = (info.width * info.height) as usize;
        if figures.is_empty() {
            // Text and tables only: some ink, nothing more to ask.
            assert!(
                made.html.contains("No client's transfer was found"),
                "{what}"
            );
            assert!(
                ink * 1000 > total,
                "{what}: only {ink} of {total} pixels are not white"
            );
            return;
        }
        assert!(figures.len() >= 5, "{what}: {figures:?}");
        assert!(
            ink * 100 > total,
            "{what}: only {ink} of {total} pixels are not white"
        );
        // Several colours: the plots are drawn, not only text.
        let coloured = pixels
            .chunks(channels)
            .filter(|p| {
                let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
                (r - g).abs() > 60 || (g - b).abs() > 60 || (r - b).abs() > 60
            })
            .count();
        assert!(
            coloured * 200 > total,
            "{what}: only {coloured} coloured pixels"
        );
    }
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
