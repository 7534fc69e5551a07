//! `udplab lab headers`: the second lab in one command, on loopback. A
//! local HTTP origin ([`crate::headers::local_origin`]), the header server
//! sent to it, N clients at once each asking a list of names with repeats,
//! a capture of it all on `lo`, and the conversations of the capture.
//!
//! Client k asks the names in order, the list turned by k - 1 places, so
//! that the clients ask the same hosts in different orders and some at
//! the same moment; every name after its first asking is a hit (the
//! server fetches a host once, however many sessions ask for it at once),
//! so the origin gets one request per distinct name.
//!
//! The run directory (`<dir>/<time>-headers/`):
//!
//! ```text
//! capture.pcapng       lo: the origin's, the server's TCP and its UDP port
//! cache.txt            the server's cache file after the last session
//! clients/<k>/<name>.txt   each header client k stored
//! logs/headers-server-<ip>-<port>.txt   one per session
//! logs/headers-client-<port>.txt        one per client (its TCP port)
//! logs/http-origin.txt                  the origin's requests per host
//! report.json          analyze --conversations --port 5005 --format json
//! report.txt           the same as a table
//! ```
//!
//! Without the right to capture (or in a build without the `capture`
//! feature) the run still happens; the report is then empty and says why.

use std::collections::BTreeSet;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use log::{info, warn};

use super::{CaptureAt, CaptureStatus, PointCapture, RunningCapture, finish_capture, new_run_dir};
use crate::analyze::{self, Analysis};
use crate::headers::local_origin::{LocalOrigin, Requests};
use crate::headers::origin::Origin;
use crate::headers::{client, server};
use crate::net;
use crate::shutdown::{POLL_INTERVAL, Shutdown};

/// The names each client asks by default (turned per client): three
/// repeats, a 301 and a 302, cookies, a long head.
pub const DEFAULT_NAMES: [&str; 10] = [
    "www.twitch.tv",
    "www.google.cl",
    "google.cl",
    "www.twitch.tv",
    "www.uchile.cl",
    "example.org",
    "www.reddit.com",
    "www.google.cl",
    "news.ycombinator.com",
    "www.twitch.tv",
];

/// The report's ports: the header server's TCP and UDP.
pub const DEFAULT_PORT: u16 = 50366;
pub const DEFAULT_UDP_PORT: u16 = 50367;
/// The local origin's port.
pub const DEFAULT_ORIGIN_PORT: u16 = 50368;

/// How long a client waits for each answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the origin has for a header.
const ORIGIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Config {
    pub clients: u16,
    /// Asked by each client, turned by its number.
    pub names: Vec<String>,
    /// Where run directories are made.
    pub dir: PathBuf,
    /// Capture (when this build and the process can).
    pub capture: bool,
    /// The header server's TCP port on 127.0.0.1 (0: any free one).
    pub port: u16,
    /// The header server's UDP port (0: any free one).
    pub udp_port: u16,
    /// The origin's port (0: any free one).
    pub origin_port: u16,
    /// The capture's kernel buffer.
    pub capture_buffer: usize,
}

impl Config {
    pub fn new(clients: u16) -> Config {
        Config {
            clients,
            names: DEFAULT_NAMES.iter().map(|n| n.to_string()).collect(),
            dir: PathBuf::from("runs"),
            capture: true,
            port: DEFAULT_PORT,
            udp_port: DEFAULT_UDP_PORT,
            origin_port: DEFAULT_ORIGIN_PORT,
            capture_buffer: 64 << 20,
        }
    }

    /// What client `k` (from 1) asks: the names turned by k - 1.
    pub fn names_of(&self, k: u16) -> Vec<String> {
        let mut names = self.names.clone();
        if !names.is_empty() {
            let turn = (usize::from(k) - 1) % names.len();
            names.rotate_left(turn);
        }
        names
    }

    /// The names asked, each once.
    pub fn distinct_names(&self) -> BTreeSet<&str> {
        self.names.iter().map(String::as_str).collect()
    }
}

/// One client's run.
#[derive(Debug)]
pub struct ClientRun {
    /// From 1.
    pub k: u16,
    pub names: Vec<String>,
    pub out_dir: PathBuf,
    /// The session, or why it could not run to its end.
    pub result: Result<client::Outcome, String>,
    /// The server's side of the session (found by the client's TCP port).
    pub session: Option<server::Session>,
}

impl ClientRun {
    /// Headers stored.
    pub fn answers(&self) -> usize {
        self.result.as_ref().map_or(0, |o| {
            o.queries
                .iter()
                .filter(|q| matches!(q.result, client::Reply::Stored { .. }))
                .count()
        })
    }

    /// (hits, misses) by the server's account of the session.
    pub fn hits_misses(&self) -> Option<(usize, usize)> {
        let s = self.session.as_ref()?;
        let count =
            |f: fn(&server::Outcome) -> bool| s.queries.iter().filter(|q| f(&q.outcome)).count();
        Some((
            count(|o| matches!(o, server::Outcome::Hit(_))),
            count(|o| matches!(o, server::Outcome::Miss(_))),
        ))
    }
}

/// What one run did.
#[derive(Debug)]
pub struct Outcome {
    pub run_dir: PathBuf,
    pub server_tcp: SocketAddr,
    pub server_udp: SocketAddr,
    pub origin: SocketAddr,
    pub clients: Vec<ClientRun>,
    /// The origin's count of the requests it got.
    pub requests: Requests,
    /// Distinct names asked.
    pub distinct: usize,
    pub cache_path: PathBuf,
    /// Hosts in the cache file at the end.
    pub cache_hosts: usize,
    pub capture: PointCapture,
    pub analysis: Analysis,
    pub report_path: PathBuf,
    pub table_path: PathBuf,
    /// Whatever failed: a client, the server, a log not written.
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

/// Binds 127.0.0.1:`port` for TCP, naming the option to change.
fn listen(port: u16, what: &str, option: &str) -> anyhow::Result<TcpListener> {
    net::listen_tcp((Ipv4Addr::LOCALHOST, port).into()).map_err(|e| {
        anyhow::anyhow!("{what} port 127.0.0.1:{port} is not free ({e}): pass another {option}")
    })
}

/// The capture filter of a run: the origin's and the server's TCP, the
/// server's UDP (requests to it and headers from it).
pub fn capture_filter(origin: u16, tcp: u16, udp: u16) -> String {
    format!("tcp port {origin} or tcp port {tcp} or udp port {udp}")
}

#[cfg(feature = "capture")]
fn start_capture(cfg: &Config, path: &Path, filter: String) -> Result<RunningCapture, String> {
    let mut c = crate::capture::live::Config::new("lo", path);
    c.filter = Some(filter);
    // Headers whole: the longest is far under a loopback frame.
    c.snaplen = crate::capture::live::WHOLE;
    c.buffer = cfg.capture_buffer;
    super::spawn_capture(c, None, "capture-headers".into())
}

#[cfg(not(feature = "capture"))]
fn start_capture(_cfg: &Config, _path: &Path, _filter: String) -> Result<RunningCapture, String> {
    Err(crate::capture::unavailable()
        .unwrap_or("capture unavailable")
        .to_string())
}

/// Runs the lab in a new run directory under `cfg.dir`.
pub fn run(cfg: &Config, shutdown: &Shutdown) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    if cfg.clients == 0 {
        bail!("a lab run needs at least one client");
    }
    if cfg.names.is_empty() {
        bail!("no names to ask for");
    }
    let origin_listener = listen(cfg.origin_port, "origin", "--origin-port")?;
    let listener = listen(cfg.port, "header server", "--port")?;
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, cfg.udp_port)).map_err(|e| {
        anyhow::anyhow!(
            "header server UDP port 127.0.0.1:{} is not free ({e}): pass another --udp-port",
            cfg.udp_port
        )
    })?;
    let (origin_addr, server_tcp, server_udp) = (
        origin_listener.local_addr()?,
        listener.local_addr()?,
        udp.local_addr()?,
    );
    let run_dir = new_run_dir(&cfg.dir, "headers")?;
    info!("run directory: {}", run_dir.display());
    let logs = run_dir.join("logs");
    let clients_dir = run_dir.join("clients");
    for d in [&logs, &clients_dir] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let capture_path = run_dir.join("capture.pcapng");
    let filter = capture_filter(origin_addr.port(), server_tcp.port(), server_udp.port());
    let capture = if cfg.capture {
        start_capture(cfg, &capture_path, filter)
    } else {
        Err("not asked for (--no-capture)".to_string())
    };
    match &capture {
        Ok(_) => info!("capturing on lo into {}", capture_path.display()),
        Err(reason) if cfg.capture => {
            warn!("no capture on lo: {reason}; the report will be empty")
        }
        Err(_) => {}
    }

    let cache_path = run_dir.join("cache.txt");
    let ran = sessions(
        cfg,
        shutdown,
        Sockets {
            origin: origin_listener,
            tcp: listener,
            udp,
        },
        &cache_path,
        &logs,
        &clients_dir,
    );
    // Whatever happened, the capture is stopped and closed.
    let capture = PointCapture {
        point: CaptureAt::Loopback,
        interface: "lo".into(),
        status: finish_capture(capture),
    };
    let Sessions {
        clients,
        requests,
        mut errors,
    } = ran?;
    let cache_hosts = match crate::headers::cache::Cache::load(&cache_path) {
        Ok(c) => c.len(),
        Err(e) => {
            errors.push(format!("the cache file: {e}"));
            0
        }
    };

    let analysis = analyze_capture(&capture, &logs)?;
    let report_path = run_dir.join("report.json");
    let table_path = run_dir.join("report.txt");
    for (path, format) in [
        (&report_path, analyze::report::Format::Json),
        (&table_path, analyze::report::Format::Table),
    ] {
        let mut bytes = Vec::new();
        analyze::report::write(&mut bytes, &analysis, format)
            .with_context(|| format!("rendering {}", path.display()))?;
        fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Outcome {
        run_dir,
        server_tcp,
        server_udp,
        origin: origin_addr,
        clients,
        requests,
        distinct: cfg.distinct_names().len(),
        cache_path,
        cache_hosts,
        capture,
        analysis,
        report_path,
        table_path,
        errors,
        elapsed: started.elapsed(),
    })
}

/// The sockets of a run, bound before the capture starts (its filter
/// names their ports).
struct Sockets {
    origin: TcpListener,
    tcp: TcpListener,
    udp: UdpSocket,
}

/// What the origin, the server and the clients did.
struct Sessions {
    clients: Vec<ClientRun>,
    requests: Requests,
    errors: Vec<String>,
}

/// The origin, the header server and the clients, run to their end: the
/// clients at once, the server stopped when the last has closed (or by
/// `shutdown`), then the origin; the origin's log written.
fn sessions(
    cfg: &Config,
    shutdown: &Shutdown,
    sockets: Sockets,
    cache_path: &Path,
    logs: &Path,
    clients_dir: &Path,
) -> anyhow::Result<Sessions> {
    let origin_addr = sockets.origin.local_addr()?;
    let server_tcp = sockets.tcp.local_addr()?;
    let server_udp = sockets.udp.local_addr()?;
    let origin = LocalOrigin::start(sockets.origin).context("starting the origin")?;
    let mut scfg = server::Config::new(server_udp, cache_path.to_path_buf());
    scfg.origin = Origin::Fixed(origin_addr);
    scfg.origin_timeout = ORIGIN_TIMEOUT;
    scfg.log_dir = Some(logs.to_path_buf());
    // Stopped once every client has closed, or at once by a Ctrl-C.
    let server_stop = Shutdown::new();
    let server = {
        let (stop, tcp, udp) = (server_stop.clone(), sockets.tcp, sockets.udp);
        thread::Builder::new()
            .name("headers-server".into())
            .spawn(move || server::serve(tcp, udp, scfg, stop))?
    };
    let watcher = {
        let (user, ours) = (shutdown.clone(), server_stop.clone());
        thread::spawn(move || {
            while !ours.is_triggered() {
                if user.is_triggered() {
                    ours.trigger();
                }
                thread::sleep(POLL_INTERVAL);
            }
        })
    };
    info!(
        "{} client(s) asking {} names each of {server_tcp} (udp {}), origin {origin_addr}",
        cfg.clients,
        cfg.names.len(),
        server_udp.port()
    );
    let mut handles = Vec::new();
    for k in 1..=cfg.clients {
        let mut c = client::Config::new(server_tcp.to_string(), cfg.names_of(k));
        c.out_dir = clients_dir.join(k.to_string());
        c.log_dir = Some(logs.to_path_buf());
        c.timeout = CLIENT_TIMEOUT;
        let out_dir = c.out_dir.clone();
        let names = c.names.clone();
        let handle = thread::Builder::new()
            .name(format!("headers-client-{k}"))
            .spawn(move || client::run(&c));
        handles.push((k, names, out_dir, handle));
    }
    let mut errors = Vec::new();
    let mut clients: Vec<ClientRun> = handles
        .into_iter()
        .map(|(k, names, out_dir, handle)| {
            let result = match handle.map(|h| h.join()) {
                Ok(Ok(Ok(o))) => Ok(o),
                Ok(Ok(Err(e))) => Err(format!("{e:#}")),
                Ok(Err(_)) => Err("its thread panicked".into()),
                Err(e) => Err(format!("starting its thread: {e}")),
            };
            if let Err(e) = &result {
                errors.push(format!("client {k}: {e}"));
            }
            ClientRun {
                k,
                names,
                out_dir,
                result,
                session: None,
            }
        })
        .collect();
    // Every client has closed: the sessions end as their FINs arrive.
    server_stop.trigger();
    let _ = watcher.join();
    match server.join() {
        Ok(Ok(summary)) => {
            for s in summary.sessions {
                let mine = clients
                    .iter_mut()
                    .find(|c| c.result.as_ref().is_ok_and(|o| o.tcp_local == s.peer));
                if let Some(c) = mine {
                    c.session = Some(s);
                }
            }
        }
        Ok(Err(e)) => errors.push(format!("server: {e:#}")),
        Err(_) => errors.push("server: its thread panicked".into()),
    }
    let requests = origin.stop();
    let origin_log = logs.join("http-origin.txt");
    if let Err(e) = fs::write(&origin_log, requests.render(origin_addr)) {
        errors.push(format!("writing {}: {e}", origin_log.display()));
    }
    Ok(Sessions {
        clients,
        requests,
        errors,
    })
}

/// The control port the analysis is given: the file transfer's (5005),
/// which a header lab does not use, so that no session is taken for a
/// transfer's registration; the conversations are the report.
pub const ANALYZE_PORT: u16 = crate::protocol::DEFAULT_PORT;

/// `analyze --conversations --port 5005 --logs LOGS` of the capture (the
/// header logs give each session its hits and misses and the clients'
/// stored files); without a capture, an empty analysis that says why.
fn analyze_capture(capture: &PointCapture, logs: &Path) -> anyhow::Result<Analysis> {
    let opts = analyze::Options {
        control_port: ANALYZE_PORT,
        chunk: crate::protocol::lab::CHUNK,
        log_utc_offset: None,
        conversations: true,
        pictures: false,
    };
    let logs = analyze::logs::load(&[logs.to_path_buf()])?;
    Ok(match &capture.status {
        CaptureStatus::Captured { path, .. } => {
            let mut reader = analyze::reader::Reader::open(std::slice::from_ref(path))
                .with_context(|| format!("opening {}", path.display()))?;
            analyze::analyze(&mut reader, &logs, &opts, &mut |_, _| {})
        }
        CaptureStatus::Missing { reason } => analyze::from_logs(&logs, &opts, reason),
    })
}

impl Outcome {
    /// Names asked that got no header, over all clients.
    pub fn unanswered(&self) -> usize {
        self.clients
            .iter()
            .map(|c| c.names.len() - c.answers())
            .sum()
    }
}

/// The run's summary: a row per client (its queries, the headers it
/// stored, the server's hits and misses for it), the origin's requests,
/// the cache, the capture and where everything is.
pub fn write_summary(out: &mut dyn std::io::Write, o: &Outcome) -> std::io::Result<()> {
    use analyze::report::group;
    writeln!(
        out,
        "header server {} (udp {}), origin http://{}",
        o.server_tcp,
        o.server_udp.port(),
        o.origin
    )?;
    let mut t = analyze::report::table(&[
        "client", "tcp port", "queries", "answers", "hits", "misses", "bytes", "log",
    ]);
    for c in &o.clients {
        let (hits, misses) = c.hits_misses().map_or(("-".into(), "-".into()), |(h, m)| {
            (h.to_string(), m.to_string())
        });
        let (port, bytes, log) = match &c.result {
            Ok(r) => {
                let bytes: usize = r
                    .queries
                    .iter()
                    .map(|q| match q.result {
                        client::Reply::Stored { bytes, .. } => bytes,
                        _ => 0,
                    })
                    .sum();
                (
                    r.tcp_local.port().to_string(),
                    group(bytes as u64),
                    r.log_path
                        .as_ref()
                        .and_then(|p| p.file_name())
                        .map_or("-".into(), |n| n.to_string_lossy().into_owned()),
                )
            }
            Err(e) => ("-".into(), "-".into(), format!("failed: {e}")),
        };
        t.add_row(vec![
            c.k.to_string(),
            port,
            c.names.len().to_string(),
            c.answers().to_string(),
            hits,
            misses,
            bytes,
            log,
        ]);
    }
    for i in 0..7 {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    writeln!(out, "{t}")?;
    let total = o.requests.total();
    writeln!(
        out,
        "origin: {} request{} for {} distinct name{}{}",
        total,
        if total == 1 { "" } else { "s" },
        o.distinct,
        if o.distinct == 1 { "" } else { "s" },
        if total == o.distinct && o.requests.by_host.values().all(|&n| n == 1) {
            ", one each"
        } else {
            ""
        }
    )?;
    let sizes: Vec<String> = o
        .requests
        .by_host
        .keys()
        .map(|h| {
            let n = crate::headers::local_origin::header_for(h).len();
            format!("{h} {n}")
        })
        .collect();
    writeln!(out, "header bytes: {}", sizes.join(", "))?;
    writeln!(
        out,
        "cache: {} ({} hosts)",
        o.cache_path.display(),
        o.cache_hosts
    )?;
    match &o.capture.status {
        CaptureStatus::Captured {
            path,
            packets,
            received,
            dropped,
        } => {
            let convs = o.analysis.conversations.as_deref().unwrap_or_default();
            let tcp = convs
                .iter()
                .filter(|c| c.transport == analyze::conversations::Proto::Tcp)
                .count();
            writeln!(
                out,
                "capture: {} packets in {} (libpcap: {} received, {} dropped); {tcp} TCP connections, {} UDP flows",
                group(*packets),
                path.display(),
                group(*received),
                group(*dropped),
                convs.len() - tcp
            )?
        }
        CaptureStatus::Missing { reason } => {
            writeln!(out, "capture: none ({reason}); the report is empty")?
        }
    }
    for e in &o.errors {
        writeln!(out, "error: {e}")?;
    }
    writeln!(
        out,
        "report: {} (table: {})",
        o.report_path.display(),
        o.table_path.display()
    )?;
    writeln!(
        out,
        "run directory: {} ({:.1} s)",
        o.run_dir.display(),
        o.elapsed.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_asks_the_names_turned_by_its_number() {
        let mut cfg = Config::new(3);
        cfg.names = ["a", "b", "c", "a"].map(String::from).to_vec();
        assert_eq!(cfg.names_of(1), ["a", "b", "c", "a"]);
        assert_eq!(cfg.names_of(2), ["b", "c", "a", "a"]);
        assert_eq!(cfg.names_of(5), cfg.names_of(1), "turned round");
        assert_eq!(cfg.distinct_names().len(), 3);
    }

    #[test]
    fn the_default_names_repeat_and_are_all_sites() {
        let cfg = Config::new(2);
        assert!(cfg.distinct_names().len() < cfg.names.len());
        for n in cfg.distinct_names() {
            assert!(
                crate::headers::local_origin::SITES.contains(&n),
                "{n} has no head of its own"
            );
        }
    }
}
