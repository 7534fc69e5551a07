//! One captured frame -> addresses, ports, TCP/UDP/ICMP facts and payload.
//!
//! A pure function of (link type, captured bytes). Sizes come from the IP
//! and UDP length fields, never from the captured length, so that
//! snap-length-cut frames (tcpdump -s 96) still count in full; payload
//! slices hold only what was captured. This module decides what to believe
//! and what to skip.
//!
//! The bytes are read by etherparse's slices, one layer at a time: Ethernet
//! II and its VLAN tags; IPv4 and IPv6 with their extension headers,
//! through the lax slicers, which keep a payload cut by the snap length and
//! still give the payload of a fragment, so that a first fragment's UDP
//! header is read from it; TCP with its options, UDP, ICMPv4 and ICMPv6.
//! What etherparse 0.19 lacks or misreads (the BSD loopback and Linux
//! cooked link layers, the IPv6 fragment header) is read by the views in
//! [`crate::wire`].
//!
//! etherparse's whole-packet `LaxSlicedPacket` is not used: it picks IPv4 or
//! IPv6 by the version nibble rather than by what the link layer says, and
//! it slices no transport header out of a fragmented payload or out of a TCP
//! header whose options were cut, which are frames this module still reads.
//! Where etherparse's rules differ from the analyzer's, the difference is
//! handled where it arises: an IPv4 total length below the header length
//! and an IPv6 payload length of zero are taken as sent, not replaced by the
//! captured length; TCP options etherparse does not know are stepped over
//! by their length, as Linux does; an ICMPv4 timestamp message of another
//! length than 20 bytes is still an ICMP message.

use std::net::IpAddr;

use etherparse::{
    EtherType, Ethernet2Slice, Icmpv4Header, Icmpv4Slice, Icmpv6Header, Icmpv6Slice,
    IpAuthHeaderSlice, IpNumber, Ipv4Header, Ipv6ExtensionsSlice, Ipv6RawExtHeaderSlice,
    LaxIpv4Slice, LaxIpv6Slice, SingleVlanSlice, TcpHeader, TcpOptionElement, TcpOptionsIterator,
    TcpSlice, UdpHeader, UdpSlice,
    err::{self as ep, LenError},
    icmpv4, icmpv6, ip_number,
};
use pcap_parser::Linktype;

use crate::wire::{self, ipv6_fragment, loopback, sll};

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

    /// `layer` was cut: etherparse's account of the bytes it needed and got,
    /// both counted from the start of `layer`.
    fn truncated(layer: &'static str, e: &LenError) -> Error {
        Error::Truncated {
            layer,
            need: e.required_len,
            got: e.len,
        }
    }
}

impl From<wire::Error> for Error {
    fn from(e: wire::Error) -> Error {
        match e {
            wire::Error::Truncated { layer, need, got } => Error::Truncated { layer, need, got },
        }
    }
}

/// The link layers this module decodes. The numbers are tcpdump.org's
/// LINKTYPE_ values (<https://www.tcpdump.org/linktypes.html>).
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

/// EtherType values up to this one are IEEE 802.3 lengths, not EtherTypes
/// (IEEE 802.3 clause 3.2.6).
const MAX_802_3_LEN: u16 = 1500;

/// Decodes one captured frame of a capture whose link type is `link_type`.
pub fn decode(link_type: Linktype, data: &[u8]) -> Result<Decoded<'_>, Error> {
    let link_type =
        LinkType::from_pcap(link_type).ok_or(Error::UnsupportedLinkType(link_type.0))?;
    let ip = match network(link_type, data)? {
        (IpVersion::V4, packet) => ip_v4(packet)?,
        (IpVersion::V6, packet) => ip_v6(packet)?,
    };
    let transport = match ip.protocol {
        ip_number::UDP => Transport::Udp(decode_udp(&ip)?),
        ip_number::TCP if ip.first_fragment => {
            return Err(Error::Fragment {
                ip: ip.version.name(),
                offset: 0,
            });
        }
        ip_number::TCP => Transport::Tcp(decode_tcp(&ip)?),
        ip_number::ICMP if ip.version == IpVersion::V4 => Transport::Icmp(decode_icmp_v4(&ip)?),
        ip_number::IPV6_ICMP if ip.version == IpVersion::V6 => {
            Transport::Icmp(decode_icmp_v6(&ip)?)
        }
        _ => return Err(Error::OtherProtocol(ip.protocol.0)),
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

/// Strips the link-layer header of `frame`: which IP it carries, and the
/// bytes after the header.
fn network(link_type: LinkType, frame: &[u8]) -> Result<(IpVersion, &[u8]), Error> {
    match link_type {
        LinkType::Ethernet => ethernet(frame),
        LinkType::Null | LinkType::Loop => {
            let f = loopback::Frame::parse(frame)?;
            match f.family() {
                loopback::Family::Ipv4 => Ok((IpVersion::V4, f.payload())),
                loopback::Family::Ipv6 => Ok((IpVersion::V6, f.payload())),
                loopback::Family::Other(family) => Err(Error::NotIpFamily { family }),
            }
        }
        LinkType::Raw => match frame.first().map(|b| b >> 4) {
            None => Err(Error::Truncated {
                layer: "IP header",
                need: 1,
                got: 0,
            }),
            Some(4) => Ok((IpVersion::V4, frame)),
            Some(6) => Ok((IpVersion::V6, frame)),
            Some(version) => Err(Error::NotIpVersion { version }),
        },
        LinkType::Ipv4 => Ok((IpVersion::V4, frame)),
        LinkType::Ipv6 => Ok((IpVersion::V6, frame)),
        LinkType::LinuxSll => {
            let f = sll::Frame::parse(frame)?;
            by_ether_type(f.protocol(), f.payload())
        }
        LinkType::LinuxSll2 => {
            let f = sll::FrameV2::parse(frame)?;
            by_ether_type(f.protocol(), f.payload())
        }
    }
}

/// An Ethernet II frame, after its VLAN tags (802.1Q, 802.1ad and the
/// pre-standard 0x9100 outer tag), however many there are.
fn ethernet(frame: &[u8]) -> Result<(IpVersion, &[u8]), Error> {
    let eth = Ethernet2Slice::from_slice_without_fcs(frame)
        .map_err(|e| Error::truncated("Ethernet header", &e))?;
    let mut ether_type = eth.ether_type();
    let mut payload = eth.payload_slice();
    // Each tag takes four bytes, so the loop ends.
    while matches!(
        ether_type,
        EtherType::VLAN_TAGGED_FRAME
            | EtherType::PROVIDER_BRIDGING
            | EtherType::VLAN_DOUBLE_TAGGED_FRAME
    ) {
        let tag =
            SingleVlanSlice::from_slice(payload).map_err(|e| Error::truncated("VLAN tag", &e))?;
        ether_type = tag.ether_type();
        payload = tag.payload_slice();
    }
    by_ether_type(ether_type.0, payload)
}

/// What an EtherType (or a Linux cooked protocol field) says follows.
fn by_ether_type(ether_type: u16, payload: &[u8]) -> Result<(IpVersion, &[u8]), Error> {
    match EtherType(ether_type) {
        EtherType::IPV4 => Ok((IpVersion::V4, payload)),
        EtherType::IPV6 => Ok((IpVersion::V6, payload)),
        _ if ether_type <= MAX_802_3_LEN => Err(Error::Ieee8023),
        _ => Err(Error::NotIp { ether_type }),
    }
}

/// The upper-layer part of an IP packet.
struct IpPayload<'a> {
    version: IpVersion,
    src: IpAddr,
    dst: IpAddr,
    protocol: IpNumber,
    /// The captured bytes, at most `len`.
    data: &'a [u8],
    /// The bytes the IP header announces.
    len: usize,
    /// The first fragment of a fragmented datagram: `len` covers only this
    /// fragment.
    first_fragment: bool,
}

const IPV4_LAYER: &str = "IPv4 header";
const IPV6_LAYER: &str = "IPv6 header";
const IPV6_EXT_LAYER: &str = "IPv6 extension header";

/// An IPv4 packet (RFC 791). The header checksum is not verified: captures
/// taken on the sending host often hold it unfilled (checksum offload). An
/// authentication header (RFC 4302) is stepped over by etherparse; one it
/// cannot read leaves the packet as IP protocol 51.
fn ip_v4(data: &[u8]) -> Result<IpPayload<'_>, Error> {
    let (ip, _) = LaxIpv4Slice::from_slice(data).map_err(|e| match e {
        ep::ipv4::HeaderSliceError::Len(e)
            if e.required_len > Ipv4Header::MIN_LEN && ipv4_total_len_below_header(data) =>
        {
            ipv4_total_len_error()
        }
        ep::ipv4::HeaderSliceError::Len(e) => Error::truncated(IPV4_LAYER, &e),
        ep::ipv4::HeaderSliceError::Content(e) => Error::Malformed {
            layer: IPV4_LAYER,
            what: match e {
                ep::ipv4::HeaderError::UnexpectedVersion { .. } => "version is not 4",
                ep::ipv4::HeaderError::HeaderLengthSmallerThanHeader { .. } => {
                    "header length below 20"
                }
            },
        },
    })?;
    let header = ip.header();
    let header_len = header.slice().len();
    let total_len = usize::from(header.total_len());
    // etherparse's lax slicer takes the captured bytes for such a packet.
    if total_len < header_len {
        return Err(ipv4_total_len_error());
    }
    let offset = usize::from(header.fragments_offset().byte_offset());
    if offset > 0 {
        return Err(Error::Fragment {
            ip: IpVersion::V4.name(),
            offset,
        });
    }
    let auth_len = ip.extensions().auth.map_or(0, |a| a.slice().len());
    let payload = ip.payload();
    Ok(IpPayload {
        version: IpVersion::V4,
        src: header.source_addr().into(),
        dst: header.destination_addr().into(),
        protocol: payload.ip_number,
        data: payload.payload,
        len: total_len.saturating_sub(header_len + auth_len),
        first_fragment: header.more_fragments(),
    })
}

fn ipv4_total_len_error() -> Error {
    Error::Malformed {
        layer: IPV4_LAYER,
        what: "total length shorter than the header",
    }
}

/// Whether the first bytes of an IPv4 header whose options were cut
/// announce a total length below the header length. etherparse checks that
/// the options were captured before anything reads the total length; a
/// packet contradicting itself is malformed however much of it was
/// captured.
fn ipv4_total_len_below_header(data: &[u8]) -> bool {
    match data.first_chunk::<4>() {
        Some(&[version_ihl, _, hi, lo]) => {
            usize::from(u16::from_be_bytes([hi, lo])) < usize::from(version_ihl & 0x0f) * 4
        }
        None => false,
    }
}

/// An IPv6 packet (RFC 8200) and its extension headers (hop-by-hop,
/// routing, fragment, destination options, authentication), walked by
/// etherparse. A later fragment is told apart first, since what follows
/// its fragment header is the middle of a datagram, not a header.
fn ip_v6(data: &[u8]) -> Result<IpPayload<'_>, Error> {
    let (ip, stop) = LaxIpv6Slice::from_slice(data).map_err(|e| match e {
        ep::ipv6::HeaderSliceError::Len(e) => Error::truncated(IPV6_LAYER, &e),
        ep::ipv6::HeaderSliceError::Content(ep::ipv6::HeaderError::UnexpectedVersion {
            ..
        }) => Error::Malformed {
            layer: IPV6_LAYER,
            what: "version is not 6",
        },
    })?;
    let header = ip.header();
    let exts = ip.extensions();
    let fragment = fragment_header(header.next_header(), exts);
    if let Some(f) = fragment
        && f.offset() > 0
    {
        return Err(Error::Fragment {
            ip: IpVersion::V6.name(),
            offset: f.offset(),
        });
    }
    // The payload length as sent: etherparse's lax slicer takes the
    // captured bytes when it is 0 (a jumbogram), which the analyzer does not
    // read.
    let announced = usize::from(header.payload_length());
    if let Some((e, _)) = stop {
        return Err(ipv6_ext_error(e, announced));
    }
    let len = announced
        .checked_sub(exts.slice().len())
        .ok_or_else(ipv6_ext_beyond_error)?;
    let payload = ip.payload();
    Ok(IpPayload {
        version: IpVersion::V6,
        src: header.source_addr().into(),
        dst: header.destination_addr().into(),
        protocol: payload.ip_number,
        data: payload.payload.get(..len).unwrap_or(payload.payload),
        len,
        first_fragment: fragment.is_some_and(|f| f.more_fragments()),
    })
}

/// The fragment header among the extension headers etherparse walked: the
/// first one that is not at offset 0, or else the last one. Its fields are
/// read by [`ipv6_fragment`], the headers' lengths by etherparse's checked
/// slices.
///
/// The headers are not walked with the iterator of `Ipv6ExtensionsSlice`:
/// in etherparse 0.19 that iterator reads past the walked headers when the
/// lax walk stopped at one it could not read (an out-of-bounds read, which
/// the standard library's debug checks abort on).
fn fragment_header<'a>(
    first: IpNumber,
    exts: &Ipv6ExtensionsSlice<'a>,
) -> Option<ipv6_fragment::Header<'a>> {
    let mut next = first;
    let mut rest = exts.slice();
    let mut fragment = None;
    while !rest.is_empty() {
        let len = match next {
            ip_number::IPV6_FRAG => {
                let f = ipv6_fragment::Header::parse(rest).ok()?;
                fragment = Some(f);
                if f.offset() > 0 {
                    break;
                }
                next = IpNumber(f.next_header());
                ipv6_fragment::HEADER_LEN
            }
            ip_number::AUTH => {
                let a = IpAuthHeaderSlice::from_slice(rest).ok()?;
                next = a.next_header();
                a.slice().len()
            }
            _ => {
                let h = Ipv6RawExtHeaderSlice::from_slice(rest).ok()?;
                next = h.next_header();
                h.slice().len()
            }
        };
        rest = rest.get(len..)?;
    }
    fragment
}

fn ipv6_ext_beyond_error() -> Error {
    Error::Malformed {
        layer: IPV6_EXT_LAYER,
        what: "extension header beyond the payload length",
    }
}

/// Why the extension headers could not be walked. A header that the
/// payload length cannot hold is malformed, whatever was captured; one the
/// capture cut is truncated, its lengths counted from the start of the IPv6
/// header.
fn ipv6_ext_error(e: ep::ipv6_exts::HeaderSliceError, announced: usize) -> Error {
    match e {
        ep::ipv6_exts::HeaderSliceError::Len(e) => {
            let walked = e
                .layer_start_offset
                .saturating_sub(etherparse::Ipv6Header::LEN);
            if announced.saturating_sub(walked) < e.required_len {
                ipv6_ext_beyond_error()
            } else {
                Error::Truncated {
                    layer: IPV6_EXT_LAYER,
                    need: e.layer_start_offset + e.required_len,
                    got: e.layer_start_offset + e.len,
                }
            }
        }
        ep::ipv6_exts::HeaderSliceError::Content(e) => Error::Malformed {
            layer: IPV6_EXT_LAYER,
            what: match e {
                ep::ipv6_exts::HeaderError::HopByHopNotAtStart => {
                    "hop-by-hop options header not first"
                }
                ep::ipv6_exts::HeaderError::IpAuth(_) => "authentication header length 0",
            },
        },
    }
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

/// A UDP datagram (RFC 768). Its length field is checked against the IP
/// length here, since only the IP layer tells whether it is a fragment.
fn decode_udp<'a>(ip: &IpPayload<'a>) -> Result<Udp<'a>, Error> {
    const LAYER: &str = "UDP header";
    check_room(ip, LAYER, UdpHeader::LEN)?;
    let d = UdpSlice::from_slice_lax(ip.data).map_err(|e| Error::truncated(LAYER, &e))?;
    let Some(payload_len) = usize::from(d.length()).checked_sub(UdpHeader::LEN) else {
        return Err(Error::Malformed {
            layer: LAYER,
            what: "length below 8",
        });
    };
    // A first fragment holds only part of the datagram its length tells.
    if !ip.first_fragment && UdpHeader::LEN + payload_len > ip.len {
        return Err(Error::Malformed {
            layer: LAYER,
            what: "length beyond the IP payload",
        });
    }
    // With a length from 8 to what was captured, etherparse cuts the
    // payload there; with a longer one it gives all that was captured.
    Ok(Udp {
        src_port: d.source_port(),
        dst_port: d.destination_port(),
        payload_len,
        payload: d.payload(),
    })
}

const TCP_LAYER: &str = "TCP header";

/// A TCP segment (RFC 9293) and the options the analyzer reads: MSS,
/// window scale (RFC 7323), SACK-permitted (RFC 2018).
fn decode_tcp<'a>(ip: &IpPayload<'a>) -> Result<Tcp<'a>, Error> {
    check_room(ip, TCP_LAYER, TcpHeader::MIN_LEN)?;
    let beyond = Error::Malformed {
        layer: TCP_LAYER,
        what: "data offset beyond the IP payload",
    };
    match TcpSlice::from_slice(ip.data) {
        Ok(s) => {
            let payload_len = ip.len.checked_sub(s.header_len()).ok_or(beyond)?;
            Ok(tcp_of(&s, s.options(), payload_len, s.payload()))
        }
        Err(ep::tcp::HeaderSliceError::Content(ep::tcp::HeaderError::DataOffsetTooSmall {
            ..
        })) => Err(Error::Malformed {
            layer: TCP_LAYER,
            what: "data offset below 20 bytes",
        }),
        // The captured bytes stop at the IP length, so options that run
        // past it look cut; they are missing from the packet, not the
        // capture.
        Err(ep::tcp::HeaderSliceError::Len(e)) if e.required_len > ip.len => Err(beyond),
        Err(ep::tcp::HeaderSliceError::Len(e)) if e.required_len > TcpHeader::MIN_LEN => {
            tcp_cut(ip, e.required_len)
        }
        Err(ep::tcp::HeaderSliceError::Len(e)) => Err(Error::truncated(TCP_LAYER, &e)),
    }
}

/// Where the data offset is in a TCP header, in its high nibble.
const TCP_DATA_OFFSET_AT: usize = 12;

/// A TCP segment whose options the snap length cut (`-s 64` keeps the 20
/// fixed bytes after Ethernet and IPv4, not the 12 bytes of timestamps):
/// ports, sequence numbers and flags are whole, which is what the control
/// connection needs; the options are what was captured of them, and no
/// payload was. etherparse slices a TCP header only with all its options,
/// so the fixed part is read from a copy whose data offset says it has
/// none.
fn tcp_cut<'a>(ip: &IpPayload<'a>, header_len: usize) -> Result<Tcp<'a>, Error> {
    let cut = |got| Error::Truncated {
        layer: TCP_LAYER,
        need: header_len,
        got,
    };
    let Some((fixed, options)) = ip.data.split_first_chunk::<{ TcpHeader::MIN_LEN }>() else {
        return Err(cut(ip.data.len()));
    };
    let mut fixed = *fixed;
    if let Some(offset) = fixed.get_mut(TCP_DATA_OFFSET_AT) {
        *offset = (5 << 4) | (*offset & 0x0f);
    }
    let s = TcpSlice::from_slice(&fixed).map_err(|_| cut(ip.data.len()))?;
    Ok(tcp_of(&s, options, ip.len.saturating_sub(header_len), &[]))
}

fn tcp_of<'a>(s: &TcpSlice<'_>, options: &[u8], payload_len: usize, payload: &'a [u8]) -> Tcp<'a> {
    let options = TcpOptions::read(options);
    Tcp {
        src_port: s.source_port(),
        dst_port: s.destination_port(),
        seq: s.sequence_number(),
        ack: s.acknowledgment_number(),
        flags: TcpFlags {
            syn: s.syn(),
            ack: s.ack(),
            fin: s.fin(),
            rst: s.rst(),
            psh: s.psh(),
        },
        window: s.window_size(),
        mss: options.mss,
        window_scale: options.window_scale,
        sack_permitted: options.sack_permitted,
        payload_len,
        payload,
    }
}

/// The TCP options the analyzer reads.
#[derive(Debug, Default)]
struct TcpOptions {
    mss: Option<u16>,
    /// The shift count as sent; receivers use at most 14 (RFC 7323 2.3).
    window_scale: Option<u8>,
    sack_permitted: bool,
}

impl TcpOptions {
    /// Walks an option list with etherparse's iterator. That iterator ends
    /// at the first option it does not know (MD5 signature, TCP-AO, MPTCP,
    /// Fast Open...) or whose length it does not expect; like Linux's
    /// `tcp_parse_options`, such an option is stepped over by its length
    /// byte and the walk goes on. It ends at the end-of-list option, or at
    /// an option whose length is below 2 or runs past the header: the
    /// segment itself stays good.
    fn read(options: &[u8]) -> TcpOptions {
        let mut found = TcpOptions::default();
        let mut options = TcpOptionsIterator::from_slice(options);
        loop {
            let at = options.rest();
            match options.next() {
                None => return found,
                Some(Ok(TcpOptionElement::MaximumSegmentSize(v))) => found.mss = Some(v),
                Some(Ok(TcpOptionElement::WindowScale(v))) => found.window_scale = Some(v),
                Some(Ok(TcpOptionElement::SelectiveAcknowledgementPermitted)) => {
                    found.sack_permitted = true;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) => match after_option(at) {
                    Some(rest) => options = TcpOptionsIterator::from_slice(rest),
                    None => return found,
                },
            }
        }
    }
}

/// What follows the option at the start of `options`, by its length byte
/// (which counts the kind and length bytes), if that length is at least 2
/// and the option fits.
fn after_option(options: &[u8]) -> Option<&[u8]> {
    let &[_, len, ..] = options else {
        return None;
    };
    let len = usize::from(len);
    if len < 2 {
        return None;
    }
    options.get(len..)
}

/// ICMPv4 (RFC 792): whether the type is an error that quotes the
/// offending packet (destination unreachable, source quench, redirect,
/// time exceeded, parameter problem).
fn icmpv4_is_error(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        icmpv4::TYPE_DEST_UNREACH
            | icmpv4::TYPE_SOURCE_QUENCH
            | icmpv4::TYPE_REDIRECT
            | icmpv4::TYPE_TIME_EXCEEDED
            | icmpv4::TYPE_PARAMETER_PROBLEM
    )
}

/// ICMPv6 (RFC 4443 2.1): error types are those below 128; they quote the
/// offending packet.
fn icmpv6_is_error(icmp_type: u8) -> bool {
    icmp_type < 128
}

fn decode_icmp_v4(ip: &IpPayload) -> Result<Icmp, Error> {
    const LAYER: &str = "ICMPv4 header";
    check_room(ip, LAYER, Icmpv4Header::MIN_LEN)?;
    let m = match Icmpv4Slice::from_slice(ip.data) {
        Ok(m) => m,
        // etherparse reads a timestamp (reply) message only when it is
        // exactly 20 bytes; cut or longer, it is still that message.
        Err(e) if e.layer == ep::Layer::Icmpv4Timestamp => {
            return Ok(icmp_without_quote(icmpv4::TYPE_TIMESTAMP));
        }
        Err(e) if e.layer == ep::Layer::Icmpv4TimestampReply => {
            return Ok(icmp_without_quote(icmpv4::TYPE_TIMESTAMP_REPLY));
        }
        Err(e) => return Err(Error::truncated(LAYER, &e)),
    };
    let (icmp_type, code) = (m.type_u8(), m.code_u8());
    Ok(Icmp {
        port_unreachable: icmp_type == icmpv4::TYPE_DEST_UNREACH
            && code == icmpv4::CODE_DST_UNREACH_PORT,
        icmp_type,
        code,
        quoted: if icmpv4_is_error(icmp_type) {
            ip_v4(m.payload()).ok().and_then(|q| quoted_udp(&q))
        } else {
            None
        },
    })
}

/// An ICMPv4 timestamp request or reply (code 0) that etherparse would not
/// slice; neither quotes a packet.
fn icmp_without_quote(icmp_type: u8) -> Icmp {
    Icmp {
        port_unreachable: false,
        icmp_type,
        code: 0,
        quoted: None,
    }
}

fn decode_icmp_v6(ip: &IpPayload) -> Result<Icmp, Error> {
    const LAYER: &str = "ICMPv6 header";
    check_room(ip, LAYER, Icmpv6Header::MIN_LEN)?;
    let m = Icmpv6Slice::from_slice(ip.data).map_err(|e| Error::truncated(LAYER, &e))?;
    let (icmp_type, code) = (m.type_u8(), m.code_u8());
    Ok(Icmp {
        port_unreachable: icmp_type == icmpv6::TYPE_DST_UNREACH
            && code == icmpv6::CODE_DST_UNREACH_PORT,
        icmp_type,
        code,
        quoted: if icmpv6_is_error(icmp_type) {
            ip_v6(m.payload()).ok().and_then(|q| quoted_udp(&q))
        } else {
            None
        },
    })
}

/// The UDP datagram an ICMP error quotes, if it quotes the start of one.
/// The quote is cut by design, so only its headers need to be there.
fn quoted_udp(quote: &IpPayload) -> Option<QuotedUdp> {
    if quote.protocol != ip_number::UDP {
        return None;
    }
    let udp = UdpSlice::from_slice_lax(quote.data).ok()?;
    Some(QuotedUdp {
        src: quote.src,
        dst: quote.dst,
        src_port: udp.source_port(),
        dst_port: udp.destination_port(),
    })
}

#[cfg(test)]
mod layer_tests;

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
