//! The 4-byte address-family header of BSD loopback captures:
//! LINKTYPE_NULL (macOS, the BSDs, Windows Npcap loopback) and
//! LINKTYPE_LOOP (OpenBSD).
//!
//! For NULL the family is in the byte order of the host that captured, which
//! the file does not say; for LOOP it is big-endian. Both are read the same
//! way: a known family in either byte order, else the IP version nibble of
//! the next byte. The IPv6 family differs by system
//! (<https://www.tcpdump.org/linktypes/LINKTYPE_NULL.html>).

use super::{At, Result, split_header};

/// Bytes of the header.
pub const HEADER_LEN: usize = 4;

/// Address family values seen in these headers.
pub mod family {
    /// AF_INET everywhere.
    pub const INET: u32 = 2;
    /// AF_INET6 on NetBSD, OpenBSD, and Npcap's loopback adapter.
    pub const INET6_BSD: u32 = 24;
    /// AF_INET6 on FreeBSD and DragonFly.
    pub const INET6_FREEBSD: u32 = 28;
    /// AF_INET6 on macOS.
    pub const INET6_DARWIN: u32 = 30;
}

mod field {
    use super::At;
    pub const FAMILY: At<0> = At;
}

/// What the header says follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
    /// Neither a known family nor an IP version nibble: the smaller of the
    /// two byte-order readings, which is the family value for any family
    /// below 65536.
    Other(u32),
}

/// A view of a loopback frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    header: &'a [u8; HEADER_LEN],
    payload: &'a [u8],
}

impl<'a> Frame<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Frame<'a>> {
        let (header, payload) = split_header("loopback header", data)?;
        Ok(Frame { header, payload })
    }

    /// The family field read big-endian.
    pub fn family_be(&self) -> u32 {
        u32::from_be_bytes(super::bytes(self.header, field::FAMILY))
    }

    /// The family field read little-endian.
    pub fn family_le(&self) -> u32 {
        u32::from_le_bytes(super::bytes(self.header, field::FAMILY))
    }

    pub fn family(&self) -> Family {
        let (be, le) = (self.family_be(), self.family_le());
        if be == family::INET || le == family::INET {
            return Family::Ipv4;
        }
        if is_inet6(be) || is_inet6(le) {
            return Family::Ipv6;
        }
        match self.payload.first().map(|b| b >> 4) {
            Some(4) => Family::Ipv4,
            Some(6) => Family::Ipv6,
            _ => Family::Other(be.min(le)),
        }
    }

    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

fn is_inet6(family: u32) -> bool {
    matches!(
        family,
        family::INET6_BSD | family::INET6_FREEBSD | family::INET6_DARWIN
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Error;

    fn family(bytes: &[u8]) -> Family {
        Frame::parse(bytes).unwrap().family()
    }

    #[test]
    fn ipv4_in_either_byte_order() {
        assert_eq!(family(&[2, 0, 0, 0, 0x45]), Family::Ipv4);
        assert_eq!(family(&[0, 0, 0, 2, 0x45]), Family::Ipv4);
        let f = Frame::parse(&[2, 0, 0, 0, 0x45, 0x00]).unwrap();
        assert_eq!(f.family_le(), 2);
        assert_eq!(f.family_be(), 0x0200_0000);
        assert_eq!(f.payload(), &[0x45, 0x00]);
    }

    #[test]
    fn ipv6_families() {
        for v in [24u32, 28, 30] {
            assert_eq!(family(&v.to_le_bytes()), Family::Ipv6, "{v} LE");
            assert_eq!(family(&v.to_be_bytes()), Family::Ipv6, "{v} BE");
        }
    }

    #[test]
    fn unknown_family_falls_back_to_ip_version() {
        // Windows AF_INET6 (23), Linux AF_INET6 (10).
        assert_eq!(family(&[23, 0, 0, 0, 0x60]), Family::Ipv6);
        assert_eq!(family(&[0, 0, 0, 10, 0x60]), Family::Ipv6);
        assert_eq!(family(&[7, 0, 0, 0, 0x45]), Family::Ipv4);
        assert_eq!(family(&[7, 0, 0, 0, 0x12]), Family::Other(7));
        assert_eq!(family(&[0, 0, 0, 7]), Family::Other(7));
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Frame::parse(&[2, 0, 0]).unwrap_err(),
            Error::Truncated {
                layer: "loopback header",
                need: 4,
                got: 3
            }
        );
    }
}
