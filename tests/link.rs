//! `udplab lab --link`, for real: blasts through a 100 Mbit/s bottleneck
//! with 1 % random loss, each place's loss as the analyzer places it
//! against the kernel's own counters (datagram for datagram), and the
//! path's namespaces and links gone after every way a run can end: its
//! end, a failure midway, Ctrl-C, and `kill -9` (then `--cleanup`, or the
//! next run).
//!
//! These tests need root (namespaces, setns, tc, iptables) and ip, tc and
//! iptables; where they are missing they fail under CI and are skipped
//! elsewhere ([`common::skip_or_fail`]). They take turns: each compares
//! the machine's namespaces and links before and after.

mod common;

use common::{skip_or_fail, text, wait_output};

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_udplab");

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// `Err(what is missing)` when this process cannot build a path.
fn link_possible() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        return Err(format!("udplab lab --link needs root (uid is {uid})"));
    }
    for tool in ["ip", "tc", "iptables"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Err(format!("udplab lab --link needs {tool}"));
        }
    }
    Ok(())
}

macro_rules! require_link {
    () => {
        let _turn = one_at_a_time();
        if let Err(why) = link_possible() {
            skip_or_fail(why);
            return;
        }
    };
}

/// The machine's named namespaces and its links, by name.
fn machine_names() -> (BTreeSet<String>, BTreeSet<String>) {
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let links = Command::new("ip")
        .args(["-j", "link", "show"])
        .output()
        .unwrap();
    let links: Value = serde_json::from_slice(&links.stdout).unwrap();
    (
        text(&netns.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect(),
        links
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect(),
    )
}

/// Names of the path of the run with `pid`, in the machine's namespaces.
fn namespaces_of(pid: u32) -> Vec<String> {
    let prefix = format!("udplab-{pid}-");
    machine_names()
        .0
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

fn spawn(args: &[&str], path: Option<&str>) -> Child {
    let mut c = Command::new(BIN);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(p) = path {
        c.env("PATH", p);
    }
    c.spawn().unwrap()
}

fn udplab(args: &[&str]) -> Output {
    wait_output(spawn(args, None), Duration::from_secs(120))
}

/// Waits until the run `pid` has built its three namespaces.
fn wait_for_path(pid: u32) {
    let start = Instant::now();
    while namespaces_of(pid).len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "run {pid} built no path"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A run long enough to be stopped midway: 20 MiB paced at 20 Mbit/s.
fn long_run(dir: &Path) -> Child {
    spawn(
        &[
            "-q",
            "lab",
            "--link-rate",
            "100Mbit",
            "--rate",
            "20Mbit",
            "--clients",
            "2",
            "--size",
            "20MiB",
            "--dir",
            dir.to_str().unwrap(),
        ],
        None,
    )
}

/// `kill(pid, sig)` on a child of this test.
fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// The transfers: they need the capture (`--features capture`).
#[cfg(feature = "capture")]
mod through_the_bottleneck {
    use super::*;
    use std::path::PathBuf;

    fn only_run_dir(runs: &Path) -> PathBuf {
        let dirs = common::run_dirs(runs);
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs[0].clone()
    }

    fn json(path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn u(v: &Value) -> u64 {
        v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
    }

    /// Data frames of a client's flow at the capture `path`.
    fn frames_at(client: &Value, path: &str) -> u64 {
        client["path"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["capture"] == path)
            .map(|p| u(&p["data_frames"]))
            .sum()
    }

    /// UDP frames of every flow at the capture `path`: (all, data).
    fn flow_frames_at(report: &Value, path: &str) -> (u64, u64) {
        report["flows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["capture"] == path)
            .fold((0, 0), |(a, d), f| {
                (a + u(&f["frames"]), d + u(&f["data_frames"]))
            })
    }

    /// The lab's own check row of `place`.
    fn check_row<'a>(counters: &'a Value, place: &str) -> &'a Value {
        counters["check"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["place"] == place)
            .unwrap_or_else(|| panic!("no check row {place}"))
    }

    /// One blast through the bottleneck, and every place's loss against the
    /// kernel's counters.
    fn blast_through_the_bottleneck(protocol: &str, clients: u16) {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let before = machine_names();
        let n = clients.to_string();
        let out = udplab(&[
            "-q",
            "lab",
            "--link-rate",
            "100Mbit",
            "--link-buffer",
            "256KiB",
            "--link-loss",
            "1%",
            "--protocol",
            protocol,
            "--clients",
            &n,
            "--size",
            "12MiB",
            "--dir",
            runs.to_str().unwrap(),
        ]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(machine_names(), before, "the path outlived the run");
        let run = only_run_dir(&runs);
        let report = common::report_json(&run);
        let counters = json(&run.join("counters.json"));
        let server_cap = run.join("server.pcapng").display().to_string();
        let client_cap = run.join("client.pcapng").display().to_string();
        let rows = report["clients"].as_array().unwrap();
        assert_eq!(rows.len(), usize::from(clients), "{stdout}{stderr}");

        // Both captures are whole: their statistics say nothing was dropped.
        let caps = report["captures"].as_array().unwrap();
        assert_eq!(caps.len(), 2, "{stdout}{stderr}");
        for c in caps {
            assert_eq!(c["dropped"], 0, "{c}");
        }
        let capture_rows: Vec<&Value> = counters["check"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["place"] == "capture")
            .collect();
        assert_eq!(capture_rows.len(), 2);
        for r in capture_rows {
            assert_eq!(r["agree"], true, "{r}");
        }

        // The network: every UDP datagram the server's capture holds and the
        // client's lacks, against the router's queue and loss rule (and the
        // veths' own drops, which do not happen here).
        let k = &counters["counters"];
        let queue = u(&k["router"]["queue"]["drops"]);
        let rule = u(&k["router"]["loss_rule"]["packets"]);
        let veth: u64 = k["links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| u(&l["tx_dropped"]))
            .sum();
        let (at_server, data_at_server) = flow_frames_at(&report, &server_cap);
        let (at_client, data_at_client) = flow_frames_at(&report, &client_cap);
        assert!(
            queue > 0 && rule > 0,
            "a blast through 100 Mbit/s with 1 % loss: queue {queue}, rule {rule}"
        );
        assert_eq!(
            at_server - at_client,
            queue + rule + veth,
            "network loss: analyzer vs queue drops {queue} + rule drops {rule} + veth drops {veth}"
        );
        // Its data datagrams are the clients' lost_between_captures.
        let between: u64 = rows
            .iter()
            .map(|r| frames_at(r, &server_cap) - frames_at(r, &client_cap))
            .sum();
        assert_eq!(between, data_at_server - data_at_client);
        let between_bytes: i64 = rows
            .iter()
            .map(|r| r["lost_between_captures_bytes"].as_i64().unwrap())
            .sum();
        assert!(between_bytes > 0);
        assert_eq!(check_row(&counters, "network")["agree"], true);

        // Before the first point: the sender host dropped nothing, and the
        // server's capture holds every datagram each log says it sent (a
        // server stops sending to a lab client that has gone).
        let chunk: u64 = if protocol == "lab" { 1024 } else { 1008 };
        let s = &k["sender_host"];
        let sender_drops = u(&s["qdisc_drops"]) + u(&s["udp_sndbuf_errors"]);
        let lost_before: u64 = rows
            .iter()
            .map(|r| u(&r["sent_bytes"]).div_ceil(chunk) - frames_at(r, &server_cap))
            .sum();
        assert_eq!(lost_before, sender_drops);
        for r in rows {
            assert_eq!(r["lost_before_capture_bytes"], 0, "{}", r["verdict"]);
        }
        assert_eq!(check_row(&counters, "sender_host")["agree"], true);

        // After the last point: each client's loss is its socket's drops.
        let mut failed = Vec::new();
        let mut socket_drops = 0;
        for r in rows {
            // A client that failed before it read its data: no log, or one
            // that does not say what its socket dropped.
            if r["kernel_drops"].is_null() {
                failed.push(r);
                continue;
            }
            let after = r["lost_after_capture_bytes"].as_i64().unwrap();
            let drops = u(&r["kernel_drops"]);
            assert_eq!(
                (after as u64).div_ceil(chunk),
                drops,
                "client {}: lost after the capture vs its socket's drops",
                r["client_id"]
            );
            socket_drops += drops;
        }
        let host = &k["receiver_host"];
        let receiver = check_row(&counters, "receiver_host");
        if failed.is_empty() {
            assert!(out.status.success(), "{stdout}{stderr}");
            assert_eq!(receiver["agree"], true, "{receiver}");
            assert_eq!(u(&host["udp_rcvbuf_errors"]), socket_drops);
            assert_eq!(u(&host["udp_no_ports"]), 0);
        } else {
            assert!(receiver["agree"].is_null(), "{receiver}");
            // Only the lab's protocol fails a client, and only when the network
            // took its name or size datagram: the lab client then cannot
            // begin (and the lab's own check leaves the receiver host out).
            // Without its name it has nothing to log under, an error of the
            // run (exit 1); without its size it logs that and ends (exit 0).
            assert_eq!(protocol, "lab", "{stdout}{stderr}");
            assert!(matches!(out.status.code(), Some(0 | 1)), "{stdout}{stderr}");
            for r in failed {
                let port = r["client_port"].as_u64().unwrap();
                let flow = report["flows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| {
                        f["capture"] == client_cap.as_str()
                            && f["dst"].as_str().unwrap().ends_with(&format!(":{port}"))
                    })
                    .unwrap_or_else(|| panic!("no flow to client port {port} at the client"));
                assert!(
                    flow["name_datagram"].is_null() || flow["size_datagram"].is_null(),
                    "client {} failed with its name and size: {stderr}",
                    r["client_id"]
                );
            }
        }

        // The table shows the network's column and the kernel's figures.
        assert!(stdout.contains("lost between captures"), "{stdout}");
        assert!(stdout.contains("by the kernel's own counters"), "{stdout}");
    }

    #[test]
    fn v1_two_clients_lose_in_the_network_what_the_router_dropped() {
        require_link!();
        blast_through_the_bottleneck("v1", 2);
    }

    #[test]
    fn v1_five_clients_lose_in_the_network_what_the_router_dropped() {
        require_link!();
        blast_through_the_bottleneck("v1", 5);
    }

    #[test]
    fn lab_two_clients_lose_in_the_network_what_the_router_dropped() {
        require_link!();
        blast_through_the_bottleneck("lab", 2);
    }

    #[test]
    fn lab_five_clients_lose_in_the_network_what_the_router_dropped() {
        require_link!();
        blast_through_the_bottleneck("lab", 5);
    }
}

#[test]
fn the_path_is_gone_after_a_run_and_after_one_that_fails_midway() {
    require_link!();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let before = machine_names();
    let out = udplab(&[
        "-q",
        "lab",
        "--link-loss",
        "1%",
        "--clients",
        "1",
        "--size",
        "1MiB",
        "--dir",
        runs.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(machine_names(), before);

    // An iptables that fails: the path is half built (namespaces, veths,
    // addresses, routes) when the loss rule cannot be added.
    let fake = dir.path().join("bin");
    std::fs::create_dir(&fake).unwrap();
    for name in ["iptables", "iptables-legacy"] {
        use std::os::unix::fs::PermissionsExt;
        let p = fake.join(name);
        std::fs::write(&p, "#!/bin/sh\necho 'iptables: out of order' >&2\nexit 4\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = wait_output(
        spawn(
            &[
                "lab",
                "--link-loss",
                "1%",
                "--dir",
                dir.path().join("failed").to_str().unwrap(),
            ],
            Some(&path),
        ),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("adding the random-loss rule") && errors[0].contains("out of order"),
        "{err}"
    );
    assert_eq!(machine_names(), before, "a failed build left its path");
}

#[test]
fn ctrl_c_midway_removes_the_path() {
    require_link!();
    let dir = tempfile::tempdir().unwrap();
    let before = machine_names();
    let child = long_run(dir.path());
    wait_for_path(child.id());
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, libc::SIGINT);
    let out = wait_output(child, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("interrupted"));
    assert_eq!(machine_names(), before);
}

#[test]
fn a_killed_run_s_path_is_removed_by_cleanup_and_by_the_next_run() {
    require_link!();
    let dir = tempfile::tempdir().unwrap();
    let before = machine_names();

    let killed = long_run(dir.path());
    let pid = killed.id();
    wait_for_path(pid);
    signal(&killed, libc::SIGKILL);
    let _ = wait_output(killed, Duration::from_secs(10));
    assert_eq!(namespaces_of(pid).len(), 3, "kill -9 leaves the path");
    let out = udplab(&["lab", "--cleanup"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    for role in ["srv", "rtr", "cli"] {
        assert!(
            said.contains(&format!(
                "removed network namespace udplab-{pid}-{role} (its run, PID {pid}, is gone)"
            )),
            "{said}"
        );
    }
    assert_eq!(machine_names(), before);
    let out = udplab(&["lab", "--cleanup"]);
    assert!(
        text(&out.stdout).starts_with("nothing to remove"),
        "{}",
        text(&out.stdout)
    );

    let killed = long_run(dir.path());
    let pid = killed.id();
    wait_for_path(pid);
    signal(&killed, libc::SIGKILL);
    let _ = wait_output(killed, Duration::from_secs(10));
    let out = udplab(&[
        "lab",
        "--link",
        "--clients",
        "1",
        "--size",
        "1MiB",
        "--dir",
        dir.path().join("next").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("removed network namespace udplab-{pid}-srv")),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(machine_names(), before);
}

#[test]
fn a_leftover_link_in_the_machine_s_namespace_is_removed_by_cleanup() {
    require_link!();
    let before = machine_names();
    // A PID that has just ended, and a veth pair (down, no address) named
    // as one of its runs would name its ends.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let pid = gone.id();
    let (a, b) = (format!("udplab{pid}s"), format!("udplab{pid}c"));
    let made = Command::new("ip")
        .args(["link", "add", &a, "type", "veth", "peer", "name", &b])
        .output()
        .unwrap();
    if !made.status.success() {
        skip_or_fail(format_args!("no veth here: {}", text(&made.stderr)));
        return;
    }
    let out = udplab(&["lab", "--cleanup"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.contains(&format!("removed link udplab{pid}")) && said.contains("is gone"),
        "{said}"
    );
    assert_eq!(machine_names(), before);
}

#[test]
fn without_root_link_is_one_clear_line() {
    let _turn = one_at_a_time();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Not root already: the run itself is the test.
        let out = udplab(&["lab", "--link"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains("takes root"));
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        skip_or_fail("needs setpriv to run udplab as an unprivileged user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.path().join("udplab");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    for args in [
        &["lab", "--link-rate", "100Mbit"][..],
        &["lab", "--cleanup"][..],
    ] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("takes root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run it with sudo"),
            "{err}"
        );
    }
    assert!(!dir.path().join("runs").exists());
}

#[test]
fn exec_commands_run_in_the_path_s_hosts_and_the_path_goes() {
    require_link!();
    let Some(python) = ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| Command::new(p).arg("-V").output().is_ok())
    else {
        skip_or_fail("no python3 for the commands run on the path");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("got");
    let seen = dir.path().join("client-addresses");
    let before = machine_names();
    // The client host listens (so the server's command starts at once) and
    // keeps what the server host sends it across the router.
    let client = format!(
        "ip -o addr > {seen}; {python} -c \"import os,socket; s=socket.socket(); \
         s.bind((os.environ['UDPLAB_CLIENT_IP'], 7000)); s.listen(); c,_=s.accept(); \
         open('{got}','wb').write(c.recv(64))\"",
        seen = seen.display(),
        got = got.display(),
    );
    let server = format!(
        "{python} -c \"import os,socket; \
         s=socket.create_connection((os.environ['UDPLAB_CLIENT_IP'], 7000), timeout=5); \
         s.sendall(b'across the path')\""
    );
    let out = udplab(&[
        "lab",
        "--link-rate",
        "100Mbit",
        "--exec-client",
        &client,
        "--exec-server",
        &server,
        "--dir",
        dir.path().join("runs").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(&got).unwrap_or_default(),
        b"across the path",
        "{}",
        text(&out.stderr)
    );
    // The client's command ran in the client host: its address, not the
    // machine's.
    let addresses = std::fs::read_to_string(&seen).unwrap_or_default();
    assert!(addresses.contains("10.77.2.2"), "{addresses}");
    assert!(!addresses.contains("eth0"), "{addresses}");
    // The path's counters come out as JSON on stdout.
    let stdout = text(&out.stdout);
    let start = stdout.find('{').unwrap_or(0);
    let counters: Result<Value, _> = serde_json::from_str(&stdout[start..]);
    assert!(counters.is_ok(), "{stdout}");
    assert_eq!(machine_names(), before, "the path outlived the commands");
}

/// `udplab lab --suite` on the path: the lab's six tests run one after
/// another through one path (1 Gbit/s, 1 % random loss), each with its
/// report and the kernel's counters; the summary lists all six, and the
/// path is gone after.
#[test]
fn the_suite_runs_its_six_tests_on_the_path() {
    require_link!();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let before = machine_names();
    let out = wait_output(
        spawn(
            &[
                "-q",
                "lab",
                "--suite",
                "--link-rate",
                "1Gbit",
                "--link-loss",
                "1%",
                "--no-capture",
                "--dir",
                runs.to_str().unwrap(),
            ],
            None,
        ),
        Duration::from_secs(400),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    assert_eq!(machine_names(), before, "the suite left its path");
    let summary = &stdout[stdout.find("Summary: loss per test").expect(&stdout)..];
    let rows: Vec<&str> = summary
        .lines()
        .filter(|l| l.starts_with('│'))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 6, "{summary}");
    let suite = common::run_dirs(&runs);
    assert_eq!(suite.len(), 1);
    let mut tests = common::run_dirs(&suite[0]);
    tests.sort();
    assert_eq!(tests.len(), 6, "{tests:?}");
    for t in &tests {
        let counters: Value =
            serde_json::from_slice(&std::fs::read(t.join("counters.json")).unwrap()).unwrap();
        // Each test went through the path: its loss rule dropped
        // datagrams, and the lab's check has a row for the network.
        let rule = &counters["counters"]["router"]["loss_rule"]["packets"];
        assert!(
            rule.as_u64().is_some_and(|n| n > 0),
            "{}: {counters:#}",
            t.display()
        );
        let places: Vec<&Value> = counters["check"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["place"])
            .collect();
        assert!(places.contains(&&Value::from("network")), "{places:?}");
        assert!(t.join("report.json").is_file());
    }
}
