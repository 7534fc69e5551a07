//! The header cache (`udplab headers`) over loopback, with the crate's
//! local origin, which counts the requests it gets: sessions with repeats, concurrent
//! clients, every bad input, and the cache file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use udplab::headers::cache::Cache;
use udplab::headers::client::{self, Reply};
use udplab::headers::local_origin::{FULL, GARBAGE, HUGE, LocalOrigin, SILENT, header_for};
use udplab::headers::origin::Origin;
use udplab::headers::server::{self, End, Outcome, Summary};
use udplab::headers::{Answer, MAX_DATAGRAM, Refusal};
use udplab::shutdown::Shutdown;

/// The crate's local origin on an ephemeral loopback port.
fn start_origin() -> LocalOrigin {
    LocalOrigin::start(TcpListener::bind("127.0.0.1:0").unwrap()).unwrap()
}

struct TestServer {
    addr: SocketAddr,
    shutdown: Shutdown,
    handle: thread::JoinHandle<anyhow::Result<Summary>>,
}

impl TestServer {
    fn start(origin: SocketAddr, cache: &Path, log_dir: &Path) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut cfg = server::Config::new("127.0.0.1:0".parse().unwrap(), cache.to_owned());
        cfg.origin = Origin::Fixed(origin);
        cfg.origin_timeout = Duration::from_millis(500);
        cfg.log_dir = Some(log_dir.to_owned());
        let shutdown = Shutdown::new();
        let s = shutdown.clone();
        let handle = thread::spawn(move || server::run(listener, cfg, s));
        TestServer {
            addr,
            shutdown,
            handle,
        }
    }

    /// Stops the server after its sessions have ended.
    fn stop(self) -> Summary {
        self.shutdown.trigger();
        self.handle.join().unwrap().unwrap()
    }
}

fn ask(server: SocketAddr, names: &[&str], out: &Path) -> client::Outcome {
    let mut cfg = client::Config::new(
        server.to_string(),
        names.iter().map(|n| n.to_string()).collect(),
    );
    cfg.out_dir = out.to_owned();
    cfg.log_dir = Some(out.join("logs"));
    cfg.timeout = Duration::from_secs(5);
    client::run(&cfg).unwrap()
}

fn outcomes(summary: &Summary) -> Vec<Vec<Outcome>> {
    summary
        .sessions
        .iter()
        .map(|s| s.queries.iter().map(|q| q.outcome.clone()).collect())
        .collect()
}

fn assert_stored(out: &Path, host: &str) {
    let stored = std::fs::read(out.join(format!("{host}.txt"))).unwrap();
    assert_eq!(stored, header_for(host), "{host}.txt");
}

#[test]
fn repeats_are_answered_from_the_cache_and_files_equal_what_the_origin_sent() {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_origin();
    let server = TestServer::start(origin.addr(), &dir.path().join("cache.txt"), dir.path());
    let names = [
        "www.twitch.tv",
        "www.google.cl",
        "www.twitch.tv",
        "example.org",
        "www.google.cl",
        "www.twitch.tv",
    ];
    let out = ask(server.addr, &names, dir.path());
    for q in &out.queries {
        assert!(matches!(q.result, Reply::Stored { .. }), "{q:?}");
    }
    // Each query came from a fresh UDP port.
    let mut ports: Vec<u16> = out
        .queries
        .iter()
        .filter_map(|q| match q.result {
            Reply::Stored { udp_local, .. } => Some(udp_local.port()),
            _ => None,
        })
        .collect();
    ports.dedup();
    assert_eq!(ports.len(), names.len());
    // One request per host: the repeats never reached the origin.
    assert_eq!(origin.requests().total(), 3);
    for host in ["www.twitch.tv", "www.google.cl", "example.org"] {
        assert_eq!(origin.requests().of(host), 1, "{host}");
        assert_stored(dir.path(), host);
    }
    let summary = server.stop();
    let n = |h: &str| header_for(h).len();
    assert_eq!(
        outcomes(&summary),
        [vec![
            Outcome::Miss(n("www.twitch.tv")),
            Outcome::Miss(n("www.google.cl")),
            Outcome::Hit(n("www.twitch.tv")),
            Outcome::Miss(n("example.org")),
            Outcome::Hit(n("www.google.cl")),
            Outcome::Hit(n("www.twitch.tv")),
        ]]
    );
    assert_eq!(summary.sessions[0].end, End::Terminated);
    let log = std::fs::read_to_string(out.log_path.unwrap()).unwrap();
    assert!(log.contains("query_3_name: www.twitch.tv\n"), "{log}");
    assert!(log.contains("stored: 6\n"), "{log}");
}

fn concurrent(clients: usize) {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_origin();
    let server = TestServer::start(origin.addr(), &dir.path().join("cache.txt"), dir.path());
    let hosts = ["a.test", "b.test", "c.cl", "d.test", "e.cl"];
    let runs: Vec<_> = (0..clients)
        .map(|k| {
            let out = dir.path().join(format!("client{k}"));
            let addr = server.addr;
            thread::spawn(move || {
                // Each client its own order, with a repeat.
                let mine: Vec<&str> = (0..4)
                    .map(|i| hosts[(k + i * 2) % hosts.len()])
                    .chain([hosts[k % hosts.len()]])
                    .collect();
                let o = ask(addr, &mine, &out);
                (out, mine, o)
            })
        })
        .collect();
    let mut tcp_ports = Vec::new();
    for r in runs {
        let (out, mine, o) = r.join().unwrap();
        tcp_ports.push(o.tcp_local.port());
        for (q, name) in o.queries.iter().zip(&mine) {
            assert!(matches!(q.result, Reply::Stored { .. }), "{q:?}");
            assert_stored(&out, name);
        }
    }
    tcp_ports.sort_unstable();
    tcp_ports.dedup();
    assert_eq!(tcp_ports.len(), clients, "each client its own connection");
    let summary = server.stop();
    assert_eq!(summary.sessions.len(), clients);
    assert!(
        summary
            .sessions
            .iter()
            .all(|s| s.end == End::Terminated && s.cache_saved)
    );
    // A host asked by several sessions at once is fetched once: the
    // others wait for that fetch.
    let requests = origin.requests();
    for h in hosts {
        assert_eq!(requests.of(h), 1, "{h}: {requests:?}");
    }
    let fetched: usize = outcomes(&summary)
        .iter()
        .flatten()
        .filter(|o| matches!(o, Outcome::Miss(_)))
        .count();
    assert_eq!(fetched, origin.requests().total());
    let cache = Cache::load(&dir.path().join("cache.txt")).unwrap();
    assert_eq!(cache.len(), hosts.len());
}

#[test]
fn two_concurrent_clients() {
    concurrent(2);
}

#[test]
fn ten_concurrent_clients() {
    concurrent(10);
}

#[test]
fn fifty_clients_at_once() {
    concurrent(50);
}

/// A raw session: the bytes over TCP, as the report shows them.
fn raw_query(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).unwrap();
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
fn a_name_that_is_no_host_name_gets_an_error_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_origin();
    let server = TestServer::start(origin.addr(), &dir.path().join("cache.txt"), dir.path());
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for bad in [
        &b"../etc/passwd"[..],
        b"two words",
        b"a..b",
        b"\xff\xfe",
        &[b'a'; 300],
    ] {
        assert_eq!(raw_query(&mut s, bad), b"error: not a host name", "{bad:?}");
    }
    let port = raw_query(&mut s, b"www.twitch.tv");
    assert!(
        matches!(Answer::parse(&port), Some(Answer::Port(_))),
        "{port:?}"
    );
    s.write_all(b"terminate").unwrap();
    drop(s);
    // Through the client: refused, and the good name after it stored.
    let out = ask(server.addr, &["bad name", "www.google.cl"], dir.path());
    assert_eq!(out.queries[0].result, Reply::Refused(Refusal::NotAHostName));
    assert_stored(dir.path(), "www.google.cl");
    assert!(!dir.path().join("bad name.txt").exists());
    assert_eq!(origin.requests().of("bad name"), 0);
    server.stop();
}

#[test]
fn an_origin_that_does_not_answer_times_out_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_origin();
    let server = TestServer::start(origin.addr(), &dir.path().join("cache.txt"), dir.path());
    let slow = {
        let (addr, d) = (server.addr, dir.path().join("slow"));
        thread::spawn(move || ask(addr, &[SILENT, "after.test"], &d))
    };
    // Served while the silent origin holds the other session.
    let quick = ask(server.addr, &["quick.test"], &dir.path().join("quick"));
    assert!(matches!(quick.queries[0].result, Reply::Stored { .. }));
    let slow = slow.join().unwrap();
    assert_eq!(
        slow.queries[0].result,
        Reply::Refused(Refusal::OriginTimeout)
    );
    assert!(matches!(slow.queries[1].result, Reply::Stored { .. }));
    let summary = server.stop();
    let cache = Cache::load(&dir.path().join("cache.txt")).unwrap();
    assert!(cache.get(SILENT).is_none(), "a timeout is not cached");
    assert!(summary.sessions.iter().all(|s| s.end == End::Terminated));
}

#[test]
fn an_origin_that_is_not_there_or_not_http_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gone = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = TestServer::start(gone, &dir.path().join("cache.txt"), dir.path());
    let out = ask(server.addr, &["www.twitch.tv"], dir.path());
    assert_eq!(
        out.queries[0].result,
        Reply::Refused(Refusal::OriginUnreachable)
    );
    server.stop();

    let origin = start_origin();
    let server = TestServer::start(origin.addr(), &dir.path().join("cache.txt"), dir.path());
    let out = ask(server.addr, &[GARBAGE, "ok.test"], dir.path());
    assert_eq!(
        out.queries[0].result,
        Reply::Refused(Refusal::OriginBadResponse)
    );
    assert_stored(dir.path(), "ok.test");
    server.stop();
}

#[test]
fn a_header_larger_than_a_datagram_is_refused_and_one_that_fits_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_origin();
    let server = TestServer::start(origin.addr(), &dir.path().join("cache.txt"), dir.path());
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        raw_query(&mut s, HUGE.as_bytes()),
        b"error: header larger than a datagram (65507 bytes)"
    );
    drop(s);
    let out = ask(server.addr, &[HUGE, FULL], dir.path());
    assert_eq!(out.queries[0].result, Reply::Refused(Refusal::TooLarge));
    assert!(matches!(
        out.queries[1].result,
        Reply::Stored {
            bytes: MAX_DATAGRAM,
            ..
        }
    ));
    assert_stored(dir.path(), FULL);
    server.stop();
}

#[test]
fn a_client_that_vanishes_mid_session_is_logged_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_origin();
    let server = TestServer::start(origin.addr(), &dir.path().join("cache.txt"), dir.path());
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let vanished = s.local_addr().unwrap();
    assert!(matches!(
        Answer::parse(&raw_query(&mut s, b"www.twitch.tv")),
        Some(Answer::Port(_))
    ));
    // Gone before its datagram and without terminate.
    drop(s);
    let out = ask(server.addr, &["www.twitch.tv"], dir.path());
    assert!(matches!(out.queries[0].result, Reply::Stored { .. }));
    let summary = server.stop();
    let gone = summary
        .sessions
        .iter()
        .find(|s| s.peer == vanished)
        .unwrap();
    assert!(matches!(gone.end, End::Vanished(_)), "{:?}", gone.end);
    let log = std::fs::read_to_string(dir.path().join(format!(
        "headers-server-{}-{}.txt",
        vanished.ip(),
        vanished.port()
    )))
    .unwrap();
    assert!(log.contains("end: vanished\n"), "{log}");
    assert!(log.contains("query_1_result: miss\n"), "{log}");
    // Its query's header was still kept.
    assert_eq!(origin.requests().of("www.twitch.tv"), 1);
}

#[test]
fn the_cache_file_is_whole_after_a_session_and_a_new_server_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache_path = dir.path().join("cache.txt");
    let origin = start_origin();
    let server = TestServer::start(origin.addr(), &cache_path, dir.path());
    let hosts = ["www.twitch.tv", "www.google.cl", FULL];
    ask(server.addr, &hosts, dir.path());
    server.stop();
    let cache = Cache::load(&cache_path).unwrap();
    assert_eq!(cache.len(), hosts.len());
    for h in hosts {
        assert_eq!(
            cache.get(h).unwrap().as_ref(),
            header_for(h).as_slice(),
            "{h}"
        );
    }
    let leftovers: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A new server and a new origin: every answer from the file.
    let origin = start_origin();
    let server = TestServer::start(origin.addr(), &cache_path, dir.path());
    let again = dir.path().join("again");
    ask(server.addr, &hosts, &again);
    for h in hosts {
        assert_stored(&again, h);
    }
    assert_eq!(origin.requests().total(), 0);
    let summary = server.stop();
    assert!(
        outcomes(&summary)[0]
            .iter()
            .all(|o| matches!(o, Outcome::Hit(_)))
    );
}

#[test]
fn the_commands_serve_a_session_and_write_their_logs() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let origin = start_origin();
    let bin = env!("CARGO_BIN_EXE_udplab");
    let mut server = Command::new(bin)
        .args([
            "headers",
            "server",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--udp-port",
            "0",
        ])
        .arg("--cache")
        .arg(dir.path().join("cache.txt"))
        .arg("--origin")
        .arg(origin.addr().to_string())
        .arg("--log-dir")
        .arg(dir.path().join("slogs"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(server.stderr.take().unwrap()).lines();
    // "headers server: tcp 127.0.0.1:PORT udp PORT cache ..."
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split_once("tcp ")
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
        })
        .unwrap();
    let out = dir.path().join("got");
    let client = Command::new(bin)
        .args(["headers", "client", "--server", &addr])
        .arg("--out")
        .arg(&out)
        .arg("--log-dir")
        .arg(dir.path().join("clogs"))
        .args([
            "www.twitch.tv",
            "www.google.cl",
            "www.twitch.tv",
            "no_such host",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&client.stdout);
    // One name refused: exit status 2.
    assert_eq!(client.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("no_such host: error: not a host name\n"),
        "{stdout}"
    );
    assert_stored(&out, "www.twitch.tv");
    assert_stored(&out, "www.google.cl");
    assert_eq!(origin.requests().total(), 2);
    let clog = std::fs::read_dir(dir.path().join("clogs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let clog = std::fs::read_to_string(clog).unwrap();
    assert!(
        clog.contains("role: headers-client\n") && clog.contains("stored: 3\n"),
        "{clog}"
    );
    // The session's log is written once the client has closed.
    let slogs = dir.path().join("slogs");
    let session_log = || {
        std::fs::read_dir(&slogs)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("headers-server-"))
            })
    };
    let mut slog = None;
    for _ in 0..250 {
        slog = session_log();
        if slog.is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let slog = slog.expect("the server's session log");
    let slog = std::fs::read_to_string(slog).unwrap();
    assert!(
        slog.contains("hits: 1\nmisses: 2\nrefused: 1\nend: terminated\n"),
        "{slog}"
    );
}

#[test]
fn after_terminate_the_server_waits_for_the_client_to_close_first() {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_origin();
    let server = TestServer::start(origin.addr(), &dir.path().join("cache.txt"), dir.path());
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s.write_all(b"terminate").unwrap();
    let mut buf = [0u8; 16];
    // Still open on the server's side: nothing, not an end of stream.
    let e = s.read(&mut buf).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e}"
    );
    // The client's FIN, then the server's.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    let summary = server.stop();
    assert_eq!(summary.sessions[0].end, End::Terminated);
}

#[test]
fn stray_datagrams_get_nothing_and_the_session_is_still_served() {
    use std::net::UdpSocket;
    let dir = tempfile::tempdir().unwrap();
    let origin = start_origin();
    let server = TestServer::start(origin.addr(), &dir.path().join("cache.txt"), dir.path());
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let Some(Answer::Port(port)) = Answer::parse(&raw_query(&mut s, b"www.twitch.tv")) else {
        panic!("no port");
    };
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.connect(("127.0.0.1", port)).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let other = s.local_addr().unwrap().port().wrapping_add(1);
    // Too long, too short, and a session that has nothing waiting.
    for stray in [&b"abc"[..], b"x", &other.to_be_bytes()] {
        udp.send(stray).unwrap();
        assert!(udp.recv(&mut buf).is_err(), "{stray:?} got an answer");
    }
    // The session's own request still gets its header, once.
    udp.send(&s.local_addr().unwrap().port().to_be_bytes())
        .unwrap();
    let n = udp.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], header_for("www.twitch.tv").as_slice());
    udp.send(&s.local_addr().unwrap().port().to_be_bytes())
        .unwrap();
    assert!(udp.recv(&mut buf).is_err(), "a second answer to one query");
    s.write_all(b"terminate").unwrap();
    drop(s);
    server.stop();
}
