//! The typed account of one client's transfer: where each figure comes
//! from, where the bytes went, and the verdict rendered from it.
//!
//! The account is decided on values, never on text: [`Facts`] (each figure
//! with its [`Source`]) goes in, [`Verdict`] comes out, and the one-line
//! sentence is its `Display`. [`Verdict::places`] lists where the bytes
//! went as [`Place`]s, which is what the JSON carries. Where the inputs
//! cannot place the loss (the capture dropped or missed packets, or a
//! damaged file ends before the transfer did), the verdict says "cannot
//! tell" with the logs' own account, and no wire-based figure is given.

use std::fmt;

use serde::Serialize;

use crate::protocol::Mode;
use crate::transfer_log::Role;

/// Where a figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The server's log of this transfer.
    ServerLog,
    /// The client's log of this transfer.
    ClientLog,
    /// The v1 Announce message captured on the control connection.
    V1Announce,
    /// The v1 Done message captured on the control connection.
    V1Done,
    /// The v1 Report message captured on the control connection.
    V1Report,
    /// The data frames a capture point holds.
    Capture,
    /// The v1 retransmission flags of the captured data datagrams.
    RetransmitFlags,
    /// A capture file's own statistics (pcapng Interface Statistics Block).
    CaptureStatistics,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::ServerLog => "server log",
            Source::ClientLog => "client log",
            Source::V1Announce => "v1 announce",
            Source::V1Done => "v1 done message",
            Source::V1Report => "v1 report message",
            Source::Capture => "wire",
            Source::RetransmitFlags => "wire (retransmission flags)",
            Source::CaptureStatistics => "capture statistics",
        })
    }
}

/// A value and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figure<T> {
    pub value: T,
    pub source: Source,
}

impl<T: Copy> Figure<T> {
    pub fn new(value: T, source: Source) -> Figure<T> {
        Figure { value, source }
    }
}

/// The first of several figures that is known.
pub fn first<T: Copy>(
    candidates: impl IntoIterator<Item = (Option<T>, Source)>,
) -> Option<Figure<T>> {
    candidates
        .into_iter()
        .find_map(|(v, source)| Some(Figure::new(v?, source)))
}

/// What the verdict is drawn from.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Bytes the server sent (its log or Done), or else the file size.
    pub expected: Option<u64>,
    pub file_size: Option<u64>,
    /// Data bytes at the capture point nearest the receiver.
    pub wire: Option<u64>,
    /// Data frames there (every copy).
    pub wire_frames: Option<u64>,
    /// Data bytes and frames at the capture point nearest the sender (the
    /// same as `wire` with one capture point).
    pub first_wire: Option<u64>,
    pub first_wire_frames: Option<u64>,
    /// Capture points on the flow's path.
    pub points: usize,
    pub received: Option<u64>,
    pub kernel_drops: Option<u64>,
    /// Packets the capture point's statistics say its capturer dropped.
    pub capture_dropped: Option<u64>,
    /// Data datagrams the logs (or, for v1, the sequence numbers the client
    /// reported) prove reached the client's host but the capture lacks.
    pub capture_missed: Option<u64>,
    /// The capture file holding the flow is damaged and ends before the
    /// flow can be shown complete.
    pub cut_short: bool,
    pub icmp: u64,
    /// Data datagrams the server sent and the client kept, when told.
    pub sent_datagrams: Option<u64>,
    pub received_datagrams: Option<u64>,
    /// The reliable mode's account, when the transfer was in that mode.
    pub repair: Option<Repair>,
    /// A figure of a log or message that no transfer can have; the figure
    /// itself is left out of the others.
    pub inconsistent: Option<Inconsistency>,
}

/// A figure a log or a captured message claims that no transfer can have:
/// the source is not to be believed, and no loss is drawn from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Inconsistency {
    /// Where the figure comes from.
    pub source: Source,
    pub claim: Claim,
    /// The figure, and the most it can be.
    pub claimed: u64,
    pub limit: u64,
}

/// What an impossible figure claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Claim {
    /// More bytes received than the file holds.
    BytesOverFile,
    /// More bytes received than the server sent (a transfer sent once).
    BytesOverSent,
    /// More distinct datagrams received than the file takes.
    DatagramsOverFile,
    /// More datagrams received than the server sent.
    DatagramsOverSent,
    /// More datagrams missing than the file takes.
    MissingOverFile,
}

/// The figure an [`Inconsistency`] is about, which is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    ReceivedBytes,
    ReceivedDatagrams,
    MissingDatagrams,
}

impl Claim {
    pub fn figure(self) -> Claimed {
        match self {
            Claim::BytesOverFile | Claim::BytesOverSent => Claimed::ReceivedBytes,
            Claim::DatagramsOverFile | Claim::DatagramsOverSent => Claimed::ReceivedDatagrams,
            Claim::MissingOverFile => Claimed::MissingDatagrams,
        }
    }
}

impl Inconsistency {
    /// The first figure that exceeds what bounds it: (claim, figure,
    /// bound) in order.
    pub fn find(
        checks: impl IntoIterator<Item = (Claim, Option<Figure<u64>>, Option<u64>)>,
    ) -> Option<Inconsistency> {
        checks.into_iter().find_map(|(claim, figure, limit)| {
            let (figure, limit) = (figure?, limit?);
            (figure.value > limit).then_some(Inconsistency {
                source: figure.source,
                claim,
                claimed: figure.value,
                limit,
            })
        })
    }
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, whole) = match self.claim {
            Claim::BytesOverFile => ("bytes received", "the file holds"),
            Claim::BytesOverSent => ("bytes received", "the server sent"),
            Claim::DatagramsOverFile => ("datagrams received", "the file takes"),
            Claim::DatagramsOverSent => ("datagrams received", "the server sent"),
            Claim::MissingOverFile => ("datagrams missing", "the file takes"),
        };
        write!(
            f,
            "the {} is inconsistent: it claims {} {what}, more than the {} {whole}",
            self.source, self.claimed, self.limit
        )
    }
}

/// What a reliable-mode transfer's verdict adds to [`Facts`]. Counts are
/// datagrams; `Facts::sent_datagrams` counts every copy sent, first or
/// resent, and `Facts::received_datagrams` the distinct ones the client
/// kept.
#[derive(Debug, Clone, Default)]
pub struct Repair {
    /// Repair rounds after the first pass.
    pub rounds: Option<u32>,
    /// Datagrams resent: the server's count, or else the copies the wire
    /// carried with the retransmission flag.
    pub resent: Option<u64>,
    /// Data datagrams at the capture point nearest the receiver, every copy.
    pub wire_datagrams: Option<u64>,
    /// The same at the point nearest the sender.
    pub first_wire_datagrams: Option<u64>,
    /// Datagrams the file takes.
    pub total: Option<u64>,
    /// Copies that reached the client but were not new to it (duplicates,
    /// and late ones after it had the whole file).
    pub client_extra: Option<u64>,
    /// Datagrams the client still lacked at the end.
    pub missing: Option<u64>,
    /// The client confirmed the whole file.
    pub confirmed: Option<bool>,
    /// Why the transfer failed, by the log of that side.
    pub error: Option<(Role, String)>,
}

impl Facts {
    /// Why the capture cannot place the loss, if it cannot.
    fn blind(&self) -> Option<Blind> {
        // A source that claims the impossible says nothing that can be
        // weighed against the capture.
        if let Some(i) = self.inconsistent {
            return Some(Blind::InconsistentSource(i));
        }
        // A damaged file that ends early also misses what came after: the
        // cut is the cause to name.
        if let Some(packets) = self.capture_dropped.filter(|&n| n > 0) {
            Some(Blind::CaptureDropped { packets })
        } else if self.cut_short {
            Some(Blind::CutShort)
        } else {
            self.capture_missed
                .filter(|&n| n > 0)
                .map(|datagrams| Blind::CaptureMissed { datagrams })
        }
    }
}

/// Why a capture that holds the flow still cannot say where bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum Blind {
    /// The capture's statistics say its capturer dropped packets.
    CaptureDropped { packets: u64 },
    /// Datagrams reached the client's host that the capture does not hold
    /// (the logs, or the client's reported sequence numbers, prove them).
    CaptureMissed { datagrams: u64 },
    /// The capture file is damaged and ends while the flow still ran.
    CutShort,
    /// A log or message claims a figure no transfer can have.
    InconsistentSource(Inconsistency),
}

impl fmt::Display for Blind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blind::CaptureDropped { packets } => write!(f, "the capture dropped {packets} packets"),
            Blind::CaptureMissed { datagrams: n } => write!(
                f,
                "the capture missed at least {n} data {} that reached the client's host (its \
                 log proves them)",
                plural(*n, "datagram", "datagrams")
            ),
            Blind::CutShort => {
                f.write_str("the capture file is damaged and ends before this transfer did")
            }
            Blind::InconsistentSource(i) => i.fmt(f),
        }
    }
}

/// What the logs alone say of the loss, when nothing else can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "logs", rename_all = "snake_case")]
pub enum LogsAccount {
    /// Every missing datagram was dropped by the client's kernel: the
    /// receiver's socket buffer.
    KernelDroppedAll { datagrams: u64 },
    /// The logs do not close the account.
    Open,
}

impl LogsAccount {
    /// The logs close the account when every datagram the server sent
    /// either reached the client or was dropped by its kernel.
    fn of(f: &Facts) -> LogsAccount {
        match (f.sent_datagrams, f.received_datagrams, f.kernel_drops) {
            (Some(sent), Some(got), Some(k)) if sent > got && sent - got == k => {
                LogsAccount::KernelDroppedAll { datagrams: k }
            }
            _ => LogsAccount::Open,
        }
    }
}

impl fmt::Display for LogsAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogsAccount::KernelDroppedAll { datagrams } => write!(
                f,
                "; by the logs, the client's kernel dropped all {datagrams} missing datagrams \
                 (receiver socket buffer)"
            ),
            LogsAccount::Open => Ok(()),
        }
    }
}

/// Bytes between the server and the capture point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeforeCapture {
    /// No log or message says what was sent.
    Unknown,
    Lost(u64),
    /// The wire carried more than the server says it sent.
    Extra(u64),
}

/// Why bytes that crossed the capture point did not reach the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// ICMP port unreachable came back: the client's socket had closed.
    ClientGone { icmp: u64 },
    /// The client's kernel counted drops on its socket (buffer full).
    SocketBuffer { kernel_drops: u64 },
    /// The client's kernel counted none.
    NoKernelDrops,
    /// No kernel drop count.
    NoKernelCount,
}

impl Cause {
    fn of(f: &Facts) -> Cause {
        if f.icmp > 0 {
            Cause::ClientGone { icmp: f.icmp }
        } else {
            match f.kernel_drops {
                Some(k) if k > 0 => Cause::SocketBuffer { kernel_drops: k },
                Some(_) => Cause::NoKernelDrops,
                None => Cause::NoKernelCount,
            }
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::ClientGone { icmp } => {
                write!(f, "the client had gone: {icmp} ICMP port unreachable")
            }
            Cause::SocketBuffer { kernel_drops } => {
                write!(f, "the client's kernel dropped {kernel_drops} datagrams")
            }
            Cause::NoKernelDrops => f.write_str("the client's kernel counted no drops"),
            Cause::NoKernelCount => f.write_str("no kernel drop count"),
        }
    }
}

/// A transfer sent once (the lab's protocol, v1 blast): where the bytes
/// that did not arrive went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blast {
    /// The capture holds the flow but cannot place the loss.
    CannotTell { why: Blind, logs: LogsAccount },
    /// No data flow in the capture: the logs alone.
    ByLogs { lost: u64, logs: LogsAccount },
    /// No data flow, and no logs that say what was sent and kept.
    NoEvidence,
    /// The capture point saw the flow; no client account of what arrived.
    WireOnly {
        sent: Option<u64>,
        /// Bytes at the first capture point.
        wire: u64,
        /// Lost between the first and the last capture point.
        between: Option<u64>,
        icmp: u64,
        several: bool,
    },
    /// The capture points and the logs: loss placed on the path.
    Placed {
        /// Before the first capture point.
        before: Option<BeforeCapture>,
        /// Between the first and the last (the network).
        between: Option<u64>,
        /// After the last.
        after: Option<(u64, Cause)>,
        /// More than one capture point on the path.
        several: bool,
    },
}

/// The verdict on one client's transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Blast {
        loss: Blast,
        /// The server sent less than the file: (sent, file size).
        short: Option<(u64, u64)>,
    },
    Reliable(Reliable),
}

/// Where the copies that had to be resent were lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copies {
    /// The capture cannot say; the client's kernel drops, if any.
    CannotTell {
        why: Blind,
        kernel_drops: Option<u64>,
    },
    /// No data flow in the capture: what the logs say.
    NoDataFlow {
        lost: Option<u64>,
        kernel_drops: Option<u64>,
    },
    /// Placed around the capture point (datagram counts).
    OnWire {
        /// Copies sent but never on the wire (negative: the wire carried
        /// more than the server says it sent).
        before: Option<i64>,
        /// Copies lost between the first and the last capture point.
        between: Option<u64>,
        /// Copies on the wire the client neither kept nor counted again.
        after: Option<u64>,
        cause: Cause,
        /// Copies that reached the client again.
        extra: u64,
    },
}

/// The end of a reliable-mode transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The client confirmed the file.
    Delivered,
    /// The client says it does not have the file whole.
    NotDelivered(Missing),
    /// No client log or report says.
    NotConfirmed,
}

/// What a reliable-mode client still lacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Every datagram arrived, yet the SHA-256 does not match.
    HashMismatch,
    Datagrams {
        missing: u64,
        total: Option<u64>,
    },
    Bytes {
        kept: u64,
        file_size: u64,
    },
    Untold,
}

/// The verdict of a reliable-mode transfer: the file arrives whole or not
/// at all, so the question is what it took (repair rounds, datagrams
/// resent, where their first copies were lost), or what was missing when
/// it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reliable {
    pub outcome: Outcome,
    pub rounds: Option<u32>,
    pub resent: Option<u64>,
    pub copies: Option<Copies>,
    pub icmp: u64,
    pub error: Option<(Role, String)>,
    pub short: Option<(u64, u64)>,
}

impl Verdict {
    pub fn of(f: &Facts) -> Verdict {
        let short = match (f.expected, f.file_size) {
            (Some(sent), Some(size)) if sent < size => Some((sent, size)),
            _ => None,
        };
        match &f.repair {
            Some(r) => Verdict::Reliable(Reliable::of(f, r, short)),
            None => Verdict::Blast {
                loss: Blast::of(f),
                short,
            },
        }
    }

    /// Whether the loss could be placed on the path by the capture: false
    /// when the capture dropped or missed packets, or a damaged file cut it.
    pub fn capture_places_loss(&self) -> bool {
        !matches!(
            self,
            Verdict::Blast {
                loss: Blast::CannotTell { .. },
                ..
            } | Verdict::Reliable(Reliable {
                copies: Some(Copies::CannotTell { .. }),
                ..
            })
        )
    }

    /// Where the bytes went, for the JSON: a list of places with their
    /// bytes (datagrams for the reliable mode's copies).
    pub fn places(&self, f: &Facts) -> Vec<Place> {
        let mut out = Vec::new();
        if let Some(got) = f.received {
            out.push(Place::Delivered { bytes: got });
        }
        match self {
            Verdict::Blast { loss, .. } => match loss {
                Blast::CannotTell { why, logs } => {
                    out.push(Place::from_blind(*why));
                    if let LogsAccount::KernelDroppedAll { datagrams } = logs {
                        out.push(Place::ReceiverSocketBuffer {
                            bytes: None,
                            kernel_drops: *datagrams,
                        });
                    } else if let Some(lost) =
                        f.expected.zip(f.received).map(|(e, r)| e.saturating_sub(r))
                        && lost > 0
                    {
                        out.push(Place::Unknown { bytes: Some(lost) });
                    }
                }
                Blast::ByLogs { lost, logs } => match logs {
                    LogsAccount::KernelDroppedAll { datagrams } => {
                        out.push(Place::ReceiverSocketBuffer {
                            bytes: Some(*lost),
                            kernel_drops: *datagrams,
                        })
                    }
                    LogsAccount::Open => out.push(Place::Unknown { bytes: Some(*lost) }),
                },
                Blast::NoEvidence => out.push(Place::Unknown { bytes: None }),
                Blast::WireOnly {
                    sent,
                    wire,
                    between,
                    icmp,
                    ..
                } => {
                    if let Some(s) = sent.filter(|s| s > wire) {
                        out.push(Place::LostBeforeCapture { bytes: s - wire });
                    }
                    if let Some(n) = between {
                        out.push(Place::LostBetweenCaptures { bytes: *n });
                    }
                    if *icmp > 0 {
                        out.push(Place::ClientGone {
                            bytes: None,
                            icmp_errors: *icmp,
                        });
                    }
                }
                Blast::Placed {
                    before,
                    between,
                    after,
                    ..
                } => {
                    if let Some(BeforeCapture::Lost(b)) = before {
                        out.push(Place::LostBeforeCapture { bytes: *b });
                    }
                    if let Some(n) = between {
                        out.push(Place::LostBetweenCaptures { bytes: *n });
                    }
                    if let Some((bytes, cause)) = after {
                        out.push(Place::after(Some(*bytes), *cause));
                    }
                }
            },
            Verdict::Reliable(r) => match &r.copies {
                Some(Copies::CannotTell { why, kernel_drops }) => {
                    out.push(Place::from_blind(*why));
                    if let Some(k) = kernel_drops.filter(|&k| k > 0) {
                        out.push(Place::ReceiverSocketBuffer {
                            bytes: None,
                            kernel_drops: k,
                        });
                    }
                }
                Some(Copies::OnWire {
                    before,
                    between,
                    after,
                    cause,
                    ..
                }) => {
                    if let Some(b) = before.filter(|&b| b > 0) {
                        out.push(Place::LostBeforeCapture {
                            bytes: copy_bytes(b.unsigned_abs(), f),
                        });
                    }
                    if let Some(n) = between.filter(|&n| n > 0) {
                        out.push(Place::LostBetweenCaptures {
                            bytes: copy_bytes(n, f),
                        });
                    }
                    if let Some(a) = after.filter(|&a| a > 0) {
                        out.push(Place::after(Some(copy_bytes(a, f)), *cause));
                    }
                }
                Some(Copies::NoDataFlow { kernel_drops, .. }) => {
                    if let Some(k) = kernel_drops.filter(|&k| k > 0) {
                        out.push(Place::ReceiverSocketBuffer {
                            bytes: None,
                            kernel_drops: k,
                        });
                    }
                }
                None => {}
            },
        }
        out
    }
}

/// Bytes of `n` full copies, as far as the facts tell the datagram size
/// (the file's bytes over its datagrams).
fn copy_bytes(n: u64, f: &Facts) -> u64 {
    let chunk = f
        .repair
        .as_ref()
        .and_then(|r| r.total)
        .zip(f.file_size)
        .and_then(|(t, s)| s.checked_div(t));
    n.saturating_mul(chunk.unwrap_or(0))
}

/// Where bytes went, one entry per place along the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "place", rename_all = "snake_case")]
pub enum Place {
    /// The client kept them.
    Delivered { bytes: u64 },
    /// Sent but not at the capture point: the sender's host or the network
    /// before it.
    LostBeforeCapture { bytes: u64 },
    /// Between the first and the last capture point: the network.
    LostBetweenCaptures { bytes: u64 },
    /// Past the capture point, not kept, with no cause the inputs name.
    LostAfterCapture { bytes: Option<u64> },
    /// Dropped by the client's kernel: its socket buffer was full.
    ReceiverSocketBuffer {
        bytes: Option<u64>,
        kernel_drops: u64,
    },
    /// The client had closed its socket: ICMP port unreachable came back.
    ClientGone {
        bytes: Option<u64>,
        icmp_errors: u64,
    },
    /// The capture dropped packets by its own statistics.
    CaptureDropped { packets: u64 },
    /// The capture lacks datagrams that reached the client's host.
    CaptureMissed { datagrams: u64 },
    /// The damaged capture file ends before the transfer did.
    CutByDamagedFile,
    /// A log or message claims a figure no transfer can have: where the
    /// bytes went cannot be told from it.
    InconsistentSource(Inconsistency),
    /// Lost, but no input says where.
    Unknown { bytes: Option<u64> },
}

impl Place {
    fn from_blind(b: Blind) -> Place {
        match b {
            Blind::CaptureDropped { packets } => Place::CaptureDropped { packets },
            Blind::CaptureMissed { datagrams } => Place::CaptureMissed { datagrams },
            Blind::CutShort => Place::CutByDamagedFile,
            Blind::InconsistentSource(i) => Place::InconsistentSource(i),
        }
    }

    fn after(bytes: Option<u64>, cause: Cause) -> Place {
        match cause {
            Cause::ClientGone { icmp } => Place::ClientGone {
                bytes,
                icmp_errors: icmp,
            },
            Cause::SocketBuffer { kernel_drops } => Place::ReceiverSocketBuffer {
                bytes,
                kernel_drops,
            },
            Cause::NoKernelDrops | Cause::NoKernelCount => Place::LostAfterCapture { bytes },
        }
    }
}

/// Where bytes lost before the first capture point went.
fn before_place(several: bool) -> &'static str {
    if several {
        "before the first capture point (sender host)"
    } else {
        "before the capture point (sender host or network)"
    }
}

const BETWEEN_PLACE: &str = "in the network (between the capture points)";

impl Blast {
    fn of(f: &Facts) -> Blast {
        if let Some(why) = f.blind() {
            return Blast::CannotTell {
                why,
                logs: LogsAccount::of(f),
            };
        }
        let Some(wire) = f.wire else {
            return match (f.expected, f.received) {
                (Some(e), Some(r)) => Blast::ByLogs {
                    lost: e.saturating_sub(r),
                    logs: LogsAccount::of(f),
                },
                _ => Blast::NoEvidence,
            };
        };
        let first = f.first_wire.unwrap_or(wire);
        let several = f.points > 1;
        // A point nearer the receiver holding more than one nearer the sender
        // makes the capture blind (`capture_missed`): only a loss is left.
        let between = (several && first > wire).then(|| first - wire);
        let Some(received) = f.received else {
            return Blast::WireOnly {
                sent: f.expected,
                wire: first,
                between,
                icmp: f.icmp,
                several,
            };
        };
        let before = match f.expected {
            None => Some(BeforeCapture::Unknown),
            Some(e) if e > first => Some(BeforeCapture::Lost(e - first)),
            Some(e) if e < first => Some(BeforeCapture::Extra(first - e)),
            Some(_) => None,
        };
        // The client keeping more than the wire carried makes the capture
        // blind (`capture_missed`), so only a loss is left here.
        let after = (wire > received).then(|| (wire - received, Cause::of(f)));
        Blast::Placed {
            before,
            between,
            after,
            several,
        }
    }
}

impl fmt::Display for Blast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blast::CannotTell { why, logs } => write!(f, "cannot tell: {why}{logs}"),
            Blast::ByLogs { lost: 0, .. } => {
                f.write_str("no loss (by the logs; no data flow in the capture)")
            }
            Blast::ByLogs { lost, logs } => write!(
                f,
                "{lost} bytes lost; the capture holds no data flow to say where{logs}"
            ),
            Blast::NoEvidence => {
                f.write_str("cannot tell: no data flow in the capture and no logs")
            }
            Blast::WireOnly {
                sent,
                wire,
                between,
                icmp,
                several,
            } => {
                match sent {
                    Some(e) if wire >= e => write!(f, "the wire carried all {e} bytes sent")?,
                    Some(e) => write!(f, "{} bytes lost {}", e - wire, before_place(*several))?,
                    None => write!(
                        f,
                        "the wire carried {wire} bytes; no server log says what was sent"
                    )?,
                }
                if let Some(n) = between {
                    write!(f, "; {n} bytes lost {BETWEEN_PLACE}")?;
                }
                if *icmp > 0 {
                    write!(f, "; {}", Cause::ClientGone { icmp: *icmp })?;
                }
                f.write_str("; no client log says what arrived")
            }
            Blast::Placed {
                before: None,
                between: None,
                after: None,
                ..
            } => f.write_str("no loss"),
            Blast::Placed {
                before,
                between,
                after,
                several,
            } => {
                let mut sep = "";
                match before {
                    Some(BeforeCapture::Lost(b)) => {
                        write!(f, "{b} bytes lost {}", before_place(*several))?
                    }
                    Some(BeforeCapture::Extra(b)) => {
                        write!(f, "the wire carried {b} bytes more than the server sent")?
                    }
                    Some(BeforeCapture::Unknown) => {
                        f.write_str("no server log says what was sent")?
                    }
                    None => {}
                }
                if before.is_some() {
                    sep = "; ";
                }
                if let Some(n) = between {
                    write!(f, "{sep}{n} bytes lost {BETWEEN_PLACE}")?;
                    sep = "; ";
                }
                if let Some((bytes, cause)) = after {
                    let place = match (cause, several) {
                        (Cause::SocketBuffer { .. }, _) => "in the receiver socket buffer",
                        (_, false) => "after the capture point",
                        (_, true) => "after the last capture point (receiver host)",
                    };
                    let carried = if before.is_none() && between.is_none() {
                        "the wire carried everything, "
                    } else {
                        ""
                    };
                    write!(f, "{sep}{bytes} bytes lost {place}: {carried}{cause}")?;
                }
                Ok(())
            }
        }
    }
}

impl Copies {
    fn of(f: &Facts, r: &Repair) -> Option<Copies> {
        if let Some(why) = f.blind() {
            return Some(Copies::CannotTell {
                why,
                kernel_drops: f.kernel_drops,
            });
        }
        let extra = r.client_extra.unwrap_or(0);
        let Some(wire) = r.wire_datagrams else {
            let lost = f
                .sent_datagrams
                .zip(f.received_datagrams)
                .map(|(s, g)| s.saturating_sub(g.saturating_add(extra)));
            return Some(Copies::NoDataFlow {
                lost,
                kernel_drops: f.kernel_drops,
            });
        };
        let first = r.first_wire_datagrams.unwrap_or(wire);
        let before = f.sent_datagrams.map(|s| signed_diff(s, first));
        let between = (f.points > 1).then(|| first.saturating_sub(wire));
        // More copies kept than the wire carried make the capture blind
        // (`capture_missed`): only a loss is left here.
        let after = f
            .received_datagrams
            .map(|g| wire.saturating_sub(g.saturating_add(extra)));
        if before.is_none() && after.is_none() && extra == 0 {
            return None;
        }
        Some(Copies::OnWire {
            before,
            between,
            after,
            cause: Cause::of(f),
            extra,
        })
    }

    fn mentions_icmp(&self) -> bool {
        matches!(
            self,
            Copies::OnWire {
                after: Some(1..),
                cause: Cause::ClientGone { .. },
                ..
            }
        )
    }
}

impl fmt::Display for Copies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by_kernel = |k: u64| format!("the client's kernel dropped {}", datagrams(k));
        match self {
            Copies::CannotTell { why, kernel_drops } => {
                write!(f, "{why}: cannot tell where")?;
                if let Some(k) = kernel_drops.filter(|&k| k > 0) {
                    write!(f, "; by the logs, {}", by_kernel(k))?;
                }
                Ok(())
            }
            Copies::NoDataFlow { lost, kernel_drops } => {
                f.write_str("the capture holds no data flow to say where")?;
                match (*lost, *kernel_drops) {
                    (Some(n), Some(k)) if n > 0 && n == k => write!(
                        f,
                        "; by the logs, the client's kernel dropped all {n} copies lost, in the \
                         receiver socket buffer"
                    ),
                    (Some(n), Some(k)) if n > 0 => {
                        write!(
                            f,
                            "; by the logs, {n} copies were lost and {}",
                            by_kernel(k)
                        )
                    }
                    (_, Some(k)) if k > 0 => write!(f, "; by the logs, {}", by_kernel(k)),
                    _ => Ok(()),
                }
            }
            Copies::OnWire {
                before,
                between,
                after,
                cause,
                extra,
            } => {
                let mut parts = Vec::new();
                let several = between.is_some();
                match before {
                    Some(b) if *b >= 0 && several => {
                        parts.push(format!("{b} lost before the first capture point"))
                    }
                    Some(b) if *b >= 0 => parts.push(format!("{b} lost before the capture point")),
                    Some(b) => parts.push(format!(
                        "the wire carried {} more than the server sent",
                        datagrams(b.unsigned_abs())
                    )),
                    None => {}
                }
                if let Some(n) = between {
                    parts.push(format!("{n} in the network"));
                }
                if let Some(a) = after {
                    let mut text = match (parts.is_empty(), several) {
                        (true, false) => format!("{a} lost after the capture point"),
                        (true, true) => format!("{a} lost after the last capture point"),
                        (false, false) => format!("{a} after it"),
                        (false, true) => format!("{a} after the last"),
                    };
                    if *a > 0 {
                        match cause {
                            Cause::ClientGone { .. } => text.push_str(&format!(": {cause}")),
                            Cause::SocketBuffer { kernel_drops } => {
                                text.push_str(&format!(": {}", by_kernel(*kernel_drops)))
                            }
                            Cause::NoKernelDrops | Cause::NoKernelCount => {}
                        }
                    }
                    parts.push(text);
                }
                if *extra > 0 {
                    parts.push(format!("{extra} arrived again"));
                }
                f.write_str(&parts.join(", "))
            }
        }
    }
}

impl Reliable {
    fn of(f: &Facts, r: &Repair, short: Option<(u64, u64)>) -> Reliable {
        let outcome = match r.confirmed {
            Some(true) => Outcome::Delivered,
            None => Outcome::NotConfirmed,
            Some(false) => Outcome::NotDelivered(match (r.missing, r.total) {
                (Some(0), _) => Missing::HashMismatch,
                (Some(m), total) => Missing::Datagrams { missing: m, total },
                (None, _) => match (f.received, f.file_size) {
                    (Some(kept), Some(file_size)) => Missing::Bytes { kept, file_size },
                    _ => Missing::Untold,
                },
            }),
        };
        Reliable {
            outcome,
            rounds: r.rounds,
            resent: r.resent,
            copies: Copies::of(f, r),
            icmp: f.icmp,
            error: r.error.clone(),
            short,
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::HashMismatch => {
                f.write_str("every datagram arrived, but the file's SHA-256 does not match")
            }
            Missing::Datagrams {
                missing,
                total: Some(t),
            } => write!(f, "{missing} of {} missing", datagrams(*t)),
            Missing::Datagrams {
                missing,
                total: None,
            } => write!(f, "{} missing", datagrams(*missing)),
            Missing::Bytes { kept, file_size } => {
                write!(f, "the client kept {kept} of {file_size} bytes")
            }
            Missing::Untold => f.write_str("no client log or report says what is missing"),
        }
    }
}

impl fmt::Display for Reliable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rounds = match self.rounds {
            None => String::new(),
            Some(0) => " in the first pass".into(),
            Some(1) => " after 1 repair round".into(),
            Some(n) => format!(" after {n} repair rounds"),
        };
        let resent = match (self.resent, &self.copies) {
            (Some(k), Some(p)) => Some(format!("{} resent ({p})", datagrams(k))),
            (Some(k), None) => Some(format!("{} resent", datagrams(k))),
            (None, Some(p)) => Some(format!("no server log counts the datagrams resent ({p})")),
            (None, None) => None,
        };
        match &self.outcome {
            Outcome::Delivered => {
                if self.resent == Some(0) && self.rounds.unwrap_or(0) == 0 {
                    return f
                        .write_str("no loss: delivered whole in the first pass, nothing resent");
                }
                write!(f, "delivered whole{rounds}")?;
                if let Some(resent) = resent {
                    write!(f, "; {resent}")?;
                }
                return Ok(());
            }
            Outcome::NotConfirmed => write!(
                f,
                "not confirmed{rounds}: no client log or report says what arrived"
            )?,
            Outcome::NotDelivered(m) => write!(f, "not delivered whole{rounds}: {m}")?,
        }
        if let Some(resent) = resent {
            write!(f, "; {resent}")?;
        }
        if self.icmp > 0 && !self.copies.as_ref().is_some_and(Copies::mentions_icmp) {
            write!(f, "; {}", Cause::ClientGone { icmp: self.icmp })?;
        }
        if let Some((who, e)) = &self.error {
            write!(f, "; the {who}'s log says: {e}")?;
        }
        if let Some((sent, size)) = self.short {
            write!(f, "; the server sent only {sent} of {size} bytes")?;
        }
        Ok(())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Reliable(r) => r.fmt(f),
            Verdict::Blast { loss, short: None } => loss.fmt(f),
            Verdict::Blast {
                loss:
                    Blast::Placed {
                        before: None,
                        between: None,
                        after: None,
                        ..
                    },
                short: Some((sent, size)),
            } => write!(
                f,
                "nothing lost on the way, but the server sent only {sent} of {size} bytes"
            ),
            Verdict::Blast {
                loss,
                short: Some((sent, size)),
            } => write!(f, "{loss}; the server sent only {sent} of {size} bytes"),
        }
    }
}

/// The account as the JSON carries it.
#[derive(Debug, Clone, Serialize)]
pub struct AccountRow {
    pub mode: Option<Mode>,
    /// Where the bytes went.
    pub places: Vec<Place>,
    /// Why the capture cannot place the loss, when it cannot.
    pub capture_blind: Option<Blind>,
    /// A figure of a log or message that no transfer can have.
    pub inconsistent_source: Option<Inconsistency>,
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

fn datagrams(n: u64) -> String {
    format!("{n} {}", plural(n, "datagram", "datagrams"))
}

/// `a - b`, saturating at the ends of i64 (the inputs are untrusted).
pub fn signed_diff(a: u64, b: u64) -> i64 {
    let d = i128::from(a) - i128::from(b);
    i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(expected: u64, wire: u64, received: u64) -> Facts {
        Facts {
            expected: Some(expected),
            wire: Some(wire),
            received: Some(received),
            ..Facts::default()
        }
    }

    fn verdict(f: &Facts) -> String {
        Verdict::of(f).to_string()
    }

    #[test]
    fn blast_values() {
        let mut f = facts(100, 100, 40);
        f.kernel_drops = Some(3);
        let v = Verdict::of(&f);
        assert_eq!(
            v,
            Verdict::Blast {
                loss: Blast::Placed {
                    before: None,
                    between: None,
                    after: Some((60, Cause::SocketBuffer { kernel_drops: 3 })),
                    several: false,
                },
                short: None,
            }
        );
        assert_eq!(
            v.places(&f),
            [
                Place::Delivered { bytes: 40 },
                Place::ReceiverSocketBuffer {
                    bytes: Some(60),
                    kernel_drops: 3
                }
            ]
        );
        assert!(v.capture_places_loss());
        f.capture_missed = Some(2);
        let v = Verdict::of(&f);
        assert_eq!(
            v,
            Verdict::Blast {
                loss: Blast::CannotTell {
                    why: Blind::CaptureMissed { datagrams: 2 },
                    logs: LogsAccount::Open,
                },
                short: None,
            }
        );
        assert!(!v.capture_places_loss());
        f.capture_missed = None;
        f.cut_short = true;
        assert_eq!(
            Verdict::of(&f).places(&f),
            [
                Place::Delivered { bytes: 40 },
                Place::CutByDamagedFile,
                Place::Unknown { bytes: Some(60) }
            ]
        );
    }

    #[test]
    fn blast_sentences() {
        assert_eq!(verdict(&facts(100, 100, 100)), "no loss");
        let mut f = facts(100, 100, 40);
        f.kernel_drops = Some(3);
        assert_eq!(
            verdict(&f),
            "60 bytes lost in the receiver socket buffer: the wire carried everything, the client's kernel dropped 3 datagrams"
        );
        f.capture_dropped = Some(7);
        assert_eq!(verdict(&f), "cannot tell: the capture dropped 7 packets");
        f.sent_datagrams = Some(10);
        f.received_datagrams = Some(7);
        assert_eq!(
            verdict(&f),
            "cannot tell: the capture dropped 7 packets; by the logs, the client's kernel \
             dropped all 3 missing datagrams (receiver socket buffer)"
        );
        f.received_datagrams = Some(6);
        assert_eq!(verdict(&f), "cannot tell: the capture dropped 7 packets");
        f.capture_dropped = None;
        f.received_datagrams = Some(7);
        f.capture_missed = Some(1);
        assert_eq!(
            verdict(&f),
            "cannot tell: the capture missed at least 1 data datagram that reached the client's \
             host (its log proves them); by the logs, the client's kernel dropped all 3 missing \
             datagrams (receiver socket buffer)"
        );
        f.capture_missed = None;
        f.cut_short = true;
        assert_eq!(
            verdict(&f),
            "cannot tell: the capture file is damaged and ends before this transfer did; by the \
             logs, the client's kernel dropped all 3 missing datagrams (receiver socket buffer)"
        );
        assert_eq!(
            verdict(&facts(100, 70, 70)),
            "30 bytes lost before the capture point (sender host or network)"
        );
        let mut f = facts(100, 100, 10);
        f.icmp = 2;
        assert_eq!(
            verdict(&f),
            "90 bytes lost after the capture point: the wire carried everything, the client had gone: 2 ICMP port unreachable"
        );
        let f = Facts {
            wire: Some(5),
            ..Facts::default()
        };
        assert_eq!(
            verdict(&f),
            "the wire carried 5 bytes; no server log says what was sent; no client log says what arrived"
        );
        let mut f = Facts {
            expected: Some(10),
            wire: Some(10),
            ..Facts::default()
        };
        assert_eq!(
            verdict(&f),
            "the wire carried all 10 bytes sent; no client log says what arrived"
        );
        f.file_size = Some(40);
        f.icmp = 3;
        assert_eq!(
            verdict(&f),
            "the wire carried all 10 bytes sent; the client had gone: 3 ICMP port unreachable; \
             no client log says what arrived; the server sent only 10 of 40 bytes"
        );
        assert_eq!(
            verdict(&Facts {
                file_size: Some(100),
                ..facts(60, 60, 60)
            }),
            "nothing lost on the way, but the server sent only 60 of 100 bytes"
        );
        assert_eq!(
            verdict(&facts(100, 80, 50)),
            "20 bytes lost before the capture point (sender host or network); 30 bytes lost after the capture point: no kernel drop count"
        );
    }

    #[test]
    fn reliable_sentences() {
        let mut f = facts(100, 100, 100);
        f.repair = Some(Repair {
            rounds: Some(0),
            resent: Some(0),
            confirmed: Some(true),
            wire_datagrams: Some(1),
            ..Repair::default()
        });
        assert_eq!(
            verdict(&f),
            "no loss: delivered whole in the first pass, nothing resent"
        );
        f.repair = Some(Repair {
            rounds: Some(2),
            resent: Some(5),
            confirmed: Some(true),
            wire_datagrams: Some(9),
            ..Repair::default()
        });
        f.capture_dropped = Some(4);
        f.kernel_drops = Some(5);
        assert_eq!(
            verdict(&f),
            "delivered whole after 2 repair rounds; 5 datagrams resent (the capture dropped 4 \
             packets: cannot tell where; by the logs, the client's kernel dropped 5 datagrams)"
        );
        // The client gone mid-transfer: no account of its own.
        let f = Facts {
            expected: Some(3024),
            file_size: Some(9580),
            wire: Some(3024),
            icmp: 4,
            sent_datagrams: Some(3),
            repair: Some(Repair {
                resent: Some(0),
                wire_datagrams: Some(3),
                total: Some(10),
                ..Repair::default()
            }),
            ..Facts::default()
        };
        let v = Verdict::of(&f);
        let Verdict::Reliable(r) = &v else {
            panic!("not reliable: {v:?}");
        };
        assert_eq!(r.outcome, Outcome::NotConfirmed);
        assert_eq!(r.short, Some((3024, 9580)));
        assert_eq!(
            v.to_string(),
            "not confirmed: no client log or report says what arrived; 0 datagrams resent (0 \
             lost before the capture point); the client had gone: 4 ICMP port unreachable; \
             the server sent only 3024 of 9580 bytes"
        );
    }

    #[test]
    fn places_serialize_tagged() {
        let p = Place::ReceiverSocketBuffer {
            bytes: Some(2048),
            kernel_drops: 2,
        };
        assert_eq!(
            serde_json::to_value(p).unwrap(),
            serde_json::json!({"place": "receiver_socket_buffer", "bytes": 2048, "kernel_drops": 2})
        );
        assert_eq!(
            serde_json::to_value(Source::V1Report).unwrap(),
            serde_json::json!("v1_report")
        );
    }
}
