//! Ethernet II frames (LINKTYPE_ETHERNET) and their 802.1Q / 802.1ad VLAN
//! tags. Linux `lo` captures are Ethernet too, with zero MAC addresses.

use super::{At, Result, be_u16, bytes, split_header};

/// Bytes of the Ethernet II header: two MAC addresses and the EtherType.
pub const HEADER_LEN: usize = 14;
/// Bytes of one VLAN tag: the tag control information and the next EtherType.
pub const VLAN_TAG_LEN: usize = 4;

/// EtherType values this crate looks at.
pub mod ether_type {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    /// 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
    /// 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// The pre-standard QinQ outer tag some switches still send.
    pub const QINQ_OLD: u16 = 0x9100;
    /// Values up to this one are IEEE 802.3 lengths, not EtherTypes
    /// (IEEE 802.3 clause 3.2.6).
    pub const MAX_802_3_LEN: u16 = 1500;
}

mod field {
    use super::At;
    pub const DST: At<0> = At;
    pub const SRC: At<6> = At;
    pub const ETHER_TYPE: At<12> = At;
}

mod vlan_field {
    use super::At;
    pub const TCI: At<0> = At;
    pub const ETHER_TYPE: At<2> = At;
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    header: &'a [u8; HEADER_LEN],
    payload: &'a [u8],
}

impl<'a> Frame<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Frame<'a>> {
        let (header, payload) = split_header("Ethernet header", data)?;
        Ok(Frame { header, payload })
    }

    pub fn dst(&self) -> [u8; 6] {
        bytes(self.header, field::DST)
    }

    pub fn src(&self) -> [u8; 6] {
        bytes(self.header, field::SRC)
    }

    /// The EtherType field: what follows, or a VLAN tag, or (up to
    /// [`ether_type::MAX_802_3_LEN`]) an 802.3 length.
    pub fn ether_type(&self) -> u16 {
        be_u16(self.header, field::ETHER_TYPE)
    }

    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The EtherType after the VLAN tags, if any, and what follows them.
    pub fn untagged(&self) -> Result<(u16, &'a [u8])> {
        let mut ether_type = self.ether_type();
        let mut payload = self.payload;
        // Each tag consumes four bytes, so the loop ends.
        while is_vlan(ether_type) {
            let tag = VlanTag::parse(payload)?;
            ether_type = tag.ether_type();
            payload = tag.payload;
        }
        Ok((ether_type, payload))
    }
}

/// Whether an EtherType announces a VLAN tag.
pub fn is_vlan(ether_type: u16) -> bool {
    matches!(
        ether_type,
        ether_type::VLAN | ether_type::QINQ | ether_type::QINQ_OLD
    )
}

/// A view of one VLAN tag, after the EtherType that announced it.
#[derive(Debug, Clone, Copy)]
pub struct VlanTag<'a> {
    header: &'a [u8; VLAN_TAG_LEN],
    payload: &'a [u8],
}

impl<'a> VlanTag<'a> {
    pub fn parse(data: &'a [u8]) -> Result<VlanTag<'a>> {
        let (header, payload) = split_header("VLAN tag", data)?;
        Ok(VlanTag { header, payload })
    }

    /// The 12-bit VLAN identifier.
    pub fn vlan_id(&self) -> u16 {
        be_u16(self.header, vlan_field::TCI) & 0x0fff
    }

    /// The 3-bit priority code point.
    pub fn priority(&self) -> u8 {
        (be_u16(self.header, vlan_field::TCI) >> 13) as u8
    }

    pub fn ether_type(&self) -> u16 {
        be_u16(self.header, vlan_field::ETHER_TYPE)
    }

    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Error;

    /// An ARP request header start, broadcast, from 02:00:00:00:00:01.
    const ARP: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x06, // ARP
        0x00, 0x01, // hardware type
    ];

    #[test]
    fn fields() {
        let f = Frame::parse(&ARP).unwrap();
        assert_eq!(f.dst(), [0xff; 6]);
        assert_eq!(f.src(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.ether_type(), ether_type::ARP);
        assert_eq!(f.payload(), &[0x00, 0x01]);
        assert_eq!(f.untagged().unwrap(), (ether_type::ARP, &[0x00, 0x01][..]));
    }

    #[test]
    fn truncated_header() {
        assert_eq!(
            Frame::parse(&ARP[..13]).unwrap_err(),
            Error::Truncated {
                layer: "Ethernet header",
                need: 14,
                got: 13
            }
        );
        assert!(Frame::parse(&[]).is_err());
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
        let f = Frame::parse(&frame).unwrap();
        assert_eq!(f.ether_type(), ether_type::QINQ);
        let outer = VlanTag::parse(f.payload()).unwrap();
        assert_eq!(outer.vlan_id(), 100);
        assert_eq!(outer.priority(), 5);
        assert_eq!(outer.ether_type(), ether_type::VLAN);
        assert_eq!(VlanTag::parse(outer.payload()).unwrap().vlan_id(), 10);
        assert_eq!(f.untagged().unwrap(), (ether_type::IPV4, &[0x45, 0x00][..]));
    }

    #[test]
    fn truncated_tag() {
        let frame = [
            0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x81, 0x00, 0x00, 0x0a, 0x08,
        ];
        assert_eq!(
            Frame::parse(&frame).unwrap().untagged().unwrap_err(),
            Error::Truncated {
                layer: "VLAN tag",
                need: 4,
                got: 3
            }
        );
    }
}
