//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) messages. Both start with type,
//! code, checksum and four type-specific bytes; error messages then quote
//! the start of the packet that caused them.

use super::{At, Result, be_u16, byte, bytes, split_header};

/// Bytes of the header, the four type-specific bytes included.
pub const HEADER_LEN: usize = 8;

mod field {
    use super::At;
    pub const TYPE: At<0> = At;
    pub const CODE: At<1> = At;
    pub const CHECKSUM: At<2> = At;
    pub const REST: At<4> = At;
}

/// ICMPv4 types and codes.
pub mod v4 {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    /// Code of [`DEST_UNREACHABLE`].
    pub const PORT_UNREACHABLE: u8 = 3;

    /// Whether the type is an error that quotes the offending packet
    /// (destination unreachable, source quench, redirect, time exceeded,
    /// parameter problem).
    pub fn is_error(icmp_type: u8) -> bool {
        matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
    }
}

/// ICMPv6 types and codes.
pub mod v6 {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAMETER_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    /// Code of [`DEST_UNREACHABLE`].
    pub const PORT_UNREACHABLE: u8 = 4;

    /// Whether the type is an error, which quotes the offending packet
    /// (RFC 4443 2.1: types below 128).
    pub fn is_error(icmp_type: u8) -> bool {
        icmp_type < 128
    }
}

/// A view of an ICMP message whose header was captured.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    header: &'a [u8; HEADER_LEN],
    body: &'a [u8],
}

impl<'a> Message<'a> {
    pub fn parse_v4(data: &'a [u8]) -> Result<Message<'a>> {
        let (header, body) = split_header("ICMPv4 header", data)?;
        Ok(Message { header, body })
    }

    pub fn parse_v6(data: &'a [u8]) -> Result<Message<'a>> {
        let (header, body) = split_header("ICMPv6 header", data)?;
        Ok(Message { header, body })
    }

    pub fn icmp_type(&self) -> u8 {
        byte(self.header, field::TYPE)
    }

    pub fn code(&self) -> u8 {
        byte(self.header, field::CODE)
    }

    pub fn checksum(&self) -> u16 {
        be_u16(self.header, field::CHECKSUM)
    }

    /// The four type-specific bytes (identifier and sequence of an echo,
    /// next-hop MTU, pointer...).
    pub fn rest_of_header(&self) -> [u8; 4] {
        bytes(self.header, field::REST)
    }

    /// The captured bytes after the header: for an error, the quoted packet.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Error;

    #[test]
    fn fields() {
        let bytes = [3, 3, 0xab, 0xcd, 0, 0, 0x05, 0xdc, 0x45, 0x00];
        let m = Message::parse_v4(&bytes).unwrap();
        assert_eq!(m.icmp_type(), v4::DEST_UNREACHABLE);
        assert_eq!(m.code(), v4::PORT_UNREACHABLE);
        assert_eq!(m.checksum(), 0xabcd);
        assert_eq!(m.rest_of_header(), [0, 0, 0x05, 0xdc]);
        assert_eq!(m.body(), &[0x45, 0x00]);
    }

    #[test]
    fn error_types() {
        assert!(v4::is_error(v4::DEST_UNREACHABLE));
        assert!(v4::is_error(v4::TIME_EXCEEDED));
        assert!(!v4::is_error(v4::ECHO_REQUEST));
        assert!(!v4::is_error(v4::ECHO_REPLY));
        assert!(v6::is_error(v6::DEST_UNREACHABLE));
        assert!(v6::is_error(v6::PACKET_TOO_BIG));
        assert!(!v6::is_error(v6::ECHO_REQUEST));
        assert!(!v6::is_error(135)); // neighbour solicitation
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Message::parse_v4(&[3, 3, 0, 0, 0, 0, 0]).unwrap_err(),
            Error::Truncated {
                layer: "ICMPv4 header",
                need: 8,
                got: 7
            }
        );
        assert_eq!(
            Message::parse_v6(&[1, 4]).unwrap_err(),
            Error::Truncated {
                layer: "ICMPv6 header",
                need: 8,
                got: 2
            }
        );
    }
}
