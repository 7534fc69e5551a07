//! TCP segments (RFC 9293) and the options the analyzer reads: MSS, window
//! scale (RFC 7323), SACK-permitted (RFC 2018).

use super::{At, Error, Result, be_u16, be_u32, byte, split_header};

/// Bytes of the header without options.
pub const MIN_HEADER_LEN: usize = 20;

const LAYER: &str = "TCP header";

mod field {
    use super::At;
    pub const SRC_PORT: At<0> = At;
    pub const DST_PORT: At<2> = At;
    pub const SEQ: At<4> = At;
    pub const ACK: At<8> = At;
    pub const DATA_OFFSET: At<12> = At;
    pub const FLAGS: At<13> = At;
    pub const WINDOW: At<14> = At;
    pub const CHECKSUM: At<16> = At;
    pub const URGENT: At<18> = At;
}

/// Bits of the flags byte.
pub mod flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// Option kinds.
pub mod option_kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// A view of a TCP segment whose header, options included, was captured.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    header: &'a [u8; MIN_HEADER_LEN],
    options: &'a [u8],
    payload: &'a [u8],
    /// The data offset, in bytes.
    header_len: usize,
}

impl<'a> Segment<'a> {
    /// Checks the data offset and that the header and its options were
    /// captured.
    pub fn parse(data: &'a [u8]) -> Result<Segment<'a>> {
        let (header, rest) = split_header::<MIN_HEADER_LEN>(LAYER, data)?;
        let header_len = usize::from(byte(header, field::DATA_OFFSET) >> 4) * 4;
        if header_len < MIN_HEADER_LEN {
            return Err(Error::Malformed {
                layer: LAYER,
                what: "data offset below 20 bytes",
            });
        }
        let Some((options, payload)) = rest.split_at_checked(header_len - MIN_HEADER_LEN) else {
            return Err(Error::Truncated {
                layer: LAYER,
                need: header_len,
                got: data.len(),
            });
        };
        Ok(Segment {
            header,
            options,
            payload,
            header_len,
        })
    }

    /// Like [`Segment::parse`], but accepts a header whose options were cut
    /// (a snap length of 64 bytes keeps the 20 fixed bytes of TCP after
    /// Ethernet and IPv4, not the 12 bytes of timestamps): the options are
    /// what was captured of them, and the payload is empty.
    pub fn parse_cut(data: &'a [u8]) -> Result<Segment<'a>> {
        match Segment::parse(data) {
            Err(Error::Truncated { .. }) if data.len() >= MIN_HEADER_LEN => {
                let (header, options) = split_header::<MIN_HEADER_LEN>(LAYER, data)?;
                Ok(Segment {
                    header,
                    options,
                    payload: &[],
                    header_len: usize::from(byte(header, field::DATA_OFFSET) >> 4) * 4,
                })
            }
            other => other,
        }
    }

    /// Bytes of the header, options included (the data offset).
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// True when the capture holds the whole header, options included.
    pub fn options_complete(&self) -> bool {
        MIN_HEADER_LEN + self.options.len() == self.header_len
    }

    pub fn src_port(&self) -> u16 {
        be_u16(self.header, field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        be_u16(self.header, field::DST_PORT)
    }

    pub fn seq(&self) -> u32 {
        be_u32(self.header, field::SEQ)
    }

    pub fn ack(&self) -> u32 {
        be_u32(self.header, field::ACK)
    }

    /// The flags byte; test it with the [`flag`] bits.
    pub fn flags(&self) -> u8 {
        byte(self.header, field::FLAGS)
    }

    /// The window field as sent, not scaled.
    pub fn window(&self) -> u16 {
        be_u16(self.header, field::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        be_u16(self.header, field::CHECKSUM)
    }

    pub fn urgent(&self) -> u16 {
        be_u16(self.header, field::URGENT)
    }

    pub fn options(&self) -> Options<'a> {
        Options { rest: self.options }
    }

    /// The captured payload.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    Mss(u16),
    /// The shift count as sent; receivers use at most 14 (RFC 7323 2.3).
    WindowScale(u8),
    SackPermitted,
    /// The SACK blocks, undecoded.
    Sack(&'a [u8]),
    Timestamps {
        value: u32,
        echo: u32,
    },
    /// Any other option, or a known one with the wrong length; `data` is
    /// what follows the kind and length bytes.
    Other {
        kind: u8,
        data: &'a [u8],
    },
}

/// The options of a segment, in order.
///
/// Like Linux's `tcp_parse_options`, the walk ends at the end-of-list
/// option, or silently at an option whose length is below 2 or runs past
/// the header: the segment itself stays good.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Options<'a> {
    type Item = TcpOption<'a>;

    fn next(&mut self) -> Option<TcpOption<'a>> {
        loop {
            let (&kind, after_kind) = self.rest.split_first()?;
            match kind {
                option_kind::END => {
                    self.rest = &[];
                    return None;
                }
                option_kind::NOP => {
                    self.rest = after_kind;
                    continue;
                }
                _ => {}
            }
            let len = usize::from(*after_kind.first()?);
            let option = len
                .checked_sub(2)
                .and_then(|n| after_kind.get(1..).and_then(|d| d.split_at_checked(n)));
            let Some((data, rest)) = option else {
                self.rest = &[];
                return None;
            };
            self.rest = rest;
            return Some(parse_option(kind, data));
        }
    }
}

fn parse_option(kind: u8, data: &[u8]) -> TcpOption<'_> {
    match (kind, data) {
        (option_kind::MSS, &[a, b]) => TcpOption::Mss(u16::from_be_bytes([a, b])),
        (option_kind::WINDOW_SCALE, &[shift]) => TcpOption::WindowScale(shift),
        (option_kind::SACK_PERMITTED, []) => TcpOption::SackPermitted,
        (option_kind::SACK, blocks) if !blocks.is_empty() && blocks.len() % 8 == 0 => {
            TcpOption::Sack(blocks)
        }
        (option_kind::TIMESTAMPS, &[v0, v1, v2, v3, e0, e1, e2, e3]) => TcpOption::Timestamps {
            value: u32::from_be_bytes([v0, v1, v2, v3]),
            echo: u32::from_be_bytes([e0, e1, e2, e3]),
        },
        (kind, data) => TcpOption::Other { kind, data },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN from 127.0.0.1:40000 to :8080 as Linux sends it on `lo`:
    /// MSS 65495, SACK-permitted, timestamps, NOP, window scale 7.
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

    #[test]
    fn fields() {
        let s = Segment::parse(&SYN).unwrap();
        assert_eq!(s.header_len(), 40);
        assert_eq!(s.src_port(), 40000);
        assert_eq!(s.dst_port(), 8080);
        assert_eq!(s.seq(), 0x1122_3344);
        assert_eq!(s.ack(), 0);
        assert_eq!(s.flags(), flag::SYN);
        assert_eq!(s.window(), 65495);
        assert_eq!(s.checksum(), 0xfe30);
        assert_eq!(s.urgent(), 0);
        assert_eq!(s.payload(), b"");
        let options: Vec<_> = s.options().collect();
        assert_eq!(
            options,
            [
                TcpOption::Mss(65495),
                TcpOption::SackPermitted,
                TcpOption::Timestamps { value: 1, echo: 0 },
                TcpOption::WindowScale(7),
            ]
        );
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Segment::parse(&SYN[..19]).unwrap_err(),
            Error::Truncated {
                layer: LAYER,
                need: 20,
                got: 19
            }
        );
        // Cut inside the options.
        assert_eq!(
            Segment::parse(&SYN[..30]).unwrap_err(),
            Error::Truncated {
                layer: LAYER,
                need: 40,
                got: 30
            }
        );
    }

    #[test]
    fn data_offset_below_minimum() {
        let mut bytes = SYN;
        bytes[12] = 0x40;
        assert_eq!(
            Segment::parse(&bytes).unwrap_err(),
            Error::Malformed {
                layer: LAYER,
                what: "data offset below 20 bytes"
            }
        );
    }

    fn options(bytes: &[u8]) -> Vec<TcpOption<'_>> {
        Options { rest: bytes }.collect()
    }

    #[test]
    fn option_walk_ends_like_linux() {
        // End of list: what follows is not read.
        assert_eq!(
            options(&[1, 4, 2, 0, 2, 4, 5, 0xb4]),
            [TcpOption::SackPermitted]
        );
        // A length below 2 or past the end stops the walk.
        assert_eq!(options(&[4, 2, 3, 1, 7]), [TcpOption::SackPermitted]);
        assert_eq!(options(&[3, 0, 4, 2]), []);
        assert_eq!(options(&[4, 2, 2, 4, 0xff]), [TcpOption::SackPermitted]);
        assert_eq!(options(&[2]), []);
        // A known kind with the wrong length is kept as Other.
        assert_eq!(
            options(&[2, 3, 0x05, 4, 2]),
            [
                TcpOption::Other {
                    kind: 2,
                    data: &[0x05]
                },
                TcpOption::SackPermitted
            ]
        );
        // SACK blocks.
        let sack = [5, 10, 0, 0, 0, 1, 0, 0, 0, 9];
        assert_eq!(options(&sack), [TcpOption::Sack(&sack[2..])]);
        // Unknown kinds are values.
        assert_eq!(
            options(&[30, 4, 0xaa, 0xbb]),
            [TcpOption::Other {
                kind: 30,
                data: &[0xaa, 0xbb]
            }]
        );
    }
}
