//! Network namespaces and the commands that shape them.
//!
//! A named namespace is what `ip netns add NAME` makes: a namespace held
//! alive by a bind mount at `/run/netns/NAME`. [`Netns`] opens that file;
//! [`Netns::enter`] moves the calling *thread* into the namespace with
//! setns(2). Sockets keep the namespace they were made in, and threads a
//! thread starts share its namespace, so a server thread that enters the
//! server's namespace first makes every socket of its senders there.
//! [`spawn_in`] starts such a thread; [`run_in`] runs one short job (a
//! bind, a read of `/proc/thread-self/net/snmp`, a sysctl) in a namespace.
//!
//! `/proc/net` is `/proc/self/net`, the namespace of the process's main
//! thread; a thread that entered another namespace reads its own through
//! `/proc/thread-self/net`. `/proc/sys/net` is looked up per thread.
//! `/sys/class/net` is not: it shows the namespace sysfs was mounted in.
//!
//! [`command`] runs ip, tc and iptables, turning a failure into one line
//! that names the command and what it said.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use anyhow::{Context, anyhow, bail};

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// A named network namespace, held open.
#[derive(Debug)]
pub struct Netns {
    name: String,
    file: File,
}

impl Netns {
    /// Opens the namespace `ip netns add name` made.
    pub fn open(name: &str) -> anyhow::Result<Netns> {
        let path = Path::new(NETNS_DIR).join(name);
        let file = File::open(&path)
            .with_context(|| format!("opening the network namespace {}", path.display()))?;
        Ok(Netns {
            name: name.to_string(),
            file,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves the calling thread into this namespace: the sockets it makes
    /// from now on, and the threads it starts, are there.
    pub fn enter(&self) -> anyhow::Result<()> {
        // SAFETY: setns on a descriptor we hold open; it changes only the
        // calling thread's network namespace.
        let rc = unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("entering the network namespace {}", self.name));
        }
        Ok(())
    }
}

/// Starts a thread named `name` that enters `ns` (when given) before it
/// runs `f`.
pub fn spawn_in<T, F>(
    ns: Option<Arc<Netns>>,
    name: String,
    f: F,
) -> anyhow::Result<JoinHandle<anyhow::Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> anyhow::Result<T> + Send + 'static,
{
    thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            if let Some(ns) = ns {
                ns.enter()?;
            }
            f()
        })
        .with_context(|| format!("starting the {name} thread"))
}

/// Runs `f` on a thread of its own inside `ns` and returns what it
/// returned; the caller's thread stays where it is.
pub fn run_in<T, F>(ns: &Netns, f: F) -> anyhow::Result<T>
where
    T: Send,
    F: FnOnce() -> anyhow::Result<T> + Send,
{
    thread::scope(|s| {
        let job = s.spawn(|| {
            ns.enter()?;
            f()
        });
        job.join()
            .map_err(|_| anyhow!("a thread in {} panicked", ns.name()))?
    })
}

/// Writes a sysctl of the calling thread's network namespace, e.g.
/// `net/ipv4/ip_forward`.
pub fn write_sysctl(key: &str, value: &str) -> anyhow::Result<()> {
    let path = PathBuf::from("/proc/sys").join(key);
    std::fs::write(&path, value).with_context(|| format!("writing {}", path.display()))
}

/// The calling thread's `/proc/net/snmp` (its own namespace's, not the
/// process's).
pub fn read_snmp() -> anyhow::Result<String> {
    let path = "/proc/thread-self/net/snmp";
    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
}

/// The Debian package that holds `program`.
fn package_of(program: &str) -> &'static str {
    match program {
        "iptables" | "iptables-legacy" => "iptables",
        _ => "iproute2",
    }
}

/// Runs `program args...` to its end and returns its standard output. A
/// program that is missing, or that fails, is one line: the command and
/// the first line it wrote on stderr.
pub fn command(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let shown = || format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                anyhow!(
                    "{program} is not installed (apt-get install {})",
                    package_of(program)
                )
            } else {
                anyhow!("running `{}`: {e}", shown())
            }
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let said = err
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map_or_else(|| out.status.to_string(), str::to_string);
        bail!("`{}` failed: {said}", shown());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `CAP_NET_ADMIN` and `CAP_SYS_ADMIN`, as capability bit numbers.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// The effective capability set from `/proc/self/status`.
fn effective_caps(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// `Err(why)` when this process may not make (or remove) network
/// namespaces and shape their links: that takes CAP_SYS_ADMIN (the
/// namespaces' mounts, setns) and CAP_NET_ADMIN (links, addresses, qdiscs,
/// firewall rules). `doing` says what needs it, e.g. "udplab lab --link
/// makes network namespaces".
pub fn check_privileges(doing: &str) -> Result<(), String> {
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| effective_caps(&s));
    let has = |bit: u32| caps.is_some_and(|c| c & (1 << bit) != 0);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if has(CAP_NET_ADMIN) && has(CAP_SYS_ADMIN) || caps.is_none() && root {
        return Ok(());
    }
    Err(format!(
        "{doing}, which takes root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run it with sudo"
    ))
}

/// True while a process `pid` runs: it exists and is not a zombie (a
/// killed process whose parent has not reaped it yet has ended all the
/// same).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if p <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(process_state(&stat), Some('Z' | 'X')),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        // No /proc to read: ask the kernel whether it exists at all.
        // SAFETY: signal 0 only checks that the process exists.
        Err(_) => {
            let rc = unsafe { libc::kill(p, 0) };
            rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
    }
}

/// The state letter of a `/proc/PID/stat` line, which follows the
/// command name in parentheses (a name that may hold spaces and ')').
fn process_state(stat: &str) -> Option<char> {
    let (_, after) = stat.rsplit_once(')')?;
    after.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_capabilities_are_read_from_the_status_file() {
        let status = "Name:\tudplab\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_caps(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_caps("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not_a_run() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
    }

    #[test]
    fn a_zombie_s_state_is_read_past_its_name() {
        assert_eq!(process_state("42 (udp lab) (x)) Z 1 42"), Some('Z'));
        assert_eq!(process_state("42 (udplab) S 1 42"), Some('S'));
        assert_eq!(process_state("garbage"), None);
    }

    #[test]
    fn a_missing_program_names_its_package() {
        let e = command("udplab-no-such-program", &[]).unwrap_err();
        assert!(e.to_string().contains("is not installed"), "{e}");
    }

    #[test]
    fn a_failing_command_is_one_line_with_what_it_said() {
        let e = command("sh", &["-c", "echo first >&2; echo second >&2; exit 3"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`sh -c echo first >&2; echo second >&2; exit 3` failed: first"
        );
    }
}
