//! A pcapng interface's timestamps -> Unix nanoseconds: its unit
//! (`if_tsresol`, a power of 10 or of 2) and its offset (`if_tsoffset`).

use crate::pcapng::TSRESOL_POWER_OF_TWO;

/// Turns a pcapng interface's timestamp units into Unix nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    scale: Scale,
    /// `if_tsoffset`, in nanoseconds.
    offset_ns: i128,
}

#[derive(Debug, Clone, Copy)]
enum Scale {
    /// Units of 10^-n s with n <= 9.
    NsPerTick(u64),
    /// Units of 10^-n s with n > 9.
    TicksPerNs(u64),
    /// Units of 2^-n s: this many per second.
    PerSecond(u64),
}

impl Clock {
    /// `None` for a resolution finer than 10^-19 s or 2^-63 s.
    pub(super) fn new(tsresol: u8, tsoffset_s: i64) -> Option<Clock> {
        let exponent = u32::from(tsresol & !TSRESOL_POWER_OF_TWO);
        let scale = if tsresol & TSRESOL_POWER_OF_TWO == 0 {
            match exponent {
                0..=9 => Scale::NsPerTick(10u64.pow(9 - exponent)),
                10..=19 => Scale::TicksPerNs(10u64.pow(exponent - 9)),
                _ => return None,
            }
        } else {
            Scale::PerSecond(1u64.checked_shl(exponent).filter(|_| exponent <= 63)?)
        };
        Some(Clock {
            scale,
            offset_ns: i128::from(tsoffset_s) * 1_000_000_000,
        })
    }

    /// Unix nanoseconds of a timestamp of `ticks` units, saturating.
    pub(super) fn ns(&self, ticks: u64) -> i64 {
        let since_offset = match self.scale {
            Scale::NsPerTick(k) => i128::from(ticks) * i128::from(k),
            Scale::TicksPerNs(d) => i128::from(ticks / d),
            Scale::PerSecond(n) => i128::from(ticks) * 1_000_000_000 / i128::from(n),
        };
        let ns = since_offset + self.offset_ns;
        i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
    }
}
