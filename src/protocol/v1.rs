//! udplab's protocol, version 1: the lab's registration, then framed control
//! messages on the same TCP connection, and UDP data datagrams that start
//! with a 16-byte header. `docs/PROTOCOL.md` is the prose form of this file.
//!
//! Integers in v1's own fields are big-endian (network order); the lab's
//! registration fields before them stay little-endian as the lab has them.

use super::{Error, Result, lab};

/// The version tag a v1 client puts in the third byte of its port message.
pub const VERSION: u8 = 1;

/// Bytes of the data header at the start of every data datagram.
pub const HEADER_LEN: usize = 16;
/// First two bytes of every v1 data datagram: "UL".
pub const MAGIC: [u8; 2] = *b"UL";
/// Default UDP payload: the lab's 1024, so frames stay 1066 bytes.
pub const DEFAULT_DATAGRAM_SIZE: u16 = 1024;
/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM_SIZE: u16 = 65_507;
/// Largest control message body; anything longer is refused unread.
pub const MAX_BODY: usize = 64 * 1024;
/// Bytes of a control frame's type and length.
pub const FRAME_HEADER_LEN: usize = 5;
/// Most missing ranges one report lists; the rest is summed in
/// `missing_datagrams` and flagged with `ranges_truncated`.
pub const MAX_REPORT_RANGES: usize = 4096;
/// Longest abort reason.
pub const MAX_REASON: usize = 1024;

/// Field offsets of the data header.
mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..2;
    pub const VERSION: usize = 2;
    pub const FLAGS: usize = 3;
    pub const SEQ: Range<usize> = 4..8;
    pub const SEND_TIME: Range<usize> = 8..16;
}

/// Flag bit: this datagram is a retransmission (reserved for reliable mode).
pub const FLAG_RETRANSMIT: u8 = 0x01;

/// The header of a data datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    pub flags: u8,
    /// Index of the chunk: file offset = seq * chunk size.
    pub seq: u32,
    /// Sender's clock when the datagram was handed to the kernel, in
    /// microseconds since the Unix epoch.
    pub send_time_us: u64,
}

impl DataHeader {
    /// Parse a datagram into its header and the file bytes it carries.
    pub fn parse(datagram: &[u8]) -> Result<(DataHeader, &[u8])> {
        let Some((head, payload)) = datagram.split_first_chunk::<HEADER_LEN>() else {
            return Err(Error::Truncated {
                what: "v1 data header",
                need: HEADER_LEN,
                got: datagram.len(),
            });
        };
        if head[field::MAGIC] != MAGIC {
            return Err(Error::Invalid {
                what: "v1 data header",
                reason: "bad magic".into(),
            });
        }
        if head[field::VERSION] != VERSION {
            return Err(Error::Invalid {
                what: "v1 data header",
                reason: format!("version {}", head[field::VERSION]),
            });
        }
        let mut seq = [0u8; 4];
        seq.copy_from_slice(&head[field::SEQ]);
        let mut time = [0u8; 8];
        time.copy_from_slice(&head[field::SEND_TIME]);
        Ok((
            DataHeader {
                flags: head[field::FLAGS],
                seq: u32::from_be_bytes(seq),
                send_time_us: u64::from_be_bytes(time),
            },
            payload,
        ))
    }

    pub fn emit(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[field::MAGIC].copy_from_slice(&MAGIC);
        out[field::VERSION] = VERSION;
        out[field::FLAGS] = self.flags;
        out[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        out[field::SEND_TIME].copy_from_slice(&self.send_time_us.to_be_bytes());
        out
    }
}

use super::Mode;

impl Mode {
    fn to_byte(self) -> u8 {
        match self {
            Mode::Blast => 0,
            Mode::Reliable => 1,
        }
    }
    fn from_byte(b: u8) -> Result<Mode> {
        match b {
            0 => Ok(Mode::Blast),
            1 => Ok(Mode::Reliable),
            other => Err(Error::Invalid {
                what: "announce",
                reason: format!("unknown mode {other}"),
            }),
        }
    }
}

/// Server -> client, right after registration: what is coming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub file_name: String,
    pub file_size: u64,
    /// Data datagrams the file takes.
    pub datagrams: u32,
    /// UDP payload of a full data datagram, header included.
    pub datagram_size: u16,
    /// The server's UDP port for this client.
    pub data_port: u16,
    pub mode: Mode,
    pub sha256: [u8; 32],
}

impl Announce {
    /// File bytes per full datagram.
    pub fn chunk_size(&self) -> usize {
        usize::from(self.datagram_size).saturating_sub(HEADER_LEN)
    }

    /// File bytes datagram `seq` must carry, or `None` if `seq` is out of range.
    pub fn payload_len(&self, seq: u32) -> Option<usize> {
        if seq >= self.datagrams {
            return None;
        }
        let chunk = self.chunk_size() as u64;
        let start = u64::from(seq) * chunk;
        Some((self.file_size - start).min(chunk) as usize)
    }
}

/// Check a datagram size and file size, and give the number of datagrams.
pub fn plan(file_size: u64, datagram_size: u16) -> Result<u32> {
    if usize::from(datagram_size) <= HEADER_LEN || datagram_size > MAX_DATAGRAM_SIZE {
        return Err(Error::Invalid {
            what: "datagram size",
            reason: format!(
                "{datagram_size} is outside {}..={MAX_DATAGRAM_SIZE}",
                HEADER_LEN + 1
            ),
        });
    }
    let chunk = u64::from(datagram_size) - HEADER_LEN as u64;
    u32::try_from(lab::datagram_count(file_size, chunk)).map_err(|_| Error::Invalid {
        what: "file size",
        reason: format!("{file_size} bytes need more than 2^32 datagrams of {chunk} bytes"),
    })
}

/// Server -> client, when every datagram of the pass has been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub duration_us: u64,
}

/// An inclusive range of missing sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub first: u32,
    pub last: u32,
}

/// Client -> server, after `Done`: what arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Distinct data datagrams kept.
    pub datagrams_received: u64,
    pub bytes_received: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub missing_datagrams: u64,
    /// The kernel's drop count for the client's socket, if it could be read.
    pub kernel_drops: Option<u64>,
    pub sha256_match: bool,
    /// At most [`MAX_REPORT_RANGES`] ranges, in order.
    pub missing: Vec<SeqRange>,
    /// True when more ranges were missing than `missing` lists.
    pub ranges_truncated: bool,
}

/// A control message on the TCP connection after registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Announce(Announce),
    /// Server -> client: the barrier is released, data follows.
    Start {
        time_us: u64,
    },
    Done(Done),
    Report(Report),
    /// Either side: the transfer is cancelled, with a reason for the log.
    Abort {
        reason: String,
    },
    /// Client -> server, reliable mode, every few milliseconds while data
    /// arrives: what the rate control needs.
    Feedback(Feedback),
}

/// The client's running counts, for the server's rate control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feedback {
    /// Pass the counts were taken in: 0 the first, then repair rounds.
    pub round: u32,
    /// Data datagrams taken from the socket so far, duplicates included.
    pub arrived: u64,
    /// Datagrams found missing so far: gaps in arrival order, counting only
    /// sequence numbers the client still lacks.
    pub lost: u64,
    /// The kernel's running drop count for the client's socket, if known.
    pub kernel_drops: Option<u64>,
    /// When the counts were taken and the one-way delay seen since the
    /// previous feedback; `None` in the 29-byte form of the first v1
    /// clients, which the server still takes.
    pub timing: Option<FeedbackTiming>,
}

/// The delay part of a [`Feedback`]: what the server's rate control needs
/// to tell a queue building up from datagrams lost at random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackTiming {
    /// The client's clock when the counts were taken, microseconds since
    /// the Unix epoch.
    pub time_us: u64,
    /// The smallest (client clock at receipt - `send time` of the data
    /// header) over the datagrams taken in since the previous feedback, in
    /// microseconds; `None` when none came. The two clocks need not agree:
    /// only changes of this figure are used (relative one-way delay).
    pub min_delay_us: Option<i64>,
}

mod kind {
    pub const ANNOUNCE: u8 = 0x01;
    pub const START: u8 = 0x02;
    pub const DONE: u8 = 0x03;
    pub const REPORT: u8 = 0x04;
    pub const ABORT: u8 = 0x05;
    pub const FEEDBACK: u8 = 0x06;
}

/// The name of a control message by the kind byte that starts its frame.
pub fn kind_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        kind::ANNOUNCE => "announce",
        kind::START => "start",
        kind::DONE => "done",
        kind::REPORT => "report",
        kind::ABORT => "abort",
        kind::FEEDBACK => "feedback",
        _ => return None,
    })
}

const FEEDBACK_FLAG_DROPS_KNOWN: u8 = 0x01;
const FEEDBACK_FLAG_DELAY_KNOWN: u8 = 0x02;
/// The first form of the feedback body: counts only.
const FEEDBACK_LEN: usize = 29;
/// With [`FeedbackTiming`]: client time u64, minimum delay i64.
const FEEDBACK_TIMED_LEN: usize = FEEDBACK_LEN + 16;

const REPORT_FLAG_SHA_MATCH: u8 = 0x01;
const REPORT_FLAG_TRUNCATED: u8 = 0x02;
const REPORT_FLAG_DROPS_KNOWN: u8 = 0x04;

impl Message {
    /// The whole frame: type (1), body length (4, big-endian), body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let kind = match self {
            Message::Announce(a) => {
                body.extend_from_slice(&a.file_size.to_be_bytes());
                body.extend_from_slice(&a.datagrams.to_be_bytes());
                body.extend_from_slice(&a.datagram_size.to_be_bytes());
                body.extend_from_slice(&a.data_port.to_be_bytes());
                body.push(a.mode.to_byte());
                body.push(0);
                body.extend_from_slice(&a.sha256);
                let name = a.file_name.as_bytes();
                let name = &name[..name.len().min(lab::MAX_NAME_LEN)];
                body.extend_from_slice(&(name.len() as u16).to_be_bytes());
                body.extend_from_slice(name);
                kind::ANNOUNCE
            }
            Message::Start { time_us } => {
                body.extend_from_slice(&time_us.to_be_bytes());
                kind::START
            }
            Message::Done(d) => {
                body.extend_from_slice(&d.datagrams_sent.to_be_bytes());
                body.extend_from_slice(&d.bytes_sent.to_be_bytes());
                body.extend_from_slice(&d.duration_us.to_be_bytes());
                kind::DONE
            }
            Message::Report(r) => {
                for v in [
                    r.datagrams_received,
                    r.bytes_received,
                    r.duplicates,
                    r.malformed,
                    r.missing_datagrams,
                    r.kernel_drops.unwrap_or(0),
                ] {
                    body.extend_from_slice(&v.to_be_bytes());
                }
                let ranges = &r.missing[..r.missing.len().min(MAX_REPORT_RANGES)];
                let mut flags = 0;
                if r.sha256_match {
                    flags |= REPORT_FLAG_SHA_MATCH;
                }
                if r.ranges_truncated || ranges.len() < r.missing.len() {
                    flags |= REPORT_FLAG_TRUNCATED;
                }
                if r.kernel_drops.is_some() {
                    flags |= REPORT_FLAG_DROPS_KNOWN;
                }
                body.push(flags);
                body.extend_from_slice(&(ranges.len() as u32).to_be_bytes());
                for range in ranges {
                    body.extend_from_slice(&range.first.to_be_bytes());
                    body.extend_from_slice(&range.last.to_be_bytes());
                }
                kind::REPORT
            }
            Message::Feedback(f) => {
                body.extend_from_slice(&f.round.to_be_bytes());
                body.extend_from_slice(&f.arrived.to_be_bytes());
                body.extend_from_slice(&f.lost.to_be_bytes());
                body.extend_from_slice(&f.kernel_drops.unwrap_or(0).to_be_bytes());
                let mut flags = 0;
                if f.kernel_drops.is_some() {
                    flags |= FEEDBACK_FLAG_DROPS_KNOWN;
                }
                if f.timing.is_some_and(|t| t.min_delay_us.is_some()) {
                    flags |= FEEDBACK_FLAG_DELAY_KNOWN;
                }
                body.push(flags);
                if let Some(t) = f.timing {
                    body.extend_from_slice(&t.time_us.to_be_bytes());
                    body.extend_from_slice(&t.min_delay_us.unwrap_or(0).to_be_bytes());
                }
                kind::FEEDBACK
            }
            Message::Abort { reason } => {
                let mut end = reason.len().min(MAX_REASON);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                body.extend_from_slice(&reason.as_bytes()[..end]);
                kind::ABORT
            }
        };
        let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
        frame.push(kind);
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        frame
    }

    /// Decode one frame from the front of `buf`. `Ok(None)` means more bytes
    /// are needed; `Ok(Some((msg, used)))` consumed `used` bytes.
    pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>> {
        let Some((head, rest)) = buf.split_first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(None);
        };
        let [kind, l0, l1, l2, l3] = *head;
        let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        if len > MAX_BODY {
            return Err(Error::Oversized {
                what: "control message",
                max: MAX_BODY,
                got: len,
            });
        }
        let Some(body) = rest.get(..len) else {
            return Ok(None);
        };
        let msg = Self::decode_body(kind, body)?;
        Ok(Some((msg, FRAME_HEADER_LEN + len)))
    }

    fn decode_body(kind: u8, body: &[u8]) -> Result<Message> {
        let mut r = Reader {
            buf: body,
            what: "",
        };
        let msg = match kind {
            kind::ANNOUNCE => {
                r.what = "announce";
                let file_size = r.u64()?;
                let datagrams = r.u32()?;
                let datagram_size = r.u16()?;
                let data_port = r.u16()?;
                let mode = Mode::from_byte(r.u8()?)?;
                let _reserved = r.u8()?;
                let sha256 = r.array::<32>()?;
                let name_len = usize::from(r.u16()?);
                let file_name = lab::safe_file_name(r.bytes(name_len)?)?;
                let expected = plan(file_size, datagram_size)?;
                if expected != datagrams {
                    return Err(Error::Invalid {
                        what: "announce",
                        reason: format!(
                            "{datagrams} datagrams announced, {expected} needed for {file_size} bytes"
                        ),
                    });
                }
                Message::Announce(Announce {
                    file_name,
                    file_size,
                    datagrams,
                    datagram_size,
                    data_port,
                    mode,
                    sha256,
                })
            }
            kind::START => {
                r.what = "start";
                Message::Start { time_us: r.u64()? }
            }
            kind::DONE => {
                r.what = "done";
                Message::Done(Done {
                    datagrams_sent: r.u64()?,
                    bytes_sent: r.u64()?,
                    duration_us: r.u64()?,
                })
            }
            kind::REPORT => {
                r.what = "report";
                let datagrams_received = r.u64()?;
                let bytes_received = r.u64()?;
                let duplicates = r.u64()?;
                let malformed = r.u64()?;
                let missing_datagrams = r.u64()?;
                let drops = r.u64()?;
                let flags = r.u8()?;
                let count = r.u32()? as usize;
                if count > MAX_REPORT_RANGES {
                    return Err(Error::Oversized {
                        what: "report's range list",
                        max: MAX_REPORT_RANGES,
                        got: count,
                    });
                }
                let mut missing = Vec::with_capacity(count);
                for _ in 0..count {
                    let range = SeqRange {
                        first: r.u32()?,
                        last: r.u32()?,
                    };
                    let ordered = missing
                        .last()
                        .is_none_or(|prev: &SeqRange| range.first > prev.last);
                    if range.last < range.first || !ordered {
                        return Err(Error::Invalid {
                            what: "report",
                            reason: "missing ranges out of order or overlapping".into(),
                        });
                    }
                    missing.push(range);
                }
                Message::Report(Report {
                    datagrams_received,
                    bytes_received,
                    duplicates,
                    malformed,
                    missing_datagrams,
                    kernel_drops: (flags & REPORT_FLAG_DROPS_KNOWN != 0).then_some(drops),
                    sha256_match: flags & REPORT_FLAG_SHA_MATCH != 0,
                    missing,
                    ranges_truncated: flags & REPORT_FLAG_TRUNCATED != 0,
                })
            }
            kind::ABORT => {
                r.what = "abort";
                let reason = String::from_utf8_lossy(r.bytes(body.len().min(MAX_REASON))?);
                Message::Abort {
                    reason: reason.into_owned(),
                }
            }
            kind::FEEDBACK => {
                r.what = "feedback";
                let round = r.u32()?;
                let arrived = r.u64()?;
                let lost = r.u64()?;
                let drops = r.u64()?;
                let flags = r.u8()?;
                // Both forms are valid: 29 bytes, or 45 with the timing.
                let timing = if body.len() >= FEEDBACK_TIMED_LEN {
                    let time_us = r.u64()?;
                    let delay = i64::from_be_bytes(r.array()?);
                    Some(FeedbackTiming {
                        time_us,
                        min_delay_us: (flags & FEEDBACK_FLAG_DELAY_KNOWN != 0).then_some(delay),
                    })
                } else {
                    None
                };
                Message::Feedback(Feedback {
                    round,
                    arrived,
                    lost,
                    kernel_drops: (flags & FEEDBACK_FLAG_DROPS_KNOWN != 0).then_some(drops),
                    timing,
                })
            }
            other => return Err(Error::UnknownMessage(other)),
        };
        if !r.buf.is_empty() {
            return Err(Error::Oversized {
                what: r.what,
                max: body.len() - r.buf.len(),
                got: body.len(),
            });
        }
        Ok(msg)
    }
}

/// Take fields off the front of a message body, length-checked.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::Truncated {
                what: self.what,
                need: n,
                got: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(u8::from_be_bytes(self.array()?))
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

/// Collapse sorted missing sequence numbers into ranges, keeping at most
/// `max` of them; returns the ranges and whether any were left out.
pub fn ranges_from_missing(
    missing: impl IntoIterator<Item = u32>,
    max: usize,
) -> (Vec<SeqRange>, bool) {
    let mut out: Vec<SeqRange> = Vec::new();
    for seq in missing {
        if let Some(r) = out
            .last_mut()
            .filter(|r| r.last.checked_add(1) == Some(seq))
        {
            r.last = seq;
        } else if out.len() == max {
            return (out, true);
        } else {
            out.push(SeqRange {
                first: seq,
                last: seq,
            });
        }
    }
    (out, false)
}

/// `3-7,10,12-13`: ranges as a log line.
pub fn format_ranges(ranges: &[SeqRange], truncated: bool) -> String {
    let mut parts: Vec<String> = ranges
        .iter()
        .map(|r| {
            if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}-{}", r.first, r.last)
            }
        })
        .collect();
    if truncated {
        parts.push("...".into());
    }
    parts.join(",")
}

/// Reads back what [`format_ranges`] wrote: the ranges, and whether the
/// list was cut (`...`). `None` when the text is not such a list.
pub fn parse_ranges(text: &str) -> Option<(Vec<SeqRange>, bool)> {
    let mut ranges = Vec::new();
    let mut truncated = false;
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "..." {
            truncated = true;
            continue;
        }
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (first, last) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        if last < first {
            return None;
        }
        ranges.push(SeqRange { first, last });
    }
    Some((ranges, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip() {
        let ranges = vec![
            SeqRange { first: 3, last: 7 },
            SeqRange {
                first: 10,
                last: 10,
            },
        ];
        for truncated in [false, true] {
            let text = format_ranges(&ranges, truncated);
            assert_eq!(parse_ranges(&text), Some((ranges.clone(), truncated)));
        }
        assert_eq!(parse_ranges("5-2"), None);
        assert_eq!(parse_ranges("x"), None);
        assert_eq!(parse_ranges(""), Some((Vec::new(), false)));
    }

    #[test]
    fn data_header_literal_bytes() {
        let bytes = [
            0x55, 0x4c, 0x01, 0x00, // magic "UL", version 1, flags
            0x00, 0x00, 0x01, 0x02, // seq 258
            0x00, 0x06, 0x44, 0x5b, 0x1f, 0x2a, 0x3b, 0x4c, // time
            0xaa, 0xbb, // payload
        ];
        let (h, payload) = DataHeader::parse(&bytes).unwrap();
        assert_eq!(h.seq, 258);
        assert_eq!(h.flags, 0);
        assert_eq!(h.send_time_us, 0x0006_445b_1f2a_3b4c);
        assert_eq!(payload, &[0xaa, 0xbb]);
        assert_eq!(h.emit(), bytes[..HEADER_LEN]);
    }

    #[test]
    fn data_header_rejects_bad_input() {
        let good = DataHeader {
            flags: 0,
            seq: 1,
            send_time_us: 2,
        }
        .emit();
        for n in 0..HEADER_LEN {
            assert!(matches!(
                DataHeader::parse(&good[..n]),
                Err(Error::Truncated { got, .. }) if got == n
            ));
        }
        let mut bad_magic = good;
        bad_magic[0] = b'X';
        assert!(DataHeader::parse(&bad_magic).is_err());
        let mut bad_version = good;
        bad_version[2] = 9;
        assert!(DataHeader::parse(&bad_version).is_err());
        // A header alone is a valid datagram with an empty payload.
        assert_eq!(DataHeader::parse(&good).unwrap().1.len(), 0);
    }

    fn announce() -> Announce {
        Announce {
            file_name: "100MB.bin".into(),
            file_size: 10_000,
            datagrams: 10,
            datagram_size: 1024,
            data_port: 5006,
            mode: Mode::Blast,
            sha256: [7; 32],
        }
    }

    #[test]
    fn feedback_frame_and_reliable_mode_bytes() {
        let frame = Message::Feedback(Feedback {
            round: 3,
            arrived: 0x0102,
            lost: 5,
            kernel_drops: Some(4),
            timing: None,
        })
        .encode();
        let mut want = vec![0x06, 0, 0, 0, 29, 0, 0, 0, 3];
        want.extend_from_slice(&0x0102u64.to_be_bytes());
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(&4u64.to_be_bytes());
        want.push(0x01);
        assert_eq!(frame, want, "the first form, as captures hold it");
        let timed = Feedback {
            round: 3,
            arrived: 0x0102,
            lost: 5,
            kernel_drops: None,
            timing: Some(FeedbackTiming {
                time_us: 0x0a0b,
                min_delay_us: Some(-2),
            }),
        };
        let frame = Message::Feedback(timed).encode();
        let mut want = vec![0x06, 0, 0, 0, 45, 0, 0, 0, 3];
        want.extend_from_slice(&0x0102u64.to_be_bytes());
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(&0u64.to_be_bytes());
        want.push(0x02);
        want.extend_from_slice(&0x0a0bu64.to_be_bytes());
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(frame, want);
        assert_eq!(
            Message::decode(&frame).unwrap().unwrap().0,
            Message::Feedback(timed)
        );
        // Timing without a delay sample: the flag says the field is empty.
        let mut no_delay = frame.clone();
        no_delay[33] = 0;
        let Message::Feedback(f) = Message::decode(&no_delay).unwrap().unwrap().0 else {
            panic!("not feedback");
        };
        assert_eq!(f.timing.map(|t| t.min_delay_us), Some(None));
        // A body between the two forms, or past the longer, is refused.
        for len in [30u8, 44, 46] {
            let mut odd = frame[..5].to_vec();
            odd[4] = len;
            odd.resize(5 + usize::from(len), 0);
            assert!(Message::decode(&odd).is_err(), "{len}-byte feedback");
        }
        let mut a = announce();
        a.mode = Mode::Reliable;
        let frame = Message::Announce(a.clone()).encode();
        assert_eq!(frame[21], 1, "mode byte");
        assert_eq!(
            Message::decode(&frame).unwrap().unwrap().0,
            Message::Announce(a)
        );
        let mut unknown = frame.clone();
        unknown[21] = 2;
        assert!(Message::decode(&unknown).is_err());
    }

    #[test]
    fn announce_frame_layout() {
        let frame = Message::Announce(announce()).encode();
        assert_eq!(frame[0], 0x01);
        assert_eq!(&frame[1..5], &(52u32 + 9).to_be_bytes());
        assert_eq!(&frame[5..13], &10_000u64.to_be_bytes());
        assert_eq!(&frame[13..17], &10u32.to_be_bytes());
        assert_eq!(&frame[17..19], &[0x04, 0x00]);
        assert_eq!(&frame[19..21], &[0x13, 0x8e]);
        assert_eq!(&frame[frame.len() - 9..], b"100MB.bin");
        let (msg, used) = Message::decode(&frame).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(msg, Message::Announce(announce()));
        let a = announce();
        assert_eq!(a.chunk_size(), 1008);
        assert_eq!(a.payload_len(0), Some(1008));
        assert_eq!(a.payload_len(9), Some(10_000 - 9 * 1008));
        assert_eq!(a.payload_len(10), None);
    }

    #[test]
    fn every_message_round_trips_and_partial_frames_wait() {
        let msgs = [
            Message::Announce(announce()),
            Message::Start { time_us: 42 },
            Message::Done(Done {
                datagrams_sent: 10,
                bytes_sent: 10_000,
                duration_us: 1234,
            }),
            Message::Report(Report {
                datagrams_received: 7,
                bytes_received: 7056,
                duplicates: 1,
                malformed: 2,
                missing_datagrams: 3,
                kernel_drops: Some(3),
                sha256_match: false,
                missing: vec![
                    SeqRange { first: 1, last: 2 },
                    SeqRange { first: 5, last: 5 },
                ],
                ranges_truncated: false,
            }),
            Message::Report(Report {
                datagrams_received: 0,
                bytes_received: 0,
                duplicates: 0,
                malformed: 0,
                missing_datagrams: 0,
                kernel_drops: None,
                sha256_match: true,
                missing: vec![],
                ranges_truncated: true,
            }),
            Message::Abort {
                reason: "barrier timeout".into(),
            },
            Message::Feedback(Feedback {
                round: 2,
                arrived: 1 << 40,
                lost: 17,
                kernel_drops: Some(9),
                timing: Some(FeedbackTiming {
                    time_us: 1 << 50,
                    min_delay_us: Some(-7),
                }),
            }),
            Message::Feedback(Feedback {
                round: 0,
                arrived: 0,
                lost: 0,
                kernel_drops: None,
                timing: None,
            }),
        ];
        for msg in msgs {
            let frame = msg.encode();
            for cut in 0..frame.len() {
                assert_eq!(
                    Message::decode(&frame[..cut]),
                    Ok(None),
                    "{msg:?} cut {cut}"
                );
            }
            let mut two = frame.clone();
            two.extend_from_slice(&frame);
            let (got, used) = Message::decode(&two).unwrap().unwrap();
            assert_eq!(got, msg);
            assert_eq!(used, frame.len());
        }
    }

    #[test]
    fn hostile_frames_are_refused() {
        // Unknown type.
        assert_eq!(
            Message::decode(&[0x7f, 0, 0, 0, 0]),
            Err(Error::UnknownMessage(0x7f))
        );
        // A length beyond the limit is refused before its body arrives.
        assert!(matches!(
            Message::decode(&[0x01, 0xff, 0xff, 0xff, 0xff]),
            Err(Error::Oversized { .. })
        ));
        // A body longer than its message.
        let mut start = Message::Start { time_us: 1 }.encode();
        start[4] += 1;
        start.push(0);
        assert!(matches!(
            Message::decode(&start),
            Err(Error::Oversized { .. })
        ));
        // Too short a body.
        assert!(matches!(
            Message::decode(&[0x03, 0, 0, 0, 1, 0]),
            Err(Error::Truncated { .. })
        ));
        // An announce whose datagram count does not fit the size.
        let mut a = announce();
        a.datagrams = 9;
        assert!(Message::decode(&Message::Announce(a).encode()).is_err());
        // An announce with a path for a name is cut to its base name.
        let mut a = announce();
        a.file_name = "../../etc/passwd".into();
        let Some((Message::Announce(got), _)) =
            Message::decode(&Message::Announce(a).encode()).unwrap()
        else {
            panic!("not an announce");
        };
        assert_eq!(got.file_name, "passwd");
        // Overlapping ranges in a report.
        let mut frame = Message::Report(Report {
            datagrams_received: 0,
            bytes_received: 0,
            duplicates: 0,
            malformed: 0,
            missing_datagrams: 0,
            kernel_drops: None,
            sha256_match: false,
            missing: vec![
                SeqRange { first: 5, last: 9 },
                SeqRange {
                    first: 20,
                    last: 30,
                },
            ],
            ranges_truncated: false,
        })
        .encode();
        let n = frame.len();
        frame[n - 8..n - 4].copy_from_slice(&8u32.to_be_bytes());
        assert!(Message::decode(&frame).is_err());
    }

    #[test]
    fn plan_limits() {
        assert_eq!(plan(0, 1024), Ok(0));
        assert_eq!(plan(1008, 1024), Ok(1));
        assert_eq!(plan(1009, 1024), Ok(2));
        assert!(plan(1, 16).is_err());
        assert!(plan(1, 65_508).is_err());
        assert!(plan(u64::MAX, 17).is_err());
    }

    #[test]
    fn missing_ranges() {
        let (r, cut) = ranges_from_missing([1, 2, 3, 7, 9, 10], 10);
        assert!(!cut);
        assert_eq!(format_ranges(&r, cut), "1-3,7,9-10");
        let (r, cut) = ranges_from_missing([1, 3, 5, 7], 2);
        assert!(cut);
        assert_eq!(format_ranges(&r, cut), "1,3,...");
        let (r, cut) = ranges_from_missing([u32::MAX - 1, u32::MAX], 2);
        assert_eq!((r.len(), cut), (1, false));
    }
}
