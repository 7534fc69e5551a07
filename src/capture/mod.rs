//! The built-in capture: libpcap into pcapng, with the capture's own drop
//! counts in an Interface Statistics Block.
//!
//! - [`writer`]: the pcapng writer (no libpcap needed).
//! - [`filter`]: the default filter of a run and the classic-BPF splice that
//!   keeps control packets whole and cuts data to the snap length.
//! - `live` (cargo feature `capture`): the libpcap capture loop.

pub mod filter;
#[cfg(feature = "capture")]
pub mod live;
pub mod writer;

/// Why this build cannot capture, or `None` when it can.
pub fn unavailable() -> Option<&'static str> {
    if cfg!(feature = "capture") {
        None
    } else {
        Some("this udplab was built without the `capture` feature (cargo build --features capture)")
    }
}
