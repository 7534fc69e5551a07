//! `udplab analyze --conversations` on captures of captures/, checked
//! against tshark run on the same file: frames and bytes each way per
//! conversation against `tshark -q -z conv,tcp -z conv,udp` (and, where
//! that table rounds bytes to kB, against the sum of `frame.len`), and the
//! protocol strings against `tshark -T fields -e frame.protocols` counted
//! per conversation, up to the first application layer.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const CAPTURES: &[&str] = &[
    "captures/lab-2clients-lossless/capture.pcap",
    "captures/v1-2clients-sll/capture.pcap",
    "captures/v1-2clients-sll2/capture.pcap",
    "captures/derived/null.pcap",
    "captures/derived/raw.pcap",
    "captures/v1-2clients-ipv6/capture.pcap",
    "captures/v1-client-killed/capture.pcap",
    "captures/v1-3clients-capture-drops/capture.pcapng",
    "captures/lab-3clients-lossy/capture.pcap",
    "captures/v1-4clients-lossy/capture.pcap",
    "captures/v1-3clients-udplab-capture/capture.pcapng",
    "captures/derived/loop.pcap",
    "captures/derived/null-be.pcap",
    "captures/derived/ns-be.pcap",
    "captures/derived/mixed.pcapng",
    "captures/v1-2clients-reliable/capture.pcapng",
    "captures/link-2clients-lossy/server.pcapng",
    "captures/link-2clients-lossy/client.pcapng",
    "captures/headers-2clients/capture.pcapng",
];

/// A conversation's key: transport and its endpoints, the lower first.
type Key = (String, SocketAddr, SocketAddr);

fn key(proto: &str, x: SocketAddr, y: SocketAddr) -> Key {
    (proto.to_string(), x.min(y), x.max(y))
}

/// Frames and bytes each way, the lower endpoint's first.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    lo_frames: u64,
    lo_bytes: u64,
    hi_frames: u64,
    hi_bytes: u64,
}

fn tshark(args: &[&str]) -> Option<String> {
    let out = Command::new("tshark").args(args).output().ok()?;
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// `::1:51194` or `127.0.0.1:25010`: the port after the last colon.
fn endpoint(s: &str) -> SocketAddr {
    let (ip, port) = s.rsplit_once(':').unwrap();
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port.parse().unwrap())
}

/// A byte count of tshark's conversation table and how exact it is: "348
/// bytes" is exact, "1081 kB" is 1,081,000 give or take 1000.
fn size(n: &str, unit: &str) -> (u64, u64) {
    let n: u64 = n.parse().unwrap();
    let mult = match unit {
        "bytes" => 1,
        "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => panic!("unit {other}"),
    };
    (n * mult, mult)
}

/// Frames and (possibly rounded) bytes of `-z conv,tcp -z conv,udp`.
fn conv_tables(path: &str, text: &str) -> HashMap<Key, (Counts, [u64; 2])> {
    let mut out = HashMap::new();
    let mut proto = "";
    for line in text.lines() {
        if line.starts_with("TCP Conversations") {
            proto = "tcp";
        } else if line.starts_with("UDP Conversations") {
            proto = "udp";
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 9 || w[1] != "<->" {
            continue;
        }
        let (a, b) = (endpoint(w[0]), endpoint(w[2]));
        // "<-" is B to A, "->" is A to B.
        let (ba_frames, (ba_bytes, ba_tol)) = (w[3].parse().unwrap(), size(w[4], w[5]));
        let (ab_frames, (ab_bytes, ab_tol)) = (w[6].parse().unwrap(), size(w[7], w[8]));
        let (c, tol) = if a < b {
            (
                Counts {
                    lo_frames: ab_frames,
                    lo_bytes: ab_bytes,
                    hi_frames: ba_frames,
                    hi_bytes: ba_bytes,
                },
                [ab_tol, ba_tol],
            )
        } else {
            (
                Counts {
                    lo_frames: ba_frames,
                    lo_bytes: ba_bytes,
                    hi_frames: ab_frames,
                    hi_bytes: ab_bytes,
                },
                [ba_tol, ab_tol],
            )
        };
        let old = out.insert(key(proto, a, b), (c, tol));
        assert!(old.is_none(), "{path}: {a} <-> {b} twice in tshark's table");
    }
    out
}

/// Cuts a `frame.protocols` string after the first layer above TCP or
/// UDP. tshark's heuristic dissectors name some payloads by a guess (the
/// lab's UDP datagrams as `rtcp`); any layer there other than `http` is
/// taken as `data`, which is what udplab says of a payload it does not
/// know.
fn up_to_application(p: &str) -> String {
    let parts: Vec<&str> = p.split(':').collect();
    let Some(t) = parts.iter().position(|&x| x == "tcp" || x == "udp") else {
        return p.to_string();
    };
    let mut out: Vec<&str> = parts[..=t].to_vec();
    if let Some(&app) = parts.get(t + 1) {
        out.push(if app == "http" { "http" } else { "data" });
    }
    out.join(":")
}

/// Per conversation from `-T fields`: frames and exact frame bytes each
/// way, and the protocol strings.
fn fields(text: &str) -> HashMap<Key, (Counts, BTreeMap<String, u64>)> {
    let mut out: HashMap<Key, (Counts, BTreeMap<String, u64>)> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [protocols, ip4s, ip6s, tsp, usp, ip4d, ip6d, tdp, udp, len] = f[..] else {
            panic!("fields line {line:?}");
        };
        // ICMP quoting a datagram, tunnels: not a conversation's own frame.
        if protocols.contains("icmp") || ip4s.contains(',') || ip6s.contains(',') {
            continue;
        }
        let (proto, sp, dp) = match (tsp, usp) {
            (t, "") if !t.is_empty() => ("tcp", t, tdp),
            ("", u) if !u.is_empty() => ("udp", u, udp),
            _ => continue,
        };
        let ip =
            |v4: &str, v6: &str| -> IpAddr { if v4.is_empty() { v6 } else { v4 }.parse().unwrap() };
        let src = SocketAddr::new(ip(ip4s, ip6s), sp.parse().unwrap());
        let dst = SocketAddr::new(ip(ip4d, ip6d), dp.parse().unwrap());
        let len: u64 = len.parse().unwrap();
        let e = out.entry(key(proto, src, dst)).or_default();
        if src < dst {
            e.0.lo_frames += 1;
            e.0.lo_bytes += len;
        } else {
            e.0.hi_frames += 1;
            e.0.hi_bytes += len;
        }
        *e.1.entry(up_to_application(protocols)).or_insert(0) += 1;
    }
    out
}

/// udplab's conversations, by key.
fn udplab(path: &str) -> HashMap<Key, (Counts, BTreeMap<String, u64>, Value)> {
    let out = Command::new(env!("CARGO_BIN_EXE_udplab"))
        .args([
            "--quiet",
            "analyze",
            "--conversations",
            "--format",
            "json",
            path,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut map = HashMap::new();
    for c in v["conversations"]
        .as_array()
        .expect("a conversations array")
    {
        let a = c["a"].as_str().unwrap().parse::<SocketAddr>().unwrap();
        let b = c["b"].as_str().unwrap().parse::<SocketAddr>().unwrap();
        let n = |k: &str| c[k].as_u64().unwrap();
        let counts = if a < b {
            Counts {
                lo_frames: n("frames_a_to_b"),
                lo_bytes: n("bytes_a_to_b"),
                hi_frames: n("frames_b_to_a"),
                hi_bytes: n("bytes_b_to_a"),
            }
        } else {
            Counts {
                lo_frames: n("frames_b_to_a"),
                lo_bytes: n("bytes_b_to_a"),
                hi_frames: n("frames_a_to_b"),
                hi_bytes: n("bytes_a_to_b"),
            }
        };
        let protocols = c["protocols"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(p, n)| (p.clone(), n.as_u64().unwrap()))
            .collect();
        let old = map.insert(
            key(c["transport"].as_str().unwrap(), a, b),
            (counts, protocols, c.clone()),
        );
        assert!(old.is_none(), "{path}: {a} <-> {b} twice");
    }
    map
}

/// Whether tshark is there to compare with; skips (or fails on CI) if not.
fn have_tshark() -> bool {
    if tshark(&["--version"]).is_some() {
        return true;
    }
    common::skip_or_fail("tshark is not installed");
    false
}

#[test]
fn conversations_match_tshark() {
    if !have_tshark() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for rel in CAPTURES {
        compare_with_tshark(&root.join(rel));
    }
}

/// Every conversation of `path` by udplab and by tshark: the same set,
/// the same frames and bytes each way, the same protocol strings.
fn compare_with_tshark(path: &Path) {
    let rel = path.display();
    let path = path.to_str().unwrap();
    let conv = conv_tables(
        path,
        &tshark(&["-r", path, "-q", "-z", "conv,tcp", "-z", "conv,udp"]).unwrap(),
    );
    let per_frame = fields(
        &tshark(&[
            "-r",
            path,
            "-T",
            "fields",
            "-E",
            "separator=/t",
            "-e",
            "frame.protocols",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "tcp.srcport",
            "-e",
            "udp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "ipv6.dst",
            "-e",
            "tcp.dstport",
            "-e",
            "udp.dstport",
            "-e",
            "frame.len",
        ])
        .unwrap(),
    );
    let ours = udplab(path);
    let mut keys: Vec<&Key> = ours.keys().collect();
    keys.sort();
    let mut theirs: Vec<&Key> = conv.keys().collect();
    theirs.sort();
    assert!(!theirs.is_empty(), "{rel}: tshark found no conversation");
    assert_eq!(keys, theirs, "{rel}: the conversations");
    for k in keys {
        let (mine, protocols, row) = &ours[k];
        let (table, tol) = conv[k];
        let (exact, their_protocols) = &per_frame[k];
        assert_eq!(mine, exact, "{rel} {k:?}: frames and bytes by frame.len");
        assert_eq!(
            (mine.lo_frames, mine.hi_frames),
            (table.lo_frames, table.hi_frames),
            "{rel} {k:?}: frames by conv"
        );
        for (ours, theirs, tol) in [
            (mine.lo_bytes, table.lo_bytes, tol[0]),
            (mine.hi_bytes, table.hi_bytes, tol[1]),
        ] {
            if tol == 1 {
                assert_eq!(ours, theirs, "{rel} {k:?}: bytes by conv");
            } else {
                assert!(
                    ours.abs_diff(theirs) < tol,
                    "{rel} {k:?}: {ours} B, conv {theirs}"
                );
            }
        }
        assert_eq!(protocols, their_protocols, "{rel} {k:?}: protocols");
        if k.0 == "tcp" {
            assert_eq!(row["ports_stable"], Value::Bool(true));
        } else {
            assert!(row["ports_stable"].is_null() && row["handshake"].is_null());
        }
    }
}

/// An HTTP exchange to port 80 over Ethernet with an 802.1Q tag, and a
/// UDP datagram of binary bytes, written as a pcap: `vlan` and `http` in the
/// protocol strings, as tshark names them.
#[test]
fn http_over_vlan_matches_tshark() {
    if !have_tshark() {
        return;
    }
    let client = ([10, 0, 0, 1], 40000);
    let server = ([10, 0, 0, 2], 80);
    let segments: [(bool, &str, &[u8]); 7] = [
        (true, "S", b""),
        (false, "SA", b""),
        (true, "A", b""),
        (true, "PA", b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"),
        (false, "PA", b"HTTP/1.1 204 No Content\r\nServer: t\r\n\r\n"),
        (true, "FA", b""),
        (false, "FA", b""),
    ];
    let mut frames = Vec::new();
    let (mut seq_c, mut seq_s) = (1000u32, 5000u32);
    for (from_client, flags, payload) in segments {
        let ((src, sport), (dst, dport)) = if from_client {
            (client, server)
        } else {
            (server, client)
        };
        let (seq, ack) = if from_client {
            (seq_c, seq_s)
        } else {
            (seq_s, seq_c)
        };
        let mut b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .single_vlan(etherparse::VlanId::try_new(5).unwrap())
            .ipv4(src, dst, 64)
            .tcp(sport, dport, seq, 1000);
        for f in flags.chars() {
            b = match f {
                'S' => b.syn(),
                'A' => b.ack(ack),
                'F' => b.fin(),
                'P' => b.psh(),
                _ => b,
            };
        }
        let mut frame = Vec::new();
        b.write(&mut frame, payload).unwrap();
        frames.push(frame);
        let used = payload.len() as u32 + u32::from(flags.contains('S') || flags.contains('F'));
        if from_client {
            seq_c += used;
        } else {
            seq_s += used;
        }
    }
    let mut udp = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 3], 64)
        .udp(40001, 33333)
        .write(&mut udp, b"\x00\x01binary\xff")
        .unwrap();
    frames.push(udp);

    // A pcap: its global header, then each frame with its record header.
    let mut pcap: Vec<u8> = Vec::new();
    pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    pcap.extend_from_slice(&[0; 8]);
    pcap.extend_from_slice(&65535u32.to_le_bytes());
    pcap.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        pcap.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        pcap.extend_from_slice(&(i as u32 * 100).to_le_bytes());
        pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
        pcap.extend_from_slice(f);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("http-vlan.pcap");
    std::fs::write(&path, &pcap).unwrap();
    compare_with_tshark(&path);

    let ours = udplab(path.to_str().unwrap());
    let (_, protocols, row) = ours
        .values()
        .find(|(_, _, v)| v["transport"] == "tcp")
        .unwrap();
    assert_eq!(
        protocols.get("eth:ethertype:vlan:ethertype:ip:tcp:http"),
        Some(&2)
    );
    assert_eq!(row["a"], "10.0.0.1:40000");
    assert_eq!(row["teardown"]["by"], "a");
    assert_eq!(row["payloads"][0]["printable_share"], 1.0);
    let (_, _, udp) = ours
        .values()
        .find(|(_, _, v)| v["transport"] == "udp")
        .unwrap();
    assert_eq!(udp["payloads"][0]["printable_share"], 0.667);
    assert_eq!(udp["payloads"][0]["text"], "..binary.");
}

/// The lab's control connections: the handshake and teardown read, and
/// the first payloads previewed.
#[test]
fn tcp_handshake_teardown_and_payloads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/derived/null.pcap");
    let ours = udplab(path.to_str().unwrap());
    let tcp: Vec<&Value> = ours
        .values()
        .map(|(_, _, v)| v)
        .filter(|v| v["transport"] == "tcp")
        .collect();
    assert_eq!(tcp.len(), 2);
    for c in tcp {
        assert!(c["b"].as_str().unwrap().ends_with(":25010"), "{c}");
        let h = &c["handshake"];
        assert_eq!(h["syn_from"], "a");
        assert_eq!(h["seen"], "complete");
        assert_eq!(h["mss_syn"], 65495);
        assert_eq!(h["sack"], true);
        assert!(h["rtt_us"].as_f64().unwrap() > 0.0);
        assert_eq!(c["teardown"]["kind"], "FIN");
        let p = c["payloads"].as_array().unwrap();
        assert!(!p.is_empty() && p.len() <= 8);
        for p in p {
            let hex = p["hex"].as_str().unwrap();
            assert_eq!(hex.len(), 2 * p["len"].as_u64().unwrap().min(64) as usize);
            let share = p["printable_share"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&share));
        }
    }
}

/// Without --conversations the report has no such key.
#[test]
fn off_unless_asked() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/derived/null.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_udplab"))
        .args(["--quiet", "analyze", "--format", "json"])
        .arg(&path)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("conversations").is_none());
}
