//! UDP datagrams (RFC 768).

use super::{At, Result, be_u16, split_header};

/// Bytes of the header.
pub const HEADER_LEN: usize = 8;

mod field {
    use super::At;
    pub const SRC_PORT: At<0> = At;
    pub const DST_PORT: At<2> = At;
    pub const LENGTH: At<4> = At;
    pub const CHECKSUM: At<6> = At;
}

/// A view of a UDP datagram whose header was captured. The length field
/// is reported as sent: checking it against the IP length is the caller's
/// business, since only the caller knows whether the packet is a fragment.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    header: &'a [u8; HEADER_LEN],
    payload: &'a [u8],
}

impl<'a> Datagram<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Datagram<'a>> {
        let (header, payload) = split_header("UDP header", data)?;
        Ok(Datagram { header, payload })
    }

    pub fn src_port(&self) -> u16 {
        be_u16(self.header, field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        be_u16(self.header, field::DST_PORT)
    }

    /// The length field: header and payload, in bytes.
    pub fn length(&self) -> u16 {
        be_u16(self.header, field::LENGTH)
    }

    pub fn checksum(&self) -> u16 {
        be_u16(self.header, field::CHECKSUM)
    }

    /// Every captured byte after the header, up to the end of what the
    /// caller passed.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Error;

    const DATAGRAM: [u8; 12] = [
        0x30, 0x39, // 12345
        0x1f, 0x90, // 8080
        0x00, 0x0c, // length 12
        0xbe, 0xef, // checksum
        b'a', b'b', b'c', b'd',
    ];

    #[test]
    fn fields() {
        let d = Datagram::parse(&DATAGRAM).unwrap();
        assert_eq!(d.src_port(), 12345);
        assert_eq!(d.dst_port(), 8080);
        assert_eq!(d.length(), 12);
        assert_eq!(d.checksum(), 0xbeef);
        assert_eq!(d.payload(), b"abcd");
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Datagram::parse(&DATAGRAM[..7]).unwrap_err(),
            Error::Truncated {
                layer: "UDP header",
                need: 8,
                got: 7
            }
        );
        assert_eq!(Datagram::parse(&DATAGRAM[..8]).unwrap().payload(), b"");
    }
}
