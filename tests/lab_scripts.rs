//! udplab against the original lab's own scripts (`cliente.py`, from
//! `shared/lab-scripts` beside the repository, see [`common::lab_scripts`]),
//! each run from a temporary copy whose address and port constants point
//! at loopback and at ports this test chose.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use udplab::transfer_log::{self, Delivery, Role};

const BIN: &str = env!("CARGO_BIN_EXE_udplab");

/// `script` with each `NAME = ...` constant line of `constants` replaced,
/// as one would with `sed -i 's/^NAME = .*/NAME = value/'`. Every constant
/// must be there: a script that changed fails the test, not the network.
fn rewrite_constants(script: &str, constants: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(script.len());
    let mut found = vec![false; constants.len()];
    for line in script.lines() {
        let replaced = constants.iter().enumerate().find_map(|(i, (name, value))| {
            line.strip_prefix(name)
                .filter(|rest| rest.trim_start().starts_with('='))
                .map(|_| (i, format!("{name} = {value}")))
        });
        match replaced {
            Some((i, line)) => {
                found[i] = true;
                out.push_str(&line);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    for ((name, _), found) in constants.iter().zip(found) {
        assert!(found, "the lab's script has no `{name} = ...` line");
    }
    out
}

/// Whether `python3` runs here.
fn python3() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A copy of the lab's client in `dir`, with the folders it writes to,
/// registering from 127.0.0.1:`portc` (its UDP port is `portc` + its
/// client number) with the server on 127.0.0.1:`ports`.
fn lab_client_copy(scripts: &Path, dir: &Path, portc: u16, ports: u16) {
    std::fs::create_dir_all(dir.join("ArchivosRecibidos")).unwrap();
    std::fs::create_dir_all(dir.join("Logs")).unwrap();
    let script = std::fs::read_to_string(scripts.join("cliente.py")).unwrap();
    let script = rewrite_constants(
        &script,
        &[
            ("IPC", "\"127.0.0.1\"".into()),
            ("PORTC", portc.to_string()),
            ("IPS", "\"127.0.0.1\"".into()),
            ("PORTS", ports.to_string()),
        ],
    );
    std::fs::write(dir.join("cliente.py"), script).unwrap();
}

/// The lab's own client, in a round with our `--legacy` one: the server
/// cannot know what either kept, since the lab's protocol brings nothing
/// back. Its log claims no delivery (no `success`, `delivery: unknown`),
/// its summary says "sent; delivery unknown (lab protocol)", and its exit
/// status 0 claims only that everything was sent. The lab's client writes
/// the file as it reads it, in Python, so it usually keeps a fraction of
/// the 4 MiB blast: its own log says how much.
#[test]
fn server_claims_no_delivery_to_the_lab_client() {
    let Some(scripts) = lab_scripts() else { return };
    if !python3() {
        skip_or_fail("python3 is not installed (the lab's cliente.py runs on it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let size = 4u64 << 20;
    let (file, _) = write_file(dir.path(), "100MB.bin", size as usize, 51);
    let port = listener_with_free_data_ports(3)
        .local_addr()
        .unwrap()
        .port();
    let logs = dir.path().join("logs");
    let mut server = Command::new(BIN)
        .args(["server", "--clients", "2", "--rounds", "1"])
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .arg("--file")
        .arg(&file)
        .arg("--log-dir")
        .arg(&logs)
        .stderr(Stdio::piped())
        .spawn()
        .map(Proc)
        .unwrap();
    let stderr = StderrLines::of(&mut server.0);
    assert!(stderr.wait_for("serving 100MB.bin", Duration::from_secs(10)));

    // The lab's client first: it binds its UDP port only once registered,
    // so the round must not start before it has (ours fills it).
    let lab = dir.path().join("lab");
    let portc = listener_with_free_data_ports(1)
        .local_addr()
        .unwrap()
        .port();
    lab_client_copy(&scripts, &lab, portc, port);
    let mut lab_client = Command::new("python3")
        .arg("cliente.py")
        .current_dir(&lab)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(Proc)
        .unwrap();
    assert!(
        stderr.wait_for("client 1 registered", Duration::from_secs(10)),
        "the lab's client did not register"
    );
    std::thread::sleep(Duration::from_millis(200));
    let mut ours = Command::new(BIN)
        .args(["-q", "client", "--legacy", "--start-timeout", "20s"])
        .args([
            "--recv-buffer",
            "64MiB",
            "--server",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--out")
        .arg(dir.path().join("out"))
        .arg("--log-dir")
        .arg(&logs)
        .stdout(Stdio::null())
        .spawn()
        .map(Proc)
        .unwrap();
    let status = wait_with_timeout(&mut ours.0, Duration::from_secs(30));
    assert!(matches!(status.code(), Some(0 | 2)), "{status}");
    let status = wait_with_timeout(&mut lab_client.0, Duration::from_secs(30));
    let lab_out = output_of(&mut lab_client.0);
    assert!(status.success(), "cliente.py: {status}\n{lab_out}");
    let status = wait_with_timeout(&mut server.0, Duration::from_secs(20));
    let err = stderr.all();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "1 round(s), 2 transfer(s): 0 complete, 0 incomplete, \
             2 sent; delivery unknown (lab protocol)"
        ),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "client 1: sent {size} bytes in {} datagrams",
            size.div_ceil(1024)
        )),
        "{err}"
    );

    let s1 = files_with_prefix(&logs, "S1-");
    assert_eq!(s1.len(), 1);
    let text = std::fs::read_to_string(&s1[0]).unwrap();
    assert!(text.contains("\ndelivery: unknown\n"), "{text}");
    assert!(!text.contains("\nsuccess:"), "{text}");
    let s1 = transfer_log::read_log(&s1[0]).unwrap();
    assert_eq!(s1.delivery, Some(Delivery::Unknown));
    assert_eq!(s1.success, None);
    assert_eq!(s1.bytes_sent, Some(size));
    assert_eq!(s1.client_port, Some(portc + 1));

    // The lab's client wrote its own verdict, in its own words.
    let c1 = files_with_prefix(&lab.join("Logs"), "C1-");
    assert_eq!(c1.len(), 1, "{lab_out}");
    let c1 = transfer_log::read_log(&c1[0]).unwrap();
    assert_eq!(c1.role, Some(Role::Client));
    assert_eq!(c1.client_port, Some(portc + 1));
    let kept = c1.bytes_received.unwrap();
    assert_eq!(c1.success, Some(kept == size));
    eprintln!(
        "the lab's client kept {kept} of {size} bytes ({:.0} %); the server says: delivery unknown",
        kept as f64 * 100.0 / size as f64
    );
}

/// What a finished child wrote on its piped stdout and stderr, for a
/// failure message.
fn output_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut text);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}
