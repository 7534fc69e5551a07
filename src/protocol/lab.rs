//! The original lab's bytes, which our server and `--legacy` client must
//! speak exactly.
//!
//! Registration over TCP (all integers little-endian):
//!
//! | step | direction        | bytes | meaning                                   |
//! |------|------------------|-------|-------------------------------------------|
//! | 1    | server -> client | 2     | client number, 1, 2, 3 ... from start     |
//! | 2    | client -> server | 3     | UDP port the client receives on           |
//! | 3    | server -> client | 2     | number of concurrent clients of the round |
//!
//! A real port fits in two bytes, so the third byte of step 2 is always 0
//! from a lab client; udplab clients put their protocol version there
//! ([`PortMessage::version`]).
//!
//! Then, over UDP from port `control + client number`: one datagram with the
//! file name (UTF-8), one with the file size (8 bytes), then the file in
//! 1024-byte datagrams, the last one shorter. No sequence numbers, no end
//! marker: the lab client stops after one idle second.

use super::{Error, Result, exact};

/// Length of the client-number message.
pub const CLIENT_ID_LEN: usize = 2;
/// Length of the port message.
pub const PORT_MSG_LEN: usize = 3;
/// Length of the concurrency message.
pub const CONCURRENCY_LEN: usize = 2;
/// Length of the file-size datagram.
pub const SIZE_DATAGRAM_LEN: usize = 8;
/// File bytes per data datagram.
pub const CHUNK: usize = 1024;
/// Longest file name we accept in a name datagram (Linux NAME_MAX).
pub const MAX_NAME_LEN: usize = crate::text::NAME_MAX;

/// Step 1: the client's number.
pub fn emit_client_id(id: u16) -> [u8; CLIENT_ID_LEN] {
    id.to_le_bytes()
}

pub fn parse_client_id(bytes: &[u8]) -> Result<u16> {
    Ok(u16::from_le_bytes(exact("client number", bytes)?))
}

/// Step 2: the port the client receives on, and which protocol it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMessage {
    pub port: u16,
    /// 0 for the lab's protocol; udplab's protocol version otherwise.
    pub version: u8,
}

impl PortMessage {
    pub fn parse(bytes: &[u8]) -> Result<PortMessage> {
        let [lo, hi, version] = exact::<PORT_MSG_LEN>("port message", bytes)?;
        let port = u16::from_le_bytes([lo, hi]);
        if port == 0 {
            return Err(Error::Invalid {
                what: "port message",
                reason: "port 0".into(),
            });
        }
        Ok(PortMessage { port, version })
    }

    pub fn emit(&self) -> [u8; PORT_MSG_LEN] {
        let [lo, hi] = self.port.to_le_bytes();
        [lo, hi, self.version]
    }
}

/// Step 3: how many clients the round waits for.
pub fn emit_concurrency(n: u16) -> [u8; CONCURRENCY_LEN] {
    n.to_le_bytes()
}

pub fn parse_concurrency(bytes: &[u8]) -> Result<u16> {
    let n = u16::from_le_bytes(exact("concurrency", bytes)?);
    if n == 0 {
        return Err(Error::Invalid {
            what: "concurrency",
            reason: "0 clients".into(),
        });
    }
    Ok(n)
}

/// The file-size datagram.
pub fn emit_size(size: u64) -> [u8; SIZE_DATAGRAM_LEN] {
    size.to_le_bytes()
}

pub fn parse_size(bytes: &[u8]) -> Result<u64> {
    Ok(u64::from_le_bytes(exact("size datagram", bytes)?))
}

/// Turn the name a server sent into a name that is safe to create inside the
/// output directory: directories are stripped (`a/b/c.bin` -> `c.bin`, both
/// `/` and `\`), and what is left must be valid UTF-8, non-empty, not `.` or
/// `..`, free of NUL and control characters, and at most 255 bytes.
pub fn safe_file_name(bytes: &[u8]) -> Result<String> {
    let invalid = |reason: &str| Error::Invalid {
        what: "file name",
        reason: reason.into(),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("not UTF-8"))?;
    if text.contains('\0') {
        return Err(invalid("contains NUL"));
    }
    let base = text.rsplit(['/', '\\']).next().unwrap_or_default();
    match base {
        "" => Err(invalid("empty")),
        "." | ".." => Err(invalid("is . or ..")),
        b if b.chars().any(char::is_control) => Err(invalid("contains control characters")),
        b if b.len() > MAX_NAME_LEN => Err(Error::Oversized {
            what: "file name",
            max: MAX_NAME_LEN,
            got: b.len(),
        }),
        b => Ok(b.to_string()),
    }
}

/// Number of data datagrams a file of `size` bytes takes in `chunk`-byte
/// pieces (an empty file takes none).
pub fn datagram_count(size: u64, chunk: u64) -> u64 {
    size.div_ceil(chunk.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_bytes_as_in_the_lab_capture() {
        // From a tcpdump of the lab's Python scripts: client 1 got 01 00,
        // answered d6 62 00 (UDP port 25302), and was told 02 00 (2 clients).
        assert_eq!(emit_client_id(1), [0x01, 0x00]);
        let msg = PortMessage::parse(&[0xd6, 0x62, 0x00]).unwrap();
        assert_eq!(
            msg,
            PortMessage {
                port: 25302,
                version: 0
            }
        );
        assert_eq!(msg.emit(), [0xd6, 0x62, 0x00]);
        assert_eq!(parse_concurrency(&[0x02, 0x00]), Ok(2));
        assert_eq!(emit_concurrency(10), [0x0a, 0x00]);
        assert_eq!(parse_client_id(&[0x34, 0x12]), Ok(0x1234));
    }

    #[test]
    fn version_tag_in_third_byte() {
        let msg = PortMessage::parse(&[0x53, 0x89, 0x01]).unwrap();
        assert_eq!(msg.port, 35155);
        assert_eq!(msg.version, 1);
        assert_eq!(
            PortMessage {
                port: 35155,
                version: 1
            }
            .emit(),
            [0x53, 0x89, 0x01]
        );
    }

    #[test]
    fn short_long_and_zero_messages() {
        assert_eq!(
            PortMessage::parse(&[0xd6]),
            Err(Error::Truncated {
                what: "port message",
                need: 3,
                got: 1
            })
        );
        assert!(matches!(
            PortMessage::parse(&[1, 2, 3, 4]),
            Err(Error::Oversized { .. })
        ));
        assert!(matches!(
            PortMessage::parse(&[0, 0, 0]),
            Err(Error::Invalid { .. })
        ));
        assert!(parse_client_id(&[]).is_err());
        assert!(parse_concurrency(&[0, 0]).is_err());
    }

    #[test]
    fn size_datagram() {
        // 10 MiB as the lab sent it: 00 00 a0 00 00 00 00 00.
        assert_eq!(
            parse_size(&[0x00, 0x00, 0xa0, 0x00, 0, 0, 0, 0]),
            Ok(10_485_760)
        );
        assert_eq!(emit_size(10_485_760), [0x00, 0x00, 0xa0, 0x00, 0, 0, 0, 0]);
        assert!(parse_size(b"100MB.bin").is_err());
        assert!(parse_size(&[1, 2, 3]).is_err());
    }

    #[test]
    fn file_names_are_confined() {
        assert_eq!(safe_file_name(b"100MB.bin").unwrap(), "100MB.bin");
        assert_eq!(safe_file_name(b"../../etc/passwd").unwrap(), "passwd");
        assert_eq!(safe_file_name(b"C:\\x\\y.bin").unwrap(), "y.bin");
        assert_eq!(safe_file_name(b"/abs/path.txt").unwrap(), "path.txt");
        for bad in [
            &b""[..],
            b"..",
            b"a/..",
            b".",
            b"dir/",
            b"a\0b",
            b"\xff\xfe",
            b"line\nbreak",
        ] {
            assert!(safe_file_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(safe_file_name(&[b'a'; 256]).is_err());
        assert!(safe_file_name(&[b'a'; 255]).is_ok());
    }

    #[test]
    fn datagram_counts() {
        assert_eq!(datagram_count(0, 1024), 0);
        assert_eq!(datagram_count(1, 1024), 1);
        assert_eq!(datagram_count(1024, 1024), 1);
        assert_eq!(datagram_count(10_485_760, 1024), 10_240);
        assert_eq!(datagram_count(1025, 1024), 2);
    }
}
