//! Shared pieces of the end-to-end tests: files of known bytes, a server on
//! an ephemeral control port whose data ports are free, client settings,
//! and the one rule for a test whose environment lacks what it needs
//! ([`skip_or_fail`]).

#![allow(dead_code)]

use std::fmt::Display;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub mod v1_peer;

use udplab::protocol::v1;
use udplab::shutdown::Shutdown;
use udplab::{client, server};

/// A test cannot run here because `why` (what is missing). Under CI (`CI`
/// set and not empty, as CI services set it) that is a failure naming it:
/// a test that skips there proves nothing. Elsewhere it prints
/// "SKIPPED: `why`" on stderr; the caller then returns.
#[track_caller]
pub fn skip_or_fail(why: impl Display) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("CI is set, so this test may not skip: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// Whether `tool` can be run (it answers `--version`).
pub fn have(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// `Err(what is missing)` unless this process may run tcpdump on lo
/// (root) and has every one of `tools` (tcpdump among them).
pub fn can_capture_with(tools: &[&str]) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        return Err(format!("tcpdump on lo needs root (euid is {uid})"));
    }
    match tools.iter().find(|t| !have(t)) {
        Some(tool) => Err(format!(
            "{tool} is not installed (scripts/test installs it)"
        )),
        None => Ok(()),
    }
}

/// The original lab's samples, `<CARGO_MANIFEST_DIR>/../shared/lab-samples`
/// (not part of this repository; CI puts a copy of shared/ beside the
/// clone). `None`, through [`skip_or_fail`], where they are absent.
#[track_caller]
pub fn lab_samples() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/lab-samples");
    if dir.is_dir() {
        Some(dir)
    } else {
        skip_or_fail(format_args!(
            "the original lab's samples are not at {}",
            dir.display()
        ));
        None
    }
}

/// The original lab's scripts, `<CARGO_MANIFEST_DIR>/../shared/lab-scripts`
/// (`servidor.py`, `cliente.py`; not part of this repository, as the
/// samples). `None`, through [`skip_or_fail`], where they are absent.
#[track_caller]
pub fn lab_scripts() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/lab-scripts");
    if dir.join("cliente.py").is_file() {
        Some(dir)
    } else {
        skip_or_fail(format_args!(
            "the original lab's scripts are not at {}",
            dir.display()
        ));
        None
    }
}

/// A child process that is killed if the test ends before it does.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The child's exit status; killed, and the test failed, after `limit`.
pub fn wait_with_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process still running after {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The child's output once it has ended; killed, and the test failed,
/// after `limit`.
pub fn wait_output(mut child: Child, limit: Duration) -> std::process::Output {
    wait_with_timeout(&mut child, limit);
    child.wait_with_output().unwrap()
}

/// A child's stderr, read on a thread of its own as it comes, so that a
/// test can wait for a line while the child runs.
pub struct StderrLines {
    text: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl StderrLines {
    /// Takes the child's stderr (it must have been piped).
    pub fn of(child: &mut Child) -> StderrLines {
        let stderr = child.stderr.take().expect("stderr is piped");
        let text = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&text);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        StderrLines {
            text,
            reader: Some(reader),
        }
    }

    /// Wait until `needle` has been written, at most `limit`.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.text.lock().unwrap().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// What has been written so far.
    pub fn snapshot(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Everything written, once the child has ended (its stderr closed).
    pub fn all(mut self) -> String {
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.text.lock().unwrap().clone()
    }
}

/// Connections in TIME_WAIT whose local port is `port`, as `ss -tan` lists
/// them (its lines, for a failure message); `None` where `ss` cannot run.
pub fn time_wait_on(port: u16) -> Option<(usize, String)> {
    let out = std::process::Command::new("ss").arg("-tan").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let local = format!(":{port}");
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.first() == Some(&"TIME-WAIT")
                && fields.get(3).is_some_and(|a| a.ends_with(&local))
        })
        .map(str::to_owned)
        .collect();
    Some((lines.len(), lines.join("\n")))
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failure repeats.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write_file(dir: &Path, name: &str, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let data = bytes(len, seed);
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

/// A control listener on 127.0.0.1 whose next `data_ports` ports are free
/// for UDP right now (the server binds control port + k for client k).
pub fn listener_with_free_data_ports(data_ports: u16) -> TcpListener {
    for _ in 0..200 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let free = (1..=data_ports).all(|k| {
            port.checked_add(k)
                .is_some_and(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
        });
        if free {
            return listener;
        }
    }
    panic!("no control port with free data ports");
}

pub struct RunningServer {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub handle: JoinHandle<anyhow::Result<server::Summary>>,
}

impl RunningServer {
    pub fn join(self) -> anyhow::Result<server::Summary> {
        self.handle.join().expect("server thread panicked")
    }
}

/// Start a server for `file` with `clients` per round; `tune` adjusts the
/// configuration (rounds default to 1).
pub fn start_server(
    file: &Path,
    clients: u16,
    log_dir: &Path,
    tune: impl FnOnce(&mut server::Config),
) -> RunningServer {
    let listener = listener_with_free_data_ports(clients + 2);
    let addr = listener.local_addr().unwrap();
    let mut cfg = server::Config::new(file.to_path_buf(), clients);
    cfg.bind_ip = "127.0.0.1".parse().unwrap();
    cfg.log_dir = log_dir.to_path_buf();
    cfg.rounds = Some(1);
    cfg.progress = false;
    cfg.register_timeout = Duration::from_secs(5);
    cfg.report_timeout = Duration::from_secs(10);
    tune(&mut cfg);
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let handle = thread::spawn(move || server::run(listener, cfg, stop));
    RunningServer {
        addr,
        shutdown,
        handle,
    }
}

/// Client settings for tests: a receive buffer big enough that loopback
/// loses nothing, short timeouts, no progress bars.
pub fn client_config(server: SocketAddr, out: &Path, logs: &Path) -> client::Config {
    let mut cfg = client::Config::new(server.to_string());
    cfg.out_dir = out.to_path_buf();
    cfg.log_dir = logs.to_path_buf();
    cfg.recv_buffer = Some(64 << 20);
    cfg.idle_timeout = Duration::from_millis(500);
    cfg.start_timeout = Duration::from_secs(20);
    cfg.stall_timeout = Duration::from_secs(10);
    cfg.progress = false;
    cfg
}

/// Files in `dir` whose names start with `prefix`, sorted.
pub fn files_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// What a raw test server learned from a client's registration.
pub struct RawClient {
    pub tcp: std::net::TcpStream,
    /// Where the client receives: its TCP peer address and registered port.
    pub udp_to: SocketAddr,
    /// Third byte of the port message: 0 lab, 1 v1.
    pub tag: u8,
}

/// The server's side of the lab's registration, byte for byte, as client 1
/// of a round of 1.
pub fn accept_raw(listener: &TcpListener) -> RawClient {
    use std::io::{Read, Write};
    let (mut tcp, peer) = listener.accept().unwrap();
    tcp.write_all(&1u16.to_le_bytes()).unwrap();
    let mut port = [0u8; 3];
    tcp.read_exact(&mut port).unwrap();
    tcp.write_all(&1u16.to_le_bytes()).unwrap();
    RawClient {
        tcp,
        udp_to: SocketAddr::new(peer.ip(), u16::from_le_bytes([port[0], port[1]])),
        tag: port[2],
    }
}

/// A UDP socket on the data port of client 1 (control port + 1).
pub fn data_socket(listener: &TcpListener) -> UdpSocket {
    let control = listener.local_addr().unwrap().port();
    UdpSocket::bind(("127.0.0.1", control + 1)).unwrap()
}

/// Run one test client (see [`client_config`]) to its end.
pub fn receive(server: SocketAddr, out: &Path, logs: &Path) -> anyhow::Result<client::Outcome> {
    client::run(client_config(server, out, logs), Shutdown::new())
}

/// Assert a client got the whole file, byte for byte.
pub fn assert_received(o: &client::Outcome, data: &[u8]) {
    assert!(
        o.complete,
        "client {:?}: {:?}",
        o.log.client_id, o.log.error
    );
    let path = o.output.as_ref().expect("a complete transfer has a file");
    assert_eq!(std::fs::read(path).unwrap(), data);
}

/// A process's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a directory holds (the run directories of `udplab lab --dir`).
pub fn run_dirs(runs: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// The `report.json` of a lab run directory.
pub fn report_json(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap()
}

/// The server's side of a v1 transfer's start, on a registered client's
/// control connection: `announce`, then `Start`.
pub fn announce_and_start(tcp: &mut std::net::TcpStream, announce: v1::Announce) {
    use std::io::Write;
    tcp.write_all(&v1::Message::Announce(announce).encode())
        .unwrap();
    tcp.write_all(&v1::Message::Start { time_us: 0 }.encode())
        .unwrap();
}

/// A v1 data datagram: header (send time 0) and `payload`.
pub fn v1_datagram(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut d = v1::DataHeader {
        flags,
        seq,
        send_time_us: 0,
    }
    .emit()
    .to_vec();
    d.extend_from_slice(payload);
    d
}
