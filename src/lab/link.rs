//! `udplab lab --link`: a real path made of kernel parts, in network
//! namespaces that this module makes and always removes.
//!
//! ```text
//!   udplab-PID-srv          udplab-PID-rtr                 udplab-PID-cli
//!   server host             router                         client host
//!   udplabPIDs  ---veth---  udplabPIDrs  udplabPIDrc ---veth---  udplabPIDc
//!   10.77.1.1/24            10.77.1.2/24 10.77.2.1/24            10.77.2.2/24
//!                                        egress shaped:
//!                                        htb -> tbf (UDP), loss rule
//! ```
//!
//! The server host routes 10.77.2.0/24 through the router, the client host
//! 10.77.1.0/24; only the router forwards (`ip_forward=1` in its namespace
//! alone). IPv6 is off in all three, so nothing but the run crosses the
//! links. The router's egress towards the clients is the path's
//! bottleneck ([`Shape`]):
//!
//! - `--link-rate`: a tbf of that rate, its burst max(rate x 1 ms, 2 x
//!   1514 bytes), its queue `--link-buffer` bytes (tbf `limit`), whose drops
//!   are queue overflow. The tbf takes the UDP datagrams only: it hangs off
//!   an htb class that a u32 filter gives IPv4 UDP, while the control
//!   connections (and ARP) pass an unshaped class of their own. A TCP
//!   segment the queue dropped would otherwise count among the data's
//!   drops, and the v1 server's Done, sent the moment the queue is full,
//!   would wait out TCP's retransmission timeout.
//! - `--link-loss`: an iptables rule in the router's FORWARD chain, `-p udp
//!   -o udplabPIDrc -m statistic --mode random --probability P -j DROP`; its
//!   packet counter is the ground truth of that loss.
//!
//! netem is not in this machine's kernel (`tc qdisc add ... netem` says
//! "Specified qdisc kind is unknown"), nor fq or prio: delay, jitter,
//! reordering and duplication are therefore not offered.
//!
//! Names carry the run's PID. [`Network::build`] first removes what runs
//! that are gone left behind ([`cleanup_leftovers`]: a namespace or link
//! with the prefix whose PID no longer exists, e.g. after `kill -9`), then
//! makes the namespaces one by one, each recorded in a guard as soon as it
//! exists; the veths are made with both ends already inside their
//! namespaces, so none ever sits in the caller's. Dropping the
//! [`Network`] (the run's end, an error, a panic, or the end of a run that
//! Ctrl-C stopped) deletes the namespaces, and with them their links,
//! qdiscs and rules.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use log::{debug, info, warn};
use serde::Serialize;

use super::netns::{self, Netns, command};

/// What every namespace and link of a run is named after.
pub const PREFIX: &str = "udplab";
/// The server host's address.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
/// The router's address on the server's side.
pub const ROUTER_SERVER_SIDE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
/// The router's address on the clients' side.
pub const ROUTER_CLIENT_SIDE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
/// The client host's address (all clients share it, each with its ports).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);
const PREFIX_LEN: u8 = 24;
const SERVER_NET: &str = "10.77.1.0/24";
const CLIENT_NET: &str = "10.77.2.0/24";
/// Linux's limit on an interface name (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;
/// An Ethernet frame of a 1500-byte MTU.
const FRAME: u64 = 1514;
/// The comment that marks the random-loss rule.
pub const LOSS_RULE_COMMENT: &str = "udplab-loss";
/// The comment of the loss rule's twin for TCP ([`Shape::tcp_port`]).
pub const TCP_LOSS_RULE_COMMENT: &str = "udplab-loss-tcp";
/// The iptables commands tried, in order (the nft backend, then legacy).
const IPTABLES: [&str; 2] = ["iptables", "iptables-legacy"];
/// What `--link` needs root for, as its error says.
pub const MAKES: &str = "udplab lab --link makes network namespaces";
/// tbf's handle under the htb class of the UDP datagrams.
pub const TBF_HANDLE: &str = "10:";

/// How the router shapes its egress towards the clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Shape {
    /// The bottleneck's rate, bits per second.
    pub rate_bit_s: Option<f64>,
    /// The bottleneck's queue, bytes (tbf `limit`); default
    /// [`Shape::default_buffer`].
    pub buffer_bytes: Option<u64>,
    /// The random loss, as a probability (0.01 for 1 %).
    pub loss: Option<f64>,
    /// TCP segments to this port towards the clients take the UDP data's
    /// way too: the tbf and the loss rule (`--exec-tcp-port`, so that a TCP
    /// transfer meets the same bottleneck); the server host then sends no
    /// TCP segment larger than one frame (gso_max_segs 1), so that the rule
    /// drops frames, as on a real link, not 64 KB GSO batches.
    pub tcp_port: Option<u16>,
}

impl Shape {
    /// A queue of 20 ms at `rate`, at least 64 KiB.
    pub fn default_buffer(rate_bit_s: f64) -> u64 {
        ((rate_bit_s / 8.0 * 0.020) as u64).max(64 << 10)
    }

    /// The queue, when there is a bottleneck.
    pub fn buffer(&self) -> Option<u64> {
        let rate = self.rate_bit_s?;
        Some(
            self.buffer_bytes
                .unwrap_or_else(|| Self::default_buffer(rate)),
        )
    }

    /// tbf's bucket: 1 ms at the rate, at least two full frames.
    pub fn burst(&self) -> Option<u64> {
        Some(((self.rate_bit_s? / 8.0 / 1000.0) as u64).max(2 * FRAME))
    }

    /// How long the full queue takes to drain.
    pub fn drain_time(&self) -> Duration {
        match (self.rate_bit_s, self.buffer()) {
            (Some(rate), Some(buffer)) => Duration::from_secs_f64(buffer as f64 * 8.0 / rate),
            _ => Duration::ZERO,
        }
    }
}

/// The names of one run's namespaces and links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Names {
    pub pid: u32,
    pub server_ns: String,
    pub router_ns: String,
    pub client_ns: String,
    /// The server host's end of its veth.
    pub server_if: String,
    /// The router's end towards the server.
    pub router_server_if: String,
    /// The router's end towards the clients: the bottleneck.
    pub router_client_if: String,
    /// The client host's end of its veth.
    pub client_if: String,
}

/// The roles in a namespace's name, `udplab-PID-ROLE`.
const NS_ROLES: [&str; 3] = ["srv", "rtr", "cli"];
/// The ends in a link's name, `udplabPIDEND`.
const LINK_ENDS: [&str; 4] = ["s", "rs", "rc", "c"];

impl Names {
    pub fn for_pid(pid: u32) -> anyhow::Result<Names> {
        let ns = |role: &str| format!("{PREFIX}-{pid}-{role}");
        let link = |end: &str| format!("{PREFIX}{pid}{end}");
        let names = Names {
            pid,
            server_ns: ns("srv"),
            router_ns: ns("rtr"),
            client_ns: ns("cli"),
            server_if: link("s"),
            router_server_if: link("rs"),
            router_client_if: link("rc"),
            client_if: link("c"),
        };
        if names.router_client_if.len() > IFNAME_MAX {
            bail!(
                "PID {pid} makes interface names longer than {IFNAME_MAX} characters ({})",
                names.router_client_if
            );
        }
        Ok(names)
    }

    fn namespaces(&self) -> [&str; 3] {
        [&self.server_ns, &self.router_ns, &self.client_ns]
    }
}

/// The PID in a namespace name of ours, `udplab-PID-ROLE`.
pub fn ns_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?.strip_prefix('-')?;
    let (pid, role) = rest.split_once('-')?;
    (NS_ROLES.contains(&role) && pid.bytes().all(|b| b.is_ascii_digit()))
        .then(|| pid.parse().ok())
        .flatten()
}

/// The PID in a link name of ours, `udplabPIDEND`.
pub fn link_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (pid, end) = rest.split_at(digits);
    (digits > 0 && LINK_ENDS.contains(&end))
        .then(|| pid.parse().ok())
        .flatten()
}

/// What [`cleanup_leftovers`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub what: &'static str,
    pub name: String,
    pub pid: u32,
}

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "removed {} {} (its run, PID {}, is gone)",
            self.what, self.name, self.pid
        )
    }
}

/// The named network namespaces.
fn list_namespaces() -> anyhow::Result<Vec<String>> {
    let dir = match std::fs::read_dir(netns::NETNS_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", netns::NETNS_DIR)),
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// The links of the caller's namespace, from `ip -j link show`.
fn list_links() -> anyhow::Result<Vec<String>> {
    let out = command("ip", &["-j", "link", "show"])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("reading `ip -j link show`")?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.get("ifname")?.as_str().map(str::to_string))
        .collect())
}

/// True when `pid` may own names of ours: a live process other than this
/// one, or this one when `own_live` (it has a network up).
fn owner_alive(pid: u32, own_live: bool) -> bool {
    if pid == std::process::id() {
        return own_live;
    }
    netns::pid_alive(pid)
}

/// Removes every namespace and link named by this module whose run is
/// gone (its PID no longer exists), and says what it removed. Names of
/// live runs are left alone, this process's own while it has a network up.
pub fn cleanup_leftovers() -> anyhow::Result<Vec<Removed>> {
    remove_leftovers(NETWORK_UP.load(Ordering::SeqCst))
}

fn remove_leftovers(own_live: bool) -> anyhow::Result<Vec<Removed>> {
    let mut removed = Vec::new();
    for name in list_namespaces()? {
        let Some(pid) = ns_pid(&name) else { continue };
        if owner_alive(pid, own_live) {
            continue;
        }
        command("ip", &["netns", "del", &name])
            .with_context(|| format!("removing the leftover namespace {name}"))?;
        removed.push(Removed {
            what: "network namespace",
            name,
            pid,
        });
    }
    // Deleting one end of a veth deletes its peer: list again after each.
    let mut tried = std::collections::HashSet::new();
    loop {
        let next = list_links()?.into_iter().find_map(|name| {
            let pid = link_pid(&name)?;
            (!owner_alive(pid, own_live) && !tried.contains(&name)).then_some((name, pid))
        });
        let Some((name, pid)) = next else { break };
        tried.insert(name.clone());
        command("ip", &["link", "del", &name])
            .with_context(|| format!("removing the leftover link {name}"))?;
        removed.push(Removed {
            what: "link",
            name,
            pid,
        });
    }
    Ok(removed)
}

/// Set while this process has a [`Network`]: one at a time, so that a
/// namespace with this process's PID and no network up is a leftover (of
/// an earlier process with the same PID).
static NETWORK_UP: AtomicBool = AtomicBool::new(false);

/// The namespaces made so far; deleting them deletes all inside.
#[derive(Debug)]
struct Made {
    namespaces: Vec<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            match command("ip", &["netns", "del", ns]) {
                Ok(_) => debug!("removed the network namespace {ns}"),
                Err(e) => warn!("removing the network namespace {ns}: {e:#}"),
            }
        }
        NETWORK_UP.store(false, Ordering::SeqCst);
    }
}

/// The namespaces held open, dropped before they are deleted.
#[derive(Debug)]
struct Handles {
    server: Arc<Netns>,
    router: Arc<Netns>,
    client: Arc<Netns>,
}

/// The built path. Dropping it removes everything it made.
#[derive(Debug)]
pub struct Network {
    names: Names,
    shape: Shape,
    /// The iptables command that took the loss rule.
    iptables: Option<&'static str>,
    // Declared before `made`: closed before the namespaces are deleted.
    handles: Handles,
    made: Made,
}

impl Network {
    /// Removes what dead runs left, then builds the path with `shape`.
    pub fn build(shape: &Shape) -> anyhow::Result<Network> {
        netns::check_privileges(MAKES).map_err(anyhow::Error::msg)?;
        if NETWORK_UP.swap(true, Ordering::SeqCst) {
            bail!("this process already has a --link network up (one at a time)");
        }
        // From here the guard clears NETWORK_UP, whatever happens.
        let mut made = Made {
            namespaces: Vec::new(),
        };
        // Nothing of this process is up yet: names with its PID are an
        // earlier process's.
        for r in remove_leftovers(false)? {
            info!("{r}");
        }
        let names = Names::for_pid(std::process::id())?;
        for ns in names.namespaces() {
            command("ip", &["netns", "add", ns])
                .with_context(|| format!("making the network namespace {ns}"))?;
            made.namespaces.push(ns.to_string());
        }
        let open = |name: &str| Netns::open(name).map(Arc::new);
        let handles = Handles {
            server: open(&names.server_ns)?,
            router: open(&names.router_ns)?,
            client: open(&names.client_ns)?,
        };
        let mut net = Network {
            names,
            shape: *shape,
            iptables: None,
            handles,
            made,
        };
        net.configure()?;
        info!(
            "link: {} ({SERVER_IP}) -> {} -> {} ({CLIENT_IP}){}",
            net.names.server_ns,
            net.names.router_ns,
            net.names.client_ns,
            net.describe_shape()
        );
        Ok(net)
    }

    /// Sysctls, links, addresses, routes, shaping and loss, in that order.
    fn configure(&mut self) -> anyhow::Result<()> {
        self.sysctls()?;
        self.links()?;
        self.routes()?;
        self.shape_bottleneck()?;
        self.add_loss_rule()
    }

    /// IPv6 off everywhere (nothing but the run on the links), forwarding
    /// on in the router alone.
    fn sysctls(&self) -> anyhow::Result<()> {
        for ns in [
            &self.handles.server,
            &self.handles.router,
            &self.handles.client,
        ] {
            netns::run_in(ns, || {
                netns::write_sysctl("net/ipv6/conf/all/disable_ipv6", "1")?;
                netns::write_sysctl("net/ipv6/conf/default/disable_ipv6", "1")
            })?;
        }
        netns::run_in(&self.handles.router, || {
            netns::write_sysctl("net/ipv4/ip_forward", "1")
        })
    }

    /// The two veth pairs, their addresses, and every link up.
    fn links(&self) -> anyhow::Result<()> {
        let n = &self.names;
        self.veth(
            &n.server_if,
            &n.server_ns,
            &n.router_server_if,
            &n.router_ns,
        )?;
        self.veth(
            &n.router_client_if,
            &n.router_ns,
            &n.client_if,
            &n.client_ns,
        )?;
        for (ns, dev, ip) in [
            (&n.server_ns, &n.server_if, SERVER_IP),
            (&n.router_ns, &n.router_server_if, ROUTER_SERVER_SIDE_IP),
            (&n.router_ns, &n.router_client_if, ROUTER_CLIENT_SIDE_IP),
            (&n.client_ns, &n.client_if, CLIENT_IP),
        ] {
            let addr = format!("{ip}/{PREFIX_LEN}");
            command("ip", &["-n", ns, "addr", "add", &addr, "dev", dev])?;
            command("ip", &["-n", ns, "link", "set", dev, "up"])?;
        }
        for ns in n.namespaces() {
            command("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        if self.shape.tcp_port.is_some() {
            command(
                "ip",
                &[
                    "-n",
                    &n.server_ns,
                    "link",
                    "set",
                    &n.server_if,
                    "gso_max_segs",
                    "1",
                ],
            )?;
        }
        Ok(())
    }

    /// Each host reaches the other's subnet through the router.
    fn routes(&self) -> anyhow::Result<()> {
        let n = &self.names;
        for (ns, net, via) in [
            (&n.server_ns, CLIENT_NET, ROUTER_SERVER_SIDE_IP),
            (&n.client_ns, SERVER_NET, ROUTER_CLIENT_SIDE_IP),
        ] {
            let via = via.to_string();
            command("ip", &["-n", ns, "route", "add", net, "via", &via])?;
        }
        Ok(())
    }

    /// A veth pair with each end made inside its namespace.
    fn veth(&self, a: &str, a_ns: &str, b: &str, b_ns: &str) -> anyhow::Result<()> {
        command(
            "ip",
            &[
                "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns,
            ],
        )
        .map(drop)
    }

    /// The bottleneck on the router's egress towards the clients: htb with
    /// an unshaped default class, and the UDP class's tbf.
    fn shape_bottleneck(&self) -> anyhow::Result<()> {
        let (Some(rate), Some(buffer), Some(burst)) = (
            self.shape.rate_bit_s,
            self.shape.buffer(),
            self.shape.burst(),
        ) else {
            return Ok(());
        };
        let ns = self.names.router_ns.as_str();
        let dev = self.names.router_client_if.as_str();
        let tc = |args: &[&str]| -> anyhow::Result<()> {
            let mut all = vec!["-n", ns];
            all.extend_from_slice(args);
            command("tc", &all)
                .map(drop)
                .context("shaping the router's link towards the clients")
        };
        // The htb classes only sort: far faster than the veth can go.
        let open = ["rate", "10gbit", "quantum", "15140"];
        tc(&[
            "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "2",
        ])?;
        let class = |id: &str, prio: &str| {
            let mut a = vec![
                "class", "add", "dev", dev, "parent", "1:", "classid", id, "htb",
            ];
            a.extend_from_slice(&open);
            a.extend_from_slice(&["prio", prio]);
            tc(&a)
        };
        class("1:1", "1")?;
        class("1:2", "0")?;
        let rate = format!("{}bit", rate.round() as u64);
        let (burst, limit) = (burst.to_string(), buffer.to_string());
        tc(&[
            "qdisc", "add", "dev", dev, "parent", "1:1", "handle", TBF_HANDLE, "tbf", "rate",
            &rate, "burst", &burst, "limit", &limit,
        ])?;
        tc(&[
            "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
            "match", "ip", "protocol", "17", "0xff", "flowid", "1:1",
        ])?;
        if let Some(port) = self.shape.tcp_port {
            let port = port.to_string();
            tc(&[
                "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                "match", "ip", "protocol", "6", "0xff", "match", "ip", "dport", &port, "0xffff",
                "flowid", "1:1",
            ])?;
        }
        Ok(())
    }

    /// The random-loss rule, with the first iptables that takes it (and,
    /// with [`Shape::tcp_port`], its twin for TCP segments to that port).
    fn add_loss_rule(&mut self) -> anyhow::Result<()> {
        let Some(p) = self.shape.loss else {
            return Ok(());
        };
        let probability = format!("{p:.6}");
        let port = self.shape.tcp_port.map(|p| p.to_string());
        let rule = |proto_and_port: &[&'static str], port: Option<&str>, comment: &str| {
            let mut r: Vec<String> = vec!["-A".into(), "FORWARD".into(), "-o".into()];
            r.push(self.names.router_client_if.clone());
            r.extend(proto_and_port.iter().map(|s| s.to_string()));
            r.extend(port.map(str::to_string));
            for a in [
                "-d",
                CLIENT_NET,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
                "-m",
                "comment",
                "--comment",
                comment,
                "-j",
                "DROP",
            ] {
                r.push(a.to_string());
            }
            r
        };
        let mut rules = vec![rule(&["-p", "udp"], None, LOSS_RULE_COMMENT)];
        if let Some(port) = port.as_deref() {
            rules.push(rule(
                &["-p", "tcp", "--dport"],
                Some(port),
                TCP_LOSS_RULE_COMMENT,
            ));
        }
        let mut errors = Vec::new();
        for ipt in IPTABLES {
            let all = rules.iter().try_for_each(|r| {
                let mut args = vec!["netns", "exec", &self.names.router_ns, ipt];
                args.extend(r.iter().map(String::as_str));
                command("ip", &args).map(drop)
            });
            match all {
                Ok(()) => {
                    self.iptables = Some(ipt);
                    return Ok(());
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        bail!(
            "adding the random-loss rule in {}: {}",
            self.names.router_ns,
            errors.join("; ")
        )
    }

    fn describe_shape(&self) -> String {
        let mut parts = Vec::new();
        if let (Some(rate), Some(buffer)) = (self.shape.rate_bit_s, self.shape.buffer()) {
            parts.push(format!(
                "bottleneck {:.0} Mbit/s, queue {} bytes",
                rate / 1e6,
                buffer
            ));
        }
        if let Some(p) = self.shape.loss {
            parts.push(format!("random loss {:.3} %", p * 100.0));
        }
        if let Some(port) = self.shape.tcp_port {
            parts.push(format!("TCP to port {port} shaped and dropped as UDP"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(": {}", parts.join(", "))
        }
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The namespaces this network made (and will delete).
    pub fn namespaces(&self) -> &[String] {
        &self.made.namespaces
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn server_ns(&self) -> Arc<Netns> {
        Arc::clone(&self.handles.server)
    }

    pub fn router_ns(&self) -> Arc<Netns> {
        Arc::clone(&self.handles.router)
    }

    pub fn client_ns(&self) -> Arc<Netns> {
        Arc::clone(&self.handles.client)
    }

    /// The iptables command holding the loss rule, if there is one.
    pub fn iptables(&self) -> Option<&'static str> {
        self.iptables
    }

    /// Waits (at most `limit`) until the bottleneck's queue is empty, so
    /// that a capture stopped next has seen everything still on its way.
    pub fn wait_drained(&self, limit: Duration) {
        if self.shape.rate_bit_s.is_none() {
            return;
        }
        let started = Instant::now();
        while started.elapsed() < limit {
            match super::counters::bottleneck_backlog(self) {
                Ok(0) => return,
                Ok(_) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    debug!("reading the bottleneck's queue: {e:#}");
                    return;
                }
            }
        }
        warn!("the bottleneck's queue was not empty after {limit:?}");
    }
}

/// The run directory's record of the path: names, addresses, shape.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    pub names: Names,
    pub server_ip: Ipv4Addr,
    pub router_server_side_ip: Ipv4Addr,
    pub router_client_side_ip: Ipv4Addr,
    pub client_ip: Ipv4Addr,
    pub shape: Shape,
    pub buffer_bytes: Option<u64>,
    pub burst_bytes: Option<u64>,
    pub iptables: Option<&'static str>,
}

impl Topology {
    pub fn of(net: &Network) -> Topology {
        Topology {
            names: net.names.clone(),
            server_ip: SERVER_IP,
            router_server_side_ip: ROUTER_SERVER_SIDE_IP,
            router_client_side_ip: ROUTER_CLIENT_SIDE_IP,
            client_ip: CLIENT_IP,
            shape: net.shape,
            buffer_bytes: net.shape.buffer(),
            burst_bytes: net.shape.burst(),
            iptables: net.iptables,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_pid_and_fit_an_interface_name() {
        let n = Names::for_pid(4_194_304).unwrap();
        assert_eq!(n.server_ns, "udplab-4194304-srv");
        assert_eq!(n.router_client_if, "udplab4194304rc");
        assert_eq!(n.router_client_if.len(), 15);
        assert_eq!(ns_pid(&n.client_ns), Some(4_194_304));
        for l in [
            &n.server_if,
            &n.router_server_if,
            &n.router_client_if,
            &n.client_if,
        ] {
            assert_eq!(link_pid(l), Some(4_194_304), "{l}");
        }
        assert!(Names::for_pid(41_943_040).is_err());
    }

    #[test]
    fn only_our_names_parse() {
        assert_eq!(ns_pid("udplab-12-rtr"), Some(12));
        assert_eq!(ns_pid("udplab-12-xyz"), None);
        assert_eq!(ns_pid("udplab--rtr"), None);
        assert_eq!(ns_pid("other-12-rtr"), None);
        assert_eq!(ns_pid("udplab-1a-srv"), None);
        assert_eq!(link_pid("udplab12rc"), Some(12));
        assert_eq!(link_pid("udplab12"), None);
        assert_eq!(link_pid("udplabrc"), None);
        assert_eq!(link_pid("udplab12x"), None);
        assert_eq!(link_pid("eth0"), None);
    }

    #[test]
    fn the_bucket_and_queue_follow_the_rate() {
        let s = Shape {
            rate_bit_s: Some(200e6),
            buffer_bytes: Some(256 << 10),
            loss: Some(0.01),
            tcp_port: None,
        };
        assert_eq!(s.burst(), Some(25_000));
        assert_eq!(s.buffer(), Some(256 << 10));
        let slow = Shape {
            rate_bit_s: Some(10e6),
            ..Shape::default()
        };
        assert_eq!(slow.burst(), Some(2 * FRAME));
        assert_eq!(slow.buffer(), Some(64 << 10));
        assert_eq!(
            Shape {
                rate_bit_s: Some(1e9),
                ..Shape::default()
            }
            .buffer(),
            Some(2_500_000)
        );
        assert!((s.drain_time().as_secs_f64() - 0.010_485_76).abs() < 1e-9);
        assert_eq!(Shape::default().burst(), None);
        assert_eq!(Shape::default().drain_time(), Duration::ZERO);
    }
}
