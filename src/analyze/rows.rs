//! What the report shows: one row per client, control connection and UDP
//! flow, built from the joined transfer ([`super::correlate::Transfer`])
//! and its typed account ([`super::account`]). Rows are output only: the
//! join never reads them back.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::account::{
    self, AccountRow, Claim, Claimed, Facts, Figure, Inconsistency, Repair, Source, Verdict, first,
};
use super::correlate::{CapturePoint, Transfer};
use super::flows::Flow;
use super::logs::LoadedLog;
use super::registration::Registration;
use super::tcp::Connection;
use crate::protocol::{Mode, Protocol, v1};
use crate::transfer_log::Role;

/// Missing sequence ranges listed per flow in the report.
const MAX_LISTED_RANGES: usize = 32;

/// What the capture and the logs tell about one client's transfer.
#[derive(Debug, Clone, Serialize)]
pub struct ClientRow {
    pub client_id: Option<u16>,
    /// From the registration, the data, or the logs.
    pub protocol: Option<Protocol>,
    pub server_port: Option<u16>,
    pub client_port: Option<u16>,
    pub server: SocketAddr,
    pub client: SocketAddr,
    pub file_name: Option<String>,
    pub file_size: Option<u64>,
    pub sent_bytes: Option<u64>,
    pub sent_source: Option<Source>,
    pub wire_data_frames: Option<u64>,
    pub wire_full_frames: Option<u64>,
    pub wire_frame_len: Option<u32>,
    pub wire_data_bytes: Option<u64>,
    pub received_bytes: Option<u64>,
    pub received_source: Option<Source>,
    pub kernel_drops: Option<u64>,
    pub kernel_drops_source: Option<Source>,
    /// Sent less the first capture point's data bytes. Null when the
    /// capture cannot place the loss (it dropped or missed packets, or a
    /// damaged file cuts the flow off).
    pub lost_before_capture_bytes: Option<i64>,
    /// The first capture point's data bytes less the last's: the network.
    /// Null with one capture point.
    pub lost_between_captures_bytes: Option<i64>,
    /// The last capture point's data bytes less what the client kept.
    pub lost_after_capture_bytes: Option<i64>,
    /// The flow at each capture point, in path order (nearest the sender
    /// first).
    pub path: Vec<PathPoint>,
    pub loss_pct: Option<f64>,
    /// First to last data datagram on the wire.
    pub duration_s: Option<f64>,
    /// Data bytes on the wire over `duration_s`, in 10^6 bytes per second.
    pub rate_mb_s: Option<f64>,
    pub server_log_duration_s: Option<f64>,
    pub client_log_duration_s: Option<f64>,
    pub success: Option<bool>,
    pub icmp_port_unreachable: Option<u64>,
    /// Data datagrams the file takes (v1: the announce, or the server's log).
    pub datagrams_total: Option<u64>,
    pub capture_dropped: Option<u64>,
    /// Data datagrams that reached the client's host but are not in the
    /// capture, as the logs or the client's reported sequence numbers prove.
    pub capture_missed_datagrams: Option<u64>,
    /// The capture file holding the flow is damaged and ends before the
    /// flow can be shown complete.
    pub capture_cut_short: bool,
    pub server_log: Option<String>,
    pub client_log: Option<String>,
    /// True when no control connection of this client was captured.
    pub control_seen: bool,
    /// v1: `blast` or `reliable`, from the server's log, the client's log,
    /// the captured announce, or `reliable` when the wire carried datagrams
    /// with the retransmission flag.
    pub mode: Option<Mode>,
    /// Where `mode` comes from: the server's or client's log, the captured
    /// announce, or the wire's retransmission flags.
    pub mode_source: Option<Source>,
    /// Data datagrams on the wire with the retransmission flag (v1 headers).
    pub wire_retransmitted: Option<u64>,
    /// Distinct sequence numbers on the wire (v1 headers).
    pub wire_distinct_datagrams: Option<u64>,
    /// Datagrams the server resent in repair rounds (its log).
    pub datagrams_retransmitted: Option<u64>,
    /// Repair rounds after the first pass (the server's log, or else the
    /// client's).
    pub repair_rounds: Option<u32>,
    /// The server's pacing rate when the transfer ended, 10^6 bits per
    /// second (its log).
    pub final_rate_mbit_s: Option<f64>,
    /// Repair requests the server refused (its log).
    pub reports_rejected: Option<u64>,
    /// Datagrams that reached the client after it had the whole file (its
    /// log).
    pub late: Option<u64>,
    /// Every data byte (each copy) over the time it took, 10^6 bytes per
    /// second: the wire's (as `rate_mb_s`), or the server log's `rate_mb_s`.
    pub throughput_mb_s: Option<f64>,
    /// The capture or the server's log.
    pub throughput_source: Option<Source>,
    /// Distinct file bytes delivered over the time it took, 10^6 bytes per
    /// second: from the wire, or the client's or server's log.
    pub goodput_mb_s: Option<f64>,
    /// The capture, or the client's or server's log.
    pub goodput_source: Option<Source>,
    /// Where the bytes went, as values.
    pub account: AccountRow,
    /// The account rendered as one line.
    pub verdict: String,
}

/// One capture point on a client's path.
#[derive(Debug, Clone, Serialize)]
pub struct PathPoint {
    /// The capture file.
    pub capture: String,
    pub data_frames: u64,
    pub data_bytes: u64,
    /// Packets its capturer dropped, by its statistics; null when the file
    /// does not say.
    pub dropped: Option<u64>,
}

/// A control connection as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ControlRow {
    pub client_id: Option<u16>,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub handshake: super::tcp::HandshakeSeen,
    pub syn_time: Option<String>,
    pub handshake_rtt_us: Option<f64>,
    pub mss: Option<u16>,
    pub client_mss: Option<u16>,
    pub server_mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub client_window_scale: Option<u8>,
    pub server_window_scale: Option<u8>,
    pub sack_permitted: Option<bool>,
    pub protocol: Option<Protocol>,
    pub udp_port: Option<u16>,
    pub concurrency: Option<u16>,
    /// v1 messages seen, in order, by direction.
    pub messages: Vec<String>,
    pub bytes_to_server: u64,
    pub bytes_to_client: u64,
    pub retransmitted_segments: u64,
    pub teardown: Option<String>,
    /// Why the control bytes could not be read in full, if so.
    pub note: Option<String>,
}

/// A UDP flow as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FlowRow {
    pub capture: String,
    pub src: String,
    pub dst: String,
    /// The protocol its datagrams speak; null when unrecognised.
    pub kind: Option<Protocol>,
    pub frames: u64,
    pub payload_bytes: u64,
    pub name_datagram: Option<String>,
    pub size_datagram: Option<u64>,
    pub data_frames: u64,
    pub full_frames: u64,
    pub full_frame_len: Option<u32>,
    pub data_bytes: u64,
    pub other_frames: u64,
    pub first_time: String,
    pub last_time: String,
    pub duration_s: f64,
    pub rate_mb_s: Option<f64>,
    pub longest_silence_s: f64,
    pub longest_silence_at: Option<String>,
    pub icmp_port_unreachable: u64,
    pub v1: Option<SeqRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeqRow {
    pub distinct: u64,
    pub duplicates: u64,
    pub retransmitted: u64,
    pub reordered: u64,
    pub highest_seq: Option<u32>,
    /// Datagrams the file needs, when the announce was captured.
    pub expected: Option<u32>,
    pub missing: u64,
    /// Inclusive ranges, at most a few dozen listed.
    pub missing_ranges: Vec<[u32; 2]>,
    pub jitter_us: f64,
}

/// A time in RFC 3339 with microseconds, UTC.
pub fn format_time(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    .unwrap_or_else(|| format!("{ns} ns"))
}

/// Round to `digits` decimals, so that reports compare and read well.
pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

pub fn control_row(c: &Connection, r: &Registration) -> ControlRow {
    ControlRow {
        client_id: r.client_id,
        client: c.client,
        server: c.server,
        handshake: c.handshake(),
        syn_time: c.client_syn.map(|s| format_time(s.at_ns)),
        handshake_rtt_us: c.handshake_rtt_us().map(|x| round(x, 3)),
        mss: c.mss(),
        client_mss: c.client_syn.and_then(|s| s.mss),
        server_mss: c.server_syn.and_then(|s| s.mss),
        window_scale: c.window_scale(),
        client_window_scale: c.client_syn.and_then(|s| s.window_scale),
        server_window_scale: c.server_syn.and_then(|s| s.window_scale),
        sack_permitted: c.sack_permitted(),
        protocol: r.protocol(),
        udp_port: r.port.map(|p| p.port),
        concurrency: r.concurrency,
        messages: r.messages.clone(),
        bytes_to_server: c.to_server.len,
        bytes_to_client: c.to_client.len,
        retransmitted_segments: c.retransmitted(),
        teardown: c.teardown.map(|t| t.describe()),
        note: r.note.clone(),
    }
}

pub fn flow_row(f: &Flow, capture: String, expected: Option<u32>) -> FlowRow {
    let duration_s = f.last_ns.saturating_sub(f.first_ns) as f64 / 1e9;
    FlowRow {
        capture,
        src: f.key.src.to_string(),
        dst: f.key.dst.to_string(),
        kind: f.protocol,
        frames: f.frames,
        payload_bytes: f.payload_bytes,
        name_datagram: f.file_name.clone(),
        size_datagram: f.file_size,
        data_frames: f.data.frames,
        full_frames: f.data.full_frames,
        full_frame_len: f.data.full_frame_len(),
        data_bytes: f.data.bytes,
        other_frames: f.other_frames,
        first_time: format_time(f.first_ns),
        last_time: format_time(f.last_ns),
        duration_s: round(duration_s, 6),
        rate_mb_s: rate(f.data.bytes, f.data.duration_s()),
        longest_silence_s: round(f.longest_silence_ns as f64 / 1e9, 6),
        longest_silence_at: f.longest_silence_at_ns.map(format_time),
        icmp_port_unreachable: f.icmp_unreachable,
        v1: f.seq.as_ref().map(|s| {
            let count = expected
                .or(s.highest.map(|h| h.saturating_add(1)))
                .unwrap_or(0);
            let (ranges, missing) = s.missing(count, MAX_LISTED_RANGES);
            SeqRow {
                distinct: s.distinct,
                duplicates: s.duplicates,
                retransmitted: s.retransmitted,
                reordered: s.reordered,
                highest_seq: s.highest,
                expected,
                missing,
                missing_ranges: ranges.into_iter().map(|(a, b)| [a, b]).collect(),
                jitter_us: round(s.jitter_us, 3),
            }
        }),
    }
}

pub fn rate(bytes: u64, duration_s: Option<f64>) -> Option<f64> {
    let d = duration_s?;
    (d > 0.0).then(|| round(bytes as f64 / d / 1e6, 3))
}

/// One client's row: its figures, each from the best input that tells
/// it, and the account drawn from them.
pub fn client_row(t: &Transfer, points: &[CapturePoint]) -> ClientRow {
    let flow = t.nearest_receiver();
    let fig = Figures::gather(t, flow);
    let facts = fig.facts(t, flow, points);
    let verdict = Verdict::of(&facts);
    let places_loss = verdict.capture_places_loss();
    let diff = |a: Option<u64>, b: Option<u64>| Some(account::signed_diff(a?, b?));
    let several = t.flows.len() > 1;
    let (lost_before, lost_between, lost_after) = if places_loss {
        (
            diff(fig.sent.map(|s| s.value), fig.first_wire.map(|w| w.bytes)),
            diff(fig.first_wire.map(|w| w.bytes), fig.wire.map(|w| w.bytes)).filter(|_| several),
            diff(fig.wire.map(|w| w.bytes), fig.received.map(|r| r.value)),
        )
    } else {
        (None, None, None)
    };
    let capture_whole = facts.capture_dropped.is_none_or(|n| n == 0);
    let throughput = first([
        (fig.wire_rate.filter(|_| capture_whole), Source::Capture),
        (log_value(t.server_log, |l| l.rate_mb_s), Source::ServerLog),
    ]);
    let goodput = first([
        (
            fig.wire_goodput(flow).filter(|_| capture_whole),
            Source::Capture,
        ),
        // The server's clock runs from the first datagram sent to the
        // client's confirmation: the same span as its throughput.
        (
            log_value(t.server_log, |l| l.goodput_mb_s),
            Source::ServerLog,
        ),
        (
            log_value(t.client_log, |l| l.goodput_mb_s),
            Source::ClientLog,
        ),
    ]);
    let places = verdict.places(&facts);
    let capture_blind = match &verdict {
        Verdict::Blast {
            loss: account::Blast::CannotTell { why, .. },
            ..
        } => Some(*why),
        Verdict::Reliable(r) => match &r.copies {
            Some(account::Copies::CannotTell { why, .. }) => Some(*why),
            _ => None,
        },
        _ => None,
    };
    ClientRow {
        client_id: t.identity.client_id,
        protocol: fig.protocol,
        server: t.identity.server,
        client: t.identity.client,
        server_port: t.identity.server_port,
        client_port: t.identity.client_port,
        file_name: fig.file_name.clone(),
        file_size: fig.file_size,
        sent_bytes: fig.sent.map(|f| f.value),
        sent_source: fig.sent.map(|f| f.source),
        wire_data_frames: fig.wire.map(|w| w.frames),
        wire_full_frames: fig.wire.map(|w| w.full_frames),
        wire_frame_len: flow.and_then(|f| f.data.full_frame_len()),
        wire_data_bytes: fig.wire.map(|w| w.bytes),
        received_bytes: fig.received.map(|f| f.value),
        received_source: fig.received.map(|f| f.source),
        kernel_drops: fig.kernel_drops.map(|f| f.value),
        kernel_drops_source: fig.kernel_drops.map(|f| f.source),
        lost_before_capture_bytes: lost_before,
        lost_between_captures_bytes: lost_between,
        lost_after_capture_bytes: lost_after,
        path: t
            .flows
            .iter()
            .map(|f| PathPoint {
                capture: points
                    .get(f.point)
                    .map(|p| p.label.clone())
                    .unwrap_or_default(),
                data_frames: f.data.frames,
                data_bytes: f.data.bytes,
                dropped: points.get(f.point).and_then(|p| p.dropped),
            })
            .collect(),
        loss_pct: fig.loss_pct(),
        duration_s: flow.and_then(|f| f.data.duration_s()).map(|d| round(d, 6)),
        rate_mb_s: fig.wire_rate,
        server_log_duration_s: log_value(t.server_log, |l| l.duration_s),
        client_log_duration_s: log_value(t.client_log, |l| l.duration_s),
        success: fig.success.map(|f| f.value),
        icmp_port_unreachable: flow.map(|_| facts.icmp),
        datagrams_total: fig.datagrams_total,
        capture_dropped: facts.capture_dropped,
        capture_missed_datagrams: facts.capture_missed,
        capture_cut_short: facts.cut_short,
        verdict: verdict.to_string(),
        account: AccountRow {
            mode: fig.mode.map(|m| m.value),
            places,
            capture_blind,
            inconsistent_source: facts.inconsistent,
        },
        server_log: t.server_log.map(|l| l.path.display().to_string()),
        client_log: t.client_log.map(|l| l.path.display().to_string()),
        control_seen: t.registration.is_some(),
        mode: fig.mode.map(|m| m.value),
        mode_source: fig.mode.map(|m| m.source),
        wire_retransmitted: fig.wire_retransmitted,
        wire_distinct_datagrams: fig.wire_distinct,
        datagrams_retransmitted: log_value(t.server_log, |l| l.datagrams_retransmitted),
        repair_rounds: fig.repair_rounds,
        final_rate_mbit_s: log_value(t.server_log, |l| l.final_rate_mbit_s),
        reports_rejected: log_value(t.server_log, |l| l.reports_rejected),
        late: log_value(t.client_log, |l| l.late),
        throughput_mb_s: throughput.map(|f| f.value),
        throughput_source: throughput.map(|f| f.source),
        goodput_mb_s: goodput.map(|f| f.value),
        goodput_source: goodput.map(|f| f.source),
    }
}

/// A fact of a log, if the log is there and tells it.
fn log_value<T>(
    log: Option<&LoadedLog>,
    get: impl FnOnce(&crate::transfer_log::TransferLog) -> Option<T>,
) -> Option<T> {
    log.and_then(|l| get(&l.log))
}

/// What a capture point holds of the data.
#[derive(Debug, Clone, Copy)]
struct Wire {
    frames: u64,
    full_frames: u64,
    bytes: u64,
}

impl Wire {
    fn of(f: &Flow) -> Wire {
        Wire {
            frames: f.data.frames,
            full_frames: f.data.full_frames,
            bytes: f.data.bytes,
        }
    }
}

/// Datagrams a point nearer the sender missed, at least: every one a point
/// further along the path saw crossed it first.
fn upstream_missed(path: &[&Flow]) -> Option<u64> {
    path.iter()
        .enumerate()
        .flat_map(|(i, up)| {
            path.iter()
                .skip(i + 1)
                .map(move |down| down.data.frames.saturating_sub(up.data.frames))
        })
        .max()
}

/// A transfer's figures, each from the best input that tells it.
struct Figures {
    protocol: Option<Protocol>,
    mode: Option<Figure<Mode>>,
    file_name: Option<String>,
    file_size: Option<u64>,
    sent: Option<Figure<u64>>,
    received: Option<Figure<u64>>,
    kernel_drops: Option<Figure<u64>>,
    success: Option<Figure<bool>>,
    /// At the point nearest the receiver.
    wire: Option<Wire>,
    /// At the point nearest the sender.
    first_wire: Option<Wire>,
    wire_rate: Option<f64>,
    wire_retransmitted: Option<u64>,
    wire_distinct: Option<u64>,
    datagrams_total: Option<u64>,
    repair_rounds: Option<u32>,
    /// A figure no transfer can have; it is left out of the others.
    inconsistent: Option<Inconsistency>,
}

impl Figures {
    fn gather(t: &Transfer, flow: Option<&Flow>) -> Figures {
        let reg = t.registration;
        let announce = reg.and_then(|r| r.announce.as_ref());
        let done = reg.and_then(|r| r.done);
        let report = reg.and_then(|r| r.report.as_ref());
        let (slog, clog) = (t.server_log, t.client_log);
        let protocol = reg
            .and_then(Registration::protocol)
            .or(flow.and_then(|f| f.protocol))
            .or_else(|| slog.or(clog).and_then(|l| l.log.protocol));
        let file_name = announce
            .map(|a| a.file_name.clone())
            .or_else(|| log_value(slog, |l| l.file_name.clone()))
            .or_else(|| flow.and_then(|f| f.file_name.clone()))
            .or_else(|| log_value(clog, |l| l.file_name.clone()));
        let file_size = announce
            .map(|a| a.file_size)
            .or_else(|| log_value(slog, |l| l.file_size))
            .or_else(|| flow.and_then(|f| f.file_size))
            .or_else(|| log_value(clog, |l| l.file_size));
        let sent = first([
            (log_value(slog, |l| l.bytes_sent), Source::ServerLog),
            (done.map(|d| d.bytes_sent), Source::V1Done),
        ]);
        let mut received = first([
            (log_value(clog, |l| l.bytes_received), Source::ClientLog),
            (report.map(|r| r.bytes_received), Source::V1Report),
        ]);
        let kernel_drops = first([
            (log_value(clog, |l| l.kernel_drops), Source::ClientLog),
            (report.and_then(|r| r.kernel_drops), Source::V1Report),
        ]);
        // When the registration was captured but no data was, the wire
        // carried none: zero is what the capture tells.
        let at = |f: Option<&Flow>| match f {
            Some(f) => Some(Wire::of(f)),
            None if reg.is_some() => Some(Wire {
                frames: 0,
                full_frames: 0,
                bytes: 0,
            }),
            None => None,
        };
        let wire = at(flow);
        let first_wire = at(t.nearest_sender());
        // The v1 sequence numbers: copies resent, and distinct datagrams
        // (not told when some were beyond what could be tracked).
        let (wire_retransmitted, wire_distinct) = match (flow, flow.and_then(|f| f.seq.as_ref())) {
            (Some(_), Some(s)) => (
                Some(s.retransmitted),
                (s.untracked == 0).then_some(s.distinct),
            ),
            (None, _) if reg.is_some() && protocol == Some(Protocol::V1) => (Some(0), Some(0)),
            _ => (None, None),
        };
        let mode = first([
            (log_value(slog, |l| l.mode), Source::ServerLog),
            (log_value(clog, |l| l.mode), Source::ClientLog),
            (announce.map(|a| a.mode), Source::V1Announce),
            (
                wire_retransmitted
                    .filter(|&n| n > 0)
                    .map(|_| Mode::Reliable),
                Source::RetransmitFlags,
            ),
        ]);
        let reliable = mode.is_some_and(|m| m.value == Mode::Reliable);
        // In the reliable mode the server calls a transfer a success only
        // when the client confirmed the file: its log may say so when the
        // client's does not.
        let success = first([
            (log_value(clog, |l| l.success), Source::ClientLog),
            (report.map(|r| r.sha256_match), Source::V1Report),
            (
                log_value(slog, |l| l.success).filter(|_| reliable),
                Source::ServerLog,
            ),
        ]);
        let datagrams_total = announce
            .map(|a| u64::from(a.datagrams))
            .or_else(|| log_value(slog, |l| l.datagrams_total));
        // A transfer sent once delivers at most what was sent; the reliable
        // mode's sent count holds every copy, so only the file bounds it.
        let once = !mode.is_some_and(|m| m.value == Mode::Reliable);
        let received_datagrams = first([
            (log_value(clog, |l| l.datagrams_received), Source::ClientLog),
            (report.map(|r| r.datagrams_received), Source::V1Report),
        ]);
        let sent_datagrams =
            log_value(slog, |l| l.datagrams_sent).or(done.map(|d| d.datagrams_sent));
        // The server's log relays the client's last report.
        let missing = first([
            (log_value(clog, |l| l.missing_datagrams), Source::ClientLog),
            (report.map(|r| r.missing_datagrams), Source::V1Report),
            (log_value(slog, |l| l.missing_datagrams), Source::ServerLog),
        ]);
        let inconsistent = Inconsistency::find([
            (Claim::BytesOverFile, received, file_size),
            (
                Claim::BytesOverSent,
                received,
                sent.map(|f| f.value).filter(|_| once),
            ),
            (
                Claim::DatagramsOverFile,
                received_datagrams,
                datagrams_total,
            ),
            (Claim::DatagramsOverSent, received_datagrams, sent_datagrams),
            (Claim::MissingOverFile, missing, datagrams_total),
        ]);
        if inconsistent.is_some_and(|i| i.claim.figure() == Claimed::ReceivedBytes) {
            received = None;
        }
        Figures {
            protocol,
            mode,
            file_name,
            file_size,
            sent,
            received,
            kernel_drops,
            success,
            wire,
            first_wire,
            wire_rate: flow.and_then(|f| rate(f.data.bytes, f.data.duration_s())),
            wire_retransmitted,
            wire_distinct,
            datagrams_total,
            repair_rounds: log_value(slog, |l| l.repair_rounds)
                .or_else(|| log_value(clog, |l| l.repair_rounds)),
            inconsistent,
        }
    }

    /// Whether `figure` is the one an inconsistent source claims.
    fn left_out(&self, figure: Claimed) -> bool {
        self.inconsistent
            .is_some_and(|i| i.claim.figure() == figure)
    }

    fn reliable(&self) -> bool {
        self.mode.is_some_and(|m| m.value == Mode::Reliable)
    }

    /// The file's loss. The reliable mode sends more than the file (every
    /// resent copy counts in `sent_bytes`): only the file's size measures it.
    fn loss_pct(&self) -> Option<f64> {
        let sent = self.sent.map(|f| f.value);
        let whole = if self.reliable() {
            self.file_size
        } else {
            self.file_size.or(sent)
        };
        match (whole, self.received.map(|f| f.value)) {
            (Some(0), Some(_)) => Some(0.0),
            // More kept than the whole is an inconsistent source, flagged
            // in the account; never a negative loss.
            (Some(total), Some(got)) if got <= total => {
                Some(round(100.0 * (total as f64 - got as f64) / total as f64, 3))
            }
            _ => None,
        }
    }

    /// Goodput on the wire: the file bytes of the first copy of each
    /// datagram (the lab's protocol never resends: all of its data), as
    /// much as the client kept, over the flow's data time.
    fn wire_goodput(&self, flow: Option<&Flow>) -> Option<f64> {
        let f = flow?;
        let distinct = match &f.seq {
            Some(s) if s.untracked == 0 => s.distinct_bytes,
            Some(_) => return None,
            None => f.data.bytes,
        };
        rate(distinct.min(self.received?.value), f.data.duration_s())
    }

    /// The facts the verdict is drawn from.
    fn facts(&self, t: &Transfer, flow: Option<&Flow>, points: &[CapturePoint]) -> Facts {
        let (slog, clog) = (t.server_log, t.client_log);
        let report = t.registration.and_then(|r| r.report.as_ref());
        let done = t.registration.and_then(|r| r.done);
        let received_datagrams = log_value(clog, |l| l.datagrams_received)
            .or(report.map(|r| r.datagrams_received))
            .filter(|_| !self.left_out(Claimed::ReceivedDatagrams));
        let duplicates = log_value(clog, |l| l.duplicates).or(report.map(|r| r.duplicates));
        let late = log_value(clog, |l| l.late);
        let client_extra = match (duplicates, late) {
            (None, None) => None,
            (d, l) => Some(d.unwrap_or(0).saturating_add(l.unwrap_or(0))),
        };
        let sent_datagrams =
            log_value(slog, |l| l.datagrams_sent).or(done.map(|d| d.datagrams_sent));
        let kernel_drops = self.kernel_drops.map(|f| f.value);
        // A capture point anywhere on the path that dropped packets blinds
        // the account of the whole path.
        let capture_dropped = t
            .flows
            .iter()
            .filter_map(|f| points.get(f.point).and_then(|p| p.dropped))
            .reduce(u64::saturating_add);
        let capture_whole = capture_dropped.is_none_or(|n| n == 0);
        let repair = self.reliable().then(|| Repair {
            rounds: self.repair_rounds,
            resent: log_value(slog, |l| l.datagrams_retransmitted)
                .or(self.wire_retransmitted.filter(|_| capture_whole)),
            wire_datagrams: self.wire.map(|w| w.frames),
            first_wire_datagrams: self.first_wire.map(|w| w.frames),
            total: self.datagrams_total,
            client_extra,
            // The server's log relays the client's last report.
            missing: log_value(clog, |l| l.missing_datagrams)
                .or(report.map(|r| r.missing_datagrams))
                .or_else(|| log_value(slog, |l| l.missing_datagrams))
                .filter(|_| !self.left_out(Claimed::MissingDatagrams))
                .or_else(|| Some(self.datagrams_total?.saturating_sub(received_datagrams?))),
            confirmed: self.success.map(|f| f.value).or_else(|| {
                (self.received.is_some() && self.received.map(|f| f.value) == self.file_size)
                    .then_some(true)
            }),
            error: log_value(slog, |l| l.error.clone())
                .map(|e| (Role::Server, e))
                .or_else(|| log_value(clog, |l| l.error.clone()).map(|e| (Role::Client, e))),
        });
        let evidence = Evidence {
            wire: self.wire,
            received_bytes: self.received.map(|f| f.value),
            received_datagrams,
            kernel_drops,
            client_extra,
            chunk: flow.and_then(|f| f.data.chunk()),
        };
        Facts {
            expected: self.sent.map(|f| f.value).or(self.file_size),
            file_size: self.file_size,
            wire: self.wire.map(|w| w.bytes),
            wire_frames: self.wire.map(|w| w.frames),
            first_wire: self.first_wire.map(|w| w.bytes),
            first_wire_frames: self.first_wire.map(|w| w.frames),
            points: t.flows.len(),
            received: self.received.map(|f| f.value),
            kernel_drops,
            capture_dropped,
            capture_missed: evidence
                .missed()
                .max(upstream_missed(&t.flows))
                .max(flow.and_then(|f| missed_by_sequence(f, t, self.datagrams_total)))
                .filter(|&n| n > 0),
            cut_short: t
                .flows
                .iter()
                .any(|f| points.get(f.point).is_some_and(|p| p.damaged))
                && !self.wire_is_complete(flow),
            // Each capture point counts the ICMP errors it saw; take the most.
            icmp: t
                .flows
                .iter()
                .map(|g| g.icmp_unreachable)
                .max()
                .unwrap_or(0),
            sent_datagrams,
            received_datagrams,
            repair,
            inconsistent: self.inconsistent,
        }
    }

    /// Whether the capture holds the whole flow, as far as the inputs can
    /// show it: every byte the server says it sent, or every datagram of
    /// the file by its sequence numbers.
    fn wire_is_complete(&self, flow: Option<&Flow>) -> bool {
        let Some(w) = self.wire else {
            return false;
        };
        let by_bytes = self.sent.is_some_and(|s| w.bytes >= s.value);
        let by_seq = flow
            .and_then(|f| f.seq.as_ref())
            .zip(self.datagrams_total)
            .is_some_and(|(s, total)| s.untracked == 0 && s.distinct >= total);
        by_bytes || by_seq
    }
}

/// What proves that datagrams reached the client's host which the capture
/// does not hold.
struct Evidence {
    wire: Option<Wire>,
    received_bytes: Option<u64>,
    received_datagrams: Option<u64>,
    kernel_drops: Option<u64>,
    client_extra: Option<u64>,
    /// File bytes of a full data datagram.
    chunk: Option<u64>,
}

impl Evidence {
    /// Datagrams the capture missed, at least: every datagram the client
    /// kept, counted again, or its kernel dropped crossed the capture point
    /// first; so did every byte it kept.
    fn missed(&self) -> Option<u64> {
        let w = self.wire?;
        let by_count = self.received_datagrams.map(|got| {
            got.saturating_add(self.kernel_drops.unwrap_or(0))
                .saturating_add(self.client_extra.unwrap_or(0))
                .saturating_sub(w.frames)
        });
        let by_bytes = self.received_bytes.map(|got| {
            let short = got.saturating_sub(w.bytes);
            short.div_ceil(self.chunk.filter(|&c| c > 0).unwrap_or(short.max(1)))
        });
        by_count.max(by_bytes)
    }
}

/// v1: the datagrams the client says it has (all but its reported missing
/// ranges) that the capture never saw. `None` when the client's list is
/// cut or absent, or the capture could not track every sequence number.
fn missed_by_sequence(flow: &Flow, t: &Transfer, total: Option<u64>) -> Option<u64> {
    let seq = flow.seq.as_ref().filter(|s| s.untracked == 0)?;
    let total = u32::try_from(total?).ok()?;
    let (ranges, truncated) = reported_missing(t)?;
    if truncated {
        return None;
    }
    let mut client_missing = 0u64;
    let mut seen_in_missing = 0u64;
    for r in ranges.iter().filter(|r| r.first < total) {
        let last = r.last.min(total - 1);
        client_missing += u64::from(last - r.first) + 1;
        seen_in_missing += seq.seen_in(r.first, last)?;
    }
    let client_has = u64::from(total).saturating_sub(client_missing);
    let seen_of_client_has = seq.distinct_below(total)?.saturating_sub(seen_in_missing);
    Some(client_has.saturating_sub(seen_of_client_has))
}

/// v1: the ranges of sequence numbers the client reported missing (its
/// Report message, or else its log), and whether its list was cut short.
pub fn reported_missing(t: &Transfer) -> Option<(Vec<v1::SeqRange>, bool)> {
    let report = t.registration.and_then(|r| r.report.as_ref());
    match (
        report,
        t.client_log.and_then(|l| l.log.missing_ranges.as_deref()),
    ) {
        (Some(r), _) => Some((r.missing.clone(), r.ranges_truncated)),
        (None, Some(text)) => v1::parse_ranges(text),
        (None, None) => {
            // A client log that lists no range and misses nothing has it all.
            let missing = t.client_log.and_then(|l| l.log.missing_datagrams)?;
            (missing == 0).then(|| (Vec::new(), false))
        }
    }
}

impl ClientRow {
    /// The keys of a row whose values are single values (not lists or
    /// objects), in the row's order: the CSV's columns, named as the JSON
    /// names them, so that the two can never disagree.
    pub fn csv_columns() -> Vec<String> {
        let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
        let blank = Transfer {
            identity: super::correlate::Identity {
                client_id: None,
                server: nowhere,
                client: nowhere,
                server_port: None,
                client_port: None,
            },
            registration: None,
            connection: None,
            flows: Vec::new(),
            server_log: None,
            client_log: None,
        };
        match serde_json::to_value(client_row(&blank, &[])) {
            Ok(serde_json::Value::Object(map)) => map
                .into_iter()
                .filter(|(_, v)| !v.is_object() && !v.is_array())
                .map(|(k, _)| k)
                .collect(),
            _ => Vec::new(),
        }
    }
}
