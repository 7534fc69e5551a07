//! Views of captured frames, one protocol per file: the link layers a capture
//! of the lab can have ([`link`] dispatches to [`ethernet`], [`loopback`] and
//! [`sll`]), then [`ipv4`], [`ipv6`], [`tcp`], [`udp`] and [`icmp`].
//!
//! Each view checks the captured length once, when it is made, and its
//! accessors read fixed offsets from a fixed-size array (the `field` module
//! of each file), so no byte of a packet can make them panic. Values a view
//! does not know (an EtherType, an IP protocol, a TCP option) are returned
//! as values; errors are only for bytes that are missing or contradict
//! themselves.
//!
//! A view's payload is what was captured; the IP views cut it at their
//! length field, so Ethernet padding is not payload. The lengths headers
//! give (IP total length, UDP length) are reported next to it, and
//! `analyze::decode` decides what to believe, because a snap length may
//! have cut the frame.
//!
//! These are written here rather than taken from etherparse because its lax
//! slicer stops at any fragmented IP packet, so the first fragment of a
//! large datagram would lose its UDP header, and because it knows neither
//! DLT_NULL/LOOP nor Linux cooked capture v2.

pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6_fragment;
pub mod link;
pub mod loopback;
pub mod sll;
pub mod tcp;
pub mod udp;

/// What a captured frame was too short or too strange to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The capture holds fewer bytes than the header needs: the frame was
    /// cut (by the snap length, or in transit) inside `layer`.
    #[error("truncated {layer}: need {need} bytes, got {got}")]
    Truncated {
        layer: &'static str,
        need: usize,
        got: usize,
    },
    /// A header field contradicts the protocol or another length field.
    #[error("malformed {layer}: {what}")]
    Malformed {
        layer: &'static str,
        what: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Splits the fixed-size header of `layer` off the front of `data`.
fn split_header<'a, const N: usize>(
    layer: &'static str,
    data: &'a [u8],
) -> Result<(&'a [u8; N], &'a [u8])> {
    data.split_first_chunk::<N>().ok_or(Error::Truncated {
        layer,
        need: N,
        got: data.len(),
    })
}

/// A field's byte offset as a type, so that the functions reading a field
/// check at compile time that it lies inside the fixed-size header: reading
/// a field cannot panic, whatever the packet holds.
#[derive(Debug, Clone, Copy)]
struct At<const OFFSET: usize>;

/// The byte at `AT` of a fixed-size header.
#[inline]
fn byte<const AT: usize, const N: usize>(h: &[u8; N], _: At<AT>) -> u8 {
    const { assert!(AT < N) };
    h[AT]
}

/// The big-endian `u16` at `AT` of a fixed-size header.
#[inline]
fn be_u16<const AT: usize, const N: usize>(h: &[u8; N], _: At<AT>) -> u16 {
    const { assert!(AT + 2 <= N) };
    u16::from_be_bytes([h[AT], h[AT + 1]])
}

/// The big-endian `u32` at `AT` of a fixed-size header.
#[inline]
fn be_u32<const AT: usize, const N: usize>(h: &[u8; N], _: At<AT>) -> u32 {
    const { assert!(AT + 4 <= N) };
    u32::from_be_bytes([h[AT], h[AT + 1], h[AT + 2], h[AT + 3]])
}

/// The `L` bytes at `AT` of a fixed-size header (addresses).
#[inline]
fn bytes<const L: usize, const AT: usize, const N: usize>(h: &[u8; N], _: At<AT>) -> [u8; L] {
    const { assert!(AT + L <= N) };
    let mut out = [0u8; L];
    out.copy_from_slice(&h[AT..AT + L]);
    out
}

/// The first `len` bytes of `data`, or all of it when it is shorter: the
/// captured part of something whose length a header gives.
#[inline]
fn captured(data: &[u8], len: usize) -> &[u8] {
    data.get(..len).unwrap_or(data)
}
