//! The whole experiment in one command: a test file, the server, a capture,
//! N clients at once (each with its own sockets, as separate machines'
//! clients would have), then `analyze` on the captures and the logs.
//!
//! Two venues ([`Venue`]):
//! - loopback (the default): everything on `lo`, one capture point there;
//!   loss can only happen in the receivers' socket buffers.
//! - `--link` ([`link`]): server host -> router -> client host, three
//!   network namespaces joined by veths, the router's egress a bottleneck
//!   with a queue and random loss. Captures at the server's and at the
//!   client's veth make two capture points; the kernel's own counters of
//!   every place ([`counters`]) are read before and after the transfer and
//!   set beside the analyzer's figures in `counters.json`.
//!
//! On the path, the server, the clients and each capture run as threads
//! of this process that first enter their namespace (setns, [`netns`]),
//! not as `ip netns exec` children: sockets, and libpcap's packet socket,
//! belong to the namespace of the thread that made them, so the same
//! `server::run`, `client::run` and `Capture::open` as on loopback serve,
//! their results come back as values (no output to parse), and a `kill -9`
//! leaves no process behind, only namespaces, which the next run removes.
//!
//! Everything lands in a fresh run directory: the captures, the logs,
//! `report.json` (and on the path `counters.json`), and the made test file
//! and the received files, which are removed at the end unless kept.
//! Without the right to capture (or in a build without the `capture`
//! feature) the transfer still runs and the report comes from the logs
//! alone, saying why the wire column is empty.
//!
//! [`headers`] runs the second lab (the header cache) the same way:
//! `udplab lab headers`.

pub mod counters;
pub mod exec;
pub mod headers;
pub mod link;
pub mod netns;

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use log::{info, warn};

use crate::analyze::{self, Analysis};
use crate::protocol::{self, Mode, Protocol};
use crate::shutdown::Shutdown;
use crate::{client, net, server};
use netns::Netns;

/// The file a run sends.
#[derive(Debug, Clone)]
pub enum Source {
    /// Make a file of random bytes of this size in the run directory.
    Make { size: u64 },
    /// Send this file.
    File(PathBuf),
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub clients: u16,
    pub source: Source,
    pub protocol: Protocol,
    /// Where run directories are made.
    pub dir: PathBuf,
    /// Capture (when this build and the process can).
    pub capture: bool,
    pub keep_files: bool,
    /// TCP control port of the server; data from port + k.
    pub port: u16,
    pub recv_buffer: Option<usize>,
    /// Bytes kept of each data datagram in the capture.
    pub snaplen: u32,
    /// The capture's kernel buffer.
    pub capture_buffer: usize,
    /// How the server sends to v1 clients.
    pub mode: Mode,
    /// Ceiling of each client's sending rate, bits per second.
    pub rate: Option<f64>,
    /// Run on the namespaced path with this shape instead of loopback.
    pub link: Option<link::Shape>,
}

impl Config {
    pub fn new(clients: u16, source: Source) -> Config {
        Config {
            clients,
            source,
            protocol: Protocol::V1,
            dir: PathBuf::from("runs"),
            capture: true,
            keep_files: false,
            port: protocol::DEFAULT_PORT,
            recv_buffer: None,
            snaplen: 128,
            capture_buffer: 64 << 20,
            mode: Mode::Blast,
            rate: None,
            link: None,
        }
    }
}

/// What a capture of the run gave, or why there is none.
#[derive(Debug, Clone)]
pub enum CaptureStatus {
    Captured {
        path: PathBuf,
        packets: u64,
        /// libpcap's counts.
        received: u64,
        dropped: u64,
    },
    Missing {
        reason: String,
    },
}

/// Where a capture point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureAt {
    /// `lo`: the one point of a loopback run.
    Loopback,
    /// The server host's veth: what left the sender's host.
    ServerHost,
    /// The client host's veth: what reached the receivers' host.
    ClientHost,
}

impl std::fmt::Display for CaptureAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CaptureAt::Loopback => "loopback",
            CaptureAt::ServerHost => "server",
            CaptureAt::ClientHost => "client",
        })
    }
}

/// One capture point of a run: where, and what its capture gave.
#[derive(Debug, Clone)]
pub struct PointCapture {
    pub point: CaptureAt,
    pub interface: String,
    pub status: CaptureStatus,
}

/// What a run on the path adds: the kernel's counters and the check.
#[derive(Debug, Clone)]
pub struct LinkOutcome {
    pub counters_path: PathBuf,
    /// The counters' differences over the transfer.
    pub counters: counters::Snapshot,
    /// The analyzer's figures beside the kernel's.
    pub check: Vec<counters::CheckRow>,
}

/// What one run did.
#[derive(Debug)]
pub struct Outcome {
    pub run_dir: PathBuf,
    /// One per capture point, nearest the sender first.
    pub captures: Vec<PointCapture>,
    pub analysis: Analysis,
    pub report_path: PathBuf,
    /// On the path (`--link`): the kernel's counters and the check; none
    /// when they could not be read (a warning says why).
    pub link: Option<LinkOutcome>,
    /// Clients that ended with an error (not merely an incomplete file).
    pub client_errors: Vec<String>,
    pub elapsed: Duration,
}

/// Give up on a round that has not filled in this time.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(30);
/// Clients wait at most this long for the round to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A new directory under `parent` named by the time, and `suffix` when
/// given; `-2`, `-3` ... when the name is taken.
pub fn new_run_dir(parent: &Path, suffix: &str) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let stamp = chrono::Local::now().format("%Y-%m-%d-%H-%M-%S").to_string();
    let base = if suffix.is_empty() {
        stamp
    } else {
        format!("{stamp}-{suffix}")
    };
    for n in 1..1000 {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = parent.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    bail!("no free run directory name under {}", parent.display())
}

/// The name of a made test file: `100MiB.bin`, or the size in bytes.
pub fn test_file_name(size: u64) -> String {
    if size > 0 && size.is_multiple_of(1 << 20) {
        format!("{}MiB.bin", size >> 20)
    } else {
        format!("{size}B.bin")
    }
}

/// Writes `size` pseudo-random bytes (incompressible, different every run)
/// to `path`, through `PATH.part` so that a cut-short file never has the
/// final name.
pub fn make_test_file(path: &Path, size: u64) -> anyhow::Result<()> {
    let part = crate::capture::writer::partial_name(path);
    let write = || -> io::Result<()> {
        let mut f = io::BufWriter::with_capacity(1 << 20, File::create(&part)?);
        // splitmix64, seeded by the clock: fast, and no two runs alike.
        let mut state = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        let mut block = vec![0u8; 1 << 16];
        let mut left = size;
        while left > 0 {
            for chunk in block.chunks_exact_mut(8) {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
            }
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n])?;
            left -= n as u64;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    write().with_context(|| format!("writing {}", part.display()))?;
    fs::rename(&part, path).with_context(|| format!("renaming {}", part.display()))
}

/// Fails with a clear message when a port the run needs is taken.
fn check_ports(port: u16, clients: u16) -> anyhow::Result<TcpListener> {
    let last = port.checked_add(clients).with_context(|| {
        format!("control port {port} + {clients} clients goes past port 65535: pass a lower --port")
    })?;
    let listener = net::listen_tcp((Ipv4Addr::LOCALHOST, port).into()).map_err(|e| {
        match net::time_wait_hint(port, &e) {
            Some(hint) => anyhow::anyhow!("control port 127.0.0.1:{port} is not free ({e}): {hint}"),
            None => anyhow::anyhow!(
                "control port 127.0.0.1:{port} is not free ({e}): another server may be running; pass --port"
            ),
        }
    })?;
    for p in port + 1..=last {
        if let Err(e) = UdpSocket::bind((Ipv4Addr::LOCALHOST, p)) {
            bail!(
                "data port 127.0.0.1:{p} (client {}) is not free ({e}): pass another --port",
                p - port
            );
        }
    }
    Ok(listener)
}

/// Where a run's parts live.
pub enum Venue<'a> {
    /// Everything on 127.0.0.1, one capture on `lo`.
    Loopback,
    /// The server, the clients and the two captures in the path's
    /// namespaces.
    Link(&'a link::Network),
}

/// A capture point of a venue.
struct Point {
    at: CaptureAt,
    interface: String,
    file: &'static str,
    /// The namespace libpcap opens in (only a capturing build opens).
    #[cfg_attr(not(feature = "capture"), allow(dead_code))]
    ns: Option<Arc<Netns>>,
}

impl Venue<'_> {
    fn server_ip(&self) -> Ipv4Addr {
        match self {
            Venue::Loopback => Ipv4Addr::LOCALHOST,
            Venue::Link(_) => link::SERVER_IP,
        }
    }

    fn server_ns(&self) -> Option<Arc<Netns>> {
        match self {
            Venue::Loopback => None,
            Venue::Link(net) => Some(net.server_ns()),
        }
    }

    fn client_ns(&self) -> Option<Arc<Netns>> {
        match self {
            Venue::Loopback => None,
            Venue::Link(net) => Some(net.client_ns()),
        }
    }

    /// The capture points, nearest the sender first.
    fn points(&self) -> Vec<Point> {
        match self {
            Venue::Loopback => vec![Point {
                at: CaptureAt::Loopback,
                interface: "lo".into(),
                file: "capture.pcapng",
                ns: None,
            }],
            Venue::Link(net) => vec![
                Point {
                    at: CaptureAt::ServerHost,
                    interface: net.names().server_if.clone(),
                    file: "server.pcapng",
                    ns: Some(net.server_ns()),
                },
                Point {
                    at: CaptureAt::ClientHost,
                    interface: net.names().client_if.clone(),
                    file: "client.pcapng",
                    ns: Some(net.client_ns()),
                },
            ],
        }
    }

    /// The server's control listener, with the data ports checked free.
    fn listener(&self, port: u16, clients: u16) -> anyhow::Result<TcpListener> {
        match self {
            Venue::Loopback => check_ports(port, clients),
            Venue::Link(net) => {
                port.checked_add(clients).with_context(|| {
                    format!(
                        "control port {port} + {clients} clients goes past port 65535: pass a lower --port"
                    )
                })?;
                // A fresh namespace: every port is free.
                netns::run_in(&net.server_ns(), || {
                    TcpListener::bind((link::SERVER_IP, port)).with_context(|| {
                        format!("binding the control port {}:{port}", link::SERVER_IP)
                    })
                })
            }
        }
    }

    /// How long a client waits for stragglers: at least the time the
    /// bottleneck's full queue takes to drain.
    fn settle(&self) -> Duration {
        match self {
            Venue::Loopback => Duration::ZERO,
            Venue::Link(net) => net.shape().drain_time() + Duration::from_millis(200),
        }
    }
}

/// A capture running on its own thread.
pub(crate) struct RunningCapture {
    stop: Shutdown,
    thread: thread::JoinHandle<Result<CaptureStatus, String>>,
}

/// Starts the capture of `point` into `path` on a thread that enters the
/// point's namespace first (libpcap's socket is made there), and returns
/// once libpcap is live.
#[cfg(feature = "capture")]
fn start_capture(cfg: &Config, point: &Point, path: &Path) -> Result<RunningCapture, String> {
    let mut c = crate::capture::live::Config::new(point.interface.as_str(), path);
    c.control_port = cfg.port;
    c.snaplen = cfg.snaplen;
    c.buffer = cfg.capture_buffer;
    spawn_capture(c, point.ns.clone(), format!("capture-{}", point.at))
}

/// Runs the capture `c` on a thread named `name` that enters `ns` first
/// (libpcap's socket is made there), and returns once libpcap is live.
#[cfg(feature = "capture")]
pub(crate) fn spawn_capture(
    c: crate::capture::live::Config,
    ns: Option<Arc<Netns>>,
    name: String,
) -> Result<RunningCapture, String> {
    use crate::capture::live;
    let (opened_tx, opened) = std::sync::mpsc::sync_channel(1);
    let stop = Shutdown::new();
    let s = stop.clone();
    let thread = thread::Builder::new()
        .name(name)
        .spawn(move || {
            let open = || -> Result<live::Capture, String> {
                if let Some(ns) = &ns {
                    ns.enter().map_err(|e| format!("{e:#}"))?;
                }
                live::Capture::open(c).map_err(|e| e.to_string())
            };
            let cap = match open() {
                Ok(cap) => {
                    let _ = opened_tx.send(Ok(()));
                    cap
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e.clone()));
                    return Err(e);
                }
            };
            let sum = cap.run(&s, &mut |_| {}).map_err(|e| e.to_string())?;
            Ok(CaptureStatus::Captured {
                path: sum.path,
                packets: sum.packets,
                received: sum.received,
                dropped: sum.dropped,
            })
        })
        .map_err(|e| format!("starting the capture thread: {e}"))?;
    match opened.recv() {
        Ok(Ok(())) => Ok(RunningCapture { stop, thread }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err("the capture thread ended before libpcap was live".into())
        }
    }
}

#[cfg(not(feature = "capture"))]
fn start_capture(_cfg: &Config, _point: &Point, _path: &Path) -> Result<RunningCapture, String> {
    Err(crate::capture::unavailable()
        .unwrap_or("capture unavailable")
        .to_string())
}

/// Starts every capture point's capture (or says why not).
fn start_captures(
    cfg: &Config,
    venue: &Venue,
    run_dir: &Path,
) -> Vec<(Point, Result<RunningCapture, String>)> {
    venue
        .points()
        .into_iter()
        .map(|point| {
            let path = run_dir.join(point.file);
            let started = if cfg.capture {
                start_capture(cfg, &point, &path)
            } else {
                Err("not asked for (--no-capture)".to_string())
            };
            match &started {
                Ok(_) => info!("capturing on {} into {}", point.interface, path.display()),
                Err(reason) if cfg.capture => warn!(
                    "no capture on {}: {reason}; the report's wire column will be empty",
                    point.interface
                ),
                Err(_) => {}
            }
            (point, started)
        })
        .collect()
}

/// Stops the captures and collects what each gave.
fn stop_captures(running: Vec<(Point, Result<RunningCapture, String>)>) -> Vec<PointCapture> {
    for (_, c) in &running {
        if let Ok(c) = c {
            c.stop.trigger();
        }
    }
    running
        .into_iter()
        .map(|(point, c)| PointCapture {
            point: point.at,
            interface: point.interface,
            status: finish_capture(c),
        })
        .collect()
}

/// Stops a capture (when it started) and says what it gave, or why none.
pub(crate) fn finish_capture(c: Result<RunningCapture, String>) -> CaptureStatus {
    match c {
        Ok(c) => {
            c.stop.trigger();
            match c.thread.join() {
                Ok(Ok(status)) => status,
                Ok(Err(e)) => CaptureStatus::Missing {
                    reason: format!("the capture failed: {e}"),
                },
                Err(_) => CaptureStatus::Missing {
                    reason: "the capture thread panicked".into(),
                },
            }
        }
        Err(reason) => CaptureStatus::Missing { reason },
    }
}

/// Runs the experiment in `run_dir` (made by [`new_run_dir`]): on
/// loopback, or on a path built for this run when `cfg.link` is set (and
/// removed before this returns, whatever happens).
pub fn run(cfg: &Config, run_dir: &Path, shutdown: &Shutdown) -> anyhow::Result<Outcome> {
    match &cfg.link {
        None => run_at(cfg, run_dir, shutdown, &Venue::Loopback),
        Some(shape) => {
            let net = match link::Network::build(shape) {
                Ok(net) => net,
                Err(e) => {
                    // Leave no empty run directory behind.
                    let _ = fs::remove_dir(run_dir);
                    return Err(e);
                }
            };
            run_at(cfg, run_dir, shutdown, &Venue::Link(&net))
        }
    }
}

/// Runs the experiment in `run_dir` at `venue`.
pub fn run_at(
    cfg: &Config,
    run_dir: &Path,
    shutdown: &Shutdown,
    venue: &Venue,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    if cfg.clients == 0 {
        bail!("a lab run needs at least one client");
    }
    let listener = match venue.listener(cfg.port, cfg.clients) {
        Ok(l) => l,
        Err(e) => {
            // Leave no empty run directory behind (remove_dir only removes
            // an empty one).
            let _ = fs::remove_dir(run_dir);
            return Err(e);
        }
    };
    info!("run directory: {}", run_dir.display());
    let made = matches!(cfg.source, Source::Make { .. });
    let file = match &cfg.source {
        Source::File(p) => p.clone(),
        Source::Make { size } => {
            let p = run_dir.join(test_file_name(*size));
            make_test_file(&p, *size)?;
            info!("made {} ({size} bytes)", p.display());
            p
        }
    };
    let logs = run_dir.join("logs");
    let received = run_dir.join("received");
    for d in [&logs, &received] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }

    let before = match venue {
        Venue::Link(net) => Some(counters::read(net).context("reading the path's counters")?),
        Venue::Loopback => None,
    };
    let captures = start_captures(cfg, venue, run_dir);
    let transferred = transfer(cfg, venue, listener, &file, &logs, &received, shutdown);
    if let Venue::Link(net) = venue {
        net.wait_drained(venue.settle() + Duration::from_secs(1));
    }
    // The last client has logged: stop the captures (also when the
    // transfer could not start).
    let captures = stop_captures(captures);
    let client_errors = transferred?;
    for e in &client_errors {
        warn!("{e}");
    }

    let loaded = analyze::logs::load(std::slice::from_ref(&logs))?;
    let analysis = analyze_run(cfg, &captures, &loaded)?;
    let report_path = run_dir.join("report.json");
    let mut json = Vec::new();
    analyze::report::write(&mut json, &analysis, analyze::report::Format::Json)
        .context("rendering report.json")?;
    fs::write(&report_path, json).with_context(|| format!("writing {}", report_path.display()))?;
    let link = match (venue, before) {
        (Venue::Link(net), Some(before)) => {
            record_counters(net, &before, &captures, &analysis, &loaded, run_dir)
        }
        _ => None,
    };
    if !cfg.keep_files {
        fs::remove_dir_all(&received)
            .with_context(|| format!("removing {}", received.display()))?;
        if made {
            fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        }
    }
    Ok(Outcome {
        run_dir: run_dir.to_path_buf(),
        captures,
        analysis,
        report_path,
        link,
        client_errors,
        elapsed: started.elapsed(),
    })
}

/// The server and the N clients, each in its venue's place, run to their
/// end; returns the errors of those that failed.
fn transfer(
    cfg: &Config,
    venue: &Venue,
    listener: TcpListener,
    file: &Path,
    logs: &Path,
    received: &Path,
    shutdown: &Shutdown,
) -> anyhow::Result<Vec<String>> {
    let server_ip = venue.server_ip();
    let mut scfg = server::Config::new(file.to_path_buf(), cfg.clients);
    scfg.bind_ip = server_ip.into();
    scfg.log_dir = logs.to_path_buf();
    scfg.rounds = Some(1);
    scfg.barrier_timeout = Some(BARRIER_TIMEOUT);
    scfg.progress = false;
    scfg.mode = cfg.mode;
    scfg.rate = cfg.rate;
    let server_stop = shutdown.clone();
    let server = netns::spawn_in(venue.server_ns(), "server".into(), move || {
        server::run(listener, scfg, server_stop)
    })?;

    let addr = SocketAddr::from((server_ip, cfg.port));
    let settle = venue.settle();
    let mut clients = Vec::new();
    for k in 1..=cfg.clients {
        let mut c = client::Config::new(addr.to_string());
        c.out_dir = received.join(format!("c{k}"));
        c.log_dir = logs.to_path_buf();
        c.legacy = cfg.protocol == Protocol::Lab;
        c.recv_buffer = cfg.recv_buffer;
        c.start_timeout = START_TIMEOUT;
        c.progress = false;
        // On the path, what the bottleneck still holds arrives after the
        // server is done: wait for it.
        c.linger = c.linger.max(settle);
        c.idle_timeout = c.idle_timeout.max(settle);
        let stop = shutdown.clone();
        clients.push(netns::spawn_in(
            venue.client_ns(),
            format!("client-{k}"),
            move || client::run(c, stop),
        )?);
    }
    info!(
        "{} {} client(s) receiving from {addr}",
        cfg.clients,
        match cfg.protocol {
            Protocol::V1 => "v1",
            Protocol::Lab => "lab-protocol",
        },
    );
    let mut errors = Vec::new();
    for (k, c) in clients.into_iter().enumerate() {
        match c.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => errors.push(format!("client {}: {e:#}", k + 1)),
            Err(_) => errors.push(format!("client {}: its thread panicked", k + 1)),
        }
    }
    match server.join() {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => errors.push(format!("server: {e:#}")),
        Err(_) => errors.push("server: its thread panicked".into()),
    }
    Ok(errors)
}

/// The analysis of the captures that were made (several files are
/// several capture points), or of the logs alone.
fn analyze_run(
    cfg: &Config,
    captures: &[PointCapture],
    loaded: &analyze::logs::LogSet,
) -> anyhow::Result<Analysis> {
    let opts = analyze::Options {
        control_port: cfg.port,
        chunk: crate::protocol::lab::CHUNK,
        log_utc_offset: None,
        conversations: false,
    };
    let paths: Vec<PathBuf> = captures
        .iter()
        .filter_map(|c| match &c.status {
            CaptureStatus::Captured { path, .. } => Some(path.clone()),
            CaptureStatus::Missing { .. } => None,
        })
        .collect();
    let mut analysis = if paths.is_empty() {
        let reasons: Vec<&str> = captures
            .iter()
            .filter_map(|c| match &c.status {
                CaptureStatus::Missing { reason } => Some(reason.as_str()),
                CaptureStatus::Captured { .. } => None,
            })
            .collect();
        let mut why = reasons
            .first()
            .copied()
            .unwrap_or("no capture point")
            .to_string();
        if reasons.iter().any(|r| *r != why) {
            why = reasons.join("; ");
        }
        analyze::from_logs(loaded, &opts, &why)
    } else {
        let mut reader = analyze::reader::Reader::open(&paths).with_context(|| {
            let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            format!("opening {}", shown.join(", "))
        })?;
        analyze::analyze(&mut reader, loaded, &opts, &mut |_, _| {})
    };
    analysis
        .warnings
        .extend(loaded.ignored.iter().map(|i| i.to_string()));
    Ok(analysis)
}

/// `counters.json`: the path, the counters over the run, and the check.
#[derive(serde::Serialize)]
struct CountersFile<'a> {
    topology: link::Topology,
    counters: &'a counters::Snapshot,
    sockets: Vec<counters::SocketDrops>,
    captures: &'a [counters::CaptureCount],
    check: &'a [counters::CheckRow],
}

/// Reads the path's counters after the run, sets them beside the
/// analysis, and writes `counters.json`; on failure a warning, and none.
fn record_counters(
    net: &link::Network,
    before: &counters::Snapshot,
    captures: &[PointCapture],
    analysis: &Analysis,
    loaded: &analyze::logs::LogSet,
    run_dir: &Path,
) -> Option<LinkOutcome> {
    let result = (|| -> anyhow::Result<LinkOutcome> {
        let delta = counters::read(net)
            .context("reading the path's counters")?
            .since(before);
        let counts: Vec<counters::CaptureCount> = captures
            .iter()
            .filter_map(|c| match &c.status {
                CaptureStatus::Captured {
                    path,
                    packets,
                    received,
                    dropped,
                } => Some(counters::CaptureCount {
                    point: c.point,
                    path: path.display().to_string(),
                    interface: c.interface.clone(),
                    packets: *packets,
                    received: *received,
                    dropped: *dropped,
                }),
                CaptureStatus::Missing { .. } => None,
            })
            .collect();
        let names = net.names();
        let check = counters::check(&counters::CheckInputs {
            analysis,
            logs: loaded,
            counters: &delta,
            captures: &counts,
            server_if: &names.server_if,
            router_client_if: &names.router_client_if,
        });
        let sockets = analysis
            .clients
            .iter()
            .map(|r| counters::SocketDrops {
                client_id: r.client_id,
                kernel_drops: r.kernel_drops,
            })
            .collect();
        let file = CountersFile {
            topology: link::Topology::of(net),
            counters: &delta,
            sockets,
            captures: &counts,
            check: &check,
        };
        let path = run_dir.join("counters.json");
        let mut json = serde_json::to_vec_pretty(&file).context("rendering counters.json")?;
        json.push(b'\n');
        fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
        Ok(LinkOutcome {
            counters_path: path,
            counters: delta,
            check,
        })
    })();
    match result {
        Ok(o) => Some(o),
        Err(e) => {
            warn!("no kernel counters: {e:#}");
            None
        }
    }
}

/// One of the suite's tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuiteTest {
    pub size: u64,
    pub clients: u16,
}

/// The original lab's six tests: 100 and 250 MiB to 1, 5 and 10 clients.
pub const SUITE: [SuiteTest; 6] = [
    SuiteTest {
        size: 100 << 20,
        clients: 1,
    },
    SuiteTest {
        size: 100 << 20,
        clients: 5,
    },
    SuiteTest {
        size: 100 << 20,
        clients: 10,
    },
    SuiteTest {
        size: 250 << 20,
        clients: 1,
    },
    SuiteTest {
        size: 250 << 20,
        clients: 5,
    },
    SuiteTest {
        size: 250 << 20,
        clients: 10,
    },
];

/// Runs `tests` one after the other under one suite directory, handing
/// each outcome to `each` as it completes. The test files are made once
/// per size (or `base.source` is sent when it names a file). With
/// `base.link`, all tests run on one path, built first and removed last;
/// each test's counters are its own (read before and after it).
pub fn suite(
    base: &Config,
    tests: &[SuiteTest],
    shutdown: &Shutdown,
    each: &mut dyn FnMut(usize, &SuiteTest, &Outcome) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    let net = base.link.as_ref().map(link::Network::build).transpose()?;
    let venue = match &net {
        Some(net) => Venue::Link(net),
        None => Venue::Loopback,
    };
    let dir = new_run_dir(&base.dir, "suite")?;
    let mut made: Vec<(u64, PathBuf)> = Vec::new();
    for (i, t) in tests.iter().enumerate() {
        if shutdown.is_triggered() {
            bail!("stopped before test {}", i + 1);
        }
        let source = match &base.source {
            Source::File(p) => Source::File(p.clone()),
            Source::Make { .. } => {
                let path = match made.iter().find(|(s, _)| *s == t.size) {
                    Some((_, p)) => p.clone(),
                    None => {
                        let p = dir.join(test_file_name(t.size));
                        make_test_file(&p, t.size)?;
                        made.push((t.size, p.clone()));
                        p
                    }
                };
                Source::File(path)
            }
        };
        let cfg = Config {
            clients: t.clients,
            source,
            ..base.clone()
        };
        let run_dir = dir.join(format!(
            "{}-{}-{}client{}",
            i + 1,
            test_file_name(t.size).trim_end_matches(".bin"),
            t.clients,
            if t.clients == 1 { "" } else { "s" }
        ));
        fs::create_dir(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
        let outcome = match run_at(&cfg, &run_dir, shutdown, &venue) {
            Ok(o) => o,
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                return Err(e);
            }
        };
        each(i, t, &outcome)?;
    }
    if !base.keep_files {
        for (_, p) in &made {
            fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_file_names_say_the_size() {
        assert_eq!(test_file_name(100 << 20), "100MiB.bin");
        assert_eq!(test_file_name(1000), "1000B.bin");
        assert_eq!(test_file_name(0), "0B.bin");
    }

    #[test]
    fn a_made_file_has_its_size_and_is_not_constant() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        make_test_file(&p, 100_003).unwrap();
        let data = fs::read(&p).unwrap();
        assert_eq!(data.len(), 100_003);
        let zeros = data.iter().filter(|&&b| b == 0).count();
        assert!(zeros < 1000, "{zeros} zero bytes of 100003");
        assert!(!dir.path().join("f.bin.part").exists());
    }

    #[test]
    fn run_directories_are_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let a = new_run_dir(dir.path(), "x").unwrap();
        let b = new_run_dir(dir.path(), "x").unwrap();
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
    }

    #[test]
    fn a_taken_control_port_is_a_clear_error() {
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let e = check_ports(port, 1).unwrap_err().to_string();
        assert!(e.contains("is not free") && e.contains("--port"), "{e}");
    }

    #[test]
    fn a_taken_data_port_names_its_client() {
        let held = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let data = held.local_addr().unwrap().port();
        let e = check_ports(data - 2, 3).unwrap_err().to_string();
        assert!(e.contains("(client 2)"), "{e}");
    }
}
