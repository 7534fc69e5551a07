//! One captured frame -> addresses, ports, TCP/UDP/ICMP facts and payload.
//!
//! A pure function of (link type, captured bytes). Sizes come from the IP
//! and UDP length fields, never from the captured length, so that
//! snap-length-cut frames (tcpdump -s 96) still count in full; payload
//! slices hold only what was captured. The byte-level views are in
//! [`crate::wire`]; this module decides what to believe and what to skip.

use std::net::IpAddr;

use pcap_parser::Linktype;

use crate::wire::{
    self, icmp, ipv4, ipv6,
    link::{self, LinkType, Protocol},
    tcp, udp,
};

/// What one frame carried, as far as the analyzer cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport<'a> {
    Udp(Udp<'a>),
    Tcp(Tcp<'a>),
    Icmp(Icmp),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udp<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    /// Payload length from the UDP length field (minus its 8-byte header).
    pub payload_len: usize,
    /// The captured part of the payload: shorter than `payload_len` when
    /// the snap length cut the frame.
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcp<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// The window field as sent (not scaled).
    pub window: u16,
    /// Options, as seen on this segment (SYN and SYN-ACK carry them).
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// Payload length from the IP length fields and the TCP data offset.
    pub payload_len: usize,
    /// The captured part of the payload.
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmp {
    /// ICMPv4 type 3 code 3, or ICMPv6 type 1 code 4.
    pub port_unreachable: bool,
    pub icmp_type: u8,
    pub code: u8,
    /// The datagram the message quotes, when it quotes a UDP one.
    pub quoted: Option<QuotedUdp>,
}

/// The addresses and ports of the UDP datagram an ICMP error quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedUdp {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Why a frame was skipped. [`Error::reason`] groups them for the report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The capture's link type is none of those in [`LinkType`].
    #[error("link type {0} not supported")]
    UnsupportedLinkType(i32),
    /// The link layer carries something other than IP (ARP, LLDP...).
    #[error("not IP (EtherType 0x{ether_type:04x})")]
    NotIp { ether_type: u16 },
    /// An IEEE 802.3 frame, whose EtherType field is a length and whose
    /// payload starts with an LLC header (spanning tree...).
    #[error("not IP (IEEE 802.3 frame)")]
    Ieee8023,
    /// A loopback (NULL/LOOP) frame whose address family is not IP, and
    /// whose payload does not start like an IP packet either.
    #[error("not IP (address family {family})")]
    NotIpFamily { family: u32 },
    /// A raw-IP frame whose version nibble is neither 4 nor 6.
    #[error("not IP (version {version})")]
    NotIpVersion { version: u8 },
    /// The capture holds fewer bytes than a header needs: the frame was cut
    /// inside `layer`, by the snap length or in transit.
    #[error("truncated {layer}: need {need} bytes, got {got}")]
    Truncated {
        layer: &'static str,
        need: usize,
        got: usize,
    },
    /// A header field contradicts the protocol or a length field of the
    /// layer below (a UDP length beyond the IP payload, a TCP data offset
    /// below 20...).
    #[error("malformed {layer}: {what}")]
    Malformed {
        layer: &'static str,
        what: &'static str,
    },
    /// An IP fragment that does not hold its transport header: a
    /// non-first fragment (`offset` > 0), or the first fragment of a TCP
    /// segment, whose payload length the fragment alone does not tell.
    /// Datagrams are not reassembled.
    #[error("{ip} fragment at byte offset {offset}")]
    Fragment { ip: &'static str, offset: usize },
    /// An IP protocol other than TCP, UDP and ICMP (IGMP, ESP, IPv6's
    /// "no next header"...).
    #[error("IP protocol {0}")]
    OtherProtocol(u8),
}

impl Error {
    /// A short key that groups skipped frames in the report ("truncated
    /// IPv4 header", "IP protocol 2"). Stable, and free of per-packet
    /// numbers such as lengths and offsets; the `Display` form has those.
    pub fn reason(&self) -> String {
        match self {
            Error::Truncated { layer, .. } => format!("truncated {layer}"),
            Error::Malformed { layer, .. } => format!("malformed {layer}"),
            Error::Fragment { ip, .. } => format!("{ip} fragment"),
            Error::UnsupportedLinkType(_)
            | Error::NotIp { .. }
            | Error::Ieee8023
            | Error::NotIpFamily { .. }
            | Error::NotIpVersion { .. }
            | Error::OtherProtocol(_) => self.to_string(),
        }
    }
}

impl From<wire::Error> for Error {
    fn from(e: wire::Error) -> Error {
        match e {
            wire::Error::Truncated { layer, need, got } => Error::Truncated { layer, need, got },
            wire::Error::Malformed { layer, what } => Error::Malformed { layer, what },
        }
    }
}

/// IP protocol numbers.
mod ip_protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// Decodes one captured frame of a capture whose link type is `link_type`.
pub fn decode(link_type: Linktype, data: &[u8]) -> Result<Decoded<'_>, Error> {
    let link_type =
        LinkType::from_pcap(link_type).ok_or(Error::UnsupportedLinkType(link_type.0))?;
    let net = link::parse(link_type, data)?;
    let ip = match net.protocol {
        Protocol::Ipv4 => ip_v4(net.data)?,
        Protocol::Ipv6 => ip_v6(net.data)?,
        Protocol::EtherType(ether_type) => return Err(Error::NotIp { ether_type }),
        Protocol::Ieee8023 => return Err(Error::Ieee8023),
        Protocol::AddressFamily(family) => return Err(Error::NotIpFamily { family }),
        Protocol::IpVersion(version) => return Err(Error::NotIpVersion { version }),
    };
    let transport = match ip.protocol {
        ip_protocol::UDP => Transport::Udp(decode_udp(&ip)?),
        ip_protocol::TCP if ip.first_fragment => {
            return Err(Error::Fragment {
                ip: ip.version.name(),
                offset: 0,
            });
        }
        ip_protocol::TCP => Transport::Tcp(decode_tcp(&ip)?),
        ip_protocol::ICMP if ip.version == IpVersion::V4 => Transport::Icmp(decode_icmp_v4(&ip)?),
        ip_protocol::ICMPV6 if ip.version == IpVersion::V6 => Transport::Icmp(decode_icmp_v6(&ip)?),
        other => return Err(Error::OtherProtocol(other)),
    };
    Ok(Decoded {
        src: ip.src,
        dst: ip.dst,
        transport,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IpVersion {
    V4,
    V6,
}

impl IpVersion {
    fn name(self) -> &'static str {
        match self {
            IpVersion::V4 => "IPv4",
            IpVersion::V6 => "IPv6",
        }
    }
}

/// The upper-layer part of an IP packet.
struct IpPayload<'a> {
    version: IpVersion,
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    /// The captured bytes, at most `len`.
    data: &'a [u8],
    /// The bytes the IP header announces.
    len: usize,
    /// The first fragment of a fragmented datagram: `len` covers only this
    /// fragment.
    first_fragment: bool,
}

fn ip_v4(data: &[u8]) -> Result<IpPayload<'_>, Error> {
    let p = ipv4::Packet::parse(data)?;
    if p.frag_offset() > 0 {
        return Err(Error::Fragment {
            ip: IpVersion::V4.name(),
            offset: p.frag_offset(),
        });
    }
    Ok(IpPayload {
        version: IpVersion::V4,
        src: p.src().into(),
        dst: p.dst().into(),
        protocol: p.protocol(),
        data: p.payload(),
        len: p.payload_len(),
        first_fragment: p.more_fragments(),
    })
}

fn ip_v6(data: &[u8]) -> Result<IpPayload<'_>, Error> {
    let p = ipv6::Packet::parse(data)?;
    let up = p.upper_layer()?;
    if let Some(f) = up.fragment
        && f.offset > 0
    {
        return Err(Error::Fragment {
            ip: IpVersion::V6.name(),
            offset: f.offset,
        });
    }
    Ok(IpPayload {
        version: IpVersion::V6,
        src: p.src().into(),
        dst: p.dst().into(),
        protocol: up.protocol,
        data: up.payload,
        len: up.payload_len,
        first_fragment: up.fragment.is_some_and(|f| f.more),
    })
}

/// Fails when the IP length fields leave less than `need` bytes for the
/// transport header `layer`, however much was captured.
fn check_room(ip: &IpPayload, layer: &'static str, need: usize) -> Result<(), Error> {
    if ip.len < need {
        return Err(Error::Malformed {
            layer,
            what: "IP payload shorter than the header",
        });
    }
    Ok(())
}

fn decode_udp<'a>(ip: &IpPayload<'a>) -> Result<Udp<'a>, Error> {
    const LAYER: &str = "UDP header";
    check_room(ip, LAYER, udp::HEADER_LEN)?;
    let d = udp::Datagram::parse(ip.data)?;
    let Some(payload_len) = usize::from(d.length()).checked_sub(udp::HEADER_LEN) else {
        return Err(Error::Malformed {
            layer: LAYER,
            what: "length below 8",
        });
    };
    // A first fragment holds only part of the datagram its length tells.
    if !ip.first_fragment && udp::HEADER_LEN + payload_len > ip.len {
        return Err(Error::Malformed {
            layer: LAYER,
            what: "length beyond the IP payload",
        });
    }
    let payload = d.payload();
    Ok(Udp {
        src_port: d.src_port(),
        dst_port: d.dst_port(),
        payload_len,
        payload: payload.get(..payload_len).unwrap_or(payload),
    })
}

fn decode_tcp<'a>(ip: &IpPayload<'a>) -> Result<Tcp<'a>, Error> {
    const LAYER: &str = "TCP header";
    check_room(ip, LAYER, tcp::MIN_HEADER_LEN)?;
    let beyond = Error::Malformed {
        layer: LAYER,
        what: "data offset beyond the IP payload",
    };
    // The captured bytes stop at the IP length, so options that run past
    // it look cut; they are missing from the packet, not the capture.
    let s = tcp::Segment::parse(ip.data).map_err(|e| match e {
        wire::Error::Truncated { need, .. } if need > ip.len => beyond.clone(),
        e => e.into(),
    });
    // Options cut by the snap length: ports, sequence numbers and flags
    // are whole, which is what the control connection needs.
    let s = match s {
        Err(Error::Truncated { .. }) => tcp::Segment::parse_cut(ip.data)?,
        other => other?,
    };
    let payload_len = ip.len.checked_sub(s.header_len()).ok_or(beyond)?;
    let (mut mss, mut window_scale, mut sack_permitted) = (None, None, false);
    for option in s.options() {
        match option {
            tcp::TcpOption::Mss(v) => mss = Some(v),
            tcp::TcpOption::WindowScale(v) => window_scale = Some(v),
            tcp::TcpOption::SackPermitted => sack_permitted = true,
            _ => {}
        }
    }
    let flags = s.flags();
    let has = |bit: u8| flags & bit != 0;
    Ok(Tcp {
        src_port: s.src_port(),
        dst_port: s.dst_port(),
        seq: s.seq(),
        ack: s.ack(),
        flags: TcpFlags {
            syn: has(tcp::flag::SYN),
            ack: has(tcp::flag::ACK),
            fin: has(tcp::flag::FIN),
            rst: has(tcp::flag::RST),
            psh: has(tcp::flag::PSH),
        },
        window: s.window(),
        mss,
        window_scale,
        sack_permitted,
        payload_len,
        payload: s.payload(),
    })
}

fn decode_icmp_v4(ip: &IpPayload) -> Result<Icmp, Error> {
    check_room(ip, "ICMPv4 header", icmp::HEADER_LEN)?;
    let m = icmp::Message::parse_v4(ip.data)?;
    let (icmp_type, code) = (m.icmp_type(), m.code());
    Ok(Icmp {
        port_unreachable: icmp_type == icmp::v4::DEST_UNREACHABLE
            && code == icmp::v4::PORT_UNREACHABLE,
        icmp_type,
        code,
        quoted: if icmp::v4::is_error(icmp_type) {
            quoted_udp_v4(m.body())
        } else {
            None
        },
    })
}

fn decode_icmp_v6(ip: &IpPayload) -> Result<Icmp, Error> {
    check_room(ip, "ICMPv6 header", icmp::HEADER_LEN)?;
    let m = icmp::Message::parse_v6(ip.data)?;
    let (icmp_type, code) = (m.icmp_type(), m.code());
    Ok(Icmp {
        port_unreachable: icmp_type == icmp::v6::DEST_UNREACHABLE
            && code == icmp::v6::PORT_UNREACHABLE,
        icmp_type,
        code,
        quoted: if icmp::v6::is_error(icmp_type) {
            quoted_udp_v6(m.body())
        } else {
            None
        },
    })
}

/// The UDP datagram an ICMPv4 error quotes, if it quotes the start of one.
/// The quote is cut by design, so only its headers need to be there.
fn quoted_udp_v4(quote: &[u8]) -> Option<QuotedUdp> {
    let ip = ipv4::Packet::parse(quote).ok()?;
    if ip.protocol() != ip_protocol::UDP || ip.frag_offset() > 0 {
        return None;
    }
    let udp = udp::Datagram::parse(ip.payload()).ok()?;
    Some(QuotedUdp {
        src: ip.src().into(),
        dst: ip.dst().into(),
        src_port: udp.src_port(),
        dst_port: udp.dst_port(),
    })
}

/// The UDP datagram an ICMPv6 error quotes, if it quotes the start of one.
fn quoted_udp_v6(quote: &[u8]) -> Option<QuotedUdp> {
    let ip = ipv6::Packet::parse(quote).ok()?;
    let up = ip.upper_layer().ok()?;
    if up.protocol != ip_protocol::UDP || up.fragment.is_some_and(|f| f.offset > 0) {
        return None;
    }
    let udp = udp::Datagram::parse(up.payload).ok()?;
    Some(QuotedUdp {
        src: ip.src().into(),
        dst: ip.dst().into(),
        src_port: udp.src_port(),
        dst_port: udp.dst_port(),
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// Ethernet header as Linux `lo` writes it: zero MACs, IPv4.
    const ETH_IPV4: [u8; 14] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
    /// The same, IPv6.
    const ETH_IPV6: [u8; 14] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x86, 0xdd];

    /// 127.0.0.1:5006 -> 127.0.0.1:25302, "100MB.bin" (the lab server's
    /// file name datagram).
    const IPV4_UDP: [u8; 37] = [
        0x45, 0x00, 0x00, 0x25, // IHL 5, total length 37
        0x9c, 0x2c, 0x40, 0x00, // ident, DF
        0x40, 0x11, 0xa0, 0x99, // TTL 64, UDP, checksum
        127, 0, 0, 1, // src
        127, 0, 0, 1, // dst
        0x13, 0x8e, 0x62, 0xd6, // 5006 -> 25302
        0x00, 0x11, 0xfe, 0x24, // length 17, checksum
        b'1', b'0', b'0', b'M', b'B', b'.', b'b', b'i', b'n',
    ];

    /// [::1]:5006 -> [::1]:25302, the same payload.
    const IPV6_UDP: [u8; 57] = [
        0x60, 0x00, 0x00, 0x00, // version 6
        0x00, 0x11, 0x11, 0x40, // payload length 17, UDP, hop limit 64
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // src ::1
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // dst ::1
        0x13, 0x8e, 0x62, 0xd6, // 5006 -> 25302
        0x00, 0x11, 0x00, 0x00, // length 17, checksum
        b'1', b'0', b'0', b'M', b'B', b'.', b'b', b'i', b'n',
    ];

    /// 127.0.0.1:25301 -> :5005 SYN as Linux sends it on `lo`: MSS 65495,
    /// SACK-permitted, timestamps, NOP, window scale 7.
    const IPV4_SYN: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, // total length 60
        0xff, 0x6c, 0x40, 0x00, // ident, DF
        0x40, 0x06, 0x3d, 0x4d, // TTL 64, TCP, checksum
        127, 0, 0, 1, // src
        127, 0, 0, 1, // dst
        0x62, 0xd5, 0x13, 0x8d, // 25301 -> 5005
        0x6e, 0xe0, 0xbb, 0x41, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, 0xff, 0xd7, // data offset 40, SYN, window 65495
        0xfe, 0x30, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0xff, 0xd7, // MSS 65495
        0x04, 0x02, // SACK permitted
        0x08, 0x0a, 0xa4, 0x4a, 0x35, 0xa7, 0x00, 0x00, 0x00, 0x00, // timestamps
        0x01, // NOP
        0x03, 0x03, 0x07, // window scale 7
    ];

    /// A 1066-byte frame of the lab's transfer (1024 bytes of UDP payload)
    /// as `tcpdump -s 96` keeps it.
    const SNAP_96_HEADERS: [u8; 42] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x04, 0x1c, // total length 1052
        0x9c, 0x2e, 0x40, 0x00, // ident, DF
        0x40, 0x11, 0x9c, 0x9e, // TTL 64, UDP, checksum
        127, 0, 0, 1, // src
        127, 0, 0, 1, // dst
        0x13, 0x8e, 0x62, 0xd6, // 5006 -> 25302
        0x04, 0x08, 0xfa, 0x1c, // length 1032, checksum
    ];

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn localhost_v4() -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    fn localhost_v6() -> IpAddr {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    }

    /// The datagram of `IPV4_UDP` / `IPV6_UDP` as decoded.
    fn lab_udp(src: IpAddr, dst: IpAddr) -> Decoded<'static> {
        Decoded {
            src,
            dst,
            transport: Transport::Udp(Udp {
                src_port: 5006,
                dst_port: 25302,
                payload_len: 9,
                payload: b"100MB.bin",
            }),
        }
    }

    fn decode_as(link_type: i32, frame: &[u8]) -> Result<Decoded<'_>, Error> {
        decode(Linktype(link_type), frame)
    }

    fn reason(link_type: i32, frame: &[u8]) -> String {
        match decode_as(link_type, frame) {
            Ok(d) => panic!("decoded {d:?}"),
            Err(e) => e.reason(),
        }
    }

    fn udp(d: &Decoded<'_>) -> Udp<'static> {
        match &d.transport {
            Transport::Udp(u) => Udp {
                payload: &[],
                ..u.clone()
            },
            other => panic!("not UDP: {other:?}"),
        }
    }

    #[test]
    fn ethernet_ipv4_udp() {
        let frame = cat(&[&ETH_IPV4, &IPV4_UDP]);
        assert_eq!(
            decode(Linktype::ETHERNET, &frame).unwrap(),
            lab_udp(localhost_v4(), localhost_v4())
        );
    }

    #[test]
    fn ethernet_ipv6_udp() {
        let frame = cat(&[&ETH_IPV6, &IPV6_UDP]);
        assert_eq!(
            decode_as(1, &frame).unwrap(),
            lab_udp(localhost_v6(), localhost_v6())
        );
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        // A 60-byte minimum frame around a 9-byte datagram: 9 bytes of pad.
        let frame = cat(&[&ETH_IPV4, &IPV4_UDP, &[0xee; 9]]);
        assert_eq!(frame.len(), 60);
        assert_eq!(
            decode_as(1, &frame).unwrap(),
            lab_udp(localhost_v4(), localhost_v4())
        );
        let frame = cat(&[&ETH_IPV6, &IPV6_UDP, &[0xee; 3]]);
        assert_eq!(
            decode_as(1, &frame).unwrap(),
            lab_udp(localhost_v6(), localhost_v6())
        );
    }

    #[test]
    fn vlan_tags() {
        let macs = [0u8; 12];
        let dot1q = cat(&[&macs, &[0x81, 0x00, 0x00, 0x0a, 0x08, 0x00], &IPV4_UDP]);
        assert_eq!(
            decode_as(1, &dot1q).unwrap(),
            lab_udp(localhost_v4(), localhost_v4())
        );
        let qinq = cat(&[
            &macs,
            &[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x0a, 0x86, 0xdd],
            &IPV6_UDP,
        ]);
        assert_eq!(
            decode_as(1, &qinq).unwrap(),
            lab_udp(localhost_v6(), localhost_v6())
        );
        assert_eq!(reason(1, &dot1q[..17]), "truncated VLAN tag");
    }

    #[test]
    fn null_in_either_byte_order() {
        let v4 = lab_udp(localhost_v4(), localhost_v4());
        let v6 = lab_udp(localhost_v6(), localhost_v6());
        // AF_INET from a little-endian host (macOS on x86/ARM, Windows).
        assert_eq!(decode_as(0, &cat(&[&[2, 0, 0, 0], &IPV4_UDP])).unwrap(), v4);
        // AF_INET from a big-endian host.
        assert_eq!(decode_as(0, &cat(&[&[0, 0, 0, 2], &IPV4_UDP])).unwrap(), v4);
        // AF_INET6 of macOS (30), FreeBSD (28), Npcap/NetBSD/OpenBSD (24).
        assert_eq!(
            decode_as(0, &cat(&[&[30, 0, 0, 0], &IPV6_UDP])).unwrap(),
            v6
        );
        assert_eq!(
            decode_as(0, &cat(&[&[0, 0, 0, 28], &IPV6_UDP])).unwrap(),
            v6
        );
        assert_eq!(
            decode_as(0, &cat(&[&[24, 0, 0, 0], &IPV6_UDP])).unwrap(),
            v6
        );
        // An unknown family (Windows AF_INET6 = 23): the version decides.
        assert_eq!(
            decode_as(0, &cat(&[&[23, 0, 0, 0], &IPV6_UDP])).unwrap(),
            v6
        );
        // Neither: not IP.
        assert_eq!(
            reason(0, &[7, 0, 0, 0, 0x00, 0x01]),
            "not IP (address family 7)"
        );
        assert_eq!(reason(0, &[2, 0, 0]), "truncated loopback header");
    }

    #[test]
    fn loop_link_type() {
        assert_eq!(
            decode_as(108, &cat(&[&[0, 0, 0, 2], &IPV4_UDP])).unwrap(),
            lab_udp(localhost_v4(), localhost_v4())
        );
        assert_eq!(
            decode_as(108, &cat(&[&[0, 0, 0, 24], &IPV6_UDP])).unwrap(),
            lab_udp(localhost_v6(), localhost_v6())
        );
    }

    #[test]
    fn raw_ip() {
        for link_type in [12, 14, 101] {
            assert_eq!(
                decode_as(link_type, &IPV4_UDP).unwrap(),
                lab_udp(localhost_v4(), localhost_v4())
            );
            assert_eq!(
                decode_as(link_type, &IPV6_UDP).unwrap(),
                lab_udp(localhost_v6(), localhost_v6())
            );
        }
        assert_eq!(reason(101, &[0x50, 0x00]), "not IP (version 5)");
        assert_eq!(reason(101, &[]), "truncated IP header");
    }

    #[test]
    fn ipv4_and_ipv6_link_types() {
        assert_eq!(
            decode_as(228, &IPV4_UDP).unwrap(),
            lab_udp(localhost_v4(), localhost_v4())
        );
        assert_eq!(
            decode_as(229, &IPV6_UDP).unwrap(),
            lab_udp(localhost_v6(), localhost_v6())
        );
        assert_eq!(reason(228, &IPV6_UDP), "malformed IPv4 header");
        assert_eq!(reason(229, &IPV4_UDP), "truncated IPv6 header");
    }

    #[test]
    fn linux_cooked() {
        let sll = [
            0x00, 0x00, 0x03, 0x04, 0x00, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00,
        ];
        assert_eq!(
            decode_as(113, &cat(&[&sll, &IPV4_UDP])).unwrap(),
            lab_udp(localhost_v4(), localhost_v4())
        );
        let sll2 = [
            0x86, 0xdd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x04, 0x00, 0x06, 0, 0, 0, 0, 0,
            0, 0, 0,
        ];
        assert_eq!(
            decode_as(276, &cat(&[&sll2, &IPV6_UDP])).unwrap(),
            lab_udp(localhost_v6(), localhost_v6())
        );
        assert_eq!(reason(113, &sll[..15]), "truncated Linux cooked header");
        assert_eq!(reason(276, &sll2[..19]), "truncated Linux cooked v2 header");
    }

    #[test]
    fn tcp_syn_with_options() {
        let frame = cat(&[&ETH_IPV4, &IPV4_SYN]);
        assert_eq!(
            decode_as(1, &frame).unwrap(),
            Decoded {
                src: localhost_v4(),
                dst: localhost_v4(),
                transport: Transport::Tcp(Tcp {
                    src_port: 25301,
                    dst_port: 5005,
                    seq: 0x6ee0_bb41,
                    ack: 0,
                    flags: TcpFlags {
                        syn: true,
                        ..TcpFlags::default()
                    },
                    window: 65495,
                    mss: Some(65495),
                    window_scale: Some(7),
                    sack_permitted: true,
                    payload_len: 0,
                    payload: &[],
                }),
            }
        );
    }

    #[test]
    fn tcp_payload_length_from_ip_length_when_cut() {
        // PSH|ACK|FIN with 100 bytes of data, of which 10 were captured.
        let mut ip = IPV4_SYN[..20].to_vec();
        ip[2..4].copy_from_slice(&140u16.to_be_bytes()); // 20 + 20 + 100
        let tcp = [
            0x13, 0x8d, 0x62, 0xd5, 0x00, 0x00, 0x00, 0x01, 0x6e, 0xe0, 0xbb, 0x42, 0x50, 0x19,
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let frame = cat(&[&ETH_IPV4, &ip, &tcp, b"0123456789"]);
        let d = decode_as(1, &frame).unwrap();
        let Transport::Tcp(t) = d.transport else {
            panic!("{d:?}")
        };
        assert_eq!(t.src_port, 5005);
        assert_eq!(t.seq, 1);
        assert_eq!(t.ack, 0x6ee0_bb42);
        assert_eq!(
            t.flags,
            TcpFlags {
                syn: false,
                ack: true,
                fin: true,
                rst: false,
                psh: true
            }
        );
        assert_eq!(t.window, 512);
        assert_eq!(
            (t.mss, t.window_scale, t.sack_permitted),
            (None, None, false)
        );
        assert_eq!(t.payload_len, 100);
        assert_eq!(t.payload, b"0123456789");
    }

    #[test]
    fn udp_cut_by_snap_length() {
        let frame = cat(&[&SNAP_96_HEADERS, &[0x5a; 54]]);
        assert_eq!(frame.len(), 96);
        let d = decode_as(1, &frame).unwrap();
        let Transport::Udp(u) = d.transport else {
            panic!("{d:?}")
        };
        assert_eq!(u.payload_len, 1024);
        assert_eq!(u.payload, &[0x5a; 54]);
        // Down to the UDP header, the lengths still count in full.
        let d = decode_as(1, &frame[..42]).unwrap();
        assert_eq!(udp(&d).payload_len, 1024);
        assert_eq!(reason(1, &frame[..41]), "truncated UDP header");
    }

    /// ICMPv4 port unreachable from 127.0.0.1, quoting a datagram
    /// 127.0.0.1:5006 -> 127.0.0.2:25302 of 1024 bytes (quote cut).
    const IPV4_PORT_UNREACHABLE: [u8; 60] = [
        0x45, 0xc0, 0x00, 0x3c, 0x00, 0x01, 0x00, 0x00, // total length 60
        0x40, 0x01, 0x00, 0x00, 127, 0, 0, 1, 127, 0, 0, 1, // ICMP
        0x03, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // port unreachable
        0x45, 0x00, 0x04, 0x1c, 0x9c, 0x2e, 0x40, 0x00, // quoted IPv4
        0x40, 0x11, 0x00, 0x00, 127, 0, 0, 1, 127, 0, 0, 2, //
        0x13, 0x8e, 0x62, 0xd6, 0x04, 0x08, 0x00, 0x00, // quoted UDP
        0x55, 0x4c, 0x01, 0x00, // start of its payload
    ];

    /// ICMPv6 port unreachable, quoting [::1]:5006 -> [::2]:25302.
    const IPV6_PORT_UNREACHABLE: [u8; 100] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x3c, 0x3a, 0x40, // length 60, ICMPv6
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // src ::1
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // dst ::1
        0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // port unreachable
        0x60, 0x00, 0x00, 0x00, 0x04, 0x08, 0x11, 0x40, // quoted IPv6
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // ::1
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, // ::2
        0x13, 0x8e, 0x62, 0xd6, 0x04, 0x08, 0x00, 0x00, // quoted UDP
        0x55, 0x4c, 0x01, 0x00, // start of its payload
    ];

    fn icmp(d: Decoded<'_>) -> Icmp {
        match d.transport {
            Transport::Icmp(i) => i,
            other => panic!("not ICMP: {other:?}"),
        }
    }

    #[test]
    fn icmpv4_port_unreachable_quotes_udp() {
        let frame = cat(&[&ETH_IPV4, &IPV4_PORT_UNREACHABLE]);
        let d = decode_as(1, &frame).unwrap();
        assert_eq!((d.src, d.dst), (localhost_v4(), localhost_v4()));
        assert_eq!(
            icmp(d),
            Icmp {
                port_unreachable: true,
                icmp_type: 3,
                code: 3,
                quoted: Some(QuotedUdp {
                    src: localhost_v4(),
                    dst: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                    src_port: 5006,
                    dst_port: 25302,
                }),
            }
        );
    }

    #[test]
    fn icmpv6_port_unreachable_quotes_udp() {
        let frame = cat(&[&ETH_IPV6, &IPV6_PORT_UNREACHABLE]);
        let d = decode_as(1, &frame).unwrap();
        assert_eq!(
            icmp(d),
            Icmp {
                port_unreachable: true,
                icmp_type: 1,
                code: 4,
                quoted: Some(QuotedUdp {
                    src: localhost_v6(),
                    dst: "::2".parse().unwrap(),
                    src_port: 5006,
                    dst_port: 25302,
                }),
            }
        );
    }

    #[test]
    fn icmp_without_a_udp_quote() {
        // Host unreachable (code 1): an error, but not "port unreachable".
        let mut bytes = IPV4_PORT_UNREACHABLE;
        bytes[21] = 1;
        let i = icmp(decode_as(228, &bytes).unwrap());
        assert!(!i.port_unreachable);
        assert!(i.quoted.is_some());
        // A quote cut before the UDP ports: the message still decodes.
        let cut = cat(&[&ETH_IPV4, &IPV4_PORT_UNREACHABLE[..50]]);
        let i = icmp(decode_as(1, &cut).unwrap());
        assert!(i.port_unreachable);
        assert_eq!(i.quoted, None);
        // An echo request quotes nothing.
        let echo = [
            0x45, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 127, 0, 0, 1,
            127, 0, 0, 1, 0x08, 0x00, 0xf7, 0xfe, 0x00, 0x01, 0x00, 0x00,
        ];
        assert_eq!(
            icmp(decode_as(228, &echo).unwrap()),
            Icmp {
                port_unreachable: false,
                icmp_type: 8,
                code: 0,
                quoted: None,
            }
        );
        // Quoting TCP: no UDP quote.
        let mut tcp_quote = IPV4_PORT_UNREACHABLE;
        tcp_quote[37] = 6;
        assert_eq!(icmp(decode_as(228, &tcp_quote).unwrap()).quoted, None);
    }

    /// Cuts `frame` at every length and checks which layer each cut lands
    /// in: `layers` lists (the length up to which a cut is in it, reason).
    fn assert_cuts(link_type: i32, frame: &[u8], layers: &[(usize, &str)]) {
        for len in 0..frame.len() {
            let expected = layers
                .iter()
                .find(|(end, _)| len < *end)
                .map(|(_, r)| *r)
                .unwrap_or("ok");
            let got = match decode_as(link_type, &frame[..len]) {
                Ok(_) => "ok".to_string(),
                Err(e) => e.reason(),
            };
            assert_eq!(got, expected, "link type {link_type}, cut at {len}");
        }
        assert!(decode_as(link_type, frame).is_ok());
    }

    #[test]
    fn tcp_options_cut_by_the_snap_length_keep_the_segment() {
        let frame = cat(&[&ETH_IPV4, &IPV4_SYN]);
        // -s 64: the fixed header and 10 bytes of options.
        let Transport::Tcp(t) = decode_as(1, &frame[..64]).unwrap().transport else {
            panic!("not TCP");
        };
        assert_eq!((t.src_port, t.dst_port, t.seq), (25301, 5005, 0x6ee0_bb41));
        assert!(t.flags.syn && !t.flags.ack);
        assert_eq!(
            (t.mss, t.sack_permitted, t.window_scale),
            (Some(65495), true, None)
        );
        assert_eq!((t.payload_len, t.payload), (0, &[][..]));
        // Cut right after the fixed header: no options known.
        let Transport::Tcp(t) = decode_as(1, &frame[..54]).unwrap().transport else {
            panic!("not TCP");
        };
        assert_eq!((t.mss, t.sack_permitted), (None, false));
    }

    #[test]
    fn truncated_at_every_layer() {
        let eth = "truncated Ethernet header";
        assert_cuts(
            1,
            &cat(&[&ETH_IPV4, &IPV4_SYN]),
            &[
                (14, eth),
                (34, "truncated IPv4 header"),
                (54, "truncated TCP header"),
            ],
        );
        assert_cuts(
            1,
            &cat(&[&ETH_IPV4, &IPV4_UDP]),
            &[
                (14, eth),
                (34, "truncated IPv4 header"),
                (42, "truncated UDP header"),
            ],
        );
        assert_cuts(
            1,
            &cat(&[&ETH_IPV6, &IPV6_UDP]),
            &[
                (14, eth),
                (54, "truncated IPv6 header"),
                (62, "truncated UDP header"),
            ],
        );
        assert_cuts(
            0,
            &cat(&[&[2, 0, 0, 0], &IPV4_PORT_UNREACHABLE]),
            &[
                (4, "truncated loopback header"),
                (24, "truncated IPv4 header"),
                (32, "truncated ICMPv4 header"),
            ],
        );
        assert_cuts(
            229,
            &IPV6_PORT_UNREACHABLE,
            &[
                (40, "truncated IPv6 header"),
                (48, "truncated ICMPv6 header"),
            ],
        );
        // IPv4 options and an IPv6 extension header.
        let mut with_options = vec![0x46];
        with_options.extend_from_slice(&IPV4_UDP[1..20]);
        with_options[3] = 41;
        with_options.extend_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        with_options.extend_from_slice(&IPV4_UDP[20..]);
        assert_cuts(
            228,
            &with_options,
            &[(24, "truncated IPv4 header"), (32, "truncated UDP header")],
        );
        let mut with_ext = IPV6_UDP[..40].to_vec();
        with_ext[5] = 17 + 8;
        with_ext[6] = 60;
        with_ext.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        with_ext.extend_from_slice(&IPV6_UDP[40..]);
        assert_cuts(
            229,
            &with_ext,
            &[
                (40, "truncated IPv6 header"),
                (48, "truncated IPv6 extension header"),
                (56, "truncated UDP header"),
            ],
        );
        assert_eq!(
            decode_as(229, &with_ext).unwrap(),
            lab_udp(localhost_v6(), localhost_v6())
        );
    }

    fn malformed(link_type: i32, frame: &[u8]) -> (&'static str, &'static str) {
        match decode_as(link_type, frame) {
            Err(Error::Malformed { layer, what }) => (layer, what),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_lengths() {
        // UDP length below its own header.
        let mut b = IPV4_UDP;
        b[25] = 7;
        assert_eq!(malformed(228, &b), ("UDP header", "length below 8"));
        // UDP length beyond what the IP header leaves.
        b[25] = 18;
        assert_eq!(
            malformed(228, &b),
            ("UDP header", "length beyond the IP payload")
        );
        let mut b = IPV6_UDP;
        b[45] = 18;
        assert_eq!(
            malformed(229, &b),
            ("UDP header", "length beyond the IP payload")
        );
        // IP total length too short for a UDP header, even though the
        // bytes are there.
        let mut b = IPV4_UDP;
        b[3] = 27;
        assert_eq!(
            malformed(228, &b),
            ("UDP header", "IP payload shorter than the header")
        );
        // IPv4 total length below the header length.
        let mut b = IPV4_UDP;
        b[3] = 19;
        assert_eq!(
            malformed(228, &b),
            ("IPv4 header", "total length shorter than the header")
        );
        // IHL below 5.
        let mut b = IPV4_UDP;
        b[0] = 0x44;
        assert_eq!(
            malformed(228, &b),
            ("IPv4 header", "header length below 20")
        );
        // TCP data offset below 5, and beyond the IP payload.
        let mut b = IPV4_SYN;
        b[32] = 0x40;
        assert_eq!(
            malformed(228, &b),
            ("TCP header", "data offset below 20 bytes")
        );
        let mut b = IPV4_SYN;
        b[3] = 56; // 36 bytes of TCP, 40 of header
        assert_eq!(
            malformed(228, &b[..56]),
            ("TCP header", "data offset beyond the IP payload")
        );
        assert_eq!(reason(228, &b[..56]), "malformed TCP header");
        // ICMP in less IP payload than its header.
        let mut b = IPV4_PORT_UNREACHABLE;
        b[3] = 24;
        assert_eq!(
            malformed(228, &b),
            ("ICMPv4 header", "IP payload shorter than the header")
        );
        // IPv6 payload length shorter than an extension header.
        let mut b = IPV6_UDP[..40].to_vec();
        b[5] = 4;
        b[6] = 0;
        b.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            malformed(229, &b),
            (
                "IPv6 extension header",
                "extension header beyond the payload length"
            )
        );
    }

    #[test]
    fn ipv4_fragments() {
        // The first of two fragments of a 3000-byte datagram, cut at 96.
        let mut first = SNAP_96_HEADERS;
        first[16..18].copy_from_slice(&1500u16.to_be_bytes());
        first[20..22].copy_from_slice(&[0x20, 0x00]); // MF, offset 0
        first[38..40].copy_from_slice(&3008u16.to_be_bytes());
        let frame = cat(&[&first, &[0x5a; 54]]);
        let d = decode_as(1, &frame).unwrap();
        assert_eq!(udp(&d).payload_len, 3000);
        let Transport::Udp(u) = d.transport else {
            panic!()
        };
        assert_eq!(u.payload.len(), 54);
        // The second fragment: no UDP header in it.
        let mut second = first;
        second[20..22].copy_from_slice(&[0x00, 0xb9]); // offset 1480
        let frame = cat(&[&second, &[0x5a; 54]]);
        assert_eq!(
            decode_as(1, &frame).unwrap_err(),
            Error::Fragment {
                ip: "IPv4",
                offset: 1480
            }
        );
        assert_eq!(reason(1, &frame), "IPv4 fragment");
        // The first fragment of a TCP segment.
        let mut syn = IPV4_SYN;
        syn[6] = 0x20;
        assert_eq!(reason(228, &syn), "IPv4 fragment");
    }

    #[test]
    fn ipv6_fragments() {
        // First fragment (offset 0, M), then one at offset 1448.
        let fragment = |offset_and_m: [u8; 2]| {
            let mut p = IPV6_UDP[..40].to_vec();
            p[5] = 17 + 8;
            p[6] = 44;
            p.extend_from_slice(&[17, 0, offset_and_m[0], offset_and_m[1], 0, 0, 0, 9]);
            p.extend_from_slice(&IPV6_UDP[40..]);
            p
        };
        let mut first = fragment([0x00, 0x01]);
        first[48 + 5] = 200; // UDP length of the whole datagram
        assert_eq!(udp(&decode_as(229, &first).unwrap()).payload_len, 192);
        let later = fragment([0x05, 0xa8]);
        assert_eq!(
            decode_as(229, &later).unwrap_err(),
            Error::Fragment {
                ip: "IPv6",
                offset: 1448
            }
        );
        assert_eq!(reason(229, &later), "IPv6 fragment");
        // An atomic fragment (offset 0, no M) is a whole datagram.
        let atomic = fragment([0x00, 0x00]);
        assert_eq!(
            decode_as(229, &atomic).unwrap(),
            lab_udp(localhost_v6(), localhost_v6())
        );
    }

    #[test]
    fn skipped_reasons() {
        let arp = cat(&[
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1, 0x08, 0x06,
            ],
            &[0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01],
        ]);
        assert_eq!(
            decode_as(1, &arp).unwrap_err(),
            Error::NotIp { ether_type: 0x0806 }
        );
        assert_eq!(reason(1, &arp), "not IP (EtherType 0x0806)");
        let stp = [
            0x01, 0x80, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x00, 0x26, 0x42, 0x42, 0x03,
        ];
        assert_eq!(reason(1, &stp), "not IP (IEEE 802.3 frame)");
        assert_eq!(
            decode_as(147, &IPV4_UDP).unwrap_err(),
            Error::UnsupportedLinkType(147)
        );
        assert_eq!(reason(147, &IPV4_UDP), "link type 147 not supported");
        // IGMP, and IPv6's "no next header".
        let mut igmp = IPV4_UDP;
        igmp[9] = 2;
        assert_eq!(reason(228, &igmp), "IP protocol 2");
        let mut none = IPV6_UDP;
        none[6] = 59;
        assert_eq!(reason(229, &none), "IP protocol 59");
        // ICMPv4 inside IPv6 is not ICMPv6.
        let mut icmp_in_v6 = IPV6_UDP;
        icmp_in_v6[6] = 1;
        assert_eq!(reason(229, &icmp_in_v6), "IP protocol 1");
    }

    #[test]
    fn reasons_hold_no_per_packet_numbers() {
        let a = Error::Truncated {
            layer: "UDP header",
            need: 8,
            got: 3,
        };
        let b = Error::Truncated {
            layer: "UDP header",
            need: 8,
            got: 5,
        };
        assert_eq!(a.reason(), b.reason());
        assert_eq!(a.reason(), "truncated UDP header");
        assert_eq!(a.to_string(), "truncated UDP header: need 8 bytes, got 3");
        let f = Error::Fragment {
            ip: "IPv4",
            offset: 1480,
        };
        assert_eq!(f.reason(), "IPv4 fragment");
        assert_eq!(f.to_string(), "IPv4 fragment at byte offset 1480");
        let m = Error::Malformed {
            layer: "UDP header",
            what: "length below 8",
        };
        assert_eq!(m.reason(), "malformed UDP header");
        assert_eq!(m.to_string(), "malformed UDP header: length below 8");
    }

    /// A small deterministic generator for the robustness test.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn damaged_frames_never_panic() {
        let link_types = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276];
        let frames = [
            cat(&[&ETH_IPV4, &IPV4_SYN]),
            cat(&[&ETH_IPV4, &IPV4_UDP]),
            cat(&[&ETH_IPV6, &IPV6_UDP]),
            cat(&[&ETH_IPV4, &IPV4_PORT_UNREACHABLE]),
            cat(&[&ETH_IPV6, &IPV6_PORT_UNREACHABLE]),
            IPV6_PORT_UNREACHABLE.to_vec(),
            IPV4_SYN.to_vec(),
        ];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for frame in &frames {
            for _ in 0..2000 {
                let mut f = frame.clone();
                for _ in 0..1 + rng.next() % 4 {
                    let at = (rng.next() as usize) % f.len();
                    f[at] = rng.next() as u8;
                }
                let len = (rng.next() as usize) % (f.len() + 1);
                for &lt in &link_types {
                    let _ = decode_as(lt, &f);
                    let _ = decode_as(lt, &f[..len]);
                }
            }
        }
    }
}
