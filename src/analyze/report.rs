//! The report: a terminal table (comfy-table), JSON, CSV or JSON lines, to
//! any writer.

use std::io::{self, Write};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};

use super::Analysis;
use super::conversations::{ConversationRow, Proto};
use super::rows::ClientRow;

/// Output formats of `udplab analyze`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    /// One JSON object per client row per line, with the run's id: for
    /// appending many runs to one file
    Jsonl,
}

pub fn write(out: &mut dyn Write, a: &Analysis, format: Format) -> io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, a).map_err(io::Error::other)?;
            writeln!(out)
        }
        Format::Csv => write_csv(out, &a.clients),
        Format::Jsonl => out.write_all(&super::jsonl::lines(a, chrono::Utc::now())?),
        Format::Table => write_table(out, a),
    }
}

/// Digits in groups of three: 10,485,760.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn group_signed(n: i64) -> String {
    if n < 0 {
        format!("-{}", group(n.unsigned_abs()))
    } else {
        group(n as u64)
    }
}

/// An absent value: no input told it.
const NONE: &str = "-";

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| NONE.to_string())
}

pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    t
}

fn right_align(t: &mut Table, from: usize) {
    let n = t.column_count();
    for i in from..n {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// The per-client table and each client's verdict.
pub fn write_clients(out: &mut dyn Write, a: &Analysis) -> io::Result<()> {
    if a.clients.is_empty() {
        writeln!(out, "  no client transfer found in the capture")?;
    } else {
        // Repairs get their column only when some transfer had them.
        let repairs = a.clients.iter().any(|r| {
            r.mode == Some(crate::protocol::Mode::Reliable)
                || resent(r).is_some_and(|n| n > 0)
                || r.repair_rounds.is_some_and(|n| n > 0)
        });
        // The network's column only when some flow crossed two points.
        let between = a.clients.iter().any(|r| r.path.len() > 1);
        let mut header = vec![
            "client",
            "server port",
            "client port",
            "file size",
            "sent (server log)",
            "on the wire (capture)",
            "full frames",
            "received (client log)",
            "lost before capture",
        ];
        if between {
            header.push("lost between captures");
        }
        header.extend([
            "lost after capture",
            "loss %",
            "time s",
            "throughput / goodput MB/s",
        ]);
        if repairs {
            header.push("resent (rounds)");
        }
        header.extend(["kernel drops", "success"]);
        let mut t = table(&header);
        for r in &a.clients {
            let mut row = vec![
                opt(r.client_id, |v| v.to_string()),
                opt(r.server_port, |v| v.to_string()),
                opt(r.client_port, |v| v.to_string()),
                opt(r.file_size, group),
                opt(r.sent_bytes, group),
                opt(r.wire_data_bytes, group),
                match (r.wire_full_frames, r.wire_frame_len) {
                    (Some(n), Some(len)) => format!("{} x {len} B", group(n)),
                    (Some(n), None) => group(n),
                    _ => NONE.into(),
                },
                opt(r.received_bytes, group),
                opt(r.lost_before_capture_bytes, group_signed),
            ];
            if between {
                row.push(opt(r.lost_between_captures_bytes, group_signed));
            }
            row.extend([
                opt(r.lost_after_capture_bytes, group_signed),
                opt(r.loss_pct, |v| format!("{v:.2}")),
                opt(r.duration_s, |v| format!("{v:.3}")),
                format!(
                    "{} / {}",
                    opt(r.throughput_mb_s, |v| format!("{v:.1}")),
                    opt(r.goodput_mb_s, |v| format!("{v:.1}"))
                ),
            ]);
            if repairs {
                row.push(match (resent(r), r.repair_rounds) {
                    (Some(n), Some(k)) => format!("{} ({k})", group(n)),
                    (Some(n), None) => group(n),
                    (None, Some(k)) => format!("- ({k})"),
                    (None, None) => NONE.into(),
                });
            }
            row.extend([
                opt(r.kernel_drops, group),
                opt(r.success, |v| if v { "yes".into() } else { "no".into() }),
            ]);
            t.add_row(row);
        }
        right_align(&mut t, 0);
        writeln!(out, "{t}")?;
        for r in &a.clients {
            writeln!(
                out,
                "  client {}: {}",
                opt(r.client_id, |v| v.to_string()),
                r.verdict
            )?;
        }
    }
    Ok(())
}

/// Datagrams resent: the server's count, or else the wire's.
fn resent(r: &ClientRow) -> Option<u64> {
    r.datagrams_retransmitted.or(r.wire_retransmitted)
}

/// One test of `udplab lab --suite`, summed over its clients.
#[derive(Debug, Clone, Default)]
pub struct SuiteRow {
    pub test: usize,
    pub file_size: u64,
    pub clients: u16,
    pub loss_mean_pct: Option<f64>,
    pub loss_min_pct: Option<f64>,
    pub loss_max_pct: Option<f64>,
    pub lost_before_capture_bytes: Option<i64>,
    /// The network's share, with two capture points (null with one).
    pub lost_between_captures_bytes: Option<i64>,
    pub lost_after_capture_bytes: Option<i64>,
    pub kernel_drops: Option<u64>,
    pub capture_dropped: Option<u64>,
    /// Clients that got the whole file.
    pub complete: usize,
    pub seconds: f64,
}

impl SuiteRow {
    pub fn new(test: usize, file_size: u64, clients: u16, a: &Analysis, seconds: f64) -> SuiteRow {
        let losses: Vec<f64> = a.clients.iter().filter_map(|r| r.loss_pct).collect();
        let sum_i = |f: fn(&ClientRow) -> Option<i64>| -> Option<i64> {
            a.clients
                .iter()
                .map(f)
                .try_fold(0i64, |acc, v| Some(acc.saturating_add(v?)))
        };
        SuiteRow {
            test,
            file_size,
            clients,
            loss_mean_pct: (!losses.is_empty())
                .then(|| losses.iter().sum::<f64>() / losses.len() as f64),
            loss_min_pct: losses.iter().copied().reduce(f64::min),
            loss_max_pct: losses.iter().copied().reduce(f64::max),
            lost_before_capture_bytes: sum_i(|r| r.lost_before_capture_bytes),
            lost_between_captures_bytes: sum_i(|r| r.lost_between_captures_bytes),
            lost_after_capture_bytes: sum_i(|r| r.lost_after_capture_bytes),
            kernel_drops: a
                .clients
                .iter()
                .map(|r| r.kernel_drops)
                .try_fold(0u64, |acc, v| Some(acc.saturating_add(v?))),
            capture_dropped: a
                .captures
                .iter()
                .map(|c| c.dropped)
                .try_fold(0u64, |acc, v| Some(acc.saturating_add(v?)))
                .filter(|_| !a.captures.is_empty()),
            complete: a.clients.iter().filter(|r| r.success == Some(true)).count(),
            seconds,
        }
    }
}

/// The suite's summary: loss per test.
pub fn write_suite_summary(out: &mut dyn Write, rows: &[SuiteRow]) -> io::Result<()> {
    // The network's column when some test had two capture points.
    let between = rows.iter().any(|r| r.lost_between_captures_bytes.is_some());
    let mut header = vec![
        "test",
        "file",
        "clients",
        "loss % mean",
        "loss % min-max",
        "lost before capture",
    ];
    if between {
        header.push("lost between captures");
    }
    header.extend([
        "lost after capture",
        "kernel drops",
        "capture dropped",
        "complete",
        "time s",
    ]);
    let mut t = table(&header);
    for r in rows {
        let mut row = vec![
            r.test.to_string(),
            format!("{} MiB", r.file_size >> 20),
            r.clients.to_string(),
            opt(r.loss_mean_pct, |v| format!("{v:.2}")),
            match (r.loss_min_pct, r.loss_max_pct) {
                (Some(a), Some(b)) => format!("{a:.2}-{b:.2}"),
                _ => NONE.into(),
            },
            opt(r.lost_before_capture_bytes, group_signed),
        ];
        if between {
            row.push(opt(r.lost_between_captures_bytes, group_signed));
        }
        row.extend([
            opt(r.lost_after_capture_bytes, group_signed),
            opt(r.kernel_drops, group),
            opt(r.capture_dropped, group),
            format!("{}/{}", r.complete, r.clients),
            format!("{:.1}", r.seconds),
        ]);
        t.add_row(row);
    }
    right_align(&mut t, 0);
    writeln!(out, "{t}")
}

fn write_table(out: &mut dyn Write, a: &Analysis) -> io::Result<()> {
    writeln!(out, "Clients")?;
    write_clients(out, a)?;
    writeln!(out, "\nControl connections")?;
    if a.control.is_empty() {
        writeln!(out, "  none")?;
    } else {
        let mut t = table(&[
            "client",
            "from",
            "to",
            "handshake",
            "RTT us",
            "MSS",
            "wscale",
            "SACK",
            "protocol",
            "UDP port",
            "clients",
            "retrans",
            "teardown",
        ]);
        for c in &a.control {
            t.add_row(vec![
                opt(c.client_id, |v| v.to_string()),
                c.client.to_string(),
                c.server.to_string(),
                c.handshake.to_string(),
                opt(c.handshake_rtt_us, |v| format!("{v:.1}")),
                opt(c.mss, |v| v.to_string()),
                opt(c.window_scale, |v| v.to_string()),
                opt(
                    c.sack_permitted,
                    |v| if v { "yes".into() } else { "no".into() },
                ),
                opt(c.protocol, |p| p.to_string()),
                opt(c.udp_port, |v| v.to_string()),
                opt(c.concurrency, |v| v.to_string()),
                c.retransmitted_segments.to_string(),
                c.teardown.clone().unwrap_or_else(|| "not seen".into()),
            ]);
        }
        writeln!(out, "{t}")?;
        for c in &a.control {
            let id = opt(c.client_id, |v| v.to_string());
            if !c.messages.is_empty() {
                writeln!(out, "  client {id}: {}", c.messages.join(", "))?;
            }
            if let Some(n) = &c.note {
                writeln!(out, "  client {id} ({}): {n}", c.client)?;
            }
        }
    }

    writeln!(out, "\nUDP flows")?;
    if a.flows.is_empty() {
        writeln!(out, "  none")?;
    } else {
        let mut t = table(&[
            "from",
            "to",
            "kind",
            "frames",
            "data",
            "full",
            "frame len",
            "data bytes",
            "time s",
            "rate MB/s",
            "longest silence s",
            "ICMP unreach",
            "v1 missing / dup / resent / reordered / jitter us",
        ]);
        for f in &a.flows {
            t.add_row(vec![
                f.src.clone(),
                f.dst.clone(),
                opt(f.kind, |k| k.to_string()),
                group(f.frames),
                group(f.data_frames),
                group(f.full_frames),
                opt(f.full_frame_len, |v| v.to_string()),
                group(f.data_bytes),
                format!("{:.3}", f.duration_s),
                opt(f.rate_mb_s, |v| format!("{v:.1}")),
                format!("{:.6}", f.longest_silence_s),
                f.icmp_port_unreachable.to_string(),
                opt(f.v1.as_ref(), |s| {
                    format!(
                        "{} / {} / {} / {} / {:.1}",
                        group(s.missing),
                        group(s.duplicates),
                        group(s.retransmitted),
                        group(s.reordered),
                        s.jitter_us
                    )
                }),
            ]);
        }
        writeln!(out, "{t}")?;
    }

    if a.flows_not_listed > 0 {
        writeln!(
            out,
            "  {} more flows with less data not listed",
            group(a.flows_not_listed as u64)
        )?;
    }

    if !a.skipped.is_empty() {
        writeln!(out, "\nSkipped packets")?;
        for (reason, n) in &a.skipped {
            writeln!(out, "  {reason}: {}", group(*n))?;
        }
    }

    writeln!(out, "\nCaptures")?;
    for c in &a.captures {
        writeln!(
            out,
            "  {}: {}, {}, {} packets, {} to {} ({} s), capture dropped: {}",
            c.path,
            c.format,
            c.link_types.join("+"),
            group(c.packets),
            c.first_time.as_deref().unwrap_or(NONE),
            c.last_time.as_deref().unwrap_or(NONE),
            opt(c.duration_s, |v| format!("{v:.3}")),
            opt(c.dropped, group),
        )?;
        if let Some(e) = &c.error {
            writeln!(out, "    stopped early: {e}")?;
        }
    }
    if let Some(c) = &a.conversations {
        write_conversations(out, c)?;
    }
    write_logs(out, &a.logs)?;
    for w in &a.warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

/// Every conversation (`--conversations`): one row each, then per
/// conversation its handshake, teardown and first payloads.
pub fn write_conversations(out: &mut dyn Write, rows: &[ConversationRow]) -> io::Result<()> {
    writeln!(out, "\nConversations")?;
    if rows.is_empty() {
        return writeln!(out, "  none");
    }
    let mut t = table(&[
        "#",
        "proto",
        "a",
        "b",
        "start",
        "duration s",
        "frames a>b",
        "bytes a>b",
        "frames b>a",
        "bytes b>a",
        "protocols",
    ]);
    for (i, c) in rows.iter().enumerate() {
        let protocols: Vec<String> = c
            .protocols
            .iter()
            .map(|(p, n)| format!("{p} ({n})"))
            .collect();
        t.add_row(vec![
            (i + 1).to_string(),
            c.transport.to_string(),
            c.a.clone(),
            c.b.clone(),
            c.start.clone(),
            format!("{:.6}", c.duration_s),
            group(c.frames_a_to_b),
            group(c.bytes_a_to_b),
            group(c.frames_b_to_a),
            group(c.bytes_b_to_a),
            protocols.join("\n"),
        ]);
    }
    right_align(&mut t, 5);
    if let Some(col) = t.column_mut(10) {
        col.set_cell_alignment(CellAlignment::Left);
    }
    writeln!(out, "{t}")?;
    for (i, c) in rows.iter().enumerate() {
        if c.handshake.is_none() && c.teardown.is_none() && c.payloads.is_empty() {
            continue;
        }
        writeln!(out, "#{} {} {} <-> {}", i + 1, c.transport, c.a, c.b)?;
        if let Some(h) = &c.handshake {
            writeln!(
                out,
                "  handshake: {} (SYN from {}), RTT {} us, MSS {}/{}, wscale {}/{}, SACK {}",
                h.seen,
                h.syn_from,
                opt(h.rtt_us, |v| format!("{v:.1}")),
                opt(h.mss_syn, |v| v.to_string()),
                opt(h.mss_syn_ack, |v| v.to_string()),
                opt(h.window_scale_syn, |v| v.to_string()),
                opt(h.window_scale_syn_ack, |v| v.to_string()),
                opt(h.sack, |v| if v { "yes".into() } else { "no".into() }),
            )?;
        } else if c.transport == Proto::Tcp {
            writeln!(out, "  handshake: not seen (connection already open)")?;
        }
        if let Some(td) = &c.teardown {
            writeln!(
                out,
                "  teardown: {} {} first at {}",
                td.by, td.kind, td.time
            )?;
        } else if c.transport == Proto::Tcp {
            writeln!(out, "  teardown: not seen")?;
        }
        for p in &c.payloads {
            writeln!(
                out,
                "  {} {} {} B, {} printable: {:?}",
                p.time,
                p.from,
                p.len,
                opt(p.printable_share, |v| format!("{:.0} %", v * 100.0)),
                p.text,
            )?;
        }
    }
    Ok(())
}

/// Which logs were used, which were left out and why, and what was given
/// as a log but is none.
fn write_logs(out: &mut dyn Write, logs: &super::LogsRow) -> io::Result<()> {
    writeln!(out, "\nLogs")?;
    if logs.used.is_empty() {
        writeln!(out, "  none used")?;
    }
    for l in &logs.used {
        writeln!(out, "  used {l}")?;
    }
    if let Some(o) = &logs.utc_offset {
        write!(out, "  lab log times read at UTC{o}")?;
        if logs.other_utc_offsets.is_empty() {
            writeln!(out, " (the offset that fits them to the capture)")?;
        } else {
            writeln!(
                out,
                " (UTC{} fit as well: say which with --log-utc-offset)",
                logs.other_utc_offsets.join(", UTC")
            )?;
        }
    }
    if !logs.left_out.is_empty() {
        writeln!(
            out,
            "  {} not used:",
            counted(logs.left_out.len() as u64, "log", "logs")
        )?;
        for l in &logs.left_out {
            writeln!(out, "    {}: {}", l.path, l.reason)?;
        }
    }
    if !logs.ignored.is_empty() {
        writeln!(
            out,
            "  {} given as logs and not read:",
            counted(logs.ignored.len() as u64, "path", "paths")
        )?;
        for i in &logs.ignored {
            writeln!(out, "    {i}")?;
        }
    }
    Ok(())
}

/// `1 log`, `3 logs`.
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", group(n), if n == 1 { one } else { many })
}

/// One CSV row per client: the row's own keys, as the JSON names them, in
/// order (nested values left out).
fn write_csv(out: &mut dyn Write, rows: &[ClientRow]) -> io::Result<()> {
    let values: Vec<serde_json::Value> = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()
        .map_err(io::Error::other)?;
    let keys = ClientRow::csv_columns();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    writeln!(out, "{}", keys.join(","))?;
    for v in &values {
        let cells: Vec<String> = keys
            .iter()
            .map(|k| match v.get(*k) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => csv_field(s),
                Some(other) => other.to_string(),
            })
            .collect();
        writeln!(out, "{}", cells.join(","))?;
    }
    Ok(())
}

/// RFC 4180: quote a field holding a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(10_485_760), "10,485,760");
        assert_eq!(group_signed(-1234), "-1,234");
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
    }
}
