//! Bad input on every side: a missing file, a port in use, no server, a
//! silent or garbage-speaking client, short reads, oversized values, more
//! clients than a round holds, a server or client that dies mid-transfer,
//! a barrier that never fills. Each gets a clear error or a logged warning,
//! the server keeps serving the others, and no partial file looks complete.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use udplab::client;
use udplab::protocol::v1::{self, Message};
use udplab::shutdown::Shutdown;
use udplab::transfer_log;

const BIN: &str = env!("CARGO_BIN_EXE_udplab");

/// The binary failed with exit status 1 and said why on one line.
fn one_line_error(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn missing_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "-q",
            "server",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--file",
        ])
        .arg(dir.path().join("nope.bin"))
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains("nope.bin") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn port_in_use_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "f.bin", 10, 1);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(BIN)
        .args([
            "-q",
            "server",
            "--bind",
            "127.0.0.1",
            "--port",
            &port,
            "--file",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains(&format!("binding the control port 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("in use"), "{err}");
}

/// The port is held by connections in TIME_WAIT of a server that did not
/// set SO_REUSEADDR (as the lab's servidor.py does not, and it closes
/// first when it is stopped mid-round). No option of ours can share the
/// port with those (Linux wants SO_REUSEADDR on both sides, and
/// SO_REUSEPORT is not for servers that must refuse a second one), so the
/// one-line error says what holds the port and when it is freed.
#[test]
fn time_wait_of_a_server_without_reuseaddr_is_explained() {
    use socket2::{Domain, Socket, Type};
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "f.bin", 10, 1);
    let port = listener_with_free_data_ports(2)
        .local_addr()
        .unwrap()
        .port();
    // The lab's server: a plain socket, bound and listening, no options.
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    sock.listen(8).unwrap();
    let lab: TcpListener = sock.into();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (accepted, _) = lab.accept().unwrap();
    // The server closes first; the client sees its FIN, then closes too.
    drop(accepted);
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(client.read(&mut [0u8; 1]).unwrap(), 0);
    drop(client);
    drop(lab);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match time_wait_on(port) {
            None => {
                skip_or_fail("`ss -tan` cannot run here (iproute2 is not installed)");
                return;
            }
            Some((n, _)) if n > 0 => break,
            Some(_) => {
                assert!(Instant::now() < deadline, "no TIME_WAIT on port {port}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let out = Command::new(BIN)
        .args(["-q", "server", "--bind", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("--file")
        .arg(&file)
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains(&format!("binding the control port 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("in use"), "{err}");
    assert!(
        err.contains(&format!("connection(s) on port {port} are in TIME_WAIT")),
        "{err}"
    );
    assert!(err.contains("did not set SO_REUSEADDR"), "{err}");
    assert!(err.contains("within 60 s"), "{err}");
}

#[test]
fn unreachable_server_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(BIN)
        .args([
            "-q",
            "client",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains("server not reachable") && err.contains("refused"),
        "{err}"
    );
}

#[test]
fn bad_arguments_are_refused() {
    for args in [
        &["server", "--file", "x", "--clients", "0"][..],
        &["client", "--server", "127.0.0.1:99999"],
        &["client", "--server", "127.0.0.1", "--recv-buffer", "lots"],
        &["server", "--file", "x", "--barrier-timeout", "soon"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_ne!(out.status.code(), Some(0), "{args:?} accepted");
        assert!(!out.stderr.is_empty());
    }
}

/// Registration steps a hostile or broken client might take, each followed
/// by a real client that must still be served.
#[test]
fn hostile_registrations_do_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "h.bin", 100_000, 3);
    let logs = dir.path().join("logs");
    let server = start_server(&file, 1, &logs, |cfg| {
        cfg.register_timeout = Duration::from_millis(300);
    });
    let addr = server.addr;
    let mut ids = Vec::new();
    let mut read_id = |s: &mut TcpStream| {
        let mut id = [0u8; 2];
        s.read_exact(&mut id).unwrap();
        ids.push(u16::from_le_bytes(id));
    };

    // Says nothing at all.
    let mut silent = TcpStream::connect(addr).unwrap();
    read_id(&mut silent);
    // A short read: one byte of three, then gone.
    let mut short = TcpStream::connect(addr).unwrap();
    read_id(&mut short);
    short.write_all(&[0x34]).unwrap();
    drop(short);
    // Port 0.
    let mut zero = TcpStream::connect(addr).unwrap();
    read_id(&mut zero);
    zero.write_all(&[0, 0, 0]).unwrap();
    // An unknown protocol version tag (an "oversized" port value).
    let mut tag = TcpStream::connect(addr).unwrap();
    read_id(&mut tag);
    tag.write_all(&[0x10, 0x27, 0xee]).unwrap();
    // Plain garbage, more than asked for.
    let mut garbage = TcpStream::connect(addr).unwrap();
    read_id(&mut garbage);
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();

    // The server closes each of them; the silent one after the timeout.
    for (what, s) in [
        ("port 0", &mut zero),
        ("tag", &mut tag),
        ("silent", &mut silent),
    ] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "{what}: the server should have closed");
    }
    // `garbage` sent a valid-looking port message ("GE", 'T' = tag 0x54):
    // the tag is unknown, so it is dropped too.

    let o = receive(addr, &dir.path().join("out"), &logs).unwrap();
    assert_received(&o, &data);
    assert_eq!(ids[0], 1);
    // Each failed registration gave its number back before its connection
    // closed: the real client, after them, gets the lowest.
    assert_eq!(o.log.client_id, Some(1));
    let summary = server.join().unwrap();
    assert_eq!(summary.outcomes.len(), 1);
}

#[test]
fn more_clients_than_the_rounds_hold_are_told_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "m.bin", 200_000, 4);
    let logs = dir.path().join("logs");
    let server = start_server(&file, 1, &logs, |_| {});
    let addr = server.addr;
    // The extra client registers while the only round is being formed.
    let first = receive(addr, &dir.path().join("out1"), &logs).unwrap();
    assert_received(&first, &data);
    server.join().unwrap();
    // After the last round the control port is closed.
    let late = receive(addr, &dir.path().join("out2"), &logs);
    let err = format!("{:#}", late.unwrap_err());
    assert!(err.contains("server not reachable"), "{err}");
}

#[test]
fn extra_client_in_a_full_round_is_aborted_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "x.bin", 2_000_000, 4);
    let logs = dir.path().join("logs");
    let server = start_server(&file, 2, &logs, |_| {});
    let addr = server.addr;
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let out = dir.path().join(format!("out{i}"));
            let logs = logs.clone();
            thread::spawn(move || receive(addr, &out, &logs))
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    server.join().unwrap();
    let complete = outcomes
        .iter()
        .filter(|o| o.as_ref().is_ok_and(|o| o.complete))
        .count();
    assert_eq!(complete, 2);
    let refused: Vec<(usize, &client::Outcome)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.as_ref().ok().filter(|o| !o.complete).map(|o| (i, o)))
        .collect();
    assert_eq!(refused.len(), 1);
    let (i, refused) = refused[0];
    let error = refused.log.error.as_deref().unwrap();
    assert!(error.contains("not forming more rounds"), "{error}");
    // Nothing arrived, so no file at all (not even a partial one), and the
    // log says why.
    assert!(refused.output.is_none());
    assert!(files_with_prefix(&dir.path().join(format!("out{i}")), "").is_empty());
    let log = transfer_log::read_log(refused.log_path.as_ref().unwrap()).unwrap();
    assert_eq!(log.success, Some(false));
}

#[test]
fn barrier_timeout_ends_the_wait_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "b.bin", 1000, 4);
    let logs = dir.path().join("logs");
    let server = start_server(&file, 3, &logs, |cfg| {
        cfg.barrier_timeout = Some(Duration::from_millis(600));
    });
    let addr = server.addr;
    let started = Instant::now();
    let o = receive(addr, &dir.path().join("out"), &logs).unwrap();
    let err = format!("{:#}", server.join().unwrap_err());
    assert!(err.contains("barrier timeout: 1 of 3"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!o.complete);
    assert!(o.log.error.as_deref().unwrap().contains("barrier timeout"));
    assert!(o.output.is_none());
    assert!(files_with_prefix(&dir.path().join("out"), "").is_empty());
}

/// A v1 server that sends half the file, then drops everything.
#[test]
fn v1_server_dying_mid_transfer_leaves_a_file_marked_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(100 * 1008, 21);
    let listener = listener_with_free_data_ports(1);
    let addr = listener.local_addr().unwrap();
    let payload = data.clone();
    let fake = thread::spawn(move || {
        let RawClient {
            mut tcp,
            udp_to: to,
            tag,
        } = accept_raw(&listener);
        assert_eq!(tag, v1::VERSION);
        let announce = v1::Announce {
            file_name: "../dying.bin".into(),
            file_size: payload.len() as u64,
            datagrams: 100,
            datagram_size: 1024,
            data_port: addr.port() + 1,
            mode: udplab::protocol::Mode::Blast,
            sha256: [0; 32],
        };
        announce_and_start(&mut tcp, announce);
        let udp = data_socket(&listener);
        for (seq, chunk) in payload.chunks(1008).enumerate().take(50) {
            udp.send_to(&v1_datagram(seq as u32, 0, chunk), to).unwrap();
        }
        thread::sleep(Duration::from_millis(200));
        // The server dies: its control connection closes.
    });
    let out = dir.path().join("out");
    let o = client::run(
        client_config(addr, &out, &dir.path().join("logs")),
        Shutdown::new(),
    )
    .unwrap();
    fake.join().unwrap();
    assert!(!o.complete);
    let error = o.log.error.as_deref().unwrap();
    assert!(error.contains("closed the control connection"), "{error}");
    let path = o.output.unwrap();
    assert_eq!(path, out.join("dying.bin.incomplete"));
    assert!(!out.join("dying.bin").exists());
    assert_eq!(o.log.datagrams_received, Some(50));
    assert_eq!(o.log.missing_ranges.as_deref(), Some("50-99"));
    let log = transfer_log::read_log(o.log_path.as_ref().unwrap()).unwrap();
    assert_eq!(log.success, Some(false));
    assert_eq!(log.bytes_received, Some(50 * 1008));
}

#[test]
fn lab_server_stopping_early_leaves_a_file_marked_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(100 * 1024, 22);
    let listener = listener_with_free_data_ports(1);
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let payload = data.clone();
    let fake = thread::spawn(move || {
        let client = accept_raw(&listener);
        let udp = data_socket(&listener);
        let to = client.udp_to;
        udp.send_to(b"lab.bin", to).unwrap();
        udp.send_to(&(payload.len() as u64).to_le_bytes(), to)
            .unwrap();
        for chunk in payload.chunks(1024).take(40) {
            udp.send_to(chunk, to).unwrap();
        }
        let _ = rx.recv();
    });
    let out = dir.path().join("out");
    let mut cfg = client_config(addr, &out, &dir.path().join("logs"));
    cfg.legacy = true;
    cfg.idle_timeout = Duration::from_millis(300);
    let o = client::run(cfg, Shutdown::new()).unwrap();
    tx.send(()).unwrap();
    fake.join().unwrap();
    assert!(!o.complete);
    assert_eq!(
        o.output.as_deref(),
        Some(out.join("lab.bin.incomplete").as_path())
    );
    assert_eq!(
        std::fs::read(out.join("lab.bin.incomplete")).unwrap(),
        data[..40 * 1024]
    );
    assert_eq!(o.log.bytes_received, Some(40 * 1024));
    assert!(o.log.error.as_deref().unwrap().contains("40960 of 102400"));
}

#[test]
fn hostile_server_with_an_oversized_message_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = thread::spawn(move || {
        let mut client = accept_raw(&listener);
        client
            .tcp
            .write_all(&[0x01, 0xff, 0xff, 0xff, 0xff])
            .unwrap();
        thread::sleep(Duration::from_millis(300));
    });
    let r = client::run(
        client_config(addr, &dir.path().join("out"), &dir.path().join("logs")),
        Shutdown::new(),
    );
    fake.join().unwrap();
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("oversized control message"), "{err}");
    assert!(
        !dir.path().join("out").exists()
            || files_with_prefix(&dir.path().join("out"), "").is_empty()
    );
}

/// A v1 client registered by a server that then sends no announce (as the
/// lab's servidor.py does: it knows no v1), or that aborts before it,
/// gives up with an error naming its log, and leaves that log saying why.
/// (It used to leave none: before the announce it had no file name.)
#[test]
fn v1_client_without_an_announce_leaves_its_log() {
    for abort in [None, Some("the server is going away")] {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let fake = thread::spawn(move || {
            let mut client = accept_raw(&listener);
            assert_eq!(client.tag, v1::VERSION);
            if let Some(reason) = abort {
                let abort = Message::Abort {
                    reason: reason.into(),
                };
                udplab::control::send(&mut client.tcp, &abort, Duration::from_secs(1)).unwrap();
            }
            // Hold the connection open until the client is done.
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
        });
        let logs = dir.path().join("logs");
        let mut cfg = client_config(addr, &dir.path().join("out"), &logs);
        cfg.register_timeout = Duration::from_millis(500);
        let started = Instant::now();
        let r = client::run(cfg, Shutdown::new());
        let _ = done_tx.send(());
        fake.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        let err = format!("{:#}", r.unwrap_err());
        let why = match abort {
            None => "no announce within 500ms".to_string(),
            Some(reason) => format!("the server aborted: {reason}"),
        };
        assert!(err.contains(&why), "{err}");
        let paths = files_with_prefix(&logs, "C1-");
        assert_eq!(paths.len(), 1, "{err}");
        assert!(err.contains(&paths[0].display().to_string()), "{err}");
        let log = transfer_log::read_log(&paths[0]).unwrap();
        assert_eq!(log.protocol, Some(udplab::protocol::Protocol::V1));
        assert_eq!((log.client_id, log.clients), (Some(1), Some(1)));
        assert_eq!(log.success, Some(false));
        assert!(
            log.error.as_deref().unwrap().contains(&why),
            "{:?}",
            log.error
        );
        assert!(
            !dir.path().join("out").exists()
                || files_with_prefix(&dir.path().join("out"), "").is_empty()
        );
    }
}

#[test]
fn hostile_server_name_cannot_escape_the_output_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(3000, 23);
    let listener = listener_with_free_data_ports(1);
    let addr = listener.local_addr().unwrap();
    let payload = data.clone();
    let fake = thread::spawn(move || {
        let to = accept_raw(&listener).udp_to;
        let udp = data_socket(&listener);
        udp.send_to(b"../../escaped.bin", to).unwrap();
        udp.send_to(&(payload.len() as u64).to_le_bytes(), to)
            .unwrap();
        for chunk in payload.chunks(1024) {
            udp.send_to(chunk, to).unwrap();
        }
    });
    let out = dir.path().join("a").join("out");
    let mut cfg = client_config(addr, &out, &dir.path().join("logs"));
    cfg.legacy = true;
    let o = client::run(cfg, Shutdown::new()).unwrap();
    fake.join().unwrap();
    assert!(o.complete);
    assert_eq!(o.output.as_deref(), Some(out.join("escaped.bin").as_path()));
    assert!(!dir.path().join("escaped.bin").exists());
}

/// A v1 client that registers, then vanishes as soon as data starts: the
/// server logs the failure for it and still serves the other client.
#[test]
fn client_dying_mid_transfer_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "d.bin", 8 << 20, 24);
    let logs = dir.path().join("logs");
    let server = start_server(&file, 2, &logs, |_| {});
    let addr = server.addr;
    let dying = thread::spawn(move || {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        let mut tcp = TcpStream::connect(addr).unwrap();
        let mut id = [0u8; 2];
        tcp.read_exact(&mut id).unwrap();
        let [lo, hi] = port.to_le_bytes();
        tcp.write_all(&[lo, hi, v1::VERSION]).unwrap();
        let mut n = [0u8; 2];
        tcp.read_exact(&mut n).unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 2048];
        udp.recv(&mut buf).unwrap();
        // Gone: both sockets close with nothing reported.
        u16::from_le_bytes(id)
    });
    let o = receive(addr, &dir.path().join("out"), &logs).unwrap();
    let dead_id = dying.join().unwrap();
    let summary = server.join().unwrap();
    assert_received(&o, &data);
    let dead = summary
        .outcomes
        .iter()
        .find(|x| x.client_id == dead_id)
        .unwrap();
    assert_eq!(dead.log.success, Some(false));
    let error = dead.log.error.as_deref().unwrap();
    assert!(
        error.contains("unreachable") || error.contains("closed") || error.contains("report"),
        "{error}"
    );
    // Its log is written all the same.
    assert!(dead.log_path.as_ref().unwrap().exists());
}

/// Silent connections from one address get numbers up to its bound of
/// registrations under way; the others wait, unnumbered, and none is lost.
#[test]
fn a_flood_of_silent_connections_is_capped_and_the_server_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "flood.bin", 50_000, 5);
    let logs = dir.path().join("logs");
    let server = start_server(&file, 1, &logs, |cfg| {
        // Long enough that every flood connection arrives while the first
        // ones still hold their places.
        cfg.register_timeout = Duration::from_secs(30);
        cfg.first_byte_timeout = Duration::from_secs(20);
    });
    let addr = server.addr;
    let flood: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    thread::sleep(Duration::from_secs(1));
    let (mut numbered, mut waiting, mut refused) = (0, 0, 0);
    for mut s in flood.iter() {
        s.set_nonblocking(true).unwrap();
        let mut id = [0u8; 2];
        match s.read(&mut id) {
            Ok(0) => refused += 1,
            Ok(_) => numbered += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => waiting += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(numbered, udplab::admission::DEFAULT_PER_ADDRESS);
    assert_eq!(waiting, 300 - udplab::admission::DEFAULT_PER_ADDRESS);
    assert_eq!(refused, 0);
    // Once the silent ones go, a real client is served.
    drop(flood);
    let o = receive(addr, &dir.path().join("out"), &logs).unwrap();
    assert_received(&o, &data);
    server.join().unwrap();
}

/// The server stopped (Ctrl-C) mid-transfer tells its v1 clients why.
#[test]
fn server_shutdown_mid_transfer_aborts_v1_clients() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sparse.bin");
    // 64 MiB of zeros without writing them: a sparse file.
    std::fs::File::create(&file)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let logs = dir.path().join("logs");
    let server = start_server(&file, 1, &logs, |_| {});
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let [lo, hi] = udp.local_addr().unwrap().port().to_le_bytes();
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut id = [0u8; 2];
    tcp.read_exact(&mut id).unwrap();
    tcp.write_all(&[lo, hi, v1::VERSION]).unwrap();
    let mut n = [0u8; 2];
    tcp.read_exact(&mut n).unwrap();
    let mut reader = udplab::control::Reader::new();
    let timeout = Duration::from_secs(10);
    assert!(matches!(
        reader.read(&mut tcp, "announce", timeout).unwrap(),
        Message::Announce(_)
    ));
    assert!(matches!(
        reader.read(&mut tcp, "start", timeout).unwrap(),
        Message::Start { .. }
    ));
    server.shutdown.trigger();
    match reader.read(&mut tcp, "abort", timeout).unwrap() {
        Message::Abort { reason } => assert!(reason.contains("shutdown"), "{reason}"),
        other => panic!("expected an abort, got {other:?}"),
    }
    let summary = server.join().unwrap();
    let log = &summary.outcomes[0].log;
    assert_eq!(log.success, Some(false));
    assert!(log.bytes_sent.unwrap() < 64 << 20);
    assert!(log.error.as_deref().unwrap().contains("shutdown"));
}

/// A server that resets the connection mid-registration: the reset is said
/// once (the control error's message carries its cause, and is not also
/// its source, which `{:#}` would print a second time).
#[test]
fn a_reset_connection_is_said_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.write_all(&1u16.to_le_bytes()).unwrap();
        let mut port = [0u8; 3];
        tcp.read_exact(&mut port).unwrap();
        // Closing with a zero linger sends a RST.
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["-q", "client", "--server", &addr.to_string()])
        .arg("--out")
        .arg(dir.path().join("out"))
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .output()
        .unwrap();
    fake.join().unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("concurrency"), "{err}");
    assert_eq!(err.matches("Connection reset by peer").count(), 1, "{err}");
}

/// A server that sends a message v1 does not have, mid-transfer: the
/// transfer fails (an error, exit status 1), not just an incomplete file;
/// the log says so and what arrived keeps its `.incomplete` name.
#[test]
fn bad_data_from_the_server_mid_transfer_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(100 * 1008, 22);
    let listener = listener_with_free_data_ports(1);
    let addr = listener.local_addr().unwrap();
    let payload = data.clone();
    let fake = thread::spawn(move || {
        let RawClient {
            mut tcp,
            udp_to: to,
            ..
        } = accept_raw(&listener);
        let announce = v1::Announce {
            file_name: "garbled.bin".into(),
            file_size: payload.len() as u64,
            datagrams: 100,
            datagram_size: 1024,
            data_port: addr.port() + 1,
            mode: udplab::protocol::Mode::Blast,
            sha256: [0; 32],
        };
        announce_and_start(&mut tcp, announce);
        let udp = data_socket(&listener);
        for (seq, chunk) in payload.chunks(1008).enumerate().take(50) {
            udp.send_to(&v1_datagram(seq as u32, 0, chunk), to).unwrap();
        }
        thread::sleep(Duration::from_millis(100));
        // A message type v1 does not have.
        tcp.write_all(&[0x7e, 0, 0, 0, 0]).unwrap();
        thread::sleep(Duration::from_millis(500));
    });
    let out = dir.path().join("out");
    let o = client::run(
        client_config(addr, &out, &dir.path().join("logs")),
        Shutdown::new(),
    )
    .unwrap();
    fake.join().unwrap();
    assert!(o.failed && !o.complete);
    let error = o.log.error.as_deref().unwrap();
    assert!(error.contains("bad data from the server"), "{error}");
    assert_eq!(o.output.unwrap(), out.join("garbled.bin.incomplete"));
    assert!(!out.join("garbled.bin").exists());
}

/// A tmpfs of `size`, mounted on `dir` and unmounted when dropped (also
/// when the test fails).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` (through [`skip_or_fail`]) where mounting is not permitted.
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(o) => {
                skip_or_fail(format_args!("mount -t tmpfs: {}", text(&o.stderr).trim()));
                None
            }
            Err(e) => {
                skip_or_fail(format_args!("mount: {e}"));
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The client's output directory fills up mid-transfer (it had room for
/// the file when the announce came; another writer takes the rest): one
/// line on stderr naming the file it could not write, exit status 1 (an
/// error, not just loss), its log elsewhere saying the same, and no file
/// that looks complete (what arrived is `NAME.incomplete`).
#[test]
fn a_full_disk_is_one_line_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("small");
    let Some(_mounted) = Tmpfs::mount(&out, "8m") else {
        return;
    };
    let (file, _) = write_file(dir.path(), "big.bin", 4 << 20, 23);
    let logs = dir.path().join("logs");
    // 16 Mbit/s: the 4 MiB take about 2 s, time for the filler below.
    let server = start_server(&file, 1, &logs, |cfg| cfg.rate = Some(16e6));
    let child = Command::new(BIN)
        .args(["-q", "client", "--server", &server.addr.to_string()])
        .args(["--recv-buffer", "32MiB"])
        .arg("--out")
        .arg(&out)
        .arg("--log-dir")
        .arg(&logs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the client's temporary file is there, fill the file system.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&out).unwrap().next().is_none() {
        assert!(std::time::Instant::now() < until, "the client made no file");
        std::thread::sleep(Duration::from_millis(5));
    }
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(out.join("filler")).unwrap();
        let block = vec![0u8; 64 << 10];
        while filler.write_all(&block).is_ok() {}
    }
    let o = wait_output(child, Duration::from_secs(30));
    let _ = server.join();
    let err = one_line_error(&o);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains(&out.display().to_string()), "{err}");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["big.bin.incomplete", "filler"], "{err}");
    let log = files_with_prefix(&logs, "C1-");
    assert_eq!(log.len(), 1);
    let log = transfer_log::read_log(&log[0]).unwrap();
    assert_eq!(log.success, Some(false));
    assert!(
        log.error
            .as_deref()
            .unwrap()
            .contains("No space left on device"),
        "{:?}",
        log.error
    );
}
