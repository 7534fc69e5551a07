//! Wire formats of the transfer. Pure functions over bytes: no sockets here.
//!
//! Both protocols share the lab's registration over TCP (client number, UDP
//! port, concurrency); the third byte of the port message tells which one a
//! client speaks (see `docs/PROTOCOL.md`).

pub mod lab;
pub mod v1;

/// Bytes as lowercase hexadecimal, as logs and messages show a SHA-256 or a
/// file's first bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
