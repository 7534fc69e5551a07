//! Literal-byte tests of each layer that [`super::decode`] reads through
//! etherparse (Ethernet and VLAN tags, IPv4, IPv6 and its extension
//! headers, TCP and its options, UDP, ICMP) and of the link-type dispatch,
//! truncated frames included. Each test feeds its bytes through `decode` and
//! checks what the analyzer gets; header fields the analyzer does not keep
//! are checked on etherparse's slice of the same bytes. The last tests show
//! what etherparse 0.19 does not do, which is why `decode` and
//! [`crate::wire`] do it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    EtherType, Ethernet2Slice, Icmpv4Slice, IpNumber, LaxIpv4Slice, LaxIpv6Slice, LaxSlicedPacket,
    LinuxSllSlice, SingleVlanSlice, TcpOptionElement, TcpOptionsIterator, TcpSlice, UdpSlice,
    err::LenError, icmpv4, icmpv6,
};
use pcap_parser::Linktype;

use super::*;

fn decode_as(link_type: i32, frame: &[u8]) -> Result<Decoded<'_>, Error> {
    decode(Linktype(link_type), frame)
}

fn truncated(layer: &'static str, need: usize, got: usize) -> Error {
    Error::Truncated { layer, need, got }
}

fn malformed_what(link_type: i32, frame: &[u8]) -> &'static str {
    match decode_as(link_type, frame) {
        Err(Error::Malformed { what, .. }) => what,
        other => panic!("{other:?}"),
    }
}

fn udp_of(d: Decoded<'_>) -> Udp<'_> {
    match d.transport {
        Transport::Udp(u) => u,
        other => panic!("not UDP: {other:?}"),
    }
}

fn tcp_of(d: Decoded<'_>) -> Tcp<'_> {
    match d.transport {
        Transport::Tcp(t) => t,
        other => panic!("not TCP: {other:?}"),
    }
}

fn icmp_of(d: Decoded<'_>) -> Icmp {
    match d.transport {
        Transport::Icmp(i) => i,
        other => panic!("not ICMP: {other:?}"),
    }
}

/// An IPv4 header from 10.0.0.1 to 10.0.0.2 around `payload`, announcing
/// `announced` bytes of it (more than `payload` holds when the capture cut
/// it).
fn ipv4_around(protocol: u8, announced: usize, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + announced).unwrap().to_be_bytes();
    let mut p = vec![
        0x45, 0x00, total[0], total[1], 0x12, 0x34, 0x40, 0x00, 0x40, protocol, 0x00, 0x00, 10, 0,
        0, 1, 10, 0, 0, 2,
    ];
    p.extend_from_slice(payload);
    p
}

/// An IPv6 header from ::1 to ::1 around `payload`, announcing `announced`
/// bytes of it.
fn ipv6_around(next_header: u8, announced: usize, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(announced).unwrap().to_be_bytes();
    let mut p = vec![0x60, 0, 0, 0, len[0], len[1], next_header, 64];
    p.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    p.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    p.extend_from_slice(payload);
    p
}

mod link {
    //! The link-type numbers and what each link layer says it carries.

    use super::*;

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
        // IPv6, and the one byte after the header is what the IPv6 layer got.
        let frame = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x86, 0xdd, 0x60];
        assert_eq!(
            decode_as(1, &frame).unwrap_err(),
            truncated("IPv6 header", 40, 1)
        );
        let arp = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x06];
        assert_eq!(
            decode_as(1, &arp).unwrap_err(),
            Error::NotIp { ether_type: 0x0806 }
        );
        let llc = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x26, 0x42];
        assert_eq!(decode_as(1, &llc).unwrap_err(), Error::Ieee8023);
    }

    #[test]
    fn loopback() {
        assert_eq!(
            decode_as(0, &[30, 0, 0, 0, 0x60]).unwrap_err(),
            truncated("IPv6 header", 40, 1)
        );
        assert_eq!(
            decode_as(108, &[0, 0, 0, 2, 0x45]).unwrap_err(),
            truncated("IPv4 header", 20, 1)
        );
        assert_eq!(
            decode_as(0, &[0, 0, 0, 7, 0x00]).unwrap_err(),
            Error::NotIpFamily { family: 7 }
        );
    }

    #[test]
    fn raw() {
        assert_eq!(
            decode_as(101, &[0x45]).unwrap_err(),
            truncated("IPv4 header", 20, 1)
        );
        assert_eq!(
            decode_as(12, &[0x60]).unwrap_err(),
            truncated("IPv6 header", 40, 1)
        );
        assert_eq!(
            decode_as(14, &[0x10]).unwrap_err(),
            Error::NotIpVersion { version: 1 }
        );
        assert_eq!(
            decode_as(101, &[]).unwrap_err(),
            truncated("IP header", 1, 0)
        );
        // The IPv4 and IPv6 link types do not look at the version nibble.
        assert_eq!(
            decode_as(228, &[]).unwrap_err(),
            truncated("IPv4 header", 20, 0)
        );
        assert_eq!(
            decode_as(229, &[0x45]).unwrap_err(),
            truncated("IPv6 header", 40, 1)
        );
    }

    #[test]
    fn cooked() {
        let mut v1 = [0u8; 17];
        v1[14..16].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(
            decode_as(113, &v1).unwrap_err(),
            truncated("IPv4 header", 20, 1)
        );
        let mut v2 = [0u8; 21];
        v2[0..2].copy_from_slice(&[0x88, 0xcc]);
        assert_eq!(
            decode_as(276, &v2).unwrap_err(),
            Error::NotIp { ether_type: 0x88cc }
        );
        assert!(matches!(
            decode_as(276, &v2[..10]),
            Err(Error::Truncated { need: 20, .. })
        ));
    }
}

mod ethernet {
    //! Ethernet II frames and their 802.1Q / 802.1ad VLAN tags.

    use super::*;

    /// An ARP request header start, broadcast, from 02:00:00:00:00:01.
    const ARP: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x06, // ARP
        0x00, 0x01, // hardware type
    ];

    #[test]
    fn fields() {
        assert_eq!(
            decode_as(1, &ARP).unwrap_err(),
            Error::NotIp { ether_type: 0x0806 }
        );
        let f = Ethernet2Slice::from_slice_without_fcs(&ARP).unwrap();
        assert_eq!(f.destination(), [0xff; 6]);
        assert_eq!(f.source(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.ether_type(), EtherType::ARP);
        assert_eq!(f.payload_slice(), &[0x00, 0x01]);
    }

    #[test]
    fn truncated_header() {
        assert_eq!(
            decode_as(1, &ARP[..13]).unwrap_err(),
            truncated("Ethernet header", 14, 13)
        );
        assert!(decode_as(1, &[]).is_err());
    }

    #[test]
    fn double_tagged() {
        let frame = [
            0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, // MACs
            0x88, 0xa8, 0xa0, 0x64, // S-tag: priority 5, VLAN 100
            0x81, 0x00, 0x00, 0x0a, // C-tag: VLAN 10
            0x08, 0x00, // IPv4
            0x45, 0x00,
        ];
        // Both tags stepped over: IPv4, of which two bytes are there.
        assert_eq!(
            decode_as(1, &frame).unwrap_err(),
            truncated("IPv4 header", 20, 2)
        );
        let f = Ethernet2Slice::from_slice_without_fcs(&frame).unwrap();
        assert_eq!(f.ether_type(), EtherType::PROVIDER_BRIDGING);
        let outer = SingleVlanSlice::from_slice(f.payload_slice()).unwrap();
        assert_eq!(outer.vlan_identifier().value(), 100);
        assert_eq!(outer.priority_code_point().value(), 5);
        assert_eq!(outer.ether_type(), EtherType::VLAN_TAGGED_FRAME);
        let inner = SingleVlanSlice::from_slice(outer.payload_slice()).unwrap();
        assert_eq!(inner.vlan_identifier().value(), 10);
        assert_eq!(inner.ether_type(), EtherType::IPV4);
        assert_eq!(inner.payload_slice(), &[0x45, 0x00]);
    }

    #[test]
    fn truncated_tag() {
        let frame = [
            0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x81, 0x00, 0x00, 0x0a, 0x08,
        ];
        assert_eq!(
            decode_as(1, &frame).unwrap_err(),
            truncated("VLAN tag", 4, 3)
        );
    }
}

mod ipv4 {
    //! IPv4 packets (RFC 791).

    use super::*;

    /// 10.0.0.1 -> 10.0.0.2, UDP, total length 32, DF, then 4 bytes of
    /// Ethernet padding.
    const UDP: [u8; 36] = [
        0x45, 0x00, 0x00, 0x20, // version 4, IHL 5, total length 32
        0x12, 0x34, 0x40, 0x00, // ident, DF
        0x40, 0x11, 0x00, 0x00, // TTL 64, UDP, checksum (unfilled)
        10, 0, 0, 1, // src
        10, 0, 0, 2, // dst
        0x30, 0x39, 0x1f, 0x90, 0x00, 0x0c, 0x00, 0x00, // UDP header
        b'a', b'b', b'c', b'd', // payload
        0, 0, 0, 0, // padding
    ];

    #[test]
    fn fields() {
        // The padding is not payload.
        assert_eq!(
            decode_as(228, &UDP).unwrap(),
            Decoded {
                src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                transport: Transport::Udp(Udp {
                    src_port: 12345,
                    dst_port: 8080,
                    payload_len: 4,
                    payload: b"abcd",
                }),
            }
        );
        let (p, _) = LaxIpv4Slice::from_slice(&UDP).unwrap();
        let h = p.header();
        assert_eq!(h.slice().len(), 20);
        assert_eq!(h.total_len(), 32);
        assert_eq!(h.identification(), 0x1234);
        assert!(h.dont_fragment());
        assert!(!h.more_fragments());
        assert_eq!(h.fragments_offset().byte_offset(), 0);
        assert_eq!(h.ttl(), 64);
        assert_eq!(h.protocol(), IpNumber::UDP);
        assert_eq!(h.source_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(h.destination_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(h.options(), &[] as &[u8]);
        assert_eq!(p.payload().payload, &UDP[20..32]);
    }

    #[test]
    fn cut_payload_keeps_lengths() {
        // 4 of the 12 bytes of payload: a cut UDP header.
        assert_eq!(
            decode_as(228, &UDP[..24]).unwrap_err(),
            truncated("UDP header", 8, 4)
        );
        let (p, _) = LaxIpv4Slice::from_slice(&UDP[..24]).unwrap();
        assert_eq!(p.header().total_len(), 32);
        assert_eq!(p.payload().payload, &UDP[20..24]);
        assert!(p.payload().incomplete);
        // The whole UDP header: its length counts in full.
        let u = udp_of(decode_as(228, &UDP[..30]).unwrap());
        assert_eq!((u.payload_len, u.payload), (4, &b"ab"[..]));
    }

    #[test]
    fn options() {
        let mut bytes = [0u8; 28];
        bytes[..20].copy_from_slice(&UDP[..20]);
        bytes[0] = 0x46; // IHL 6
        bytes[3] = 28;
        bytes[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]); // router alert
        bytes[24..28].copy_from_slice(&UDP[20..24]);
        // 4 bytes of payload after 24 of header: no room for UDP.
        assert_eq!(
            decode_as(228, &bytes).unwrap_err(),
            Error::Malformed {
                layer: "UDP header",
                what: "IP payload shorter than the header"
            }
        );
        let (p, _) = LaxIpv4Slice::from_slice(&bytes).unwrap();
        assert_eq!(p.header().slice().len(), 24);
        assert_eq!(p.header().options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.payload().payload.len(), 4);
        // Options cut by the capture.
        assert_eq!(
            decode_as(228, &bytes[..22]).unwrap_err(),
            truncated("IPv4 header", 24, 22)
        );
    }

    #[test]
    fn fragments() {
        let mut bytes = UDP;
        bytes[6..8].copy_from_slice(&[0x20, 0xb9]); // MF, offset 185 * 8
        assert_eq!(
            decode_as(228, &bytes).unwrap_err(),
            Error::Fragment {
                ip: "IPv4",
                offset: 1480
            }
        );
        let (p, _) = LaxIpv4Slice::from_slice(&bytes).unwrap();
        assert!(p.header().more_fragments());
        assert!(!p.header().dont_fragment());
        assert_eq!(p.header().fragments_offset().byte_offset(), 1480);
    }

    #[test]
    fn truncated_header() {
        assert_eq!(
            decode_as(228, &UDP[..19]).unwrap_err(),
            truncated("IPv4 header", 20, 19)
        );
    }

    #[test]
    fn malformed() {
        let mut v6 = UDP;
        v6[0] = 0x65;
        assert_eq!(malformed_what(228, &v6), "version is not 4");
        let mut short_ihl = UDP;
        short_ihl[0] = 0x44;
        assert_eq!(malformed_what(228, &short_ihl), "header length below 20");
        let mut short_total = UDP;
        short_total[3] = 19;
        assert_eq!(
            malformed_what(228, &short_total),
            "total length shorter than the header"
        );
        let mut ihl_beyond_total = UDP;
        ihl_beyond_total[0] = 0x4f; // 60 bytes of header, total 32
        assert_eq!(
            malformed_what(228, &ihl_beyond_total),
            "total length shorter than the header"
        );
    }
}

mod ipv6 {
    //! IPv6 packets (RFC 8200) and their extension headers.

    use super::*;

    const EXT_LAYER: &str = "IPv6 extension header";

    /// ::1 -> ::1, UDP, payload length 12, then 2 bytes of padding.
    const UDP: [u8; 54] = [
        0x60, 0x00, 0x00, 0x00, // version 6
        0x00, 0x0c, 0x11, 0x40, // payload length 12, UDP, hop limit 64
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // src ::1
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // dst ::1
        0x30, 0x39, 0x1f, 0x90, 0x00, 0x0c, 0x00, 0x00, // UDP header
        b'a', b'b', b'c', b'd', // payload
        0, 0, // padding
    ];

    /// `UDP` with `ext` inserted before the UDP header, as `first` then
    /// the chain in `ext`.
    fn with_ext(first: u8, ext: &[u8]) -> Vec<u8> {
        let mut p = UDP[..40].to_vec();
        p[6] = first;
        let len = 12 + ext.len();
        p[4..6].copy_from_slice(&(len as u16).to_be_bytes());
        p.extend_from_slice(ext);
        p.extend_from_slice(&UDP[40..52]);
        p
    }

    /// The datagram of `UDP`, as decoded.
    fn lab_udp() -> Decoded<'static> {
        Decoded {
            src: IpAddr::V6(Ipv6Addr::LOCALHOST),
            dst: IpAddr::V6(Ipv6Addr::LOCALHOST),
            transport: Transport::Udp(Udp {
                src_port: 12345,
                dst_port: 8080,
                payload_len: 4,
                payload: b"abcd",
            }),
        }
    }

    #[test]
    fn fields() {
        assert_eq!(decode_as(229, &UDP).unwrap(), lab_udp());
        let (p, stop) = LaxIpv6Slice::from_slice(&UDP).unwrap();
        assert!(stop.is_none());
        let h = p.header();
        assert_eq!(h.payload_length(), 12);
        assert_eq!(h.next_header(), IpNumber::UDP);
        assert_eq!(h.hop_limit(), 64);
        assert_eq!(h.source_addr(), Ipv6Addr::LOCALHOST);
        assert_eq!(h.destination_addr(), Ipv6Addr::LOCALHOST);
        assert!(p.extensions().is_empty());
        assert_eq!(p.payload().ip_number, IpNumber::UDP);
        assert_eq!(p.payload().payload, &UDP[40..52]);
    }

    #[test]
    fn cut_payload_keeps_lengths() {
        assert_eq!(
            decode_as(229, &UDP[..44]).unwrap_err(),
            truncated("UDP header", 8, 4)
        );
        let (p, _) = LaxIpv6Slice::from_slice(&UDP[..44]).unwrap();
        assert_eq!(p.header().payload_length(), 12);
        assert_eq!(p.payload().payload, &UDP[40..44]);
    }

    #[test]
    fn truncated_and_malformed_header() {
        assert_eq!(
            decode_as(229, &UDP[..39]).unwrap_err(),
            truncated("IPv6 header", 40, 39)
        );
        let mut v4 = UDP;
        v4[0] = 0x45;
        assert_eq!(
            decode_as(229, &v4).unwrap_err(),
            Error::Malformed {
                layer: "IPv6 header",
                what: "version is not 6"
            }
        );
    }

    #[test]
    fn extension_chain() {
        // Hop-by-hop (8 bytes, PadN), routing (24 bytes), destination
        // options (8 bytes), then UDP.
        let mut ext = vec![43, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[60, 2, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[0; 16]);
        ext.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        let bytes = with_ext(0, &ext);
        assert_eq!(decode_as(229, &bytes).unwrap(), lab_udp());
    }

    #[test]
    fn fragments() {
        // First fragment, more to come, ident 7: the UDP header is read.
        let mut bytes = with_ext(44, &[17, 0, 0x00, 0x01, 0, 0, 0, 7]);
        assert_eq!(decode_as(229, &bytes).unwrap(), lab_udp());
        let f = ipv6_fragment::Header::parse(&bytes[40..]).unwrap();
        assert_eq!(
            (f.next_header(), f.offset(), f.more_fragments()),
            (17, 0, true)
        );
        // Its UDP length is not held against the fragment's.
        bytes[48 + 5] = 200;
        let u = udp_of(decode_as(229, &bytes).unwrap());
        assert_eq!((u.payload_len, u.payload), (192, &b"abcd"[..]));
        // A later fragment: offset 1448, last. The walk stops there even
        // if the bytes after look like another extension header.
        let bytes = with_ext(44, &[0, 0, 0x05, 0xa8, 0, 0, 0, 7]);
        assert_eq!(
            decode_as(229, &bytes).unwrap_err(),
            Error::Fragment {
                ip: "IPv6",
                offset: 1448
            }
        );
        let f = ipv6_fragment::Header::parse(&bytes[40..]).unwrap();
        assert_eq!(
            (f.next_header(), f.offset(), f.more_fragments()),
            (0, 1448, false)
        );
    }

    #[test]
    fn truncated_extension() {
        let bytes = with_ext(60, &[17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        // Cut inside the 16-byte destination options.
        assert_eq!(
            decode_as(229, &bytes[..50]).unwrap_err(),
            truncated(EXT_LAYER, 56, 50)
        );
        // Cut inside the first 8 bytes.
        assert_eq!(
            decode_as(229, &bytes[..44]).unwrap_err(),
            truncated(EXT_LAYER, 48, 44)
        );
    }

    #[test]
    fn extension_beyond_payload_length() {
        let mut bytes = with_ext(60, &[17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        bytes[5] = 10; // payload length 10 < 16
        assert_eq!(
            decode_as(229, &bytes).unwrap_err(),
            Error::Malformed {
                layer: EXT_LAYER,
                what: "extension header beyond the payload length"
            }
        );
        bytes[5] = 4; // shorter than the first 8 bytes
        assert!(matches!(
            decode_as(229, &bytes),
            Err(Error::Malformed { .. })
        ));
    }
}

mod tcp {
    //! TCP segments (RFC 9293) and their options.

    use super::*;

    /// A SYN from 40000 to 8080 as Linux sends it on `lo`: MSS 65495,
    /// SACK-permitted, timestamps, NOP, window scale 7.
    const SYN: [u8; 40] = [
        0x9c, 0x40, 0x1f, 0x90, // ports
        0x11, 0x22, 0x33, 0x44, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, 0xff, 0xd7, // data offset 10, SYN, window 65495
        0xfe, 0x30, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0xff, 0xd7, // MSS 65495
        0x04, 0x02, // SACK permitted
        0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, // timestamps
        0x01, // NOP
        0x03, 0x03, 0x07, // window scale 7
    ];

    /// `SYN` as the IPv4 packet that carries it, cut to `captured` bytes of
    /// TCP.
    fn syn_packet(captured: usize) -> Vec<u8> {
        ipv4_around(6, SYN.len(), &SYN[..captured])
    }

    #[test]
    fn fields() {
        let packet = syn_packet(40);
        let t = tcp_of(decode_as(228, &packet).unwrap());
        assert_eq!(
            t,
            Tcp {
                src_port: 40000,
                dst_port: 8080,
                seq: 0x1122_3344,
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
                payload: b"",
            }
        );
        let s = TcpSlice::from_slice(&SYN).unwrap();
        assert_eq!(s.header_len(), 40);
        assert_eq!(s.checksum(), 0xfe30);
        assert_eq!(s.urgent_pointer(), 0);
        let options: Vec<_> = s.options_iterator().collect();
        assert_eq!(
            options,
            [
                Ok(TcpOptionElement::MaximumSegmentSize(65495)),
                Ok(TcpOptionElement::SelectiveAcknowledgementPermitted),
                Ok(TcpOptionElement::Timestamp(1, 0)),
                Ok(TcpOptionElement::Noop),
                Ok(TcpOptionElement::WindowScale(7)),
            ]
        );
    }

    #[test]
    fn truncated() {
        assert_eq!(
            decode_as(228, &syn_packet(19)).unwrap_err(),
            super::truncated("TCP header", 20, 19)
        );
        // Cut inside the options: etherparse wants them all, decode keeps
        // the fixed header and what was captured of the options.
        assert!(matches!(
            TcpSlice::from_slice(&SYN[..30]),
            Err(etherparse::err::tcp::HeaderSliceError::Len(LenError {
                required_len: 40,
                len: 30,
                ..
            }))
        ));
        let packet = syn_packet(30);
        let t = tcp_of(decode_as(228, &packet).unwrap());
        assert_eq!((t.src_port, t.seq, t.flags.syn), (40000, 0x1122_3344, true));
        assert_eq!(
            (t.mss, t.sack_permitted, t.window_scale),
            (Some(65495), true, None)
        );
        assert_eq!((t.payload_len, t.payload), (0, &b""[..]));
    }

    #[test]
    fn data_offset_below_minimum() {
        let mut bytes = SYN;
        bytes[12] = 0x40;
        assert_eq!(
            decode_as(228, &ipv4_around(6, 40, &bytes)).unwrap_err(),
            Error::Malformed {
                layer: "TCP header",
                what: "data offset below 20 bytes"
            }
        );
    }

    /// MSS, window scale and SACK-permitted of a SYN whose option list is
    /// `options`. The segment announces 40 bytes of options and the capture
    /// stops after `options`, so the walk sees exactly these bytes; a list
    /// that fills whole 4-byte words is also sent as a complete header.
    fn options(options: &[u8]) -> (Option<u16>, Option<u8>, bool) {
        let walk = |frame: Vec<u8>| {
            let t = tcp_of(decode_as(228, &frame).unwrap());
            (t.mss, t.window_scale, t.sack_permitted)
        };
        let mut segment = SYN[..20].to_vec();
        segment[12] = 0xf0;
        segment.extend_from_slice(options);
        let cut = walk(ipv4_around(6, 60, &segment));
        if options.len().is_multiple_of(4) {
            segment[12] = u8::try_from(20 + options.len()).unwrap() << 2;
            assert_eq!(walk(ipv4_around(6, segment.len(), &segment)), cut);
        }
        cut
    }

    #[test]
    fn option_walk_ends_like_linux() {
        // End of list: what follows is not read.
        assert_eq!(options(&[1, 4, 2, 0, 2, 4, 5, 0xb4]), (None, None, true));
        // A length below 2 or past the end stops the walk.
        assert_eq!(options(&[4, 2, 3, 1, 7]), (None, None, true));
        assert_eq!(options(&[3, 0, 4, 2]), (None, None, false));
        assert_eq!(options(&[4, 2, 2, 4, 0xff]), (None, None, true));
        assert_eq!(options(&[2]), (None, None, false));
        // A known kind with the wrong length is stepped over.
        assert_eq!(options(&[2, 3, 0x05, 4, 2]), (None, None, true));
        // SACK blocks.
        let sack = [5, 10, 0, 0, 0, 1, 0, 0, 0, 9];
        assert_eq!(options(&sack), (None, None, false));
        assert_eq!(
            options(&[5, 10, 0, 0, 0, 1, 0, 0, 0, 9, 3, 3, 2]),
            (None, Some(2), false)
        );
        // Unknown kinds are stepped over too.
        assert_eq!(options(&[30, 4, 0xaa, 0xbb]), (None, None, false));
        assert_eq!(
            options(&[30, 4, 0xaa, 0xbb, 2, 4, 5, 0xb4]),
            (Some(1460), None, false)
        );
    }
}

mod udp {
    //! UDP datagrams (RFC 768).

    use super::*;

    const DATAGRAM: [u8; 12] = [
        0x30, 0x39, // 12345
        0x1f, 0x90, // 8080
        0x00, 0x0c, // length 12
        0xbe, 0xef, // checksum
        b'a', b'b', b'c', b'd',
    ];

    #[test]
    fn fields() {
        let packet = ipv4_around(17, 12, &DATAGRAM);
        let u = udp_of(decode_as(228, &packet).unwrap());
        assert_eq!(
            u,
            Udp {
                src_port: 12345,
                dst_port: 8080,
                payload_len: 4,
                payload: b"abcd",
            }
        );
        let d = UdpSlice::from_slice(&DATAGRAM).unwrap();
        assert_eq!(d.length(), 12);
        assert_eq!(d.checksum(), 0xbeef);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            decode_as(228, &ipv4_around(17, 12, &DATAGRAM[..7])).unwrap_err(),
            super::truncated("UDP header", 8, 7)
        );
        let packet = ipv4_around(17, 12, &DATAGRAM[..8]);
        let u = udp_of(decode_as(228, &packet).unwrap());
        assert_eq!((u.payload_len, u.payload), (4, &b""[..]));
    }
}

mod icmp {
    //! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) messages.

    use super::*;

    #[test]
    fn fields() {
        let bytes = [3, 3, 0xab, 0xcd, 0, 0, 0x05, 0xdc, 0x45, 0x00];
        // Port unreachable, with a quote too short to hold the datagram.
        assert_eq!(
            icmp_of(decode_as(228, &ipv4_around(1, bytes.len(), &bytes)).unwrap()),
            Icmp {
                port_unreachable: true,
                icmp_type: icmpv4::TYPE_DEST_UNREACH,
                code: icmpv4::CODE_DST_UNREACH_PORT,
                quoted: None,
            }
        );
        let m = Icmpv4Slice::from_slice(&bytes).unwrap();
        assert_eq!(m.checksum(), 0xabcd);
        assert_eq!(m.bytes5to8(), [0, 0, 0x05, 0xdc]);
        assert_eq!(m.payload(), &[0x45, 0x00]);
    }

    #[test]
    fn error_types() {
        assert!(icmpv4_is_error(icmpv4::TYPE_DEST_UNREACH));
        assert!(icmpv4_is_error(icmpv4::TYPE_TIME_EXCEEDED));
        assert!(!icmpv4_is_error(icmpv4::TYPE_ECHO_REQUEST));
        assert!(!icmpv4_is_error(icmpv4::TYPE_ECHO_REPLY));
        assert!(icmpv6_is_error(icmpv6::TYPE_DST_UNREACH));
        assert!(icmpv6_is_error(icmpv6::TYPE_PACKET_TOO_BIG));
        assert!(!icmpv6_is_error(icmpv6::TYPE_ECHO_REQUEST));
        assert!(!icmpv6_is_error(icmpv6::TYPE_NEIGHBOR_SOLICITATION));
    }

    #[test]
    fn truncated() {
        let cut = [3, 3, 0, 0, 0, 0, 0];
        assert_eq!(
            decode_as(228, &ipv4_around(1, 8, &cut)).unwrap_err(),
            super::truncated("ICMPv4 header", 8, 7)
        );
        assert_eq!(
            decode_as(229, &ipv6_around(58, 8, &[1, 4])).unwrap_err(),
            super::truncated("ICMPv6 header", 8, 2)
        );
    }

    #[test]
    fn timestamps_of_any_length() {
        // etherparse reads a timestamp request only when it is 20 bytes.
        let request = [13, 0, 0, 0, 0, 1, 0, 2];
        assert!(Icmpv4Slice::from_slice(&request).is_err());
        assert_eq!(
            icmp_of(decode_as(228, &ipv4_around(1, 8, &request)).unwrap()),
            Icmp {
                port_unreachable: false,
                icmp_type: icmpv4::TYPE_TIMESTAMP,
                code: 0,
                quoted: None,
            }
        );
        let mut reply = [0u8; 24];
        reply[0] = 14;
        let i = icmp_of(decode_as(228, &ipv4_around(1, 24, &reply)).unwrap());
        assert_eq!((i.icmp_type, i.code), (icmpv4::TYPE_TIMESTAMP_REPLY, 0));
    }
}

mod not_in_etherparse {
    //! What etherparse 0.19 does not do, and `decode` or `wire` does.

    use super::*;

    /// `tcpdump -i any` on `lo`: LINUX_SLL with ARPHRD_LOOPBACK (772).
    const SLL_LO: [u8; 16] = [
        0x00, 0x00, 0x03, 0x04, 0x00, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00,
    ];

    #[test]
    fn linux_cooked_capture_of_loopback() {
        // etherparse reads the SLL protocol field only for the ARPHRD
        // types it lists (Ethernet, netlink, GRE, FRAD, radiotap).
        assert!(LinuxSllSlice::from_slice(&SLL_LO).is_err());
        let frame = [&SLL_LO[..], &ipv4_around(17, 8, &[0, 1, 0, 2, 0, 8, 0, 0])].concat();
        let u = udp_of(decode_as(113, &frame).unwrap());
        assert_eq!((u.src_port, u.dst_port, u.payload_len), (1, 2, 0));
    }

    #[test]
    fn ipv6_fragment_header_bits() {
        // A first fragment (offset 0, M set): etherparse 0.19 reads the
        // bits as offset 8, no more fragments.
        let header = [17, 0, 0x00, 0x01, 0, 0, 0, 7];
        let packet = ipv6_around(44, 16, &[&header[..], &[0, 1, 0, 2, 0, 200, 0, 0]].concat());
        let (p, _) = LaxIpv6Slice::from_slice(&packet).unwrap();
        let fragment = p
            .extensions()
            .clone()
            .into_iter()
            .find_map(|e| match e {
                etherparse::Ipv6ExtensionSlice::Fragment(f) => Some(f),
                _ => None,
            })
            .unwrap();
        assert_eq!(fragment.fragment_offset().byte_offset(), 8);
        assert!(!fragment.more_fragments());
        // decode reads it as the first fragment it is, UDP header included.
        let u = udp_of(decode_as(229, &packet).unwrap());
        assert_eq!((u.src_port, u.payload_len), (1, 192));
    }

    #[test]
    fn transport_of_a_first_fragment() {
        // etherparse's whole-packet slicer gives no transport header for a
        // fragmented payload.
        let mut packet = ipv4_around(17, 8, &[0, 1, 0, 2, 0x05, 0xc8, 0, 0]);
        packet[6] = 0x20; // MF
        let sliced = LaxSlicedPacket::from_ip(&packet).unwrap();
        assert!(sliced.transport.is_none());
        assert!(sliced.ip_payload().unwrap().fragmented);
        let u = udp_of(decode_as(228, &packet).unwrap());
        assert_eq!((u.src_port, u.payload_len), (1, 1472));
    }

    #[test]
    fn tcp_options_etherparse_does_not_know() {
        // An MD5 signature option (RFC 2385) first, as Linux puts it, then
        // MSS: etherparse's iterator stops at the first.
        let mut options = vec![19, 18];
        options.extend_from_slice(&[0xaa; 16]);
        options.extend_from_slice(&[2, 4, 0x05, 0xb4]);
        let walked: Vec<_> = TcpOptionsIterator::from_slice(&options).collect();
        assert_eq!(walked.len(), 1);
        assert!(walked[0].is_err());
        let mut segment = [0u8; 20];
        segment[12] = 0xb0; // 44 bytes of header
        segment[13] = 0x02; // SYN
        let packet = ipv4_around(6, 44, &[&segment[..], &options[..]].concat());
        assert_eq!(tcp_of(decode_as(228, &packet).unwrap()).mss, Some(1460));
    }
}
