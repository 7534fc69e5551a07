//! One `udplab server` process for many rounds while hostile peers come and
//! go beside honest clients: every honest client of every round gets its
//! file byte for byte, and the server's memory, open file descriptors and
//! threads (read from /proc between rounds) stay flat.
//!
//! Bounded for CI by default (`UDPLAB_SOAK_ROUNDS`, default 8); the longer
//! run is `scripts/soak`.
//!
//! The hostile peers, each on its own 127.0.0.x source address:
//! - connect-and-close floods (registrations that never begin);
//! - silent holders (connections that never send a byte);
//! - garbage (random bytes on the control connection);
//! - UDP junk at the server's data ports (forged feedback of any shape);
//! - forgers: v1 data datagrams with the right sequence numbers and wrong
//!   bytes, sent to the honest clients' own data ports from another address;
//! - amplifiers: one registered client a round that reports the whole file
//!   missing after every pass, until the server gives it up.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::v1_peer::{PassEnd, Peer};
use common::{Proc, listener_with_free_data_ports, wait_output, write_file};

/// Honest clients per round.
const HONEST: u16 = 2;

/// Clients per round: the honest ones and one amplifier.
const CLIENTS: u16 = HONEST + 1;

/// What one server process holds, read from /proc.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    fds: usize,
    threads: u64,
}

fn sample(pid: u32) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    Sample {
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count(),
    }
}

/// A TCP connection from `source` (a 127.0.0.x address) to `server`.
fn connect_from(source: Ipv4Addr, server: SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket
        .bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())
        .ok()?;
    socket
        .connect_timeout(&server.into(), Duration::from_millis(500))
        .ok()?;
    Some(socket.into())
}

/// The hostile peers, running until [`Hostiles::stop`].
struct Hostiles {
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicU64>,
    datagrams: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Hostiles {
    fn start(server: SocketAddr) -> Hostiles {
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let datagrams = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        let spawn = |threads: &mut Vec<JoinHandle<()>>, mut f: Box<dyn FnMut() -> bool + Send>| {
            let stop = Arc::clone(&stop);
            threads.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if !f() {
                        thread::sleep(Duration::from_millis(5));
                    }
                }
            }));
        };

        // Connect and close, as fast as the listener takes them.
        let count = Arc::clone(&connections);
        spawn(
            &mut threads,
            Box::new(move || {
                let ok = connect_from(Ipv4Addr::new(127, 0, 0, 2), server).is_some();
                count.fetch_add(u64::from(ok), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(1));
                ok
            }),
        );

        // Silent holders: 64 connections at a time that never send a byte,
        // each held for up to 2 s (or until the server drops it).
        let count = Arc::clone(&connections);
        let holders_stop = Arc::clone(&stop);
        spawn(
            &mut threads,
            Box::new(move || {
                let held: Vec<TcpStream> = (0..64)
                    .filter_map(|_| connect_from(Ipv4Addr::new(127, 0, 0, 3), server))
                    .collect();
                count.fetch_add(held.len() as u64, Ordering::Relaxed);
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until && !holders_stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(20));
                }
                !held.is_empty()
            }),
        );

        // Garbage on the control connection, then read whatever comes back.
        let count = Arc::clone(&connections);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        spawn(
            &mut threads,
            Box::new(move || {
                let Some(mut s) = connect_from(Ipv4Addr::new(127, 0, 0, 4), server) else {
                    return false;
                };
                count.fetch_add(1, Ordering::Relaxed);
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let junk = common::bytes(1 + (seed >> 56) as usize, seed);
                let _ = s.write_all(&junk);
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                let _ = s.read(&mut [0u8; 64]);
                true
            }),
        );

        // UDP junk at the server's data ports (control port + k).
        let count = Arc::clone(&datagrams);
        let udp = UdpSocket::bind("127.0.0.5:0").unwrap();
        let mut seed = 7u64;
        spawn(
            &mut threads,
            Box::new(move || {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let k = 1 + (seed >> 60) as u16 % CLIENTS;
                let junk = common::bytes(1 + (seed >> 54) as usize, seed);
                let to = (Ipv4Addr::LOCALHOST, server.port() + k);
                let ok = udp.send_to(&junk, to).is_ok();
                count.fetch_add(u64::from(ok), Ordering::Relaxed);
                thread::sleep(Duration::from_micros(200));
                ok
            }),
        );

        Hostiles {
            stop,
            connections,
            datagrams,
            threads,
        }
    }

    /// Stops every peer and waits for it; what they did in all.
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        (
            self.connections.load(Ordering::Relaxed),
            self.datagrams.load(Ordering::Relaxed),
        )
    }
}

/// The server's descriptors once what the peers left has been closed: the
/// server drops a peer's connection when it sees its end, so wait (up to
/// 5 s) until the count stops falling.
fn settled(pid: u32) -> Sample {
    let mut last = sample(pid);
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        thread::sleep(Duration::from_millis(200));
        let now = sample(pid);
        if now.fds == last.fds && now.threads == last.threads {
            return now;
        }
        last = now;
    }
    last
}

/// The UDP ports process `pid` has bound, from its descriptors' socket
/// inodes and /proc/net/udp.
fn udp_ports(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let inode = cols.get(9)?;
            let port = cols.get(1)?.rsplit(':').next()?;
            inodes
                .iter()
                .any(|i| i == inode)
                .then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
}

/// Sends forged v1 data datagrams (sequence numbers 0..256, bytes of
/// nobody's file) to every UDP port the clients `pids` have bound, from
/// 127.0.0.6, until `stop`; how many it sent.
fn forge(pids: Vec<u32>, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    thread::spawn(move || {
        let udp = UdpSocket::bind("127.0.0.6:0").unwrap();
        let junk = common::bytes(1008, 99);
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            for port in pids.iter().flat_map(|&p| udp_ports(p)) {
                for seq in 0..256 {
                    let d = common::v1_datagram(seq, 0, &junk);
                    sent += u64::from(udp.send_to(&d, (Ipv4Addr::LOCALHOST, port)).is_ok());
                }
            }
            thread::sleep(Duration::from_millis(2));
        }
        sent
    })
}

/// A registered client that, after every pass, reports that it holds
/// nothing, until the server gives it up; how many passes it was sent.
fn amplify(server: SocketAddr) -> JoinHandle<u32> {
    thread::spawn(move || {
        let mut peer = Peer::register(server);
        let mut round = 0;
        loop {
            match peer.pass(round) {
                (_, PassEnd::Done) => {}
                (_, PassEnd::Abort(_)) => return round + 1,
            }
            let report = peer.nothing_held();
            peer.send(&report);
            round += 1;
        }
    })
}

/// Runs one round: its honest clients to their end, with a forger at their
/// data ports, and an amplifier until it is given up; the honest clients'
/// outputs, the forged datagrams sent and the passes the amplifier got.
fn round_of(server: SocketAddr, out: &Path, logs: &Path) -> (Vec<std::process::Output>, u64, u32) {
    let amplifier = amplify(server);
    let clients: Vec<_> = (0..HONEST)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_udplab"))
                .args(["client", "--recv-buffer", "16MiB"])
                .args(["--start-timeout", "30s", "--server"])
                .arg(server.to_string())
                .arg("--out")
                .arg(out)
                .arg("--log-dir")
                .arg(logs)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let forger = forge(clients.iter().map(|c| c.id()).collect(), Arc::clone(&stop));
    let outputs = clients
        .into_iter()
        .map(|c| wait_output(c, Duration::from_secs(60)))
        .collect();
    stop.store(true, Ordering::Relaxed);
    (outputs, forger.join().unwrap(), amplifier.join().unwrap())
}

/// Every log in `dir`, for a failure's message.
fn logs_text(dir: &Path) -> String {
    let mut all = String::new();
    for path in common::files_with_prefix(dir, "") {
        all.push_str(&format!("== {}\n", path.display()));
        all.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
    }
    all
}

#[test]
fn one_server_many_rounds_among_hostile_peers() {
    let rounds: usize = std::env::var("UDPLAB_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "soak.bin", 2 << 20, 11);
    let listener = listener_with_free_data_ports(CLIENTS + 2);
    let server_addr = listener.local_addr().unwrap();
    drop(listener);
    let server_logs = dir.path().join("server-logs");
    let server = Command::new(env!("CARGO_BIN_EXE_udplab"))
        .args([
            "server",
            "--quiet",
            "--mode",
            "reliable",
            "--bind",
            "127.0.0.1",
        ])
        .args(["--clients", &CLIENTS.to_string()])
        .args(["--port", &server_addr.port().to_string()])
        .args(["--register-timeout", "3s", "--report-timeout", "5s"])
        .arg("--file")
        .arg(&file)
        .arg("--log-dir")
        .arg(&server_logs)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = server.id();
    let mut server = Proc(server);
    // The listener is up once the port answers.
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(server_addr).is_err() {
        assert!(Instant::now() < until, "the server never listened");
        thread::sleep(Duration::from_millis(20));
    }

    let mut samples = Vec::new();
    let (mut hostile_connections, mut hostile_datagrams, mut forged_datagrams) = (0, 0, 0);
    let mut amplified_passes = 0;
    let mut peak_rss = 0;
    for round in 0..rounds {
        let hostiles = Hostiles::start(server_addr);
        let out = dir.path().join(format!("round-{round}"));
        let logs = out.join("logs");
        let (outputs, forged, passes) = round_of(server_addr, &out, &logs);
        forged_datagrams += forged;
        amplified_passes += u64::from(passes);
        for (k, o) in outputs.iter().enumerate() {
            assert!(
                o.status.success(),
                "round {round}, client {k}: {}\n{}\nlogs:\n{}",
                o.status,
                common::text(&o.stderr),
                logs_text(&logs)
            );
        }
        let (c, d) = hostiles.stop();
        hostile_connections += c;
        hostile_datagrams += d;
        let received = std::fs::read(out.join("soak.bin")).unwrap_or_default();
        assert!(received == data, "round {round}: the file differs");
        peak_rss = peak_rss.max(sample(pid).rss_kib);
        samples.push(settled(pid));
    }
    // Served until interrupted, as a class's server is.
    // SAFETY: kill(2) on the server's own pid, a process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = common::wait_with_timeout(&mut server.0, Duration::from_secs(30));
    assert!(status.code().is_some(), "server: {status}");

    let range = |f: fn(&Sample) -> u64| {
        let v = samples.iter().map(f);
        (v.clone().min().unwrap_or(0), v.max().unwrap_or(0))
    };
    eprintln!(
        "soak: {rounds} rounds, {hostile_connections} hostile connections, \
         {hostile_datagrams} junk datagrams, {forged_datagrams} forged data datagrams, \
         {amplified_passes} passes to amplifiers (given up), {} honest transfers, peak RSS {} KiB, between rounds: RSS {:?} KiB, \
         fds {:?}, threads {:?}",
        rounds * usize::from(HONEST),
        peak_rss,
        range(|s| s.rss_kib),
        range(|s| s.fds as u64),
        range(|s| s.threads),
    );
    // The first round warms the allocator and lazily opened descriptors;
    // from the second on, nothing may grow with the rounds.
    let base = samples[1.min(samples.len() - 1)];
    for (round, s) in samples.iter().enumerate().skip(2) {
        assert!(
            s.fds <= base.fds + 2,
            "round {round}: {} open descriptors, {} after round 1",
            s.fds,
            base.fds
        );
        assert!(
            s.threads <= base.threads + 1,
            "round {round}: {} threads, {} after round 1",
            s.threads,
            base.threads
        );
        assert!(
            s.rss_kib <= base.rss_kib + 8 * 1024,
            "round {round}: {} KiB resident, {} KiB after round 1",
            s.rss_kib,
            base.rss_kib
        );
    }
    assert!(
        hostile_connections > 0,
        "the hostile peers never reached the server"
    );
}
