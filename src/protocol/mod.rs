//! Wire formats of the transfer. Pure functions over bytes: no sockets here.
//!
//! Both protocols share the lab's registration over TCP (client number, UDP
//! port, concurrency); the third byte of the port message tells which one a
//! client speaks (see `docs/PROTOCOL.md`).

pub mod lab;
pub mod v1;

use std::fmt;

/// The TCP port a server listens on and clients register at, unless told
/// otherwise; data flows from port + client number.
pub const DEFAULT_PORT: u16 = 5005;

/// The transfer protocol: one name for it across the logs, the flows, the
/// analysis and the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Protocol {
    /// Ours: sequence numbers, a report of what arrived, SHA-256.
    V1,
    /// The original lab's bytes: name, size, bare chunks, an idle timeout.
    Lab,
}

impl Protocol {
    /// `lab` or `v1`, as logs and reports write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Lab => "lab",
            Protocol::V1 => "v1",
        }
    }

    /// The one a log or a report names.
    pub fn parse(text: &str) -> Option<Protocol> {
        match text {
            "lab" => Some(Protocol::Lab),
            "v1" => Some(Protocol::V1),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How a v1 server sends. The lab's protocol has only the blast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Every chunk once (at `--rate`, or as fast as the kernel takes them).
    #[default]
    Blast,
    /// A first pass, then repair rounds of exactly the missing datagrams the
    /// client reports, until it confirms the file's SHA-256; the rate adapts
    /// to the client's feedback.
    Reliable,
}

impl Mode {
    /// `blast` or `reliable`, as logs and reports write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Blast => "blast",
            Mode::Reliable => "reliable",
        }
    }

    /// The one a log or a report names.
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "blast" => Some(Mode::Blast),
            "reliable" => Some(Mode::Reliable),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Bytes as lowercase hexadecimal, as logs and messages show a SHA-256 or a
/// file's first bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Text from a peer, its control characters escaped (`\u{1b}`, `\n`) and
/// the rest as it is: it cannot move the cursor of a terminal it is shown
/// on, nor break a log's lines.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// What a byte slice was too short or too strange to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Fewer bytes than the field or message needs.
    #[error("truncated {what}: need {need} bytes, got {got}")]
    Truncated {
        what: &'static str,
        need: usize,
        got: usize,
    },
    /// More bytes than the message may have.
    #[error("oversized {what}: at most {max} bytes, got {got}")]
    Oversized {
        what: &'static str,
        max: usize,
        got: usize,
    },
    /// A field holds a value the protocol does not allow.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// The message type byte is not one this version knows.
    #[error("unknown message type 0x{0:02x}")]
    UnknownMessage(u8),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Check that `bytes` is exactly `N` long and return it as an array.
pub(crate) fn exact<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N]> {
    match <[u8; N]>::try_from(bytes) {
        Ok(a) => Ok(a),
        Err(_) if bytes.len() < N => Err(Error::Truncated {
            what,
            need: N,
            got: bytes.len(),
        }),
        Err(_) => Err(Error::Oversized {
            what,
            max: N,
            got: bytes.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(
            printable("can't \"go\" \u{1b}[2J\r\n\u{7}é"),
            "can't \"go\" \\u{1b}[2J\\r\\n\\u{7}é"
        );
    }
}
