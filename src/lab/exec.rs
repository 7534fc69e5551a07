//! `udplab lab --link --exec-server CMD [--exec-client CMD]`: the path of
//! [`Network::build`], with two commands of the caller's in its hosts
//! instead of udplab's server and clients (scripts/bench-link runs iperf3
//! and a TCP file copy on the very path udplab's runs use).
//!
//! The client host's command (a receiver that listens) starts first; once
//! a socket listens in the client host (or after 10 s) the server host's
//! command runs to its end; the client's command then has 10 s to end by
//! itself before it is terminated. Each runs as `ip netns exec NS sh -c
//! CMD` in a process group of its own, with `UDPLAB_SERVER_IP` and
//! `UDPLAB_CLIENT_IP` in its environment; Ctrl-C terminates both groups.
//! The path's counters over the commands' run (the same [`Snapshot`] as
//! `counters.json`) are printed as JSON on stdout; the path is removed
//! before this returns, whatever happens.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::Context;
use log::{info, warn};

use super::counters::{self, Snapshot};
use super::link::{CLIENT_IP, Network, SERVER_IP, Shape};
use crate::shutdown::Shutdown;

/// The commands to run on the path.
#[derive(Debug, Clone)]
pub struct Commands {
    /// Runs in the server host, to its end.
    pub server: String,
    /// Runs in the client host, started first.
    pub client: Option<String>,
}

/// How the commands ended, and the path's counters over their run.
#[derive(Debug)]
pub struct Outcome {
    pub server: ExitStatus,
    /// `None`: there was no client command.
    pub client: Option<ExitStatus>,
    /// The client's command did not end by itself and was terminated.
    pub client_terminated: bool,
    pub counters: Snapshot,
}

const LISTEN_WAIT: Duration = Duration::from_secs(10);
const CLIENT_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(10);

fn spawn(ns: &str, cmd: &str) -> anyhow::Result<Child> {
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", cmd])
        .env("UDPLAB_SERVER_IP", SERVER_IP.to_string())
        .env("UDPLAB_CLIENT_IP", CLIENT_IP.to_string())
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting `{cmd}` in {ns}"))
}

/// SIGTERM to the child's process group, then its status.
fn terminate(child: &mut Child) -> anyhow::Result<ExitStatus> {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a process group id; no memory is involved.
        unsafe {
            libc::kill(-pid, libc::SIGTERM);
        }
    }
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if started.elapsed() > Duration::from_secs(5) {
            child.kill().ok();
            return Ok(child.wait()?);
        }
        sleep(POLL);
    }
}

/// A child terminated when dropped while still running (an error on the
/// way out must not leave it behind in a namespace about to go).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = terminate(&mut self.0);
        }
    }
}

/// Whether a socket listens (TCP) or is bound (UDP) in `ns`.
fn listening(ns: &str) -> bool {
    Command::new("ss")
        .args(["-N", ns, "-Hltun"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.trim_ascii().is_empty())
}

/// Builds the path with `shape`, runs `cmds` on it and removes it.
pub fn run(shape: &Shape, cmds: &Commands, shutdown: &Shutdown) -> anyhow::Result<Outcome> {
    let net = Network::build(shape)?;
    let names = net.names().clone();
    let before = counters::read(&net).context("reading the path's counters")?;
    let mut client = match &cmds.client {
        Some(cmd) => Some(Guard(spawn(&names.client_ns, cmd)?)),
        None => None,
    };
    if let Some(Guard(c)) = client.as_mut() {
        let started = Instant::now();
        while started.elapsed() < LISTEN_WAIT
            && !shutdown.is_triggered()
            && c.try_wait()?.is_none()
            && !listening(&names.client_ns)
        {
            sleep(POLL);
        }
    }
    let mut server = Guard(spawn(&names.server_ns, &cmds.server)?);
    let server_status = loop {
        if shutdown.is_triggered() {
            break terminate(&mut server.0)?;
        }
        if let Some(s) = server.0.try_wait()? {
            break s;
        }
        sleep(POLL);
    };
    let mut client_terminated = false;
    let client_status = match client.as_mut() {
        None => None,
        Some(Guard(c)) => {
            let started = Instant::now();
            Some(loop {
                if let Some(s) = c.try_wait()? {
                    break s;
                }
                if shutdown.is_triggered() || started.elapsed() > CLIENT_GRACE {
                    if !shutdown.is_triggered() {
                        warn!("the client host's command did not end: terminated");
                    }
                    client_terminated = true;
                    break terminate(c)?;
                }
                sleep(POLL);
            })
        }
    };
    net.wait_drained(shape.drain_time() + Duration::from_millis(200));
    let after = counters::read(&net).context("reading the path's counters")?;
    info!(
        "exec: server host's command {server_status}{}",
        client_status
            .map(|s| format!(", client host's command {s}"))
            .unwrap_or_default()
    );
    Ok(Outcome {
        server: server_status,
        client: client_status,
        client_terminated,
        counters: after.since(&before),
    })
}
