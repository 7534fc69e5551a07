//! How far `udplab analyze` may be trusted, on runs made for the occasion:
//! a capture that missed frames or was cut short cannot place the loss
//! (the verdict says "cannot tell"), only the logs of the captured run are
//! used (whatever the analysing machine's time zone), and every `--logs`
//! input that is not used is accounted for.
//!
//! Each test makes its inputs in a temporary directory with real tools on
//! loopback: udplab's server and clients; the original lab's Python
//! scripts (shared/lab-scripts, run from a copy whose address constants
//! `sed` rewrites to 127.0.0.1, never copied into this repository);
//! tcpdump; `head -c`. Then it runs `udplab analyze` and checks its JSON
//! and its exit status. What the inputs must be for a case to mean
//! anything (tcpdump's drop count, the logs written, file sizes) is checked
//! first, from the files themselves, not from the analyzer.
//!
//! The tests need root (tcpdump on lo), tcpdump, and python3 with tqdm
//! (scripts/test installs them); where one is missing they fail under CI
//! and are skipped elsewhere ([`common::skip_or_fail`]). They take turns
//! ([`one_at_a_time`]): each one's transfers and capture would otherwise
//! compete for the same two cores, and the lab's scripts need port 5005.
//! Every child runs under a time limit and is killed when the test ends
//! early ([`Proc`]).

mod common;

use common::skip_or_fail;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_udplab");

/// The port the original lab's server always binds (no SO_REUSEADDR).
const LAB_PORT: u16 = 5005;

/// Held by each test for its whole run.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// `Err(what is missing)` unless this process may run tcpdump on lo.
fn can_capture() -> Result<(), String> {
    common::can_capture_with(&["tcpdump"])
}

macro_rules! require_capture {
    () => {
        if let Err(why) = can_capture() {
            skip_or_fail(why);
            return;
        }
    };
}

// ---------------------------------------------------------------------
// Children, bounded in time and killed when a test ends early.

/// A child process of a test, its stdout and stderr in files of the test's
/// directory. Dropped while still running (the test failed, or panicked),
/// it is killed and reaped.
struct Proc {
    name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// A child that ended, and what it wrote.
struct Done {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Proc {
    fn start(name: &str, cmd: &mut Command, dir: &Path) -> Proc {
        Proc::spawn(name, cmd.stdin(Stdio::null()), dir)
    }

    /// Started with `input` on its standard input, which is then closed.
    fn start_with_input(name: &str, cmd: &mut Command, dir: &Path, input: &[u8]) -> Proc {
        let mut p = Proc::spawn(name, cmd.stdin(Stdio::piped()), dir);
        let mut stdin = p.child.stdin.take().expect("a piped stdin");
        stdin
            .write_all(input)
            .unwrap_or_else(|e| panic!("writing to {name}'s stdin: {e}"));
        p
    }

    fn spawn(name: &str, cmd: &mut Command, dir: &Path) -> Proc {
        // Names repeat (analyze runs several times): number the files.
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let stdout = dir.join(format!("{n:02}-{name}.stdout"));
        let stderr = dir.join(format!("{n:02}-{name}.stderr"));
        let file = |p: &Path| File::create(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let child = cmd
            .stdout(file(&stdout))
            .stderr(file(&stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            stdout,
            stderr,
        }
    }

    /// Not yet reaped: its pid is still its own.
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn signal(&mut self, sig: libc::c_int) {
        if self.running() {
            // SAFETY: kill(2) on our own child, which has not been reaped.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, sig);
            }
        }
    }

    fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits at most `limit` for the child to end; after that it is killed
    /// and the test fails, showing what it wrote on stderr.
    fn wait(mut self, limit: Duration) -> Done {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name))
            {
                break status;
            }
            if start.elapsed() > limit {
                self.child.kill().ok();
                self.child.wait().ok();
                panic!(
                    "{} did not end within {limit:?}; its stderr: {}",
                    self.name,
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Done {
            status,
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: self.stderr_text(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

/// Polls `ready` every 5 ms for at most `limit`; fails when `proc` ends or
/// the time is up, saying `what` was awaited.
fn wait_for(proc: &mut Proc, what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            proc.running(),
            "{} ended while waiting for {what}; its stderr: {}",
            proc.name,
            proc.stderr_text()
        );
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}; {}'s stderr: {}",
            proc.name,
            proc.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------
// Ports.

/// A control port for a run: one the kernel picks for TCP (port 0, then
/// released), never 5005, whose data ports port+1..=port+`clients` are free
/// for UDP too.
fn free_port(clients: u16) -> u16 {
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding a TCP port on 127.0.0.1")
            .port();
        let free = port != LAB_PORT
            && (1..=clients).all(|k| {
                port.checked_add(k)
                    .is_some_and(|p| p != LAB_PORT && UdpSocket::bind(("127.0.0.1", p)).is_ok())
            });
        if free {
            return port;
        }
    }
    panic!("no free control port with {clients} free data ports after it");
}

/// Whether something listens on TCP `port`, by /proc/net/tcp: connecting
/// would register as a client.
fn listening(port: u16) -> bool {
    tcp_states(port).iter().any(|s| s == "0A")
}

/// The states of the IPv4 and IPv6 TCP sockets whose local port is
/// `port`, by /proc/net/tcp and tcp6 (`06` is TIME_WAIT, `0A` LISTEN).
fn tcp_states(port: u16) -> Vec<String> {
    let want = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|t| {
            let table = fs::read_to_string(t).unwrap_or_default();
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    (f.len() > 3 && f[1].ends_with(&want)).then(|| f[3].to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits until the lab's server can bind 127.0.0.1:5005 as it does,
/// without SO_REUSEADDR, and send from UDP 5006 and 5007. Its own last run
/// leaves 5005 in TIME_WAIT for a minute (it closes each client's
/// connection at the next accept): that is waited out, at most 70 s.
/// `Err(why)` when something else holds a port.
fn lab_ports_free() -> Result<(), String> {
    use socket2::{Domain, Socket, Type};
    let start = Instant::now();
    let mut noted = false;
    loop {
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, LAB_PORT);
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
        let Err(e) = sock.bind(&addr.into()) else {
            break;
        };
        let states = tcp_states(LAB_PORT);
        let time_wait_only = !states.is_empty() && states.iter().all(|s| s == "06");
        if !time_wait_only || start.elapsed() > Duration::from_secs(70) {
            return Err(format!(
                "the lab's server must bind 127.0.0.1:{LAB_PORT} without SO_REUSEADDR, \
                 and cannot ({e}); sockets on port {LAB_PORT} in states {states:?} \
                 (see `ss -tan sport = :{LAB_PORT}`)"
            ));
        }
        if !noted {
            eprintln!("NOTE: waiting for port {LAB_PORT}'s TIME_WAIT connections to end");
            noted = true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for p in [LAB_PORT + 1, LAB_PORT + 2] {
        UdpSocket::bind(("127.0.0.1", p))
            .map_err(|e| format!("the lab's server sends from UDP port {p}, taken: {e}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------
// tcpdump.

/// tcpdump on lo, snap length 96 (UDP payloads cut, as the lab captured).
struct Tcpdump {
    proc: Proc,
    pcap: PathBuf,
}

impl Tcpdump {
    /// Started, and capturing: tcpdump says "listening on" once its filter
    /// is in. `buffer_kib` is its kernel buffer (`-B`).
    fn start(dir: &Path, name: &str, filter: &str, buffer_kib: u32) -> Tcpdump {
        let pcap = dir.join(name);
        let mut proc = Proc::start(
            "tcpdump",
            Command::new("tcpdump")
                .args(["-i", "lo", "-n", "-s", "96", "-B", &buffer_kib.to_string()])
                // Stay root: the file is in a directory only root may enter.
                .args(["-Z", "root", "-w"])
                .arg(&pcap)
                .arg(filter),
            dir,
        );
        let err = proc.stderr.clone();
        wait_for(
            &mut proc,
            "tcpdump listening",
            Duration::from_secs(10),
            || fs::read_to_string(&err).is_ok_and(|t| t.contains("listening on")),
        );
        Tcpdump { proc, pcap }
    }

    /// `kill -STOP` for `pause`, then `-CONT`: its buffer fills and the
    /// kernel drops what does not fit.
    fn pause(&mut self, pause: Duration) {
        self.proc.signal(libc::SIGSTOP);
        std::thread::sleep(pause);
        self.proc.signal(libc::SIGCONT);
    }

    /// Ctrl-C; the file and "N packets dropped by kernel" from its stderr.
    fn stop(mut self) -> (PathBuf, u64) {
        self.proc.signal(libc::SIGINT);
        let done = self.proc.wait(Duration::from_secs(10));
        assert!(done.status.success(), "tcpdump: {}", done.stderr);
        let dropped = done
            .stderr
            .lines()
            .find_map(|l| l.strip_suffix(" packets dropped by kernel"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no \"packets dropped by kernel\" in {}", done.stderr));
        (self.pcap, dropped)
    }
}

/// One UDP frame of a capture, as its bytes say (read here, not by udplab).
struct UdpFrame {
    src: u16,
    dst: u16,
    /// Its length on the wire (the record's original length).
    wire_len: usize,
    /// Where its record ends in the file.
    end: usize,
}

/// The UDP/IPv4 frames of an Ethernet pcap as tcpdump writes it (little
/// endian), up to its last whole record.
fn udp_frames(path: &Path) -> Vec<UdpFrame> {
    let b = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u16_be = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    assert!(b.len() >= 24, "{}: no pcap header", path.display());
    assert!(
        [0xa1b2_c3d4, 0xa1b2_3c4d].contains(&u32_at(0)) && u32_at(20) == 1,
        "{}: not a little-endian Ethernet pcap",
        path.display()
    );
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let caplen = u32_at(at + 8) as usize;
        let wire_len = u32_at(at + 12) as usize;
        let (data, end) = (at + 16, at + 16 + caplen);
        if end > b.len() {
            break;
        }
        // Ethernet (14) + IPv4 (IHL) + UDP ports.
        if caplen >= 14 + 20 + 4 && u16_be(data + 12) == 0x0800 && b[data + 14 + 9] == 17 {
            let udp = data + 14 + usize::from(b[data + 14] & 0x0f) * 4;
            if udp + 4 <= end {
                out.push(UdpFrame {
                    src: u16_be(udp),
                    dst: u16_be(udp + 2),
                    wire_len,
                    end,
                });
            }
        }
        at = end;
    }
    out
}

// ---------------------------------------------------------------------
// udplab runs and their logs.

/// How a run is captured.
struct CaptureHow {
    /// tcpdump's kernel buffer, KiB.
    buffer_kib: u32,
    /// `kill -STOP` tcpdump this long once the transfer is under way.
    pause: Option<Duration>,
}

/// A run of udplab's server and clients.
struct Run {
    port: u16,
    clients: u16,
    logs: PathBuf,
    /// The capture and tcpdump's drop count, when captured.
    capture: Option<(PathBuf, u64)>,
}

impl Run {
    fn pcap(&self) -> &Path {
        &self.capture.as_ref().expect("a captured run").0
    }

    fn dropped(&self) -> u64 {
        self.capture.as_ref().expect("a captured run").1
    }

    /// The log of `role` (`'S'` or `'C'`) for client `k`.
    fn log(&self, role: char, k: u16) -> PathBuf {
        let logs = common::files_with_prefix(&self.logs, &format!("{role}{k}-"));
        assert_eq!(
            logs.len(),
            1,
            "one {role}{k} log in {}",
            self.logs.display()
        );
        logs.into_iter().next().unwrap()
    }

    fn all_logs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = (1..=self.clients)
            .flat_map(|k| [self.log('S', k), self.log('C', k)])
            .collect();
        v.sort();
        v
    }
}

/// `udplab server --clients N` for `file` on control port `port`, and N
/// `udplab client`s (`--legacy`: the lab's protocol) at once, logs in
/// `dir/logs`, captured as `how` says into `dir/run.pcap`. Checked before
/// it is returned: one S and one C log per client, the server sent the
/// whole file, each client's log tells the size of the file it wrote.
fn udplab_run(
    dir: &Path,
    port: u16,
    file: &Path,
    clients: u16,
    legacy: bool,
    how: Option<CaptureHow>,
) -> Run {
    fs::create_dir_all(dir).expect("run directory");
    let logs = dir.join("logs");
    let mut tcpdump = how.as_ref().map(|h| {
        let filter = format!(
            "tcp port {port} or udp portrange {}-{}",
            port + 1,
            port + clients
        );
        Tcpdump::start(dir, "run.pcap", &filter, h.buffer_kib)
    });
    let mut server = Proc::start(
        "server",
        Command::new(BIN)
            .args(["-q", "server", "--bind", "127.0.0.1", "--rounds", "1"])
            .args([
                "--clients",
                &clients.to_string(),
                "--port",
                &port.to_string(),
            ])
            .arg("--file")
            .arg(file)
            .arg("--log-dir")
            .arg(&logs)
            .args(["--barrier-timeout", "20s"]),
        dir,
    );
    wait_for(
        &mut server,
        "the server's control port",
        Duration::from_secs(10),
        || listening(port),
    );
    let procs: Vec<Proc> = (1..=clients)
        .map(|k| {
            let mut cmd = Command::new(BIN);
            cmd.args(["-q", "client", "--server", &format!("127.0.0.1:{port}")])
                .arg("--out")
                .arg(dir.join(format!("out{k}")))
                .arg("--log-dir")
                .arg(&logs)
                .args(["--start-timeout", "20s"]);
            if legacy {
                cmd.arg("--legacy");
            }
            Proc::start(&format!("client{k}"), &mut cmd, dir)
        })
        .collect();
    if let (Some(t), Some(pause)) = (&mut tcpdump, how.as_ref().and_then(|h| h.pause)) {
        // Under way once data reaches the file (the registrations alone
        // are a few KiB); a transfer that ended first is not paused.
        let start = Instant::now();
        while server.running()
            && start.elapsed() < Duration::from_secs(20)
            && fs::metadata(&t.pcap).map_or(0, |m| m.len()) < 256 << 10
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        if server.running() {
            t.pause(pause);
        }
    }
    for c in procs {
        let name = c.name.clone();
        let done = c.wait(Duration::from_secs(30));
        assert!(
            matches!(done.status.code(), Some(0 | 2)),
            "{name}: {:?} {}{}",
            done.status,
            done.stdout,
            done.stderr
        );
    }
    let done = server.wait(Duration::from_secs(30));
    assert!(
        matches!(done.status.code(), Some(0 | 2)),
        "server: {:?} {}",
        done.status,
        done.stderr
    );
    let run = Run {
        port,
        clients,
        logs,
        capture: tcpdump.map(Tcpdump::stop),
    };
    let size = fs::metadata(file).expect("the file sent").len();
    for k in 1..=clients {
        let s = run.log('S', k);
        assert_eq!(log_num(&s, "bytes_sent"), size, "{}", s.display());
        let c = run.log('C', k);
        let output = log_value(&c, "output").expect("the client log names its file");
        let written = fs::metadata(&output).map(|m| m.len()).ok();
        // The lab's protocol appends what arrives; v1 writes each chunk at
        // its place in a file of the full size.
        let want = if legacy {
            log_num(&c, "bytes_received")
        } else {
            size
        };
        assert_eq!(
            written,
            Some(want),
            "{}: the file written ({output}) against the log",
            c.display()
        );
    }
    run
}

/// The value of `key` in a udplab log (`key: value` lines).
fn log_value(path: &Path, key: &str) -> Option<String> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(": "))
            .map(str::to_string)
    })
}

fn log_num(path: &Path, key: &str) -> u64 {
    log_value(path, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{}: no number for {key}", path.display()))
}

// ---------------------------------------------------------------------
// udplab analyze.

struct Analyzed {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Analyzed {
    /// The JSON report on stdout.
    fn report(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "analyze printed no JSON report ({e}); exit {:?}, stderr: {}\nstdout: {}",
                self.code, self.stderr, self.stdout
            )
        })
    }

    /// The report, after checking the exit status is `code`.
    fn report_with(&self, code: i32) -> Value {
        assert_eq!(
            self.code,
            Some(code),
            "analyze's exit status; stderr: {}",
            self.stderr
        );
        self.report()
    }
}

/// `udplab -q analyze ARGS` with `TZ` set to `tz` when given.
fn analyze(dir: &Path, args: &[&dyn AsRef<std::ffi::OsStr>], tz: Option<&str>) -> Analyzed {
    let mut cmd = Command::new(BIN);
    cmd.args(["-q", "analyze"]);
    for a in args {
        cmd.arg(a);
    }
    if let Some(tz) = tz {
        cmd.env("TZ", tz);
    }
    let done = Proc::start("analyze", &mut cmd, dir).wait(Duration::from_secs(60));
    Analyzed {
        code: done.status.code(),
        stdout: done.stdout,
        stderr: done.stderr,
    }
}

fn clients(report: &Value) -> &Vec<Value> {
    report["clients"]
        .as_array()
        .unwrap_or_else(|| panic!("no clients array in {report:#}"))
}

/// The client row of client `k`.
fn row(report: &Value, k: u16) -> &Value {
    clients(report)
        .iter()
        .find(|r| r["client_id"] == k)
        .unwrap_or_else(|| panic!("no row for client {k} in {:#}", report["clients"]))
}

fn text_of(p: &Path) -> String {
    p.display().to_string()
}

fn verdict(row: &Value) -> &str {
    row["verdict"]
        .as_str()
        .unwrap_or_else(|| panic!("no verdict in {row:#}"))
}

// ---------------------------------------------------------------------
// Case 1: a capture that missed frames.

/// A lab-protocol run: `udplab server --clients 2` of a `size` file of
/// pseudo-random bytes to two `udplab client --legacy`, captured as `how`
/// says.
fn lab_protocol_run(dir: &Path, size: usize, how: CaptureHow) -> Run {
    fs::create_dir_all(dir).expect("run directory");
    let (file, _) = common::write_file(dir, "data.bin", size, 41);
    udplab_run(dir, free_port(2), &file, 2, true, Some(how))
}

/// The data frames the file holds for each client (its full chunks), by
/// (server port, client port).
fn data_frames_on_file(pcap: &Path) -> BTreeMap<(u16, u16), u64> {
    let mut n = BTreeMap::new();
    // The lab protocol's chunks are 1024 bytes (the runs' files are whole
    // chunks): Ethernet, IPv4 and UDP around them. The name and size
    // datagrams are shorter, and a capture that drops packets may miss them.
    for f in udp_frames(pcap)
        .into_iter()
        .filter(|f| f.wire_len == 14 + 20 + 8 + 1024)
    {
        *n.entry((f.src, f.dst)).or_insert(0u64) += 1;
    }
    n
}

/// For each client: datagrams its log proves reached its host (received,
/// or dropped by its kernel) beyond the data frames the capture holds.
fn missed_by_capture(run: &Run) -> BTreeMap<u16, u64> {
    let on_file = data_frames_on_file(run.pcap());
    (1..=run.clients)
        .map(|k| {
            let c = run.log('C', k);
            let key = (
                run.port + k,
                u16::try_from(log_num(&c, "client_port")).expect("a port"),
            );
            let reached = log_num(&c, "datagrams_received") + log_num(&c, "kernel_drops");
            let held = on_file.get(&key).copied().unwrap_or(0);
            (k, reached.saturating_sub(held))
        })
        .collect()
}

#[test]
fn a_capture_that_missed_frames_cannot_place_the_loss() {
    require_capture!();
    let _turn = one_at_a_time();
    let tmp = tempfile::tempdir().expect("temp dir");
    // The pause makes tcpdump's buffer overflow for sure; if it still
    // dropped nothing (the transfer ended first), once more with more data.
    let mut run = None;
    for (attempt, size) in [(1, 40 << 20), (2, 80 << 20)] {
        let dir = tmp.path().join(format!("attempt{attempt}"));
        let how = CaptureHow {
            buffer_kib: 256,
            pause: Some(Duration::from_millis(300)),
        };
        let r = lab_protocol_run(&dir, size, how);
        let missed = missed_by_capture(&r);
        if r.dropped() > 0 && missed.values().any(|&n| n > 0) {
            run = Some(r);
            break;
        }
        eprintln!(
            "NOTE: attempt {attempt}: tcpdump dropped {} packets, the capture missed {missed:?}",
            r.dropped()
        );
    }
    let run = run.expect("tcpdump dropped packets that the logs show reached the clients");
    let report = analyze(
        tmp.path(),
        &[
            &run.pcap(),
            &"--logs",
            &run.logs,
            &"--port",
            &run.port.to_string(),
            &"--format",
            &"json",
        ],
        None,
    )
    .report_with(0);
    assert_eq!(
        report["captures"][0]["dropped"],
        Value::Null,
        "a pcap has no statistics block: the file does not say it dropped"
    );
    let on_file = data_frames_on_file(run.pcap());
    let mut blind = 0;
    for k in 1..=run.clients {
        let r = row(&report, k);
        let c = run.log('C', k);
        let client_port = log_num(&c, "client_port");
        assert_eq!(r["client_port"], client_port, "client {k}'s log: {r:#}");
        let wire = r["wire_data_frames"]
            .as_u64()
            .unwrap_or_else(|| panic!("client {k}: no wire_data_frames: {r:#}"));
        assert_eq!(
            Some(&wire),
            on_file.get(&(run.port + k, client_port as u16)),
            "client {k}: data frames, against the file's own count: {r:#}"
        );
        let received = log_num(&c, "datagrams_received");
        let drops = log_num(&c, "kernel_drops");
        let Some(excess) = (received + drops).checked_sub(wire).filter(|&n| n > 0) else {
            continue;
        };
        blind += 1;
        let what = format!(
            "client {k}: its log proves {received} received + {drops} dropped by its kernel \
             = {} datagrams reached its host, the capture holds {wire}: it missed {excess} \
             (tcpdump: {} packets dropped by kernel)",
            received + drops,
            run.dropped()
        );
        assert_eq!(
            r["lost_before_capture_bytes"],
            Value::Null,
            "{what}, so no loss can be placed before it: {r:#}"
        );
        assert_eq!(
            r["lost_after_capture_bytes"],
            Value::Null,
            "{what}, so no loss can be placed after it: {r:#}"
        );
        assert!(
            r["capture_missed_datagrams"]
                .as_u64()
                .is_some_and(|n| n >= excess),
            "{what}: capture_missed_datagrams: {r:#}"
        );
        assert_eq!(
            r["account"]["capture_blind"]["why"], "capture_missed",
            "{what}: account.capture_blind: {r:#}"
        );
        let v = verdict(r);
        assert!(v.starts_with("cannot tell"), "{what}: {v}");
        assert!(!v.contains("lost before the capture point"), "{what}: {v}");
    }
    assert!(
        blind > 0,
        "no client's log shows datagrams the capture missed: {:#}",
        report["clients"]
    );
}

// ---------------------------------------------------------------------
// Case 2: a capture cut short.

#[test]
fn a_capture_cut_short_cannot_place_the_loss_of_the_flows_it_cuts() {
    require_capture!();
    let _turn = one_at_a_time();
    let tmp = tempfile::tempdir().expect("temp dir");
    // A capture that missed nothing, so that only the cut blinds it.
    let mut run = None;
    for attempt in 1..=2 {
        let dir = tmp.path().join(format!("attempt{attempt}"));
        let how = CaptureHow {
            buffer_kib: 32 << 10,
            pause: None,
        };
        let r = lab_protocol_run(&dir, 40 << 20, how);
        if r.dropped() == 0 {
            run = Some(r);
            break;
        }
        eprintln!(
            "NOTE: attempt {attempt}: tcpdump dropped {} packets",
            r.dropped()
        );
    }
    let run = run.expect("a capture with no packet dropped by tcpdump");
    const CUT: usize = 5_000_000;
    let full = fs::metadata(run.pcap()).expect("run.pcap").len();
    assert!(
        full > CUT as u64 + 1_000_000,
        "run.pcap is only {full} bytes"
    );
    let cut = tmp.path().join("cut.pcap");
    let out = File::create(&cut).expect("cut.pcap");
    let status = Command::new("head")
        .args(["-c", &CUT.to_string()])
        .arg(run.pcap())
        .stdout(out)
        .status()
        .expect("head -c");
    assert!(status.success(), "head -c: {status}");
    assert_eq!(fs::metadata(&cut).map(|m| m.len()).ok(), Some(CUT as u64));

    // Flows whose last frame lies beyond the cut, by the full file.
    let mut last_end: BTreeMap<u16, usize> = BTreeMap::new();
    for f in udp_frames(run.pcap()) {
        let end = last_end.entry(f.src).or_default();
        *end = (*end).max(f.end);
    }
    let cut_ends: Vec<u16> = (1..=run.clients)
        .filter(|k| last_end.get(&(run.port + k)).is_some_and(|&e| e > CUT))
        .collect();
    assert!(
        !cut_ends.is_empty(),
        "the cut at {CUT} bytes ends no client's flow: {last_end:?}"
    );

    let a = analyze(
        tmp.path(),
        &[
            &cut,
            &"--logs",
            &run.logs,
            &"--port",
            &run.port.to_string(),
            &"--format",
            &"json",
        ],
        None,
    );
    let report = a.report_with(1);
    assert!(
        a.stderr.contains("error") && a.stderr.contains(&text_of(&cut)),
        "the cut is an error on stderr: {}",
        a.stderr
    );
    for k in cut_ends {
        let r = row(&report, k);
        let what = format!(
            "client {k}: cut.pcap ends at byte {CUT}, before its flow does (its last frame \
             ends at byte {} of run.pcap)",
            last_end[&(run.port + k)]
        );
        assert_eq!(
            r["lost_before_capture_bytes"],
            Value::Null,
            "{what}, so no loss can be placed before the capture point: {r:#}"
        );
        assert_eq!(
            r["lost_after_capture_bytes"],
            Value::Null,
            "{what}, so no loss can be placed after the capture point: {r:#}"
        );
        assert_eq!(r["capture_cut_short"], true, "{what}: {r:#}");
        assert_eq!(
            r["account"]["capture_blind"]["why"], "cut_short",
            "{what}: account.capture_blind: {r:#}"
        );
        let v = verdict(r);
        assert!(v.starts_with("cannot tell"), "{what}: {v}");
        assert!(
            !v.contains("bytes lost before the capture point"),
            "{what}: {v}"
        );
        assert!(!v.contains("more than the wire carried"), "{what}: {v}");
    }
}

// ---------------------------------------------------------------------
// Case 3: logs of another run.

/// A 1-client run, then (1.1 s later: log names have second resolution) a
/// 3-client run of the same file on the same control port, as the lab's
/// runs all used 5005; both captured, each with its own logs folder.
fn two_runs(dir: &Path) -> (Run, Run) {
    let (file, _) = common::write_file(dir, "4MiB.bin", 4 << 20, 3);
    let port = free_port(3);
    let how = || {
        Some(CaptureHow {
            buffer_kib: 32 << 10,
            pause: None,
        })
    };
    let one = udplab_run(&dir.join("run1"), port, &file, 1, false, how());
    std::thread::sleep(Duration::from_millis(1100));
    let three = udplab_run(&dir.join("run3"), port, &file, 3, false, how());
    (one, three)
}

/// `logs` copied into `into`, each path mapped to its copy.
fn copy_logs(logs: &[PathBuf], into: &Path) -> BTreeMap<PathBuf, PathBuf> {
    fs::create_dir_all(into).expect("logs folder");
    logs.iter()
        .map(|l| {
            let to = into.join(l.file_name().expect("a log file name"));
            fs::copy(l, &to).unwrap_or_else(|e| panic!("copying {}: {e}", l.display()));
            (l.clone(), to)
        })
        .collect()
}

/// The `logs.left_out` entry of `path`.
fn left_out<'a>(report: &'a Value, path: &Path) -> &'a Value {
    let logs = &report["logs"];
    logs["left_out"]
        .as_array()
        .and_then(|v| v.iter().find(|e| e["path"] == text_of(path).as_str()))
        .unwrap_or_else(|| panic!("{} is not in logs.left_out: {logs:#}", path.display()))
}

#[test]
fn only_the_logs_of_the_captured_run_are_used() {
    require_capture!();
    let _turn = one_at_a_time();
    let tmp = tempfile::tempdir().expect("temp dir");
    let (one, three) = two_runs(tmp.path());
    for (run, n) in [(&one, 1), (&three, 3)] {
        assert_eq!(
            run.dropped(),
            0,
            "tcpdump dropped packets of the {n}-client run"
        );
    }

    // (b) Both runs' logs in one folder: each client gets its own run's.
    let both = tmp.path().join("both");
    let copies = copy_logs(&[one.all_logs(), three.all_logs()].concat(), &both);
    for run in [&one, &three] {
        let report = analyze(
            tmp.path(),
            &[
                &run.pcap(),
                &"--logs",
                &both,
                &"--port",
                &run.port.to_string(),
                &"--format",
                &"json",
            ],
            None,
        )
        .report_with(0);
        assert_eq!(clients(&report).len(), usize::from(run.clients));
        for k in 1..=run.clients {
            let r = row(&report, k);
            let (s, c) = (run.log('S', k), run.log('C', k));
            // Our logs record the client's port, as the capture shows it.
            assert_eq!(r["client_port"], log_num(&c, "client_port"), "{r:#}");
            let what = format!("{}-client run, client {k}", run.clients);
            assert_eq!(
                r["server_log"],
                text_of(&copies[&s]).as_str(),
                "{what}: its own server log: {r:#}"
            );
            assert_eq!(
                r["client_log"],
                text_of(&copies[&c]).as_str(),
                "{what}: its own client log: {r:#}"
            );
        }
    }

    // (a) Only the 3-client run's logs, for the 1-client capture.
    let report = analyze(
        tmp.path(),
        &[
            &one.pcap(),
            &"--logs",
            &three.logs,
            &"--port",
            &one.port.to_string(),
            &"--format",
            &"json",
        ],
        None,
    )
    .report_with(0);
    let r = row(&report, 1);
    assert_eq!(r["server_log"], Value::Null, "another run's log: {r:#}");
    assert_eq!(r["client_log"], Value::Null, "another run's log: {r:#}");
    for log in three.all_logs() {
        let e = left_out(&report, &log);
        let why = e["reason"]["why"].as_str().unwrap_or_default();
        assert!(
            ["contradicts", "no_such_client", "outmatched"].contains(&why),
            "{}: {e:#}",
            log.display()
        );
    }
    for log in [three.log('S', 1), three.log('C', 1)] {
        let e = left_out(&report, &log);
        let conflict = &e["reason"]["conflict"];
        let clients =
            conflict["fact"] == "clients" && conflict["log"] == 3 && conflict["capture"] == 1;
        assert!(
            e["reason"]["why"] == "contradicts" && (clients || conflict["fact"] == "time"),
            "{}: a log of a 3-client run, against a 1-client capture: {e:#}",
            log.display()
        );
    }
}

// ---------------------------------------------------------------------
// Case 4: the original lab's scripts, and the analysing machine's zone.

/// A python3 that has tqdm (the lab's server imports it): `python3`, or
/// the system's, where apt's python3-tqdm goes.
fn python_with_tqdm() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import tqdm"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The lab's `servidor.py` and `cliente.py` copied into `dir` with their
/// addresses rewritten to 127.0.0.1 by sed (as lab-scripts/README.md says),
/// and the folders and the file they expect.
fn lab_scripts_in(dir: &Path, scripts: &Path) {
    for name in ["servidor.py", "cliente.py"] {
        let out = File::create(dir.join(name)).expect("script copy");
        let status = Command::new("sed")
            .args([
                "-e",
                r#"s/^IPS = .*/IPS = "127.0.0.1"/"#,
                "-e",
                r#"s/^IPC = .*/IPC = "127.0.0.1"/"#,
            ])
            .arg(scripts.join(name))
            .stdout(out)
            .status()
            .expect("sed");
        assert!(status.success(), "sed on {name}: {status}");
        let text = fs::read_to_string(dir.join(name)).expect("script copy");
        assert!(
            text.contains("IPS = \"127.0.0.1\"") && !text.contains("192.168."),
            "{name}: addresses not rewritten"
        );
    }
    for sub in ["ArchivosEnvio", "ArchivosRecibidos", "Logs"] {
        fs::create_dir_all(dir.join(sub)).expect("the lab's folders");
    }
    // The lab names it 100MB.bin whatever its size.
    common::write_file(&dir.join("ArchivosEnvio"), "100MB.bin", 4 << 20, 5);
}

const BOGOTA: &str = "America/Bogota";

/// One run of the lab's server and two clients under Bogota's zone,
/// captured: the run's folder, its capture and its logs; `None` when a
/// client lost the lab's own race (its name datagram sent before it bound
/// its port), a run to make again.
fn lab_scripts_run(python: &str, scripts: &Path) -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    let tmp = tempfile::tempdir().expect("temp dir");
    let lab = tmp.path().join("lab");
    fs::create_dir_all(&lab).expect("lab dir");
    lab_scripts_in(&lab, scripts);

    let tcpdump = Tcpdump::start(
        tmp.path(),
        "run.pcap",
        &format!(
            "tcp port {LAB_PORT} or udp portrange {}-{}",
            LAB_PORT + 1,
            LAB_PORT + 2
        ),
        32 << 10,
    );
    // Its answers: file 1 (100MB.bin), 2 concurrent clients.
    let mut server = Proc::start_with_input(
        "servidor.py",
        Command::new(python)
            .args(["-u", "servidor.py"])
            .current_dir(&lab)
            .env("TZ", BOGOTA),
        tmp.path(),
        b"1\n2\n",
    );
    wait_for(
        &mut server,
        "servidor.py listening on 5005",
        Duration::from_secs(10),
        || listening(LAB_PORT),
    );
    let procs: Vec<Proc> = (1..=2)
        .map(|k| {
            Proc::start(
                &format!("cliente.py-{k}"),
                Command::new(python)
                    .arg("cliente.py")
                    .current_dir(&lab)
                    .env("TZ", BOGOTA),
                tmp.path(),
            )
        })
        .collect();
    let mut raced = false;
    for c in procs {
        let name = c.name.clone();
        let done = c.wait(Duration::from_secs(30));
        // The lab's client binds its UDP port only after the registration:
        // the last to register can miss the name datagram the server sends
        // at once, and then fails to decode a data chunk as the name.
        if !done.status.success() && done.stderr.contains("UnicodeDecodeError") {
            eprintln!(
                "NOTE: {name} lost the lab's race for its name datagram: {}",
                done.stderr.trim()
            );
            raced = true;
            continue;
        }
        assert!(
            done.status.success(),
            "{name}: {:?} {}{}",
            done.status,
            done.stdout,
            done.stderr
        );
    }
    // It serves rounds forever; its clients have closed their connections
    // first, so 5005 is not left in TIME_WAIT.
    server.signal(libc::SIGINT);
    server.wait(Duration::from_secs(10));
    let (pcap, dropped) = tcpdump.stop();
    if dropped > 0 {
        eprintln!("NOTE: tcpdump dropped {dropped} packets");
    }
    (!raced).then(|| (tmp, pcap, lab.join("Logs")))
}

#[test]
fn the_lab_s_logs_are_read_at_their_own_utc_offset_whatever_the_machine_s_zone() {
    require_capture!();
    let Some(python) = python_with_tqdm() else {
        skip_or_fail("no python3 with tqdm (scripts/test installs python3-tqdm)");
        return;
    };
    // Beside the lab's samples (common::lab_samples), outside this
    // repository.
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/lab-scripts");
    if !scripts.join("servidor.py").is_file() || !scripts.join("cliente.py").is_file() {
        skip_or_fail(format_args!(
            "the original lab's scripts are not at {}",
            scripts.display()
        ));
        return;
    }
    for zone in ["America/Bogota", "Asia/Tokyo"] {
        if !Path::new("/usr/share/zoneinfo").join(zone).is_file() {
            skip_or_fail(format_args!(
                "no time zone data for {zone} (package tzdata)"
            ));
            return;
        }
    }
    let _turn = one_at_a_time();
    let mut run = None;
    for _ in 0..4 {
        if let Err(why) = lab_ports_free() {
            skip_or_fail(why);
            return;
        }
        run = lab_scripts_run(python, &scripts);
        if run.is_some() {
            break;
        }
    }
    let (tmp, pcap, logs) = run.expect("a run of the lab's scripts in four tries");

    // Their names carry Bogota's local time (UTC-5).
    let bogota_now = chrono::Utc::now().naive_utc() - chrono::Duration::hours(5);
    for k in 1..=2 {
        for role in ["S", "C"] {
            let found = common::files_with_prefix(&logs, &format!("{role}{k}-"));
            assert_eq!(found.len(), 1, "one {role}{k} log in {}", logs.display());
            let name = found[0].file_name().unwrap().to_string_lossy().into_owned();
            let stamp = chrono::NaiveDateTime::parse_from_str(
                name.get(3..22).unwrap_or_default(),
                "%Y-%m-%d-%H-%M-%S",
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            let off = (bogota_now - stamp).num_seconds().abs();
            assert!(
                off < 120,
                "{name}: not Bogota's local time (now {bogota_now})"
            );
        }
    }

    let args: [&dyn AsRef<std::ffi::OsStr>; 5] = [&pcap, &"--logs", &logs, &"--format", &"json"];
    let mut seen: Vec<(&str, Value)> = Vec::new();
    for tz in ["UTC", "Asia/Tokyo", BOGOTA] {
        let report = analyze(tmp.path(), &args, Some(tz)).report_with(0);
        for k in 1..=2 {
            let r = row(&report, k);
            for (key, role) in [("server_log", 'S'), ("client_log", 'C')] {
                let used = r[key].as_str().map(Path::new);
                assert!(
                    used.is_some_and(|p| p.starts_with(&logs)
                        && p.file_name().is_some_and(|n| n
                            .to_string_lossy()
                            .starts_with(&format!("{role}{k}-")))),
                    "TZ={tz}: client {k}'s {key} is not its own {role}{k} log of {}: {r:#}",
                    logs.display()
                );
            }
        }
        assert_eq!(
            report["logs"]["utc_offset"], "-05:00",
            "TZ={tz}: logs: {:#}",
            report["logs"]
        );
        seen.push((tz, report["clients"].clone()));
    }
    for (tz, c) in &seen[1..] {
        assert!(
            *c == seen[0].1,
            "TZ={tz} and TZ={} give other rows:\n{c:#}\n{:#}",
            seen[0].0,
            seen[0].1
        );
    }

    // Read at UTC+3 they are 8 hours away from the capture: all left out.
    let report = analyze(
        tmp.path(),
        &[
            &pcap,
            &"--logs",
            &logs,
            &"--log-utc-offset",
            &"+03:00",
            &"--format",
            &"json",
        ],
        Some("UTC"),
    )
    .report_with(0);
    let out = report["logs"]["left_out"].as_array();
    assert!(
        out.is_some_and(
            |v| v.len() == 4 && v.iter().all(|e| e["reason"]["conflict"]["fact"] == "time")
        ),
        "--log-utc-offset +03:00: {:#}",
        report["logs"]
    );
}

// ---------------------------------------------------------------------
// Case 5: inputs that are not logs.

#[test]
fn inputs_that_are_not_logs_are_ignored_with_a_warning_and_counted_right() {
    require_capture!();
    let _turn = one_at_a_time();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let (file, _) = common::write_file(dir, "2MiB.bin", 2 << 20, 9);
    let port = free_port(2);
    let how = CaptureHow {
        buffer_kib: 32 << 10,
        pause: None,
    };
    let run = udplab_run(&dir.join("run"), port, &file, 1, false, Some(how));
    // Another run on the same port, whose log of client 2 no client of the
    // captured run can use.
    std::thread::sleep(Duration::from_millis(1100));
    let other = udplab_run(&dir.join("other-run"), port, &file, 2, false, None);
    let other_logs = dir.join("other-logs");
    copy_logs(&[other.log('S', 2)], &other_logs);

    let empty_file = dir.join("empty.txt");
    File::create(&empty_file).expect("empty.txt");
    let empty_dir = dir.join("emptydir");
    fs::create_dir(&empty_dir).expect("emptydir");
    let port = port.to_string();
    for (input, reason) in [
        (run.pcap(), "not_a_log"),
        (empty_file.as_path(), "empty_file"),
        (empty_dir.as_path(), "empty_folder"),
    ] {
        let a = analyze(
            dir,
            &[
                &run.pcap(),
                &"--logs",
                &input,
                &"--port",
                &port,
                &"--format",
                &"json",
            ],
            None,
        );
        let report = a.report_with(0);
        let path = text_of(input);
        assert!(
            a.stderr
                .lines()
                .any(|l| l.contains("warning") && l.contains(&path)),
            "--logs {path} ({reason}): no warning naming it on stderr: {:?}",
            a.stderr
        );
        let ignored = &report["logs"]["ignored"];
        assert!(
            ignored.as_array().is_some_and(|v| v
                .iter()
                .any(|e| e["path"] == path.as_str() && e["reason"] == reason)),
            "--logs {path}: not in logs.ignored as {reason}: {:#}",
            report["logs"]
        );
    }

    // The table counts one log of another run as one log.
    let a = analyze(
        dir,
        &[&run.pcap(), &"--logs", &other_logs, &"--port", &port],
        None,
    );
    assert_eq!(a.code, Some(0), "{}", a.stderr);
    let logs = a
        .stdout
        .split("\nLogs\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no Logs section in the table:\n{}", a.stdout));
    assert!(logs.contains("1 log"), "Logs section:\n{logs}");
    assert!(!logs.contains("1 logs"), "Logs section:\n{logs}");
}
