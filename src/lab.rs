//! The whole experiment in one command, on loopback: a test file, the
//! server, a capture on `lo`, N clients at once (each with its own
//! sockets, as separate machines' clients would have), then `analyze` on
//! the capture and the logs.
//!
//! Everything lands in a fresh run directory: the capture, the logs,
//! `report.json`, and the made test file and the received files, which are
//! removed at the end unless kept. Without the right to capture (or in a build without
//! the `capture` feature) the transfer still runs and the report comes
//! from the logs alone, saying why the wire column is empty.

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use log::{info, warn};

use crate::analyze::{self, Analysis};
use crate::protocol::{self, Mode, Protocol};
use crate::shutdown::Shutdown;
use crate::{client, net, server};

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
    /// Capture on `lo` (when this build and the process can).
    pub capture: bool,
    pub keep_files: bool,
    /// TCP control port on 127.0.0.1; data from port + k.
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

/// What one run did.
#[derive(Debug)]
pub struct Outcome {
    pub run_dir: PathBuf,
    pub capture: CaptureStatus,
    pub analysis: Analysis,
    pub report_path: PathBuf,
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

/// A capture running on its own thread.
struct RunningCapture {
    stop: Shutdown,
    thread: thread::JoinHandle<Result<CaptureStatus, String>>,
}

#[cfg(feature = "capture")]
fn start_capture(cfg: &Config, path: &Path) -> Result<RunningCapture, String> {
    use crate::capture::live;
    let mut c = live::Config::new("lo", path);
    c.control_port = cfg.port;
    c.snaplen = cfg.snaplen;
    c.buffer = cfg.capture_buffer;
    let cap = live::Capture::open(c).map_err(|e| e.to_string())?;
    let stop = Shutdown::new();
    let s = stop.clone();
    let thread = thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            let sum = cap.run(&s, &mut |_| {}).map_err(|e| e.to_string())?;
            Ok(CaptureStatus::Captured {
                path: sum.path,
                packets: sum.packets,
                received: sum.received,
                dropped: sum.dropped,
            })
        })
        .map_err(|e| format!("starting the capture thread: {e}"))?;
    Ok(RunningCapture { stop, thread })
}

#[cfg(not(feature = "capture"))]
fn start_capture(_cfg: &Config, _path: &Path) -> Result<RunningCapture, String> {
    Err(crate::capture::unavailable()
        .unwrap_or("capture unavailable")
        .to_string())
}

/// Runs the experiment in `run_dir` (made by [`new_run_dir`]).
pub fn run(cfg: &Config, run_dir: &Path, shutdown: &Shutdown) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    if cfg.clients == 0 {
        bail!("a lab run needs at least one client");
    }
    let listener = match check_ports(cfg.port, cfg.clients) {
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

    let capture_path = run_dir.join("capture.pcapng");
    let capture = if cfg.capture {
        match start_capture(cfg, &capture_path) {
            Ok(c) => {
                info!("capturing on lo into {}", capture_path.display());
                Ok(c)
            }
            Err(reason) => {
                warn!("no capture: {reason}; the report's wire column will be empty");
                Err(reason)
            }
        }
    } else {
        Err("not asked for (--no-capture)".to_string())
    };

    let mut scfg = server::Config::new(file.clone(), cfg.clients);
    scfg.bind_ip = Ipv4Addr::LOCALHOST.into();
    scfg.log_dir = logs.clone();
    scfg.rounds = Some(1);
    scfg.barrier_timeout = Some(BARRIER_TIMEOUT);
    scfg.progress = false;
    scfg.mode = cfg.mode;
    scfg.rate = cfg.rate;
    let server_stop = shutdown.clone();
    let server = thread::Builder::new()
        .name("server".into())
        .spawn(move || server::run(listener, scfg, server_stop))
        .context("starting the server thread")?;

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, cfg.port));
    let mut clients = Vec::new();
    for k in 1..=cfg.clients {
        let mut c = client::Config::new(addr.to_string());
        c.out_dir = received.join(format!("c{k}"));
        c.log_dir = logs.clone();
        c.legacy = cfg.protocol == Protocol::Lab;
        c.recv_buffer = cfg.recv_buffer;
        c.start_timeout = START_TIMEOUT;
        c.progress = false;
        let stop = shutdown.clone();
        clients.push(
            thread::Builder::new()
                .name(format!("client-{k}"))
                .spawn(move || client::run(c, stop))
                .context("starting a client thread")?,
        );
    }
    info!(
        "{} {} client(s) receiving from 127.0.0.1:{}",
        cfg.clients,
        match cfg.protocol {
            Protocol::V1 => "v1",
            Protocol::Lab => "lab-protocol",
        },
        cfg.port
    );
    let mut client_errors = Vec::new();
    for (k, c) in clients.into_iter().enumerate() {
        match c.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => client_errors.push(format!("client {}: {e:#}", k + 1)),
            Err(_) => client_errors.push(format!("client {}: its thread panicked", k + 1)),
        }
    }
    let server_result = server.join();

    // The last client has logged: stop the capture.
    let capture = match capture {
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
    };
    match server_result {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => client_errors.push(format!("server: {e:#}")),
        Err(_) => client_errors.push("server: its thread panicked".into()),
    }
    for e in &client_errors {
        warn!("{e}");
    }

    let loaded = analyze::logs::load(std::slice::from_ref(&logs))?;
    let opts = analyze::Options {
        control_port: cfg.port,
        chunk: crate::protocol::lab::CHUNK,
        log_utc_offset: None,
    };
    let mut analysis = match &capture {
        CaptureStatus::Captured { path, .. } => {
            let mut reader = analyze::reader::Reader::open(std::slice::from_ref(path))
                .with_context(|| format!("opening {}", path.display()))?;
            analyze::analyze(&mut reader, &loaded, &opts, &mut |_, _| {})
        }
        CaptureStatus::Missing { reason } => analyze::from_logs(&loaded, &opts, reason),
    };
    analysis
        .warnings
        .extend(loaded.ignored.iter().map(|i| i.to_string()));

    let report_path = run_dir.join("report.json");
    let mut json = Vec::new();
    analyze::report::write(&mut json, &analysis, analyze::report::Format::Json)
        .context("rendering report.json")?;
    fs::write(&report_path, json).with_context(|| format!("writing {}", report_path.display()))?;
    if !cfg.keep_files {
        fs::remove_dir_all(&received)
            .with_context(|| format!("removing {}", received.display()))?;
        if made {
            fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        }
    }
    Ok(Outcome {
        run_dir: run_dir.to_path_buf(),
        capture,
        analysis,
        report_path,
        client_errors,
        elapsed: started.elapsed(),
    })
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
/// per size (or `base.source` is sent when it names a file).
pub fn suite(
    base: &Config,
    tests: &[SuiteTest],
    shutdown: &Shutdown,
    each: &mut dyn FnMut(usize, &SuiteTest, &Outcome) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
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
        let outcome = match run(&cfg, &run_dir, shutdown) {
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
