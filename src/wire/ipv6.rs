//! IPv6 packets (RFC 8200) and the extension headers between the fixed
//! header and the upper layer: hop-by-hop options, routing, fragment and
//! destination options.

use std::net::Ipv6Addr;

use super::{At, Error, Result, be_u16, byte, bytes, captured, split_header};

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 40;

const LAYER: &str = "IPv6 header";
const EXT_LAYER: &str = "IPv6 extension header";

/// Next-header values of the extension headers walked here.
pub mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const DESTINATION_OPTIONS: u8 = 60;
}

mod field {
    use super::At;
    pub const VERSION: At<0> = At;
    pub const PAYLOAD_LEN: At<4> = At;
    pub const NEXT_HEADER: At<6> = At;
    pub const HOP_LIMIT: At<7> = At;
    pub const SRC: At<8> = At;
    pub const DST: At<24> = At;
}

/// The first eight bytes of every extension header walked here.
mod ext_field {
    use super::At;
    pub const NEXT_HEADER: At<0> = At;
    /// Length in 8-byte units, not counting the first 8 (not in fragment
    /// headers, which are always 8 bytes).
    pub const LEN: At<1> = At;
    pub const FRAG_OFFSET: At<2> = At;
}

const EXT_MIN_LEN: usize = 8;

/// A view of an IPv6 packet whose fixed header was captured in full.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    header: &'a [u8; HEADER_LEN],
    /// The captured part of the payload, never beyond the payload length.
    payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Checks the version and that the fixed header was captured. The
    /// payload may be cut short; bytes beyond the payload length (Ethernet
    /// padding) are dropped.
    pub fn parse(data: &'a [u8]) -> Result<Packet<'a>> {
        let (header, rest) = split_header::<HEADER_LEN>(LAYER, data)?;
        if byte(header, field::VERSION) >> 4 != 6 {
            return Err(Error::Malformed {
                layer: LAYER,
                what: "version is not 6",
            });
        }
        let payload_len = usize::from(be_u16(header, field::PAYLOAD_LEN));
        Ok(Packet {
            header,
            payload: captured(rest, payload_len),
        })
    }

    /// Bytes after the fixed header, extension headers included, as the
    /// header announces them, captured or not.
    pub fn payload_len(&self) -> usize {
        usize::from(be_u16(self.header, field::PAYLOAD_LEN))
    }

    pub fn next_header(&self) -> u8 {
        byte(self.header, field::NEXT_HEADER)
    }

    pub fn hop_limit(&self) -> u8 {
        byte(self.header, field::HOP_LIMIT)
    }

    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(bytes::<16, _, _>(self.header, field::SRC))
    }

    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(bytes::<16, _, _>(self.header, field::DST))
    }

    /// The captured part of the payload, extension headers included.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Walks the extension headers to the upper-layer protocol.
    ///
    /// Stops after a fragment header with a non-zero offset, since what
    /// follows it is the middle of a datagram, not a header.
    pub fn upper_layer(&self) -> Result<UpperLayer<'a>> {
        let mut protocol = self.next_header();
        let mut data = self.payload;
        let mut len = self.payload_len();
        let mut fragment = None;
        while is_extension(protocol) {
            let Some(first) = data.first_chunk::<EXT_MIN_LEN>() else {
                return Err(self.ext_short(len, EXT_MIN_LEN, data.len()));
            };
            let ext_len = if protocol == next_header::FRAGMENT {
                let field = be_u16(first, ext_field::FRAG_OFFSET);
                let frag = Fragment {
                    offset: usize::from(field & !0x7),
                    more: field & 1 != 0,
                };
                fragment = Some(frag);
                EXT_MIN_LEN
            } else {
                (usize::from(byte(first, ext_field::LEN)) + 1) * 8
            };
            let next = byte(first, ext_field::NEXT_HEADER);
            let Some(rest) = data.get(ext_len..) else {
                return Err(self.ext_short(len, ext_len, data.len()));
            };
            let Some(rest_len) = len.checked_sub(ext_len) else {
                return Err(self.ext_short(len, ext_len, data.len()));
            };
            protocol = next;
            data = rest;
            len = rest_len;
            if fragment.is_some_and(|f| f.offset > 0) {
                break;
            }
        }
        Ok(UpperLayer {
            protocol,
            fragment,
            payload: data,
            payload_len: len,
        })
    }

    /// The error for an extension header of `need` bytes where `got` were
    /// captured and `len` announced: malformed if the payload length
    /// cannot hold it, else truncated.
    fn ext_short(&self, len: usize, need: usize, got: usize) -> Error {
        if len < need {
            Error::Malformed {
                layer: EXT_LAYER,
                what: "extension header beyond the payload length",
            }
        } else {
            let walked = self.payload.len().saturating_sub(got);
            Error::Truncated {
                layer: EXT_LAYER,
                need: HEADER_LEN + walked + need,
                got: HEADER_LEN + walked + got,
            }
        }
    }
}

/// Whether a next-header value is an extension header walked here.
pub fn is_extension(next_header: u8) -> bool {
    matches!(
        next_header,
        next_header::HOP_BY_HOP
            | next_header::ROUTING
            | next_header::FRAGMENT
            | next_header::DESTINATION_OPTIONS
    )
}

/// What a fragment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Where this fragment's data starts in the datagram, in bytes.
    pub offset: usize,
    pub more: bool,
}

/// The upper-layer part of an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer<'a> {
    /// The IP protocol number (6 TCP, 17 UDP, 58 ICMPv6...).
    pub protocol: u8,
    /// Set when the packet is a fragment.
    pub fragment: Option<Fragment>,
    /// The captured bytes.
    pub payload: &'a [u8],
    /// The bytes the payload length announces.
    pub payload_len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn fields() {
        let p = Packet::parse(&UDP).unwrap();
        assert_eq!(p.payload_len(), 12);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src(), Ipv6Addr::LOCALHOST);
        assert_eq!(p.dst(), Ipv6Addr::LOCALHOST);
        assert_eq!(p.payload(), &UDP[40..52]);
        assert_eq!(
            p.upper_layer().unwrap(),
            UpperLayer {
                protocol: 17,
                fragment: None,
                payload: &UDP[40..52],
                payload_len: 12
            }
        );
    }

    #[test]
    fn cut_payload_keeps_lengths() {
        let p = Packet::parse(&UDP[..44]).unwrap();
        let up = p.upper_layer().unwrap();
        assert_eq!(up.payload_len, 12);
        assert_eq!(up.payload, &UDP[40..44]);
    }

    #[test]
    fn truncated_and_malformed_header() {
        assert_eq!(
            Packet::parse(&UDP[..39]).unwrap_err(),
            Error::Truncated {
                layer: LAYER,
                need: 40,
                got: 39
            }
        );
        let mut v4 = UDP;
        v4[0] = 0x45;
        assert_eq!(
            Packet::parse(&v4).unwrap_err(),
            Error::Malformed {
                layer: LAYER,
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
        let up = Packet::parse(&bytes).unwrap().upper_layer().unwrap();
        assert_eq!(up.protocol, 17);
        assert_eq!(up.fragment, None);
        assert_eq!(up.payload_len, 12);
        assert_eq!(up.payload, &UDP[40..52]);
    }

    #[test]
    fn fragments() {
        // First fragment, more to come, ident 7.
        let bytes = with_ext(44, &[17, 0, 0x00, 0x01, 0, 0, 0, 7]);
        let up = Packet::parse(&bytes).unwrap().upper_layer().unwrap();
        assert_eq!(up.protocol, 17);
        assert_eq!(
            up.fragment,
            Some(Fragment {
                offset: 0,
                more: true
            })
        );
        assert_eq!(up.payload_len, 12);
        // A later fragment: offset 1448, last. The walk stops there even
        // if the bytes after look like another extension header.
        let bytes = with_ext(44, &[0, 0, 0x05, 0xa8, 0, 0, 0, 7]);
        let up = Packet::parse(&bytes).unwrap().upper_layer().unwrap();
        assert_eq!(up.protocol, 0);
        assert_eq!(
            up.fragment,
            Some(Fragment {
                offset: 1448,
                more: false
            })
        );
    }

    #[test]
    fn truncated_extension() {
        let bytes = with_ext(60, &[17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        // Cut inside the 16-byte destination options.
        assert_eq!(
            Packet::parse(&bytes[..50])
                .unwrap()
                .upper_layer()
                .unwrap_err(),
            Error::Truncated {
                layer: EXT_LAYER,
                need: 56,
                got: 50
            }
        );
        // Cut inside the first 8 bytes.
        assert_eq!(
            Packet::parse(&bytes[..44])
                .unwrap()
                .upper_layer()
                .unwrap_err(),
            Error::Truncated {
                layer: EXT_LAYER,
                need: 48,
                got: 44
            }
        );
    }

    #[test]
    fn extension_beyond_payload_length() {
        let mut bytes = with_ext(60, &[17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        bytes[5] = 10; // payload length 10 < 16
        assert_eq!(
            Packet::parse(&bytes).unwrap().upper_layer().unwrap_err(),
            Error::Malformed {
                layer: EXT_LAYER,
                what: "extension header beyond the payload length"
            }
        );
        bytes[5] = 4; // shorter than the first 8 bytes
        assert!(matches!(
            Packet::parse(&bytes).unwrap().upper_layer(),
            Err(Error::Malformed { .. })
        ));
    }
}
