//! Views of captured bytes that etherparse 0.19 has no slice for, one
//! protocol per file; `analyze::decode` reads everything else through
//! etherparse.
//!
//! - [`loopback`]: the 4-byte address family of LINKTYPE_NULL and
//!   LINKTYPE_LOOP, in either byte order. etherparse knows no BSD loopback
//!   header.
//! - [`sll`]: Linux cooked capture, LINKTYPE_LINUX_SLL and
//!   LINKTYPE_LINUX_SLL2. etherparse has no SLL2; its SLL v1 slice reads
//!   the protocol field only for the ARPHRD types it lists (Ethernet,
//!   netlink, GRE, FRAD, radiotap) and refuses the others, among them
//!   ARPHRD_LOOPBACK, which is what `tcpdump -i any` writes for `lo`.
//! - [`ipv6_fragment`]: the IPv6 fragment header, whose offset and M flag
//!   etherparse 0.19 reads from the wrong bits.
//!
//! Each view checks the captured length once, when it is made, and its
//! accessors read fixed offsets from a fixed-size array (the `field` module
//! of each file), so no byte of a packet can make them panic. Values a view
//! does not know (an address family, a protocol) are returned as values;
//! errors are only for bytes that are missing.

pub mod ipv6_fragment;
pub mod loopback;
pub mod sll;

/// What a captured frame was too short to be.
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
