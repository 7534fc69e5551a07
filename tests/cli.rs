//! The binary as a user runs it: a server and clients as processes on
//! loopback, what they print, their exit status, and Ctrl-C.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_udplab");

/// A child process that is killed if the test ends before it does.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
