//! Hostile peers at registration, over loopback: connections that close at
//! once by the hundred, silent connections from several addresses held and
//! renewed, a data port held by another socket, a server out of file
//! descriptors; and an honest round of many clients behind one address.
//! Each time the honest clients are served, and the server neither runs
//! out of client numbers nor spins.
//!
//! Peers that stand for different hosts bind different 127.0.0.x source
//! addresses before they connect.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use udplab::protocol::v1;
use udplab::server::{self, Summary};
use udplab::shutdown::Shutdown;

const BIN: &str = env!("CARGO_BIN_EXE_udplab");

/// A control listener on 127.0.0.1 port `port` whose data ports, up to
/// `port` + `data_ports`, are free. Ports from 61000 up are above the range
/// the kernel picks local ports from (32768 to 60999 by default), so the
/// test's own client sockets never take them; each test has its own range.
fn listener_at(port: u16, data_ports: u16) -> TcpListener {
    let listener = udplab::net::listen_tcp(SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap_or_else(|e| panic!("control port {port}: {e}"));
    for k in 1..=data_ports {
        UdpSocket::bind(("127.0.0.1", port + k))
            .unwrap_or_else(|e| panic!("data port {}: {e}", port + k));
    }
    listener
}

/// Held by the tests whose data ports run to 65535, one at a time.
static THE_TOP: Mutex<()> = Mutex::new(());

/// A control listener with exactly `numbers` client numbers behind it:
/// port 65535 - `numbers`, whose data ports run to 65535. Hold
/// [`THE_TOP`] while it serves.
fn listener_at_the_top(numbers: u16) -> TcpListener {
    listener_at(u16::MAX - numbers, numbers)
}

struct Served {
    addr: SocketAddr,
    shutdown: Shutdown,
    handle: thread::JoinHandle<anyhow::Result<Summary>>,
}

fn serve(
    listener: TcpListener,
    file: &Path,
    logs: &Path,
    tune: impl FnOnce(&mut server::Config),
) -> Served {
    let addr = listener.local_addr().unwrap();
    let mut cfg = server::Config::new(file.to_path_buf(), 1);
    cfg.bind_ip = "127.0.0.1".parse().unwrap();
    cfg.log_dir = logs.to_path_buf();
    cfg.rounds = Some(1);
    cfg.progress = false;
    cfg.report_timeout = Duration::from_secs(10);
    tune(&mut cfg);
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    Served {
        addr,
        shutdown,
        handle: thread::spawn(move || server::run(listener, cfg, stop)),
    }
}

/// A TCP connection to `server` from `source`.
fn connect_from(source: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    sock.bind(&SocketAddr::from((source, 0)).into())?;
    sock.connect_timeout(&server.into(), Duration::from_secs(2))?;
    Ok(sock.into())
}

/// Connections that close before they answer their number give it back:
/// with 8 numbers behind the control port, 300 of them leave an honest
/// client its number and the file.
#[test]
fn connect_and_close_does_not_use_up_client_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "cc.bin", 60_000, 21);
    let logs = dir.path().join("logs");
    let _top = THE_TOP.lock().unwrap_or_else(|e| e.into_inner());
    let server = serve(listener_at_the_top(8), &file, &logs, |_| {});
    for _ in 0..300 {
        drop(TcpStream::connect(server.addr).unwrap());
    }
    // Some read their number first, then close.
    for _ in 0..50 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut id = [0u8; 2];
        s.read_exact(&mut id).unwrap();
        assert!((1..=8).contains(&u16::from_le_bytes(id)));
    }
    let o = receive(server.addr, &dir.path().join("out"), &logs).unwrap();
    assert_received(&o, &data);
    assert!(
        o.log.client_id.is_some_and(|k| k <= 8),
        "{:?}",
        o.log.client_id
    );
    let summary = server.handle.join().unwrap().unwrap();
    assert_eq!(summary.tally().delivered, 1);
}

/// A round that ended gives its numbers back: with 2 numbers, 5 rounds of
/// one client are all served, and their logs are 5 files, none overwritten
/// by a later round with the same number.
#[test]
fn numbers_of_ended_rounds_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "rounds.bin", 80_000, 22);
    let logs = dir.path().join("logs");
    let _top = THE_TOP.lock().unwrap_or_else(|e| e.into_inner());
    let server = serve(listener_at_the_top(2), &file, &logs, |cfg| {
        cfg.rounds = Some(5);
    });
    for round in 0..5 {
        let client_logs = dir.path().join(format!("client-logs-{round}"));
        let o = receive(
            server.addr,
            &dir.path().join(format!("out{round}")),
            &client_logs,
        )
        .unwrap();
        assert_received(&o, &data);
    }
    let summary = server.handle.join().unwrap().unwrap();
    assert_eq!(summary.rounds, 5);
    assert_eq!(summary.tally().delivered, 5);
    assert!(summary.outcomes.iter().all(|o| o.client_id <= 2));
    assert_eq!(files_with_prefix(&logs, "S").len(), 5);
}

/// Another socket holds client 1's data port: number 1 is set aside, and
/// the clients of two rounds get another and the file, instead of each
/// being handed the lowest number and failing on its port.
#[test]
fn a_number_whose_data_port_is_taken_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "aside.bin", 30_000, 27);
    let logs = dir.path().join("logs");
    let listener = listener_at(64800, 4);
    let _squatter = UdpSocket::bind(("127.0.0.1", 64801)).unwrap();
    let server = serve(listener, &file, &logs, |cfg| cfg.rounds = Some(2));
    for round in 0..2 {
        let o = receive(
            server.addr,
            &dir.path().join(format!("out{round}")),
            &dir.path().join(format!("client-logs{round}")),
        )
        .unwrap();
        assert_received(&o, &data);
        // 2, or 3 while the round before closes its sockets.
        assert!(
            o.log.client_id.is_some_and(|k| k > 1),
            "{:?}",
            o.log.client_id
        );
    }
    let summary = server.handle.join().unwrap().unwrap();
    assert_eq!(summary.tally().delivered, 2);
}

/// A connection that says nothing after its number is closed at the
/// first-byte deadline, long before the registration's own.
#[test]
fn a_silent_connection_is_closed_at_the_first_byte_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "fb.bin", 1000, 23);
    let logs = dir.path().join("logs");
    let listener = listener_with_free_data_ports(4);
    let server = serve(listener, &file, &logs, |cfg| {
        cfg.register_timeout = Duration::from_secs(30);
        cfg.first_byte_timeout = Duration::from_millis(500);
    });
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut id = [0u8; 2];
    silent.read_exact(&mut id).unwrap();
    let numbered = Instant::now();
    let mut buf = [0u8; 8];
    let n = silent.read(&mut buf).expect("closed by the server");
    let held = numbered.elapsed();
    assert_eq!(n, 0);
    assert!(
        held >= Duration::from_millis(400) && held < Duration::from_secs(3),
        "{held:?}"
    );
    // One that begins in time has the rest of the registration timeout.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let [lo, hi] = udp.local_addr().unwrap().port().to_le_bytes();
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    slow.read_exact(&mut id).unwrap();
    slow.write_all(&[lo]).unwrap();
    thread::sleep(Duration::from_secs(1));
    slow.write_all(&[hi, v1::VERSION]).unwrap();
    let mut n = [0u8; 2];
    slow.read_exact(&mut n).unwrap();
    assert_eq!(u16::from_le_bytes(n), 1);
    server.shutdown.trigger();
    let _ = server.handle.join().unwrap();
}

/// Silent connections, each renewed as soon as the server closes it, 300
/// from one address and 60 from each of five others, outnumber the
/// server's registration slots; a client from a seventh address is served
/// all the same, and quickly.
#[test]
fn silent_peers_cannot_lock_out_a_new_address() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "lock.bin", 100_000, 24);
    let logs = dir.path().join("logs");
    let listener = listener_at(64000, 400);
    let server = serve(listener, &file, &logs, |cfg| {
        cfg.first_byte_timeout = Duration::from_secs(1);
    });
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let renewed = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (2..=7u8)
        .map(|host| {
            let stop = Arc::clone(&stop);
            let renewed = Arc::clone(&renewed);
            let count = if host == 2 { 300 } else { 60 };
            thread::spawn(move || {
                hold_silent(Ipv4Addr::new(127, 0, 0, host), addr, count, &stop, &renewed)
            })
        })
        .collect();
    // Let them fill every slot, and be closed and come back at least once.
    thread::sleep(Duration::from_millis(2500));
    assert!(
        renewed.load(Ordering::SeqCst) > 0,
        "no silent connection was closed"
    );
    let started = Instant::now();
    let o = receive(addr, &dir.path().join("out"), &logs);
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for a in attackers {
        a.join().unwrap();
    }
    let o = o.unwrap();
    assert_received(&o, &data);
    assert!(took < Duration::from_secs(5), "{took:?}");
    server.handle.join().unwrap().unwrap();
}

/// A round of many honest clients behind one address, far more than that
/// address may register at once, is served whole: those past the bound
/// wait for their turn instead of being refused.
#[test]
fn a_round_of_many_clients_from_one_address_waits_its_turn() {
    const CLIENTS: u16 = 120;
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "many.bin", 3000, 26);
    let logs = dir.path().join("logs");
    // Data ports out of the way of the clients' 120 UDP sockets.
    let listener = listener_at(65100, CLIENTS + 8);
    let server = serve(listener, &file, &logs, |cfg| {
        cfg.clients = CLIENTS;
        cfg.per_address = 8;
    });
    let addr = server.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let out = dir.path().join(format!("out{i}"));
            let logs = dir.path().join(format!("client-logs{i}"));
            thread::spawn(move || receive(addr, &out, &logs))
        })
        .collect();
    let mut numbers = Vec::new();
    for c in clients {
        let o = c.join().unwrap().unwrap();
        assert_received(&o, &data);
        numbers.push(o.log.client_id.unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=CLIENTS).collect::<Vec<_>>());
    let summary = server.handle.join().unwrap().unwrap();
    assert_eq!(summary.tally().delivered, usize::from(CLIENTS));
}

/// Keep `count` silent connections from `source` open until `stop`,
/// opening a new one for each the server closes.
fn hold_silent(
    source: Ipv4Addr,
    server: SocketAddr,
    count: usize,
    stop: &AtomicBool,
    renewed: &AtomicUsize,
) {
    let mut held: Vec<TcpStream> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let before = held.len();
        held.retain(|s| {
            let mut b = [0u8; 16];
            loop {
                match (&*s).read(&mut b) {
                    Ok(0) => return false,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
        });
        renewed.fetch_add(before - held.len(), Ordering::SeqCst);
        while held.len() < count {
            match connect_from(source, server) {
                Ok(s) => {
                    s.set_nonblocking(true).unwrap();
                    held.push(s);
                }
                Err(_) => break,
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// User plus system CPU time of process `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name, in parentheses, may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / per_second as f64
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

/// A v1 registration that goes as far as the transfer and then never
/// reports: the server holds its control connection, its data socket and
/// the file open for the report timeout. `None` when the server did not
/// take it (it is out of file descriptors).
fn register_and_stay(server: SocketAddr) -> Option<(TcpStream, UdpSocket)> {
    let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
    let [lo, hi] = udp.local_addr().ok()?.port().to_le_bytes();
    let mut tcp = TcpStream::connect(server).ok()?;
    tcp.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let mut id = [0u8; 2];
    tcp.read_exact(&mut id).ok()?;
    tcp.write_all(&[lo, hi, v1::VERSION]).ok()?;
    let mut n = [0u8; 2];
    tcp.read_exact(&mut n).ok()?;
    Some((tcp, udp))
}

/// With 64 file descriptors and every one of them taken by clients that
/// never report, connections queued behind them neither make the server
/// spin nor fill its log; once the clients go, a new one is served.
#[test]
fn running_out_of_file_descriptors_backs_off_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "fd.bin", 20_000, 25);
    let logs = dir.path().join("logs");
    // Checked free, then let go for the server to bind.
    let port = listener_at(64500, 64).local_addr().unwrap().port();
    let stderr_path = dir.path().join("server.stderr");
    let mut cmd = Command::new(BIN);
    cmd.args(["server", "--file"])
        .arg(&file)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .arg("--log-dir")
        .arg(&logs)
        .args(["--clients", "1", "--report-timeout", "60s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut server = Proc(cmd.spawn().unwrap());
    let pid = server.0.id();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let up = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "the server did not start"
        );
        thread::sleep(Duration::from_millis(20));
    }

    // Each holder takes three of the server's descriptors; 40 of them are
    // more than 64 can hold.
    let mut holders = Vec::new();
    let mut queued = Vec::new();
    for _ in 0..40 {
        match register_and_stay(addr) {
            Some(h) => holders.push(h),
            None => break,
        }
    }
    // Connections the server cannot accept wait in the kernel's queue and
    // keep the listener readable.
    for _ in 0..20 {
        queued.push(TcpStream::connect(addr).unwrap());
    }
    thread::sleep(Duration::from_millis(500));
    let (cpu0, lines0) = (cpu_seconds(pid), line_count(&stderr_path));
    thread::sleep(Duration::from_secs(3));
    let (cpu1, lines1) = (cpu_seconds(pid), line_count(&stderr_path));
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    eprintln!(
        "{} holders; in 3 s out of descriptors: {:.2} s of CPU, {} log line(s)",
        holders.len(),
        cpu1 - cpu0,
        lines1 - lines0
    );
    assert!(
        log.lines()
            .any(|l| l.contains("accepting") && l.contains("Too many open files")),
        "the server never ran out of descriptors ({} holders):\n{log}",
        holders.len()
    );
    assert!(cpu1 - cpu0 < 0.5, "{:.2} s of CPU in 3 s", cpu1 - cpu0);
    assert!(
        lines1 - lines0 <= 10,
        "{} log lines in 3 s",
        lines1 - lines0
    );

    drop(holders);
    drop(queued);
    let out = dir.path().join("out");
    let client_logs = dir.path().join("client-logs");
    let o = receive(addr, &out, &client_logs).unwrap();
    assert_received(&o, &data);
    let _ = server.0.kill();
    let _ = server.0.wait();
}
