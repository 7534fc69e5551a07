//! The IPv6 fragment header (RFC 8200 4.5): the next header, a reserved
//! byte, a 16-bit word holding the fragment offset (its top 13 bits, in
//! 8-byte units), two reserved bits and the M flag (its lowest bit), then
//! the identification.
//!
//! etherparse 0.19 reads that word with the bits in the wrong places: the
//! low bits of the offset from the low bits of the word, M from its bit 7
//! (<https://github.com/JulianSchmid/etherparse/issues/150>, fixed in
//! 0.20.2). A first fragment (offset 0, M set) reads there as a fragment at
//! offset 8 with none to follow. So `analyze::decode` lets etherparse walk
//! the extension headers and reads a fragment header with this view.

use super::{At, Result, be_u16, be_u32, byte, split_header};

/// Bytes of the header.
pub const HEADER_LEN: usize = 8;

mod field {
    use super::At;
    pub const NEXT_HEADER: At<0> = At;
    pub const OFFSET_M: At<2> = At;
    pub const IDENT: At<4> = At;
}

/// The offset's bits in the offset-and-M word, already in bytes.
const OFFSET_MASK: u16 = 0xfff8;
const MORE_FRAGMENTS: u16 = 0x0001;

/// A view of an IPv6 fragment header.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    header: &'a [u8; HEADER_LEN],
}

impl<'a> Header<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Header<'a>> {
        let (header, _) = split_header("IPv6 fragment header", data)?;
        Ok(Header { header })
    }

    /// The protocol of the fragmentable part (of the first fragment's
    /// payload, for a later fragment the middle of it).
    pub fn next_header(&self) -> u8 {
        byte(self.header, field::NEXT_HEADER)
    }

    /// Where this fragment's data starts in the datagram, in bytes.
    pub fn offset(&self) -> usize {
        usize::from(be_u16(self.header, field::OFFSET_M) & OFFSET_MASK)
    }

    pub fn more_fragments(&self) -> bool {
        be_u16(self.header, field::OFFSET_M) & MORE_FRAGMENTS != 0
    }

    pub fn identification(&self) -> u32 {
        be_u32(self.header, field::IDENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Error;

    #[test]
    fn first_fragment() {
        let h = Header::parse(&[17, 0, 0x00, 0x01, 0, 0, 0, 7, 0x13]).unwrap();
        assert_eq!(h.next_header(), 17);
        assert_eq!(h.offset(), 0);
        assert!(h.more_fragments());
        assert_eq!(h.identification(), 7);
    }

    #[test]
    fn later_fragments() {
        // Offset 181 * 8, the last one.
        let h = Header::parse(&[17, 0, 0x05, 0xa8, 0, 0, 0, 7]).unwrap();
        assert_eq!((h.offset(), h.more_fragments()), (1448, false));
        // Offset 4 * 8, more to come: the offset's low bits in byte 3.
        let h = Header::parse(&[17, 0, 0x00, 0x21, 0, 0, 0, 7]).unwrap();
        assert_eq!((h.offset(), h.more_fragments()), (32, true));
        // The reserved bits are neither.
        let h = Header::parse(&[17, 0, 0x00, 0x06, 0, 0, 0, 7]).unwrap();
        assert_eq!((h.offset(), h.more_fragments()), (0, false));
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Header::parse(&[17, 0, 0x00, 0x01, 0, 0, 0]).unwrap_err(),
            Error::Truncated {
                layer: "IPv6 fragment header",
                need: 8,
                got: 7
            }
        );
    }
}
