//! The kernel's own count of every place on the `--link` path, and the
//! analyzer's figures set beside them.
//!
//! [`read`] takes a [`Snapshot`] of the counters; the lab takes one before
//! the transfer and one after, and keeps the difference
//! ([`Snapshot::since`]), so that a suite's tests on one network each get
//! their own. How each is read:
//!
//! | place | counter | read with |
//! |---|---|---|
//! | sender host | the server veth's qdisc drops | `tc -n SRV -s -j qdisc show dev udplabPIDs` |
//! | sender host | UDP `SndbufErrors`, `OutDatagrams` | `/proc/thread-self/net/snmp` from a thread in SRV |
//! | network | the bottleneck's queue drops (tbf) | `tc -n RTR -s -j qdisc show dev udplabPIDrc` |
//! | network | the random-loss rule's packets | `ip netns exec RTR iptables -L FORWARD -v -x -n` |
//! | network | each veth's own drops (tx_dropped) | `ip -n NS -s -j link show dev ...` |
//! | receiver host | UDP `RcvbufErrors`, `NoPorts`, `InDatagrams` | `/proc/thread-self/net/snmp` from a thread in CLI |
//! | receiver sockets | each client's `kernel_drops` | the client logs (SO_MEMINFO) |
//! | captures | libpcap's `ps_recv`, `ps_drop` | the capture's summary (its pcapng statistics block) |
//!
//! [`check`] then sets, per place, the analyzer's figure (from the
//! captures and the logs, in datagrams) beside the kernel's. A veth
//! hands its packets to capture before its own transmit can drop them, so
//! its drops are past the server's capture point; they also come back to
//! the sending socket as ENOBUFS, which the kernel counts in
//! `SndbufErrors`: the sender row takes them out again.

use std::collections::BTreeMap;
use std::io::{self, Write};

use anyhow::{Context, anyhow};
use serde::Serialize;

use super::CaptureAt;
use super::link::{LOSS_RULE_COMMENT, Network, TBF_HANDLE};
use super::netns::{self, command};
use crate::analyze::Analysis;
use crate::analyze::logs::LogSet;
use crate::analyze::report::group;
use crate::analyze::rows::ClientRow;
use crate::protocol::Protocol;
use crate::transfer_log::TransferLog;

/// The sender host's counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SenderHost {
    pub namespace: String,
    pub interface: String,
    /// The root qdisc of the server's veth (`noqueue`: a veth has none).
    pub qdisc: String,
    pub qdisc_drops: u64,
    pub udp_out_datagrams: u64,
    pub udp_sndbuf_errors: u64,
}

/// A qdisc's statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Qdisc {
    pub kind: String,
    pub handle: String,
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
    pub overlimits: u64,
    /// Bytes and packets queued when read (not differences).
    pub backlog: u64,
    pub qlen: u64,
}

/// A firewall rule's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuleCount {
    pub packets: u64,
    pub bytes: u64,
}

/// The router's counters on its link towards the clients.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Router {
    pub namespace: String,
    pub interface: String,
    /// The bottleneck's tbf; none without `--link-rate`.
    pub queue: Option<Qdisc>,
    /// Drops of the link's other qdiscs (the htb and its unshaped class,
    /// which carry the control connections, not the data).
    pub other_qdisc_drops: u64,
    /// The random-loss rule; none without `--link-loss`.
    pub loss_rule: Option<RuleCount>,
}

/// The client host's counters (all clients' sockets together).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReceiverHost {
    pub namespace: String,
    pub interface: String,
    pub udp_in_datagrams: u64,
    pub udp_rcvbuf_errors: u64,
    /// Datagrams to a port with no socket: a client that had closed.
    pub udp_no_ports: u64,
    pub udp_in_errors: u64,
}

/// One veth end's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LinkStats {
    pub namespace: String,
    pub interface: String,
    pub tx_packets: u64,
    pub tx_dropped: u64,
    pub rx_packets: u64,
    pub rx_dropped: u64,
}

/// Every counter of the path at one moment (or, after
/// [`Snapshot::since`], over a run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub sender_host: SenderHost,
    pub router: Router,
    pub receiver_host: ReceiverHost,
    /// The server's veth, the router's two ends, the client's veth.
    pub links: Vec<LinkStats>,
}

fn sub(a: u64, b: u64) -> u64 {
    a.saturating_sub(b)
}

impl Qdisc {
    fn since(&self, before: Option<&Qdisc>) -> Qdisc {
        let Some(b) = before else {
            return self.clone();
        };
        Qdisc {
            packets: sub(self.packets, b.packets),
            bytes: sub(self.bytes, b.bytes),
            drops: sub(self.drops, b.drops),
            overlimits: sub(self.overlimits, b.overlimits),
            ..self.clone()
        }
    }
}

impl Snapshot {
    /// What the counters counted since `before`.
    pub fn since(&self, before: &Snapshot) -> Snapshot {
        let (s, bs) = (&self.sender_host, &before.sender_host);
        let (r, br) = (&self.router, &before.router);
        let (c, bc) = (&self.receiver_host, &before.receiver_host);
        Snapshot {
            sender_host: SenderHost {
                qdisc_drops: sub(s.qdisc_drops, bs.qdisc_drops),
                udp_out_datagrams: sub(s.udp_out_datagrams, bs.udp_out_datagrams),
                udp_sndbuf_errors: sub(s.udp_sndbuf_errors, bs.udp_sndbuf_errors),
                ..s.clone()
            },
            router: Router {
                queue: r.queue.as_ref().map(|q| q.since(br.queue.as_ref())),
                other_qdisc_drops: sub(r.other_qdisc_drops, br.other_qdisc_drops),
                loss_rule: r.loss_rule.as_ref().map(|l| {
                    let b = br.loss_rule.clone().unwrap_or_default();
                    RuleCount {
                        packets: sub(l.packets, b.packets),
                        bytes: sub(l.bytes, b.bytes),
                    }
                }),
                ..r.clone()
            },
            receiver_host: ReceiverHost {
                udp_in_datagrams: sub(c.udp_in_datagrams, bc.udp_in_datagrams),
                udp_rcvbuf_errors: sub(c.udp_rcvbuf_errors, bc.udp_rcvbuf_errors),
                udp_no_ports: sub(c.udp_no_ports, bc.udp_no_ports),
                udp_in_errors: sub(c.udp_in_errors, bc.udp_in_errors),
                ..c.clone()
            },
            links: self
                .links
                .iter()
                .map(|l| {
                    let b = before
                        .links
                        .iter()
                        .find(|b| b.interface == l.interface)
                        .cloned()
                        .unwrap_or_default();
                    LinkStats {
                        tx_packets: sub(l.tx_packets, b.tx_packets),
                        tx_dropped: sub(l.tx_dropped, b.tx_dropped),
                        rx_packets: sub(l.rx_packets, b.rx_packets),
                        rx_dropped: sub(l.rx_dropped, b.rx_dropped),
                        ..l.clone()
                    }
                })
                .collect(),
        }
    }

    /// The `tx_dropped` of the veth end `interface`.
    fn tx_dropped(&self, interface: &str) -> u64 {
        self.links
            .iter()
            .filter(|l| l.interface == interface)
            .map(|l| l.tx_dropped)
            .sum()
    }
}

/// The qdiscs of `dev` in `ns`, from `tc -s -j qdisc show`.
fn qdiscs(ns: &str, dev: &str) -> anyhow::Result<Vec<Qdisc>> {
    let out = command("tc", &["-n", ns, "-s", "-j", "qdisc", "show", "dev", dev])?;
    parse_tc_qdiscs(&out).with_context(|| format!("reading the qdiscs of {dev} in {ns}"))
}

/// `tc -s -j qdisc show`'s array of qdiscs.
pub fn parse_tc_qdiscs(json: &str) -> anyhow::Result<Vec<Qdisc>> {
    let v: serde_json::Value = serde_json::from_str(json).context("not tc's JSON")?;
    let list = v
        .as_array()
        .ok_or_else(|| anyhow!("not a list of qdiscs"))?;
    let num = |q: &serde_json::Value, k: &str| q.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    let text = |q: &serde_json::Value, k: &str| {
        q.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Ok(list
        .iter()
        .map(|q| Qdisc {
            kind: text(q, "kind"),
            handle: text(q, "handle"),
            packets: num(q, "packets"),
            bytes: num(q, "bytes"),
            drops: num(q, "drops"),
            overlimits: num(q, "overlimits"),
            backlog: num(q, "backlog"),
            qlen: num(q, "qlen"),
        })
        .collect())
}

/// The packets and bytes of the rule commented `comment`, from
/// `iptables -L CHAIN -v -x -n` (its first two columns).
pub fn parse_iptables_rule(listing: &str, comment: &str) -> Option<RuleCount> {
    let marker = format!("/* {comment} */");
    let line = listing.lines().find(|l| l.contains(&marker))?;
    let mut cols = line.split_whitespace();
    Some(RuleCount {
        packets: cols.next()?.parse().ok()?,
        bytes: cols.next()?.parse().ok()?,
    })
}

/// The `Udp:` counters of `/proc/net/snmp`, by name.
pub fn parse_snmp_udp(snmp: &str) -> BTreeMap<String, u64> {
    let mut rows = snmp.lines().filter_map(|l| l.strip_prefix("Udp:"));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        return BTreeMap::new();
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter_map(|(n, v)| Some((n.to_string(), v.parse().ok()?)))
        .collect()
}

/// A link's counters, from `ip -s -j link show dev`.
pub fn parse_ip_link_stats(json: &str) -> anyhow::Result<(u64, u64, u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(json).context("not ip's JSON")?;
    let s = v
        .get(0)
        .and_then(|l| l.get("stats64"))
        .ok_or_else(|| anyhow!("no stats64 in ip's output"))?;
    let n = |dir: &str, k: &str| {
        s.get(dir)
            .and_then(|d| d.get(k))
            .and_then(|x| x.as_u64())
            .unwrap_or(0)
    };
    Ok((
        n("tx", "packets"),
        n("tx", "dropped"),
        n("rx", "packets"),
        n("rx", "dropped"),
    ))
}

fn link_stats(ns: &str, dev: &str) -> anyhow::Result<LinkStats> {
    let out = command("ip", &["-n", ns, "-s", "-j", "link", "show", "dev", dev])?;
    let (tx_packets, tx_dropped, rx_packets, rx_dropped) =
        parse_ip_link_stats(&out).with_context(|| format!("reading {dev} in {ns}"))?;
    Ok(LinkStats {
        namespace: ns.to_string(),
        interface: dev.to_string(),
        tx_packets,
        tx_dropped,
        rx_packets,
        rx_dropped,
    })
}

/// The bytes queued in the bottleneck now.
pub fn bottleneck_backlog(net: &Network) -> anyhow::Result<u64> {
    let n = net.names();
    Ok(qdiscs(&n.router_ns, &n.router_client_if)?
        .iter()
        .filter(|q| q.handle == TBF_HANDLE)
        .map(|q| q.backlog)
        .sum())
}

fn snmp_in(ns: &netns::Netns) -> anyhow::Result<BTreeMap<String, u64>> {
    netns::run_in(ns, netns::read_snmp).map(|s| parse_snmp_udp(&s))
}

/// A counter of an snmp table, 0 when absent.
fn counter(m: &BTreeMap<String, u64>, name: &str) -> u64 {
    m.get(name).copied().unwrap_or(0)
}

/// Every counter of `net`, now.
pub fn read(net: &Network) -> anyhow::Result<Snapshot> {
    Ok(Snapshot {
        sender_host: read_sender_host(net)?,
        router: read_router(net)?,
        receiver_host: read_receiver_host(net)?,
        links: read_links(net)?,
    })
}

fn read_sender_host(net: &Network) -> anyhow::Result<SenderHost> {
    let n = net.names();
    let qd = qdiscs(&n.server_ns, &n.server_if)?;
    let snmp = snmp_in(&net.server_ns())?;
    Ok(SenderHost {
        namespace: n.server_ns.clone(),
        interface: n.server_if.clone(),
        qdisc: qd.first().map(|q| q.kind.clone()).unwrap_or_default(),
        qdisc_drops: qd.iter().map(|q| q.drops).sum(),
        udp_out_datagrams: counter(&snmp, "OutDatagrams"),
        udp_sndbuf_errors: counter(&snmp, "SndbufErrors"),
    })
}

fn read_router(net: &Network) -> anyhow::Result<Router> {
    let n = net.names();
    let qd = qdiscs(&n.router_ns, &n.router_client_if)?;
    // htb's own count includes what its classes' qdiscs dropped.
    let other_qdisc_drops = qd
        .iter()
        .filter(|q| q.handle != TBF_HANDLE && q.kind != "htb")
        .map(|q| q.drops)
        .sum();
    let loss_rule = match net.iptables() {
        Some(ipt) => {
            let ns = n.router_ns.as_str();
            let args = ["netns", "exec", ns, ipt, "-L", "FORWARD", "-v", "-x", "-n"];
            let out = command("ip", &args)?;
            let rule = parse_iptables_rule(&out, LOSS_RULE_COMMENT)
                .ok_or_else(|| anyhow!("the random-loss rule is not in {ns}'s FORWARD chain"))?;
            Some(rule)
        }
        None => None,
    };
    Ok(Router {
        namespace: n.router_ns.clone(),
        interface: n.router_client_if.clone(),
        queue: qd.into_iter().find(|q| q.handle == TBF_HANDLE),
        other_qdisc_drops,
        loss_rule,
    })
}

fn read_receiver_host(net: &Network) -> anyhow::Result<ReceiverHost> {
    let n = net.names();
    let snmp = snmp_in(&net.client_ns())?;
    Ok(ReceiverHost {
        namespace: n.client_ns.clone(),
        interface: n.client_if.clone(),
        udp_in_datagrams: counter(&snmp, "InDatagrams"),
        udp_rcvbuf_errors: counter(&snmp, "RcvbufErrors"),
        udp_no_ports: counter(&snmp, "NoPorts"),
        udp_in_errors: counter(&snmp, "InErrors"),
    })
}

/// The four veth ends, from the server's to the client's.
fn read_links(net: &Network) -> anyhow::Result<Vec<LinkStats>> {
    let n = net.names();
    [
        (&n.server_ns, &n.server_if),
        (&n.router_ns, &n.router_server_if),
        (&n.router_ns, &n.router_client_if),
        (&n.client_ns, &n.client_if),
    ]
    .into_iter()
    .map(|(ns, dev)| link_stats(ns, dev))
    .collect()
}

/// A capture point's own counts, as its capture returned them.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureCount {
    pub point: CaptureAt,
    pub path: String,
    pub interface: String,
    pub packets: u64,
    /// libpcap's `ps_recv` and `ps_drop`.
    pub received: u64,
    pub dropped: u64,
}

/// A client socket's drops, as its log gives them.
#[derive(Debug, Clone, Serialize)]
pub struct SocketDrops {
    pub client_id: Option<u16>,
    pub kernel_drops: Option<u64>,
}

/// A place on the path that the check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// Before the server's capture point.
    SenderHost,
    /// Between the two capture points.
    Network,
    /// After the client's capture point.
    ReceiverHost,
    /// A capture's own drops.
    Capture,
}

/// One place: the analyzer's figure beside the kernel's.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    pub place: Place,
    /// The capture point, for a capture's row.
    pub point: Option<CaptureAt>,
    /// The place as the table names it.
    pub label: String,
    /// `datagrams` or `packets`.
    pub unit: &'static str,
    pub analyzer: Option<i64>,
    pub kernel: Option<u64>,
    /// Both known and equal.
    pub agree: Option<bool>,
    /// How each figure is made, with the parts' values.
    pub analyzer_from: String,
    pub kernel_from: String,
    pub note: Option<String>,
}

impl CheckRow {
    fn new(
        place: Place,
        label: impl Into<String>,
        unit: &'static str,
        analyzer: Option<i64>,
        kernel: Option<u64>,
    ) -> CheckRow {
        CheckRow {
            place,
            point: None,
            label: label.into(),
            unit,
            analyzer,
            kernel,
            agree: analyzer
                .zip(kernel)
                .map(|(a, k)| u64::try_from(a).is_ok_and(|a| a == k)),
            analyzer_from: String::new(),
            kernel_from: String::new(),
            note: None,
        }
    }
}

/// What [`check`] compares.
#[derive(Debug, Clone, Copy)]
pub struct CheckInputs<'a> {
    pub analysis: &'a Analysis,
    pub logs: &'a LogSet,
    pub counters: &'a Snapshot,
    pub captures: &'a [CaptureCount],
    pub server_if: &'a str,
    pub router_client_if: &'a str,
}

/// The log at `path` (as a row names it).
fn log_at<'a>(logs: &'a LogSet, path: Option<&String>) -> Option<&'a TransferLog> {
    let path = path?;
    logs.logs
        .iter()
        .find(|l| l.path.display().to_string() == *path)
        .map(|l| &l.log)
}

/// Datagrams a client took from its socket: every copy, kept or not.
fn datagrams_read(log: &TransferLog) -> Option<u64> {
    let got = log.datagrams_received?;
    Some(match log.protocol {
        // The lab client counts every datagram it read, past-size ones too.
        Some(Protocol::Lab) | None => got,
        Some(Protocol::V1) => [log.duplicates, log.malformed, log.late]
            .into_iter()
            .map(|n| n.unwrap_or(0))
            .fold(got, u64::saturating_add),
    })
}

/// Data frames of a client's flow at the capture `path` (0 when the point
/// holds none of it).
fn frames_at(row: &ClientRow, path: &str) -> u64 {
    row.path
        .iter()
        .filter(|p| p.capture == path)
        .map(|p| p.data_frames)
        .sum()
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn who(row: &ClientRow) -> String {
    row.client_id
        .map_or_else(|| row.client.to_string(), |id| format!("client {id}"))
}

/// The analyzer's figures beside the kernel's, place by place.
pub fn check(i: &CheckInputs) -> Vec<CheckRow> {
    let server = i.captures.iter().find(|c| c.point == CaptureAt::ServerHost);
    let client = i.captures.iter().find(|c| c.point == CaptureAt::ClientHost);
    let mut rows = vec![
        sender_row(i, server),
        network_row(i, server, client),
        receiver_row(i, client),
    ];
    rows.extend(i.captures.iter().map(|c| capture_row(i, c)));
    rows
}

fn sender_row(i: &CheckInputs, server: Option<&CaptureCount>) -> CheckRow {
    let s = &i.counters.sender_host;
    let veth_drops = i.counters.tx_dropped(i.server_if);
    let kernel = s.qdisc_drops + s.udp_sndbuf_errors.saturating_sub(veth_drops);
    let mut missing = Vec::new();
    let analyzer = server.map(|cap| {
        i.analysis
            .clients
            .iter()
            .map(|r| {
                let sent = log_at(i.logs, r.server_log.as_ref()).and_then(|l| l.datagrams_sent);
                if sent.is_none() {
                    missing.push(who(r));
                }
                to_i64(sent.unwrap_or(0)) - to_i64(frames_at(r, &cap.path))
            })
            .sum::<i64>()
    });
    let mut row = CheckRow::new(
        Place::SenderHost,
        "sender host (before the server's capture)",
        "datagrams",
        analyzer.filter(|_| missing.is_empty()),
        Some(kernel),
    );
    row.analyzer_from =
        "datagrams the server's logs say it sent - data frames in the server's capture".into();
    row.kernel_from = format!(
        "{} qdisc drops {} + SndbufErrors {}{}",
        s.qdisc,
        group(s.qdisc_drops),
        group(s.udp_sndbuf_errors),
        if veth_drops > 0 {
            format!(" - the veth's own drops {veth_drops} (past the capture point)")
        } else {
            String::new()
        }
    );
    if server.is_none() {
        row.note = Some("no capture at the server".into());
    } else if !missing.is_empty() {
        row.note = Some(format!("no server log for {}", missing.join(", ")));
    }
    row
}

fn network_row(
    i: &CheckInputs,
    server: Option<&CaptureCount>,
    client: Option<&CaptureCount>,
) -> CheckRow {
    let r = &i.counters.router;
    let queue = r.queue.as_ref().map_or(0, |q| q.drops);
    let rule = r.loss_rule.as_ref().map_or(0, |l| l.packets);
    let links = i.counters.tx_dropped(i.server_if) + i.counters.tx_dropped(i.router_client_if);
    let analyzer = server.zip(client).map(|(s, c)| {
        let data: i64 = i
            .analysis
            .clients
            .iter()
            .map(|row| to_i64(frames_at(row, &s.path)) - to_i64(frames_at(row, &c.path)))
            .sum();
        // Datagrams of the flows that are no data: the lab's name and
        // size datagrams.
        let other_at = |path: &str| -> i64 {
            i.analysis
                .flows
                .iter()
                .filter(|f| f.capture == path)
                .map(|f| to_i64(f.frames.saturating_sub(f.data_frames)))
                .sum()
        };
        (data, other_at(&s.path) - other_at(&c.path))
    });
    let mut row = CheckRow::new(
        Place::Network,
        "network (between the captures)",
        "datagrams",
        analyzer.map(|(d, o)| d + o),
        Some(queue + rule + links),
    );
    row.analyzer_from = match analyzer {
        Some((d, o)) => format!(
            "data frames lost between the captures {} + other datagrams {}",
            group_i(d),
            group_i(o)
        ),
        None => "needs both captures".into(),
    };
    row.kernel_from = format!(
        "queue drops {}{} + loss rule {}{} + veth drops {}",
        group(queue),
        if r.queue.is_none() { " (no queue)" } else { "" },
        group(rule),
        if r.loss_rule.is_none() {
            " (no rule)"
        } else {
            ""
        },
        group(links)
    );
    if r.other_qdisc_drops > 0 {
        row.note = Some(format!(
            "the control connections' class dropped {} packets",
            r.other_qdisc_drops
        ));
    }
    row
}

fn receiver_row(i: &CheckInputs, client: Option<&CaptureCount>) -> CheckRow {
    let h = &i.counters.receiver_host;
    let mut left_out = Vec::new();
    let (mut lost, mut drops) = (0i64, 0u64);
    for r in &i.analysis.clients {
        let log = log_at(i.logs, r.client_log.as_ref());
        match (
            log.and_then(datagrams_read),
            log.and_then(|l| l.kernel_drops),
        ) {
            (Some(read), Some(d)) => {
                if let Some(c) = client {
                    lost += to_i64(frames_at(r, &c.path)) - to_i64(read);
                }
                drops += d;
            }
            _ => left_out.push(who(r)),
        }
    }
    let mut row = CheckRow::new(
        Place::ReceiverHost,
        "receiver host (after the client's capture)",
        "datagrams",
        client.map(|_| lost),
        Some(drops + h.udp_no_ports),
    );
    row.analyzer_from =
        "data frames in the client's capture - datagrams the clients' logs say they read".into();
    row.kernel_from = format!(
        "socket drops {} (the clients' kernel_drops; RcvbufErrors {}) + NoPorts {}",
        group(drops),
        group(h.udp_rcvbuf_errors),
        group(h.udp_no_ports)
    );
    let mut notes = Vec::new();
    if client.is_none() {
        notes.push("no capture at the client".to_string());
    }
    if !left_out.is_empty() {
        // What reached such a client's host is in neither figure, or
        // (after it had gone) in NoPorts alone: no comparison.
        row.agree = None;
        notes.push(format!(
            "not compared: no log says what {} read and dropped (a client that failed)",
            left_out.join(", ")
        ));
    }
    row.note = (!notes.is_empty()).then(|| notes.join("; "));
    row
}

fn capture_row(i: &CheckInputs, c: &CaptureCount) -> CheckRow {
    let isb = i
        .analysis
        .captures
        .iter()
        .find(|r| r.path == c.path)
        .and_then(|r| r.dropped);
    let mut row = CheckRow::new(
        Place::Capture,
        format!("capture at the {} ({})", c.point, c.interface),
        "packets",
        isb.map(to_i64),
        Some(c.dropped),
    );
    row.point = Some(c.point);
    row.analyzer_from = "dropped, by the file's statistics block".into();
    row.kernel_from = format!(
        "libpcap: {} received, {} dropped",
        group(c.received),
        group(c.dropped)
    );
    row
}

fn group_i(n: i64) -> String {
    if n < 0 {
        format!("-{}", group(n.unsigned_abs()))
    } else {
        group(n.unsigned_abs())
    }
}

/// The check as a table: place, analyzer, kernel, agree, and how the
/// kernel's figure is made.
pub fn write_table(out: &mut dyn Write, rows: &[CheckRow]) -> io::Result<()> {
    let mut t =
        crate::analyze::report::table(&["place", "analyzer", "kernel", "agree", "kernel counters"]);
    for r in rows {
        t.add_row(vec![
            r.label.clone(),
            r.analyzer.map_or_else(|| "-".into(), group_i),
            r.kernel.map_or_else(|| "-".into(), group),
            match r.agree {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "-".into(),
            },
            r.kernel_from.clone(),
        ]);
    }
    for c in 1..3 {
        if let Some(col) = t.column_mut(c) {
            col.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    writeln!(out, "{t}")?;
    for r in rows {
        if let Some(n) = &r.note {
            writeln!(out, "  {}: {n}", r.label)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tc_json_gives_each_qdisc_s_counts() {
        let json = r#"[{"kind":"htb","handle":"1:","root":true,"refcnt":3,"options":{"r2q":10},"bytes":900,"packets":9,"drops":4,"overlimits":0,"requeues":0,"backlog":0,"qlen":0},{"kind":"tbf","handle":"10:","parent":"1:1","options":{"rate":12500000,"burst":12500,"lat":19971},"bytes":800,"packets":8,"drops":4,"overlimits":31,"requeues":0,"backlog":2132,"qlen":2}]"#;
        let q = parse_tc_qdiscs(json).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[1].kind, "tbf");
        assert_eq!(q[1].handle, TBF_HANDLE);
        assert_eq!((q[1].packets, q[1].drops, q[1].overlimits), (8, 4, 31));
        assert_eq!((q[1].backlog, q[1].qlen), (2132, 2));
        assert!(parse_tc_qdiscs("qdisc noqueue 0: root").is_err());
    }

    #[test]
    fn the_loss_rule_s_counts_come_from_its_listing_line() {
        let listing = "Chain FORWARD (policy ACCEPT 0 packets, 0 bytes)\n    pkts      bytes target     prot opt in     out     source               destination         \n     351   369252 DROP       17   --  *      udplab9rc  0.0.0.0/0            10.77.2.0/24         statistic mode random probability 0.00999999978 /* udplab-loss */\n";
        assert_eq!(
            parse_iptables_rule(listing, LOSS_RULE_COMMENT),
            Some(RuleCount {
                packets: 351,
                bytes: 369_252
            })
        );
        assert_eq!(parse_iptables_rule(listing, "other"), None);
    }

    #[test]
    fn snmp_s_udp_lines_pair_names_with_values() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 2 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 10 2 0 30 5 1\nUdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n";
        let m = parse_snmp_udp(snmp);
        assert_eq!(m["InDatagrams"], 10);
        assert_eq!(m["NoPorts"], 2);
        assert_eq!(m["SndbufErrors"], 1);
        assert_eq!(m.len(), 6);
        assert!(parse_snmp_udp("Ip: a\nIp: 1\n").is_empty());
    }

    #[test]
    fn ip_s_json_gives_the_link_s_packets_and_drops() {
        let json = r#"[{"ifindex":2,"ifname":"va","stats64":{"rx":{"bytes":0,"packets":7,"errors":0,"dropped":1},"tx":{"bytes":0,"packets":9,"errors":0,"dropped":3}}}]"#;
        assert_eq!(parse_ip_link_stats(json).unwrap(), (9, 3, 7, 1));
        assert!(parse_ip_link_stats("[]").is_err());
    }

    #[test]
    fn a_run_s_counts_are_the_difference_of_two_snapshots() {
        let at = |drops: u64, rule: u64, tx_dropped: u64| Snapshot {
            router: Router {
                queue: Some(Qdisc {
                    kind: "tbf".into(),
                    handle: TBF_HANDLE.into(),
                    drops,
                    backlog: 7,
                    ..Qdisc::default()
                }),
                loss_rule: Some(RuleCount {
                    packets: rule,
                    bytes: rule * 1000,
                }),
                ..Router::default()
            },
            links: vec![LinkStats {
                interface: "x".into(),
                tx_dropped,
                ..LinkStats::default()
            }],
            ..Snapshot::default()
        };
        let d = at(120, 40, 3).since(&at(100, 10, 1));
        let q = d.router.queue.unwrap();
        assert_eq!((q.drops, q.backlog), (20, 7));
        assert_eq!(d.router.loss_rule.unwrap().packets, 30);
        assert_eq!(d.links[0].tx_dropped, 2);
    }

    #[test]
    fn a_v1_client_read_its_duplicates_and_late_copies_too() {
        let log = TransferLog {
            protocol: Some(Protocol::V1),
            datagrams_received: Some(100),
            duplicates: Some(2),
            malformed: Some(1),
            late: Some(3),
            ..TransferLog::default()
        };
        assert_eq!(datagrams_read(&log), Some(106));
        let lab = TransferLog {
            protocol: Some(Protocol::Lab),
            datagrams_received: Some(100),
            malformed: Some(1),
            ..TransferLog::default()
        };
        assert_eq!(datagrams_read(&lab), Some(100));
        assert_eq!(datagrams_read(&TransferLog::default()), None);
    }
}
