//! From a pcap link type and a frame to the network-layer packet it
//! carries. The link type numbers are tcpdump.org's LINKTYPE_ values
//! (<https://www.tcpdump.org/linktypes.html>).

use pcap_parser::Linktype;

use super::ethernet::{self, ether_type};
use super::{Error, Result, loopback, sll};

/// The link layers this crate decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1), with any VLAN tags.
    Ethernet,
    /// LINKTYPE_NULL (0): a 4-byte address family in the capturing host's
    /// byte order.
    Null,
    /// LINKTYPE_LOOP (108): the same, big-endian.
    Loop,
    /// LINKTYPE_RAW (101, and the DLT values 12 and 14 that some systems
    /// wrote for it): an IPv4 or IPv6 packet, the version nibble says which.
    Raw,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// LINKTYPE_LINUX_SLL (113).
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276).
    LinuxSll2,
}

impl LinkType {
    /// The link layer of a pcap link type, or `None` for one not decoded.
    pub fn from_pcap(link_type: Linktype) -> Option<LinkType> {
        Some(match link_type {
            Linktype::ETHERNET => LinkType::Ethernet,
            Linktype::NULL => LinkType::Null,
            Linktype::LOOP => LinkType::Loop,
            Linktype::RAW | Linktype(12) | Linktype(14) => LinkType::Raw,
            Linktype::IPV4 => LinkType::Ipv4,
            Linktype::IPV6 => LinkType::Ipv6,
            Linktype::LINUX_SLL => LinkType::LinuxSll,
            Linktype::LINUX_SLL2 => LinkType::LinuxSll2,
            _ => return None,
        })
    }
}

/// What the link layer says it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Ipv4,
    Ipv6,
    /// Another EtherType (ARP, LLDP...), or another Linux cooked protocol.
    EtherType(u16),
    /// An IEEE 802.3 frame: the EtherType field holds a length, an LLC
    /// header follows (spanning tree, CDP...).
    Ieee8023,
    /// A loopback header whose family is not IP, and neither is the packet.
    AddressFamily(u32),
    /// A raw-IP frame whose version nibble is neither 4 nor 6.
    IpVersion(u8),
}

/// A frame without its link-layer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload<'a> {
    pub protocol: Protocol,
    pub data: &'a [u8],
}

/// Strips the link-layer header of `frame`.
pub fn parse(link_type: LinkType, frame: &[u8]) -> Result<Payload<'_>> {
    let (protocol, data) = match link_type {
        LinkType::Ethernet => {
            let (t, data) = ethernet::Frame::parse(frame)?.untagged()?;
            (from_ether_type(t), data)
        }
        LinkType::Null | LinkType::Loop => {
            let f = loopback::Frame::parse(frame)?;
            let protocol = match f.family() {
                loopback::Family::Ipv4 => Protocol::Ipv4,
                loopback::Family::Ipv6 => Protocol::Ipv6,
                loopback::Family::Other(family) => Protocol::AddressFamily(family),
            };
            (protocol, f.payload())
        }
        LinkType::Raw => {
            let Some(first) = frame.first() else {
                return Err(Error::Truncated {
                    layer: "IP header",
                    need: 1,
                    got: 0,
                });
            };
            let protocol = match first >> 4 {
                4 => Protocol::Ipv4,
                6 => Protocol::Ipv6,
                v => Protocol::IpVersion(v),
            };
            (protocol, frame)
        }
        LinkType::Ipv4 => (Protocol::Ipv4, frame),
        LinkType::Ipv6 => (Protocol::Ipv6, frame),
        LinkType::LinuxSll => {
            let f = sll::Frame::parse(frame)?;
            (from_ether_type(f.protocol()), f.payload())
        }
        LinkType::LinuxSll2 => {
            let f = sll::FrameV2::parse(frame)?;
            (from_ether_type(f.protocol()), f.payload())
        }
    };
    Ok(Payload { protocol, data })
}

fn from_ether_type(t: u16) -> Protocol {
    match t {
        ether_type::IPV4 => Protocol::Ipv4,
        ether_type::IPV6 => Protocol::Ipv6,
        t if t <= ether_type::MAX_802_3_LEN => Protocol::Ieee8023,
        t => Protocol::EtherType(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_pcap(link_type: i32, frame: &[u8]) -> Result<Payload<'_>> {
        parse(LinkType::from_pcap(Linktype(link_type)).unwrap(), frame)
    }

    #[test]
    fn link_type_numbers() {
        let known = [
            (0, LinkType::Null),
            (1, LinkType::Ethernet),
            (12, LinkType::Raw),
            (14, LinkType::Raw),
            (101, LinkType::Raw),
            (108, LinkType::Loop),
            (113, LinkType::LinuxSll),
            (228, LinkType::Ipv4),
            (229, LinkType::Ipv6),
            (276, LinkType::LinuxSll2),
        ];
        for (n, t) in known {
            assert_eq!(LinkType::from_pcap(Linktype(n)), Some(t), "{n}");
        }
        for n in [-1, 2, 9, 105, 127, 147, 220] {
            assert_eq!(LinkType::from_pcap(Linktype(n)), None, "{n}");
        }
    }

    #[test]
    fn ethernet() {
        let frame = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x86, 0xdd, 0x60];
        assert_eq!(
            parse_pcap(1, &frame).unwrap(),
            Payload {
                protocol: Protocol::Ipv6,
                data: &[0x60]
            }
        );
        let arp = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x06];
        assert_eq!(
            parse_pcap(1, &arp).unwrap().protocol,
            Protocol::EtherType(0x0806)
        );
        let llc = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x26, 0x42];
        assert_eq!(parse_pcap(1, &llc).unwrap().protocol, Protocol::Ieee8023);
    }

    #[test]
    fn loopback() {
        assert_eq!(
            parse_pcap(0, &[30, 0, 0, 0, 0x60]).unwrap(),
            Payload {
                protocol: Protocol::Ipv6,
                data: &[0x60]
            }
        );
        assert_eq!(
            parse_pcap(108, &[0, 0, 0, 2, 0x45]).unwrap().protocol,
            Protocol::Ipv4
        );
        assert_eq!(
            parse_pcap(0, &[0, 0, 0, 7, 0x00]).unwrap().protocol,
            Protocol::AddressFamily(7)
        );
    }

    #[test]
    fn raw() {
        assert_eq!(parse_pcap(101, &[0x45]).unwrap().protocol, Protocol::Ipv4);
        assert_eq!(parse_pcap(12, &[0x60]).unwrap().protocol, Protocol::Ipv6);
        assert_eq!(
            parse_pcap(14, &[0x10]).unwrap().protocol,
            Protocol::IpVersion(1)
        );
        assert_eq!(
            parse_pcap(101, &[]).unwrap_err(),
            Error::Truncated {
                layer: "IP header",
                need: 1,
                got: 0
            }
        );
        // The IPv4 and IPv6 link types do not look at the bytes.
        assert_eq!(
            parse_pcap(228, &[]).unwrap(),
            Payload {
                protocol: Protocol::Ipv4,
                data: &[]
            }
        );
        assert_eq!(parse_pcap(229, &[0x45]).unwrap().protocol, Protocol::Ipv6);
    }

    #[test]
    fn cooked() {
        let mut v1 = [0u8; 17];
        v1[14..16].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse_pcap(113, &v1).unwrap().protocol, Protocol::Ipv4);
        let mut v2 = [0u8; 21];
        v2[0..2].copy_from_slice(&[0x88, 0xcc]);
        assert_eq!(
            parse_pcap(276, &v2).unwrap().protocol,
            Protocol::EtherType(0x88cc)
        );
        assert!(matches!(
            parse_pcap(276, &v2[..10]),
            Err(Error::Truncated { need: 20, .. })
        ));
    }
}
