//! Linux cooked capture headers, what `tcpdump -i any` writes:
//! LINKTYPE_LINUX_SLL (v1, 16 bytes, protocol last) and LINKTYPE_LINUX_SLL2
//! (v2, 20 bytes, protocol first, with the interface index).
//! <https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html>,
//! <https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html>.
//!
//! The protocol field holds an EtherType for the link types the lab uses
//! (Ethernet, loopback); for some others it holds a Linux-specific value,
//! which is returned as is.
//!
//! etherparse 0.19 has no SLL2, and its SLL v1 slice refuses every ARPHRD
//! type but the five whose protocol field it interprets (Ethernet,
//! netlink, GRE, FRAD, radiotap): a capture of `lo` (ARPHRD_LOOPBACK), a
//! tunnel or a PPP link would not decode.

use super::{At, Result, be_u16, be_u32, byte, split_header};

/// Bytes of the v1 header.
pub const HEADER_LEN: usize = 16;
/// Bytes of the v2 header.
pub const HEADER_LEN_V2: usize = 20;

mod field {
    use super::At;
    pub const PACKET_TYPE: At<0> = At;
    pub const ARPHRD_TYPE: At<2> = At;
    pub const PROTOCOL: At<14> = At;
}

mod field_v2 {
    use super::At;
    pub const PROTOCOL: At<0> = At;
    pub const INTERFACE_INDEX: At<4> = At;
    pub const ARPHRD_TYPE: At<8> = At;
    pub const PACKET_TYPE: At<10> = At;
}

/// A view of a Linux cooked capture v1 frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    header: &'a [u8; HEADER_LEN],
    payload: &'a [u8],
}

impl<'a> Frame<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Frame<'a>> {
        let (header, payload) = split_header("Linux cooked header", data)?;
        Ok(Frame { header, payload })
    }

    /// 0 to us, 1 broadcast, 2 multicast, 3 to someone else, 4 sent by us.
    pub fn packet_type(&self) -> u16 {
        be_u16(self.header, field::PACKET_TYPE)
    }

    /// The device's ARPHRD_ type (1 Ethernet, 772 loopback).
    pub fn arphrd_type(&self) -> u16 {
        be_u16(self.header, field::ARPHRD_TYPE)
    }

    pub fn protocol(&self) -> u16 {
        be_u16(self.header, field::PROTOCOL)
    }

    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

/// A view of a Linux cooked capture v2 frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameV2<'a> {
    header: &'a [u8; HEADER_LEN_V2],
    payload: &'a [u8],
}

impl<'a> FrameV2<'a> {
    pub fn parse(data: &'a [u8]) -> Result<FrameV2<'a>> {
        let (header, payload) = split_header("Linux cooked v2 header", data)?;
        Ok(FrameV2 { header, payload })
    }

    pub fn protocol(&self) -> u16 {
        be_u16(self.header, field_v2::PROTOCOL)
    }

    pub fn interface_index(&self) -> u32 {
        be_u32(self.header, field_v2::INTERFACE_INDEX)
    }

    /// The device's ARPHRD_ type (1 Ethernet, 772 loopback).
    pub fn arphrd_type(&self) -> u16 {
        be_u16(self.header, field_v2::ARPHRD_TYPE)
    }

    /// As in v1, one byte here.
    pub fn packet_type(&self) -> u8 {
        byte(self.header, field_v2::PACKET_TYPE)
    }

    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Error;

    /// An outgoing frame on `lo` (ARPHRD_LOOPBACK, zero address), IPv4.
    const V1: [u8; 18] = [
        0x00, 0x04, // sent by us
        0x03, 0x04, // ARPHRD 772
        0x00, 0x06, // address length
        0, 0, 0, 0, 0, 0, 0, 0, // address, padded to 8
        0x08, 0x00, // IPv4
        0x45, 0x00,
    ];

    /// The same on ifindex 1, v2.
    const V2: [u8; 22] = [
        0x86, 0xdd, // IPv6
        0x00, 0x00, // reserved
        0x00, 0x00, 0x00, 0x01, // interface index
        0x03, 0x04, // ARPHRD 772
        0x04, // sent by us
        0x06, // address length
        0, 0, 0, 0, 0, 0, 0, 0, // address
        0x60, 0x00,
    ];

    #[test]
    fn v1_fields() {
        let f = Frame::parse(&V1).unwrap();
        assert_eq!(f.packet_type(), 4);
        assert_eq!(f.arphrd_type(), 772);
        assert_eq!(f.protocol(), 0x0800);
        assert_eq!(f.payload(), &[0x45, 0x00]);
    }

    #[test]
    fn v2_fields() {
        let f = FrameV2::parse(&V2).unwrap();
        assert_eq!(f.protocol(), 0x86dd);
        assert_eq!(f.interface_index(), 1);
        assert_eq!(f.arphrd_type(), 772);
        assert_eq!(f.packet_type(), 4);
        assert_eq!(f.payload(), &[0x60, 0x00]);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Frame::parse(&V1[..15]).unwrap_err(),
            Error::Truncated {
                layer: "Linux cooked header",
                need: 16,
                got: 15
            }
        );
        assert_eq!(
            FrameV2::parse(&V2[..19]).unwrap_err(),
            Error::Truncated {
                layer: "Linux cooked v2 header",
                need: 20,
                got: 19
            }
        );
    }
}
