//! IPv4 packets (RFC 791). The header checksum is not verified: captures
//! taken on the sending host often hold it unfilled (checksum offload).

use std::net::Ipv4Addr;

use super::{At, Error, Result, be_u16, byte, bytes, captured, split_header};

/// Bytes of the header without options.
pub const MIN_HEADER_LEN: usize = 20;

const LAYER: &str = "IPv4 header";

mod field {
    use super::At;
    pub const VERSION_IHL: At<0> = At;
    pub const TOTAL_LEN: At<2> = At;
    pub const IDENT: At<4> = At;
    pub const FLAGS_FRAG_OFFSET: At<6> = At;
    pub const TTL: At<8> = At;
    pub const PROTOCOL: At<9> = At;
    pub const SRC: At<12> = At;
    pub const DST: At<16> = At;
}

const MORE_FRAGMENTS: u16 = 0x2000;
const DONT_FRAGMENT: u16 = 0x4000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet whose header was captured in full.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    header: &'a [u8; MIN_HEADER_LEN],
    options: &'a [u8],
    /// The captured part of the payload, never beyond the total length.
    payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Checks the version, the header length against the total length, and
    /// that the whole header (options included) was captured. The payload
    /// may be cut short; bytes beyond the total length (Ethernet padding)
    /// are dropped.
    pub fn parse(data: &'a [u8]) -> Result<Packet<'a>> {
        let (header, rest) = split_header::<MIN_HEADER_LEN>(LAYER, data)?;
        let version_ihl = byte(header, field::VERSION_IHL);
        if version_ihl >> 4 != 4 {
            return Err(Error::Malformed {
                layer: LAYER,
                what: "version is not 4",
            });
        }
        let header_len = usize::from(version_ihl & 0x0f) * 4;
        if header_len < MIN_HEADER_LEN {
            return Err(Error::Malformed {
                layer: LAYER,
                what: "header length below 20",
            });
        }
        let total_len = usize::from(be_u16(header, field::TOTAL_LEN));
        if total_len < header_len {
            return Err(Error::Malformed {
                layer: LAYER,
                what: "total length shorter than the header",
            });
        }
        let Some((options, payload)) = rest.split_at_checked(header_len - MIN_HEADER_LEN) else {
            return Err(Error::Truncated {
                layer: LAYER,
                need: header_len,
                got: data.len(),
            });
        };
        Ok(Packet {
            header,
            options,
            payload: captured(payload, total_len - header_len),
        })
    }

    /// Bytes of the header, options included.
    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.len()
    }

    pub fn total_len(&self) -> u16 {
        be_u16(self.header, field::TOTAL_LEN)
    }

    /// Bytes of payload the header announces, captured or not.
    pub fn payload_len(&self) -> usize {
        usize::from(self.total_len()).saturating_sub(self.header_len())
    }

    pub fn ident(&self) -> u16 {
        be_u16(self.header, field::IDENT)
    }

    pub fn dont_fragment(&self) -> bool {
        be_u16(self.header, field::FLAGS_FRAG_OFFSET) & DONT_FRAGMENT != 0
    }

    pub fn more_fragments(&self) -> bool {
        be_u16(self.header, field::FLAGS_FRAG_OFFSET) & MORE_FRAGMENTS != 0
    }

    /// Where this fragment's payload starts in the datagram, in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(be_u16(self.header, field::FLAGS_FRAG_OFFSET) & FRAG_OFFSET_MASK) * 8
    }

    pub fn ttl(&self) -> u8 {
        byte(self.header, field::TTL)
    }

    /// The IP protocol number of the payload.
    pub fn protocol(&self) -> u8 {
        byte(self.header, field::PROTOCOL)
    }

    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(bytes::<4, _, _>(self.header, field::SRC))
    }

    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(bytes::<4, _, _>(self.header, field::DST))
    }

    pub fn options(&self) -> &'a [u8] {
        self.options
    }

    /// The captured part of the payload.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

#[cfg(test)]
mod tests {
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
        let p = Packet::parse(&UDP).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 32);
        assert_eq!(p.payload_len(), 12);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_fragment());
        assert!(!p.more_fragments());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.src(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.options(), &[] as &[u8]);
        // The padding is not payload.
        assert_eq!(p.payload(), &UDP[20..32]);
    }

    #[test]
    fn cut_payload_keeps_lengths() {
        let p = Packet::parse(&UDP[..24]).unwrap();
        assert_eq!(p.payload_len(), 12);
        assert_eq!(p.payload(), &UDP[20..24]);
    }

    #[test]
    fn options() {
        let mut bytes = [0u8; 28];
        bytes[..20].copy_from_slice(&UDP[..20]);
        bytes[0] = 0x46; // IHL 6
        bytes[3] = 28;
        bytes[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]); // router alert
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.payload_len(), 4);
        assert_eq!(p.payload().len(), 4);
        // Options cut by the capture.
        assert_eq!(
            Packet::parse(&bytes[..22]).unwrap_err(),
            Error::Truncated {
                layer: LAYER,
                need: 24,
                got: 22
            }
        );
    }

    #[test]
    fn fragments() {
        let mut bytes = UDP;
        bytes[6..8].copy_from_slice(&[0x20, 0xb9]); // MF, offset 185 * 8
        let p = Packet::parse(&bytes).unwrap();
        assert!(p.more_fragments());
        assert!(!p.dont_fragment());
        assert_eq!(p.frag_offset(), 1480);
    }

    #[test]
    fn truncated_header() {
        assert_eq!(
            Packet::parse(&UDP[..19]).unwrap_err(),
            Error::Truncated {
                layer: LAYER,
                need: 20,
                got: 19
            }
        );
    }

    #[test]
    fn malformed() {
        let what = |bytes: &[u8]| match Packet::parse(bytes) {
            Err(Error::Malformed { what, .. }) => what,
            other => panic!("{other:?}"),
        };
        let mut v6 = UDP;
        v6[0] = 0x65;
        assert_eq!(what(&v6), "version is not 4");
        let mut short_ihl = UDP;
        short_ihl[0] = 0x44;
        assert_eq!(what(&short_ihl), "header length below 20");
        let mut short_total = UDP;
        short_total[3] = 19;
        assert_eq!(what(&short_total), "total length shorter than the header");
        let mut ihl_beyond_total = UDP;
        ihl_beyond_total[0] = 0x4f; // 60 bytes of header, total 32
        assert_eq!(
            what(&ihl_beyond_total),
            "total length shorter than the header"
        );
    }
}
