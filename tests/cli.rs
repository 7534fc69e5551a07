//! The binary as a user runs it: a server and clients as processes on
//! loopback, what they print, their exit status, and Ctrl-C.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_udplab");

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    use std::io::Read;
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

/// `udplab server` for 2 clients per round on 127.0.0.1:`port`, with
/// `extra` arguments, its stderr captured; started and given a moment to
/// listen.
fn spawn_server(port: &str, file: &Path, logs: &Path, extra: &[&str]) -> Proc {
    let server = Command::new(BIN)
        .args([
            "server",
            "--clients",
            "2",
            "--bind",
            "127.0.0.1",
            "--port",
            port,
        ])
        .args(extra)
        .arg("--file")
        .arg(file)
        .arg("--log-dir")
        .arg(logs)
        .stderr(Stdio::piped())
        .spawn()
        .map(Proc)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server
}

/// `udplab -q client` for the server on 127.0.0.1:`port`, storing in `out`
/// and logging in `logs`.
fn client_command(port: &str, out: &Path, logs: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["-q", "client", "--server", &format!("127.0.0.1:{port}")])
        .arg("--out")
        .arg(out)
        .arg("--log-dir")
        .arg(logs);
    cmd
}

/// A port that was free a moment ago, with free data ports after it.
fn free_port(data_ports: u16) -> u16 {
    listener_with_free_data_ports(data_ports)
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn server_and_clients_as_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = write_file(dir.path(), "proc.bin", 400_000, 31);
    let port = free_port(3).to_string();
    let logs = dir.path().join("logs");
    let mut server = spawn_server(&port, &file, &logs, &["--rounds", "1"]);
    let clients: Vec<Child> = ["--legacy", "--idle-timeout=1s"]
        .iter()
        .map(|flag| {
            client_command(&port, &dir.path().join("out"), &logs)
                .arg(flag)
                .args(["--recv-buffer", "32MiB", "--start-timeout", "20s"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in clients {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("400000 of 400000 bytes") && text.contains("complete"),
            "{text}"
        );
    }
    let status = wait_with_timeout(&mut server.0, Duration::from_secs(20));
    let err = stderr_of(&mut server.0);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.contains("round 1: 2 client(s) registered, sending"),
        "{err}"
    );
    // Two copies, neither overwriting the other.
    let copies = files_with_prefix(&dir.path().join("out"), "proc.bin");
    assert_eq!(copies.len(), 2);
    for c in copies {
        assert_eq!(std::fs::read(c).unwrap(), data);
    }
    assert_eq!(files_with_prefix(&logs, "S").len(), 2);
    assert_eq!(files_with_prefix(&logs, "C").len(), 2);
}

#[test]
fn a_round_short_of_clients_says_so_and_the_barrier_timeout_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "wait.bin", 1000, 32);
    let port = free_port(3).to_string();
    let mut server = spawn_server(
        &port,
        &file,
        &dir.path().join("logs"),
        &["--barrier-timeout", "6s"],
    );
    let client = client_command(&port, &dir.path().join("out"), &dir.path().join("logs"))
        .output()
        .unwrap();
    let status = wait_with_timeout(&mut server.0, Duration::from_secs(20));
    let err = stderr_of(&mut server.0);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("waiting for 1 more client(s): 1 of 2 registered"),
        "{err}"
    );
    assert!(
        err.contains("error: barrier timeout: 1 of 2 client(s) registered"),
        "{err}"
    );
    // The client was told, and says the transfer did not happen.
    assert_eq!(client.status.code(), Some(2));
    let out = String::from_utf8_lossy(&client.stdout);
    assert!(out.contains("INCOMPLETE"), "{out}");
    assert!(files_with_prefix(&dir.path().join("out"), "").is_empty());
}

#[test]
fn ctrl_c_stops_a_waiting_client_and_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "sig.bin", 1000, 33);
    let port = free_port(3).to_string();
    let logs = dir.path().join("logs");
    let mut server = spawn_server(&port, &file, &logs, &[]);
    let mut client = client_command(&port, &dir.path().join("out"), &logs)
        .stdout(Stdio::piped())
        .spawn()
        .map(Proc)
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(client.0.id() as i32, libc::SIGINT) };
    let status = wait_with_timeout(&mut client.0, Duration::from_secs(5));
    assert_eq!(status.code(), Some(2));
    let log = files_with_prefix(&logs, "C1-");
    assert_eq!(log.len(), 1);
    let log = udplab::transfer_log::read_log(&log[0]).unwrap();
    assert_eq!(log.success, Some(false));
    assert_eq!(log.error.as_deref(), Some("interrupted"));

    // SAFETY: as above.
    unsafe { libc::kill(server.0.id() as i32, libc::SIGINT) };
    let status = wait_with_timeout(&mut server.0, Duration::from_secs(5));
    let err = stderr_of(&mut server.0);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("client 1 left while waiting"), "{err}");
}

/// Every `udplab: client K: sent ...` line of a server's stderr.
fn sent_lines(err: &str) -> Vec<&str> {
    err.lines()
        .filter(|l| l.starts_with("udplab: client ") && l.contains(": sent "))
        .collect()
}

/// The lab's protocol brings nothing back, so the server cannot know what
/// a lab client kept. Its log claims no delivery (no `success`, and
/// `delivery: unknown`), its console and summary say "sent; delivery
/// unknown (lab protocol)", and its exit status 0 says only that nothing
/// failed on its side. (It used to log `success: true` and sum up "0
/// incomplete" for clients that kept a tenth of the file.) One client has
/// a tiny receive buffer, so in practice it keeps far less than the file:
/// the server's words must not depend on it.
#[test]
fn server_claims_no_delivery_to_legacy_clients() {
    let dir = tempfile::tempdir().unwrap();
    let size = 4u64 << 20;
    let (file, _) = write_file(dir.path(), "lab.bin", size as usize, 34);
    let port = free_port(3).to_string();
    let logs = dir.path().join("logs");
    let mut server = spawn_server(&port, &file, &logs, &["--rounds", "1"]);
    let clients: Vec<Proc> = ["64MiB", "4KiB"]
        .iter()
        .enumerate()
        .map(|(i, buffer)| {
            client_command(&port, &dir.path().join(format!("out{i}")), &logs)
                .args([
                    "--legacy",
                    "--recv-buffer",
                    buffer,
                    "--start-timeout",
                    "20s",
                ])
                .stdout(Stdio::null())
                .spawn()
                .map(Proc)
                .unwrap()
        })
        .collect();
    for mut c in clients {
        let status = wait_with_timeout(&mut c.0, Duration::from_secs(30));
        assert!(matches!(status.code(), Some(0 | 2)), "{status}");
    }
    let status = wait_with_timeout(&mut server.0, Duration::from_secs(20));
    let err = stderr_of(&mut server.0);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "1 round(s), 2 transfer(s): 0 complete, 0 incomplete, \
             2 sent; delivery unknown (lab protocol)"
        ),
        "{err}"
    );
    let sent = sent_lines(&err);
    assert_eq!(sent.len(), 2, "{err}");
    for line in sent {
        assert!(
            line.contains(&format!("sent {size} bytes"))
                && line.ends_with("; delivery unknown (lab protocol)"),
            "{line}"
        );
    }

    let server_logs = files_with_prefix(&logs, "S");
    assert_eq!(server_logs.len(), 2);
    for path in &server_logs {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("\ndelivery: unknown\n"), "{text}");
        assert!(!text.contains("\nsuccess:"), "{text}");
        assert!(!text.contains("\nerror:"), "{text}");
        let log = udplab::transfer_log::read_log(path).unwrap();
        assert_eq!(log.bytes_sent, Some(size));
        assert_eq!(log.datagrams_sent, Some(size.div_ceil(1024)));
    }
    // What arrived only the clients' own logs tell, and the analyzer takes
    // the verdict from them (it never took a lab server log's).
    let loaded = udplab::analyze::logs::load(std::slice::from_ref(&logs)).unwrap();
    let opts = udplab::analyze::Options {
        control_port: port.parse().unwrap(),
        chunk: 1024,
        log_utc_offset: None,
        conversations: false,
        pictures: false,
    };
    let analysis = udplab::analyze::from_logs(&loaded, &opts, "not asked for");
    assert_eq!(analysis.clients.len(), 2);
    for row in &analysis.clients {
        let id = row.client_id.unwrap();
        let own = files_with_prefix(&logs, &format!("C{id}-"));
        let own = udplab::transfer_log::read_log(&own[0]).unwrap();
        eprintln!(
            "client {id} kept {} of {size} bytes; the server says: delivery unknown",
            own.bytes_received.unwrap()
        );
        assert_eq!(row.success, own.success, "client {id}");
    }
}

/// A server that closes its connections first leaves them in TIME_WAIT
/// for 60 s (the lab's protocol closes the control connection at the
/// barrier); the next server binds the port at once all the same, because
/// the listener has SO_REUSEADDR (and so its connections). Still passes
/// with std's `TcpListener::bind`, which sets the option too: it guards
/// the listener against losing it.
#[test]
fn a_new_server_binds_at_once_while_the_last_ones_connections_are_in_time_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "tw.bin", 100_000, 35);
    let port_n = free_port(3);
    let port = port_n.to_string();
    let logs = dir.path().join("logs");
    let legacy_round = |server: &mut Proc| {
        let clients: Vec<Proc> = (0..2)
            .map(|_| {
                client_command(&port, &dir.path().join("out"), &logs)
                    .args([
                        "--legacy",
                        "--recv-buffer",
                        "32MiB",
                        "--start-timeout",
                        "20s",
                    ])
                    .stdout(Stdio::null())
                    .spawn()
                    .map(Proc)
                    .unwrap()
            })
            .collect();
        for mut c in clients {
            assert_eq!(
                wait_with_timeout(&mut c.0, Duration::from_secs(20)).code(),
                Some(0)
            );
        }
        let status = wait_with_timeout(&mut server.0, Duration::from_secs(20));
        let err = stderr_of(&mut server.0);
        assert_eq!(status.code(), Some(0), "{err}");
        err
    };
    let mut first = spawn_server(&port, &file, &logs, &["--rounds", "1"]);
    legacy_round(&mut first);
    let Some((waiting, lines)) = time_wait_on(port_n) else {
        skip_or_fail("`ss -tan` cannot run here (iproute2 is not installed)");
        return;
    };
    assert!(
        waiting >= 1,
        "the server closed first: its side should be in TIME_WAIT\n{lines}"
    );
    let mut second = spawn_server(&port, &file, &logs, &["--rounds", "1"]);
    let err = legacy_round(&mut second);
    assert!(err.contains(&format!("on port {port}")), "{err}");
}

/// A legacy client that gets no data within `--start-timeout` is an error
/// (exit status 1, one line naming the log), and leaves its log saying so:
/// every client that registered does. (It used to leave none: without the
/// name datagram it had no file name to log under; the log's name now
/// says `unknown` there.)
#[test]
fn legacy_client_without_data_in_time_leaves_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "never.bin", 1000, 36);
    let port = free_port(3).to_string();
    let logs = dir.path().join("logs");
    // Two per round: the round never fills.
    let _server = spawn_server(&port, &file, &logs, &[]);
    let started = Instant::now();
    let mut client = client_command(&port, &dir.path().join("out"), &logs)
        .args(["--legacy", "--start-timeout", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(Proc)
        .unwrap();
    let status = wait_with_timeout(&mut client.0, Duration::from_secs(10));
    assert!(started.elapsed() < Duration::from_secs(8));
    let err = stderr_of(&mut client.0);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no data within the start timeout (1s) of registering"),
        "{err}"
    );
    let log_path = files_with_prefix(&logs, "C1-");
    assert_eq!(log_path.len(), 1, "{err}");
    assert!(err.contains(&log_path[0].display().to_string()), "{err}");
    let name = log_path[0].file_name().unwrap().to_str().unwrap();
    assert!(name.ends_with("-unknown-2-log.txt"), "{name}");
    let log = udplab::transfer_log::read_log(&log_path[0]).unwrap();
    assert_eq!(log.role, Some(udplab::transfer_log::Role::Client));
    assert_eq!(log.protocol, Some(udplab::protocol::Protocol::Lab));
    assert_eq!(log.client_id, Some(1));
    assert_eq!(log.clients, Some(2));
    assert_eq!(log.file_name, None);
    assert_eq!(log.success, Some(false));
    assert!(
        log.error
            .as_deref()
            .unwrap()
            .contains("no data within the start timeout"),
        "{:?}",
        log.error
    );
    assert_eq!(log.bytes_received, None);
    assert!(files_with_prefix(&dir.path().join("out"), "").is_empty());
}
