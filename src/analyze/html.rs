//! The report as one self-contained HTML page (`--html`, and `report.html`
//! in a lab run's directory), and its pictures as SVG files (`--plots`).
//!
//! The page needs nothing but itself: inline SVG drawn with plotters' SVG
//! backend, inline CSS, no script and no external address, so that it opens
//! from disk in any browser and prints. Per client it shows the
//! time-sequence plot (datagram number against time at each capture point,
//! what the client reported missing shaded and named), the throughput at
//! each capture point with the goodput, and the registration as a ladder
//! diagram; for the run, every client on one timeline and where the bytes
//! went, one bar per client, from the typed account ([`super::account`]).
//! The first [`MAX_DRAWN_CLIENTS`] clients are drawn, the table lists all.

use std::error::Error;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::Analysis;
use super::account::Place;
use super::report::group;
use super::rows::ClientRow;
use super::series::{Binned, ClientSeries, Ladder, Segment, Step};
use super::tcp::Side;
use crate::protocol::{Mode, Protocol};

/// Width of every picture, in pixels.
const WIDTH: u32 = 960;
/// Height of the time plots.
const PLOT_HEIGHT: u32 = 400;
/// Points of a throughput line: bins are merged down to about this many.
const IO_POINTS: usize = 240;
/// Shaded missing ranges drawn per plot; more are merged into their
/// neighbours.
const MAX_SHADED: usize = 1024;
/// Clients drawn, the first of the clients table: their sections and the
/// run's pictures. Each client's pictures take some 20 kB of SVG, so a
/// capture of thousands of clients would make a page of tens of MB that
/// no one reads; the table still lists every client.
pub const MAX_DRAWN_CLIENTS: usize = 64;

/// One picture: what it shows, its file name under `--plots`, its SVG.
#[derive(Debug, Clone)]
pub struct Picture {
    /// File stem: `client-1-time-sequence`, `run-timeline`.
    pub name: String,
    pub title: String,
    pub svg: String,
}

/// The pictures of one client, those the inputs allow.
#[derive(Debug, Clone)]
pub struct ClientSection {
    pub heading: String,
    pub verdict: String,
    pub pictures: Vec<Picture>,
}

/// Every picture of the analysis: the run's, then each client's.
#[derive(Debug, Clone)]
pub struct Pictures {
    pub run: Vec<Picture>,
    pub clients: Vec<ClientSection>,
    /// Clients beyond [`MAX_DRAWN_CLIENTS`], not drawn.
    pub not_drawn: usize,
}

impl Pictures {
    pub fn all(&self) -> impl Iterator<Item = &Picture> {
        self.run
            .iter()
            .chain(self.clients.iter().flat_map(|c| c.pictures.iter()))
    }
}

type Drawn = Result<(), Box<dyn Error>>;

/// An SVG picture of `size`, drawn by `draw`.
fn svg(size: (u32, u32), draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Drawn) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(|e| -> Box<dyn Error> { Box::new(e) })
            .and_then(|_| draw(&root))
            .and_then(|_| {
                root.present()
                    .map_err(|e| -> Box<dyn Error> { Box::new(e) })
            });
        if let Err(e) = drawn {
            // A picture that cannot be drawn says so in its place.
            let _ = root.fill(&WHITE);
            let _ = root.draw(&Text::new(
                format!("picture not drawn: {e}"),
                (10, 20),
                ("sans-serif", 14).into_font(),
            ));
            let _ = root.present();
        }
    }
    out
}

/// How a legend entry shows its series.
#[derive(Debug, Clone, Copy)]
enum Swatch {
    Fill(RGBAColor),
    Line(RGBColor),
    Dashed(RGBColor),
    Dot(RGBColor),
}

/// A legend's entries, drawn under the chart so that they never hide it.
type Legend = Vec<(String, Swatch)>;

/// Rows of a legend, in pixels.
const LEGEND_ROW: u32 = 18;

/// An SVG picture: a chart `chart_size` big, drawn by `draw`, with a
/// legend of `rows` entries under it.
fn svg_with_legend(
    chart_size: (u32, u32),
    rows: usize,
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>, &mut Legend) -> Drawn,
) -> String {
    let height = chart_size.1 + 8 + LEGEND_ROW * rows as u32;
    svg((chart_size.0, height), |root| {
        let (upper, lower) = root.split_vertically(chart_size.1);
        let mut legend = Legend::new();
        draw(&upper, &mut legend)?;
        for (i, (label, swatch)) in legend.iter().enumerate() {
            let y = 4 + (LEGEND_ROW as i32) * i as i32 + LEGEND_ROW as i32 / 2;
            let x = 90;
            match *swatch {
                Swatch::Fill(c) => {
                    lower.draw(&Rectangle::new([(x, y - 6), (x + 16, y + 6)], c.filled()))?
                }
                Swatch::Line(c) => lower.draw(&PathElement::new(
                    vec![(x, y), (x + 16, y)],
                    c.stroke_width(2),
                ))?,
                Swatch::Dashed(c) => {
                    for k in 0..3 {
                        lower.draw(&PathElement::new(
                            vec![(x + 6 * k, y), (x + 6 * k + 4, y)],
                            c.stroke_width(1),
                        ))?
                    }
                }
                Swatch::Dot(c) => lower.draw(&Circle::new((x + 8, y), 3, c.filled()))?,
            }
            lower.draw(&Text::new(
                label.clone(),
                (x + 24, y - 7),
                ("sans-serif", 13).into_font(),
            ))?;
        }
        Ok(())
    })
}

/// A client's name in headings and file names.
fn client_name(r: &ClientRow, i: usize) -> (String, String) {
    match r.client_id {
        Some(id) => (format!("client {id}"), format!("client-{id}")),
        None => (
            format!("client at {} (number unknown)", r.client),
            format!("client-n{}", i + 1),
        ),
    }
}

/// Colours of the capture points, in path order.
fn point_color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(23, 190, 207),
    ];
    COLORS[i % COLORS.len()]
}

const MISSING: RGBColor = RGBColor(214, 39, 40);
const RESENT: RGBColor = RGBColor(227, 119, 194);

/// What a place on the path is called in legends.
fn place_name(p: &Place) -> String {
    match p {
        Place::Delivered { .. } => "delivered".into(),
        Place::LostBeforeCapture { .. } => "lost before the capture".into(),
        Place::LostBetweenCaptures { .. } => "lost in the network".into(),
        Place::LostAfterCapture { .. } => "lost after the capture".into(),
        Place::ReceiverSocketBuffer { kernel_drops, .. } => {
            format!("in the receiver's socket buffer ({kernel_drops} kernel drops)")
        }
        Place::ClientGone { icmp_errors, .. } => {
            format!("the client had closed its socket ({icmp_errors} ICMP errors)")
        }
        Place::CaptureDropped { packets } => format!("capture dropped {packets} packets"),
        Place::CaptureMissed { datagrams } => format!("capture missed {datagrams} datagrams"),
        Place::CutByDamagedFile => "capture file cut short".into(),
        Place::InconsistentSource(i) => format!("not placed: {i}"),
        Place::Unknown { .. } => "place unknown".into(),
    }
}

/// A place where bytes were lost (not delivered, not a note on the
/// capture alone).
fn is_loss(p: &Place) -> bool {
    match *p {
        Place::LostBeforeCapture { bytes } | Place::LostBetweenCaptures { bytes } => bytes > 0,
        Place::LostAfterCapture { .. }
        | Place::ReceiverSocketBuffer { .. }
        | Place::ClientGone { .. } => true,
        Place::Unknown { bytes } => bytes.is_some_and(|b| b > 0),
        Place::Delivered { .. }
        | Place::CaptureDropped { .. }
        | Place::CaptureMissed { .. }
        | Place::CutByDamagedFile
        | Place::InconsistentSource(_) => false,
    }
}

/// Where the client's missing bytes went, for the legend.
fn loss_places(r: &ClientRow) -> String {
    let places: Vec<String> = r
        .account
        .places
        .iter()
        .filter(|p| !matches!(p, Place::Delivered { .. }))
        .map(place_name)
        .collect();
    if places.is_empty() {
        "no place named".into()
    } else {
        places.join(", ")
    }
}

/// Seconds from `from` to `ns` (timestamps are the capture's: untrusted).
fn secs_since(ns: i64, from: i64) -> f64 {
    ns.saturating_sub(from) as f64 / 1e9
}

/// Inclusive ranges with their neighbours closer than `unseen` merged (a
/// gap no picture could show), then the closest merged until at most
/// `limit` remain, so that a long list still draws in bounded time.
fn merge_ranges(mut ranges: Vec<(u32, u32)>, unseen: u32, limit: usize) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut gap = unseen;
    loop {
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.0.saturating_sub(last.1) <= gap => last.1 = last.1.max(r.1),
                _ => merged.push(r),
            }
        }
        ranges = merged;
        if ranges.len() <= limit {
            return ranges;
        }
        gap = ranges
            .windows(2)
            .map(|w| w[1].0.saturating_sub(w[0].1))
            .min()
            .unwrap_or(u32::MAX);
    }
}

/// The time-sequence plot: each capture point's datagrams (their lowest to
/// highest number in each time bin), what the client reported missing
/// shaded across, named with where the account places the loss.
fn time_sequence(r: &ClientRow, p: &ClientSeries, title: &str) -> String {
    let start = p.data_start_ns().unwrap_or(0);
    let t_end = secs_since(p.data_end_ns().unwrap_or(start), start).max(1e-3);
    let top = p
        .flows
        .iter()
        .flat_map(|(_, b)| b.bins.iter().map(|x| x.hi))
        .max()
        .unwrap_or(0);
    let total = r.datagrams_total.unwrap_or(0);
    let y_max = (u64::from(top) + 1).max(total).max(1) as f64;
    let v1 = r.protocol == Some(Protocol::V1);
    // Sequence numbers closer than about a pixel apart.
    let unseen = (y_max / f64::from(PLOT_HEIGHT * 2)) as u32;
    // v1: the client's own list of missing sequence numbers; the lab's
    // protocol has none, so its shortfall is shown as a band at the top.
    let (shaded, how_many): (Vec<(u32, u32)>, u64) = match (&p.missing, v1) {
        (Some((ranges, _)), true) => {
            let n = ranges
                .iter()
                .map(|s| u64::from(s.last.saturating_sub(s.first)) + 1)
                .sum();
            let pairs = ranges.iter().map(|s| (s.first, s.last)).collect();
            (merge_ranges(pairs, unseen, MAX_SHADED), n)
        }
        _ => {
            let got = r.received_bytes.zip(r.file_size).zip(r.datagrams_total);
            match got {
                Some(((got, size), total)) if size > 0 && got < size && total > 0 => {
                    let have = (got as f64 / size as f64 * total as f64).floor() as u64;
                    let have = u32::try_from(have).unwrap_or(u32::MAX);
                    let last = u32::try_from(total - 1).unwrap_or(u32::MAX);
                    (vec![(have, last)], total - u64::from(have))
                }
                _ => (Vec::new(), 0),
            }
        }
    };
    let truncated = p.missing.as_ref().is_some_and(|m| m.1);
    let resent_points = p
        .flows
        .iter()
        .filter(|(_, b)| b.bins.iter().any(|x| x.retransmitted > 0))
        .count();
    // Loss with no list of what is missing (a client gone before it
    // reported, copies the reliable mode resent) is still named.
    let unlisted = (shaded.is_empty() && r.account.places.iter().any(is_loss)).then(|| {
        let what = if r.mode == Some(Mode::Reliable) {
            // The reliable mode resends what was lost: the final report
            // lists what is still missing, not the copies lost on the way.
            "copies lost and resent"
        } else {
            "lost, no list of which datagrams"
        };
        (
            format!("{what}: {}", loss_places(r)),
            Swatch::Fill(MISSING.mix(0.0)),
        )
    });
    let requests = p.repair_requests();
    let rows = usize::from(!shaded.is_empty() || unlisted.is_some())
        + p.flows.len()
        + resent_points
        + usize::from(!requests.is_empty());
    svg_with_legend((WIDTH, PLOT_HEIGHT), rows, |root, legend| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..t_end, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds from the first data datagram")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .y_desc(if v1 {
                "sequence number"
            } else {
                "datagram number in the flow"
            })
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        if !shaded.is_empty() {
            let mut label = format!(
                "missing at the client: {how_many} datagrams{}: {}",
                if truncated { " (list cut short)" } else { "" },
                loss_places(r)
            );
            if !v1 {
                label.push_str(" (no sequence numbers: shown as a band at the top)");
            }
            chart.draw_series(shaded.iter().map(|&(lo, hi)| {
                Rectangle::new(
                    [(0.0, f64::from(lo)), (t_end, f64::from(hi) + 1.0)],
                    MISSING.mix(0.25).filled(),
                )
            }))?;
            legend.push((label, Swatch::Fill(MISSING.mix(0.4))));
        }
        legend.extend(unlisted.clone());
        repair_marks(&mut chart, legend, &requests, start, y_max)?;
        for (i, (point, b)) in p.flows.iter().enumerate() {
            let color = point_color(i);
            let frames: u64 = b.bins.iter().map(|x| u64::from(x.frames)).sum();
            chart.draw_series(b.bins.iter().enumerate().filter(|(_, x)| x.frames > 0).map(
                |(k, x)| {
                    let t0 = secs_since(b.start_ns(k), start);
                    let t1 = secs_since(b.start_ns(k + 1), start);
                    Rectangle::new(
                        [(t0, f64::from(x.lo)), (t1, f64::from(x.hi) + 1.0)],
                        color.mix(0.8).filled(),
                    )
                },
            ))?;
            legend.push((
                format!("at {point}: {frames} datagrams"),
                Swatch::Fill(color.mix(0.8)),
            ));
            let resent: Vec<(usize, _)> = b
                .bins
                .iter()
                .enumerate()
                .filter(|(_, x)| x.retransmitted > 0)
                .collect();
            if !resent.is_empty() {
                let copies: u64 = resent.iter().map(|(_, x)| u64::from(x.retransmitted)).sum();
                chart.draw_series(resent.iter().map(|&(k, x)| {
                    let t = secs_since(b.start_ns(k), start);
                    Circle::new((t, f64::from(x.lo)), 3, RESENT.filled())
                }))?;
                legend.push((
                    format!("at {point}: {copies} repair copies"),
                    Swatch::Dot(RESENT),
                ));
            }
        }
        Ok(())
    })
}

/// A point of the IO graph: seconds from the origin, throughput and
/// goodput in 10^6 bytes per second.
type IoPoint = (f64, f64, f64);

/// The client's repair requests (reports that data followed) as dashed
/// vertical lines across a time plot.
fn repair_marks(
    chart: &mut ChartContext<SVGBackend, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    legend: &mut Legend,
    requests: &[i64],
    start: i64,
    y_max: f64,
) -> Drawn {
    if requests.is_empty() {
        return Ok(());
    }
    for &t in requests {
        let x = secs_since(t, start);
        chart.draw_series(DashedLineSeries::new(
            [(x, 0.0), (x, y_max)],
            5,
            4,
            RESENT.stroke_width(1),
        ))?;
    }
    legend.push((
        format!(
            "the client asked for a repair round ({} reports followed by data)",
            requests.len()
        ),
        Swatch::Dashed(RESENT),
    ));
    Ok(())
}

/// Bins merged a few at a time into points of the IO graph.
fn io_points(b: &Binned, origin_ns: i64) -> Vec<IoPoint> {
    let k = b.bins.len().div_ceil(IO_POINTS).max(1);
    b.bins
        .chunks(k)
        .enumerate()
        .map(|(j, group)| {
            let t0 = b.start_ns(j * k);
            let t1 = b.start_ns(j * k + group.len());
            let span = secs_since(t1, t0).max(1e-9);
            let bytes: u64 = group.iter().map(|x| x.bytes).sum();
            let new: u64 = group.iter().map(|x| x.new_bytes).sum();
            let mid = secs_since(t0 / 2 + t1 / 2, origin_ns);
            (mid, bytes as f64 / span / 1e6, new as f64 / span / 1e6)
        })
        .collect()
}

/// Throughput over time at each capture point (every copy), the goodput
/// at the point nearest the receiver (first copies), and the goodput the
/// logs tell as a level.
fn io_graph(r: &ClientRow, p: &ClientSeries, title: &str) -> String {
    let start = p.data_start_ns().unwrap_or(0);
    let t_end = secs_since(p.data_end_ns().unwrap_or(start), start).max(1e-3);
    let lines: Vec<(String, Vec<IoPoint>)> = p
        .flows
        .iter()
        .map(|(point, b)| (point.clone(), io_points(b, start)))
        .collect();
    let from_log = match (r.goodput_mb_s, r.goodput_source) {
        (Some(g), Some(source)) if source != super::account::Source::Capture => Some((g, source)),
        _ => None,
    };
    let peak = lines
        .iter()
        .flat_map(|(_, l)| l.iter().map(|x| x.1))
        .fold(from_log.map_or(0.0, |g| g.0), f64::max);
    let y_max = (peak * 1.15).max(0.001);
    let reliable = r.mode == Some(Mode::Reliable);
    let requests = p.repair_requests();
    let rows = lines.len()
        + usize::from(!lines.is_empty())
        + usize::from(from_log.is_some())
        + usize::from(!requests.is_empty());
    svg_with_legend((WIDTH, PLOT_HEIGHT), rows, |root, legend| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..t_end, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds from the first data datagram")
            .y_desc("10^6 bytes per second")
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        repair_marks(&mut chart, legend, &requests, start, y_max)?;
        for (i, (point, line)) in lines.iter().enumerate() {
            let color = point_color(i);
            let what = if reliable && i == 0 {
                "sending rate"
            } else {
                "throughput"
            };
            chart.draw_series(LineSeries::new(
                line.iter().map(|x| (x.0, x.1)),
                color.stroke_width(2),
            ))?;
            legend.push((format!("{what} at {point}"), Swatch::Line(color)));
        }
        if let Some((point, line)) = lines.last() {
            chart.draw_series(DashedLineSeries::new(
                line.iter().map(|x| (x.0, x.2)),
                6,
                4,
                BLACK.stroke_width(1),
            ))?;
            legend.push((
                format!("goodput at {point} (first copies)"),
                Swatch::Dashed(BLACK),
            ));
        }
        if let Some((g, source)) = from_log {
            chart.draw_series(LineSeries::new(
                [(0.0, g), (t_end, g)],
                MISSING.stroke_width(2),
            ))?;
            legend.push((
                format!("goodput received ({source}): {g} x 10^6 B/s"),
                Swatch::Line(MISSING),
            ));
        }
        Ok(())
    })
}

/// Rows of the ladder diagram, in pixels.
const LADDER_ROW: i32 = 26;
const LADDER_TOP: i32 = 70;

/// The registration as Wireshark's flow graph draws it: client and server
/// as two columns, each segment an arrow with its time and what it carries.
fn ladder(l: &Ladder, title: &str) -> String {
    let rows = l.steps.len() as i32 + i32::from(l.skipped > 0);
    let height = (LADDER_TOP + LADDER_ROW * rows + 30).max(140) as u32;
    let (xc, xs) = (260i32, 800i32);
    let start = l.steps.first().map_or(0, |s| s.segment.at_ns);
    let text = |size: u32| ("sans-serif", size).into_font().color(&BLACK);
    svg((WIDTH, height), |root| {
        root.draw(&Text::new(title.to_string(), (12, 10), text(18)))?;
        for (x, name) in [
            (xc, format!("client {}", l.client)),
            (xs, format!("server {}", l.server)),
        ] {
            root.draw(&Text::new(
                name,
                (x - 90, 40),
                text(14).pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Left,
                    plotters::style::text_anchor::VPos::Top,
                )),
            ))?;
            root.draw(&PathElement::new(
                vec![(x, LADDER_TOP - 12), (x, height as i32 - 10)],
                BLACK.mix(0.6).stroke_width(2),
            ))?;
        }
        root.draw(&Text::new("time (s)", (12, 40), text(13)))?;
        let mut y = LADDER_TOP;
        let mut shown_skip = false;
        for (i, Step { segment, label, .. }) in l.steps.iter().enumerate() {
            // The steps left out lie between the trace's head and tail.
            if !shown_skip && l.skipped > 0 && i == super::series::HEAD_SEGMENTS {
                root.draw(&Text::new(
                    format!("... {} segments not shown ...", l.skipped),
                    ((xc + xs) / 2 - 80, y - 6),
                    text(13),
                ))?;
                y += LADDER_ROW;
                shown_skip = true;
            }
            step(root, segment, label, y, xc, xs, start)?;
            y += LADDER_ROW;
        }
        Ok(())
    })
}

/// One arrow of the ladder.
fn step(
    root: &DrawingArea<SVGBackend, Shift>,
    s: &Segment,
    label: &str,
    y: i32,
    xc: i32,
    xs: i32,
    start: i64,
) -> Drawn {
    let (from, to) = match s.from {
        Side::Client => (xc, xs),
        Side::Server => (xs, xc),
    };
    let color = if s.syn || s.fin || s.rst {
        RGBColor(80, 80, 80)
    } else if s.len > 0 {
        point_color(0)
    } else {
        RGBColor(150, 150, 150)
    };
    root.draw(&Text::new(
        format!("{:.6}", secs_since(s.at_ns, start)),
        (12, y - 6),
        ("sans-serif", 12).into_font(),
    ))?;
    root.draw(&PathElement::new(
        vec![(from, y), (to, y)],
        color.stroke_width(2),
    ))?;
    let dir = if to > from { -1 } else { 1 };
    root.draw(&Polygon::new(
        vec![(to, y), (to + 9 * dir, y - 4), (to + 9 * dir, y + 4)],
        color.filled(),
    ))?;
    let shown: String = if label.chars().count() > 72 {
        let mut s: String = label.chars().take(70).collect();
        s.push_str("...");
        s
    } else {
        label.to_string()
    };
    root.draw(&Text::new(
        shown,
        (xc + 12, y - 15),
        ("sans-serif", 12).into_font(),
    ))?;
    Ok(())
}

/// The phases of one client on the run's timeline, in ns.
struct Phases {
    registration: Option<(i64, i64)>,
    barrier: Option<(i64, i64)>,
    data: Option<(i64, i64)>,
    report: Option<(i64, i64)>,
}

impl Phases {
    fn of(p: &ClientSeries) -> Phases {
        let data = p.data_start_ns().zip(p.data_end_ns());
        let steps = p.ladder.as_ref().map(|l| &l.steps[..]).unwrap_or_default();
        let first = steps.first().map(|s| s.segment.at_ns);
        // Registered once the client's port message is on the wire.
        let registered = steps
            .iter()
            .find(|s| s.segment.from == Side::Client && s.segment.len > 0)
            .map(|s| s.segment.at_ns);
        let last = steps.last().map(|s| s.segment.at_ns);
        Phases {
            registration: first.zip(registered.or(first)),
            barrier: registered.zip(data.map(|d| d.0)).filter(|(a, b)| a < b),
            data,
            report: data.map(|d| d.1).zip(last).filter(|(a, b)| a < b),
        }
    }

    fn earliest(&self) -> Option<i64> {
        [self.registration, self.barrier, self.data, self.report]
            .iter()
            .flatten()
            .map(|p| p.0)
            .min()
    }

    fn latest(&self) -> Option<i64> {
        [self.registration, self.barrier, self.data, self.report]
            .iter()
            .flatten()
            .map(|p| p.1)
            .max()
    }
}

/// Every client on one timeline: registration, waiting at the barrier for
/// the others, data, and the report after it.
fn timeline(names: &[String], phases: &[Option<Phases>]) -> String {
    let origin = phases
        .iter()
        .flatten()
        .filter_map(Phases::earliest)
        .min()
        .unwrap_or(0);
    let end = phases
        .iter()
        .flatten()
        .filter_map(Phases::latest)
        .max()
        .unwrap_or(origin);
    let t_end = secs_since(end, origin).max(1e-3);
    let n = names.len().max(1);
    let height = (90 + 34 * n).max(220) as u32;
    const KINDS: [(&str, RGBColor); 4] = [
        ("registration", RGBColor(148, 103, 189)),
        ("barrier (waiting for the others)", RGBColor(199, 199, 199)),
        ("data", RGBColor(31, 119, 180)),
        ("report", RGBColor(44, 160, 44)),
    ];
    svg_with_legend((WIDTH, height), KINDS.len(), |root, legend| {
        let mut chart = ChartBuilder::on(root)
            .caption("All clients on one timeline", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(170)
            .build_cartesian_2d(0f64..t_end, 0f64..n as f64)?;
        chart
            .configure_mesh()
            .x_desc("seconds from the first packet of the run")
            .disable_y_mesh()
            .y_labels(1)
            .y_label_formatter(&|_| String::new())
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        row_labels(root, &chart, names)?;
        for (kind, (name, color)) in KINDS.iter().enumerate() {
            let color = *color;
            let bars: Vec<(usize, (i64, i64))> = phases
                .iter()
                .enumerate()
                .filter_map(|(k, p)| {
                    let p = p.as_ref()?;
                    let span = [p.registration, p.barrier, p.data, p.report][kind]?;
                    Some((k, span))
                })
                .collect();
            chart.draw_series(bars.iter().map(|&(k, (a, b))| {
                let (x0, x1) = (secs_since(a, origin), secs_since(b, origin));
                Rectangle::new(
                    [
                        (x0, k as f64 + 0.2),
                        (x1.max(x0 + t_end / 400.0), k as f64 + 0.8),
                    ],
                    color.filled(),
                )
            }))?;
            legend.push((name.to_string(), Swatch::Fill(color.mix(1.0))));
        }
        Ok(())
    })
}

/// The names of a chart's rows (one per client, row k from k to k + 1),
/// right-aligned left of its plotting area.
fn row_labels(
    root: &DrawingArea<SVGBackend, Shift>,
    chart: &ChartContext<SVGBackend, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    names: &[String],
) -> Drawn {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let style = ("sans-serif", 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (k, name) in names.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(0.0, k as f64 + 0.5));
        let (ox, oy) = root.get_base_pixel();
        root.draw(&Text::new(
            name.clone(),
            (x - ox - 8, y - oy),
            style.clone(),
        ))?;
    }
    Ok(())
}

/// The shares of a client's bytes the bars show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    Delivered,
    Network,
    SocketBuffer,
    BeforeCapture,
    AfterCapture,
    MissedByCapture,
    Unknown,
}

impl Share {
    pub const ALL: [Share; 7] = [
        Share::Delivered,
        Share::Network,
        Share::SocketBuffer,
        Share::BeforeCapture,
        Share::AfterCapture,
        Share::MissedByCapture,
        Share::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Share::Delivered => "delivered",
            Share::Network => "lost in the network",
            Share::SocketBuffer => "in the receiver's socket buffer",
            Share::BeforeCapture => "lost before the capture",
            Share::AfterCapture => "lost after the capture (client host)",
            Share::MissedByCapture => "not placed: the capture missed packets",
            Share::Unknown => "unknown",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Share::Delivered => RGBColor(44, 160, 44),
            Share::Network => RGBColor(214, 39, 40),
            Share::SocketBuffer => RGBColor(255, 127, 14),
            Share::BeforeCapture => RGBColor(148, 103, 189),
            Share::AfterCapture => RGBColor(140, 86, 75),
            Share::MissedByCapture => RGBColor(188, 189, 34),
            Share::Unknown => RGBColor(160, 160, 160),
        }
    }
}

/// Where a client's bytes went, by share, from its account; what the
/// account does not place is unknown (or, when the capture is blind,
/// not placed because of it).
pub fn shares(r: &ClientRow) -> Vec<(Share, u64)> {
    fn add_to(out: &mut Vec<(Share, u64)>, s: Share, b: u64) {
        if b == 0 {
            return;
        }
        match out.iter_mut().find(|e| e.0 == s) {
            Some(e) => e.1 = e.1.saturating_add(b),
            None => out.push((s, b)),
        }
    }
    let mut out: Vec<(Share, u64)> = Vec::new();
    let mut add = |s: Share, b: u64| add_to(&mut out, s, b);
    let mut blind = false;
    for p in &r.account.places {
        match *p {
            Place::Delivered { bytes } => add(Share::Delivered, bytes),
            Place::LostBeforeCapture { bytes } => add(Share::BeforeCapture, bytes),
            Place::LostBetweenCaptures { bytes } => add(Share::Network, bytes),
            Place::ReceiverSocketBuffer { bytes, .. } => {
                add(Share::SocketBuffer, bytes.unwrap_or(0))
            }
            Place::LostAfterCapture { bytes } | Place::ClientGone { bytes, .. } => {
                add(Share::AfterCapture, bytes.unwrap_or(0))
            }
            Place::CaptureDropped { .. }
            | Place::CaptureMissed { .. }
            | Place::CutByDamagedFile => blind = true,
            // A figure the source could not have: the rest stays unknown.
            Place::InconsistentSource(_) => {}
            Place::Unknown { bytes } => add(Share::Unknown, bytes.unwrap_or(0)),
        }
    }
    let placed = out.iter().fold(0u64, |n, e| n.saturating_add(e.1));
    let whole = if r.mode == Some(Mode::Reliable) {
        r.file_size.or(r.sent_bytes)
    } else {
        r.sent_bytes.or(r.file_size)
    };
    let rest = whole.unwrap_or(placed).saturating_sub(placed);
    add_to(
        &mut out,
        if blind {
            Share::MissedByCapture
        } else {
            Share::Unknown
        },
        rest,
    );
    out.sort_by_key(|e| Share::ALL.iter().position(|s| *s == e.0));
    out
}

/// Where the bytes went: one stacked bar per client.
fn bars(names: &[String], rows: &[&ClientRow]) -> String {
    let shares: Vec<Vec<(Share, u64)>> = rows.iter().map(|r| shares(r)).collect();
    let widest = shares
        .iter()
        .map(|s| s.iter().fold(0u64, |n, e| n.saturating_add(e.1)))
        .max()
        .unwrap_or(0)
        .max(1) as f64
        / 1e6;
    let n = names.len().max(1);
    let height = (90 + 34 * n).max(220) as u32;
    let present = Share::ALL
        .iter()
        .filter(|s| shares.iter().any(|c| c.iter().any(|e| e.0 == **s)))
        .count();
    svg_with_legend((WIDTH, height), present, |root, legend| {
        let mut chart = ChartBuilder::on(root)
            .caption("Where the bytes went", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(170)
            .build_cartesian_2d(0f64..widest * 1.02, 0f64..n as f64)?;
        chart
            .configure_mesh()
            .x_desc("10^6 bytes")
            .disable_y_mesh()
            .y_labels(1)
            .y_label_formatter(&|_| String::new())
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        row_labels(root, &chart, names)?;
        for share in Share::ALL {
            let color = share.color();
            let segments: Vec<(usize, f64, f64)> = shares
                .iter()
                .enumerate()
                .filter_map(|(k, s)| {
                    let before = s
                        .iter()
                        .take_while(|e| e.0 != share)
                        .fold(0u64, |n, e| n.saturating_add(e.1));
                    let this = s.iter().find(|e| e.0 == share)?.1;
                    Some((
                        k,
                        before as f64 / 1e6,
                        before.saturating_add(this) as f64 / 1e6,
                    ))
                })
                .collect();
            if segments.is_empty() {
                continue;
            }
            let total: f64 = segments.iter().map(|s| s.2 - s.1).sum();
            chart.draw_series(segments.iter().map(|&(k, a, b)| {
                Rectangle::new([(a, k as f64 + 0.2), (b, k as f64 + 0.8)], color.filled())
            }))?;
            legend.push((
                format!("{} ({:.3} x 10^6 bytes)", share.name(), total),
                Swatch::Fill(color.mix(1.0)),
            ));
        }
        Ok(())
    })
}

/// Every picture the analysis allows.
pub fn pictures(a: &Analysis) -> Pictures {
    let drawn = &a.clients[..a.clients.len().min(MAX_DRAWN_CLIENTS)];
    let names: Vec<(String, String)> = drawn
        .iter()
        .enumerate()
        .map(|(i, r)| client_name(r, i))
        .collect();
    let series_of = |i: usize| a.series.get(i).and_then(Option::as_ref);
    let mut clients = Vec::new();
    for (i, r) in drawn.iter().enumerate() {
        let (heading, stem) = &names[i];
        let mut pictures = Vec::new();
        if let Some(p) = series_of(i) {
            if !p.flows.is_empty() {
                let title = format!("{heading}: time-sequence");
                pictures.push(Picture {
                    name: format!("{stem}-time-sequence"),
                    svg: time_sequence(r, p, &title),
                    title,
                });
                let title = format!("{heading}: throughput over time");
                pictures.push(Picture {
                    name: format!("{stem}-io"),
                    svg: io_graph(r, p, &title),
                    title,
                });
            }
            if let Some(l) = &p.ladder {
                let title = format!("{heading}: registration (captured at {})", l.point);
                pictures.push(Picture {
                    name: format!("{stem}-ladder"),
                    svg: ladder(l, &title),
                    title,
                });
            }
        }
        clients.push(ClientSection {
            heading: heading.clone(),
            verdict: r.verdict.clone(),
            pictures,
        });
    }
    let mut run = Vec::new();
    let labels: Vec<String> = names.iter().map(|n| n.0.clone()).collect();
    let not_drawn = a.clients.len() - drawn.len();
    let which = if not_drawn > 0 {
        format!("The first {} clients", drawn.len())
    } else {
        "All clients".to_string()
    };
    if !drawn.is_empty() {
        let phases: Vec<Option<Phases>> = (0..drawn.len())
            .map(|i| series_of(i).map(Phases::of))
            .collect();
        if phases.iter().flatten().any(|p| p.earliest().is_some()) {
            run.push(Picture {
                name: "run-timeline".into(),
                title: format!("{which} on one timeline"),
                svg: timeline(&labels, &phases),
            });
        }
        let rows: Vec<&ClientRow> = drawn.iter().collect();
        let title = if not_drawn > 0 {
            format!("Where the bytes went ({})", which.to_lowercase())
        } else {
            "Where the bytes went".to_string()
        };
        run.push(Picture {
            name: "run-bytes".into(),
            title,
            svg: bars(&labels, &rows),
        });
    }
    Pictures {
        run,
        clients,
        not_drawn,
    }
}

/// Text made safe inside HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

const STYLE: &str = "
body { font-family: sans-serif; margin: 1.5em; color: #111; max-width: 1000px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 1.6em; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #999; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; }
.verdict { background: #f4f4f4; border-left: 4px solid #1f77b4; padding: 0.4em 0.8em; }
figure { margin: 0.6em 0 1.2em; }
figure svg { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #444; }
ul.warnings li { color: #8a4b00; }
@media print {
  body { margin: 0; max-width: none; }
  section.client, figure { break-inside: avoid; page-break-inside: avoid; }
  th { background: none; }
}
";

/// The whole page.
pub fn render(a: &Analysis) -> String {
    let pics = pictures(a);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>udplab analysis</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>udplab analysis</h1>\n"
    );
    captures_table(&mut h, a);
    clients_table(&mut h, a);
    if !a.warnings.is_empty() || !a.errors.is_empty() {
        h.push_str("<h2>Warnings</h2>\n<ul class=\"warnings\">\n");
        for w in a.errors.iter().chain(&a.warnings) {
            let _ = writeln!(h, "<li>{}</li>", esc(w));
        }
        h.push_str("</ul>\n");
    }
    if !pics.run.is_empty() {
        h.push_str("<h2>The run</h2>\n");
        for p in &pics.run {
            figure(&mut h, p);
        }
    }
    for c in &pics.clients {
        let _ = write!(
            h,
            "<section class=\"client\">\n<h2>{}</h2>\n<p class=\"verdict\">{}</p>\n",
            esc(&c.heading),
            esc(&c.verdict)
        );
        if c.pictures.is_empty() {
            h.push_str("<p>No capture of this client's transfer to draw.</p>\n");
        }
        for p in &c.pictures {
            figure(&mut h, p);
        }
        h.push_str("</section>\n");
    }
    if pics.not_drawn > 0 {
        let _ = writeln!(
            h,
            "<p class=\"more\">{} more clients not drawn (the clients table lists every one).</p>",
            group(pics.not_drawn as u64)
        );
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn figure(h: &mut String, p: &Picture) {
    let _ = write!(
        h,
        "<figure id=\"{}\">\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
        esc(&p.name),
        p.svg,
        esc(&p.title)
    );
}

fn captures_table(h: &mut String, a: &Analysis) {
    h.push_str("<h2>Captures</h2>\n");
    if a.captures.is_empty() {
        h.push_str("<p>No capture: the account is the logs' alone.</p>\n");
        return;
    }
    h.push_str(
        "<table>\n<tr><th>file</th><th>format</th><th>link</th><th>packets</th>\
         <th>dropped</th><th>first</th><th>seconds</th></tr>\n",
    );
    for c in &a.captures {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(&c.path),
            esc(c.format),
            esc(&c.link_types.join(", ")),
            c.packets,
            opt(c.dropped),
            esc(&opt(c.first_time.as_deref())),
            opt(c.duration_s),
        );
    }
    h.push_str("</table>\n");
}

fn clients_table(h: &mut String, a: &Analysis) {
    h.push_str("<h2>Clients</h2>\n");
    if a.clients.is_empty() {
        h.push_str("<p>No client's transfer was found.</p>\n");
        return;
    }
    h.push_str(
        "<table>\n<tr><th>client</th><th>protocol</th><th>mode</th><th>file</th>\
         <th>sent</th><th>on the wire</th><th>received</th><th>loss %</th>\
         <th>goodput 10^6 B/s</th><th>verdict</th></tr>\n",
    );
    for (i, r) in a.clients.iter().enumerate() {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&client_name(r, i).0),
            opt(r.protocol.map(|p| p.as_str())),
            opt(r.mode.map(|m| m.as_str())),
            esc(&opt(r.file_name.as_deref())),
            opt(r.sent_bytes),
            opt(r.wire_data_bytes),
            opt(r.received_bytes),
            opt(r.loss_pct),
            opt(r.goodput_mb_s),
            esc(&r.verdict),
        );
    }
    h.push_str("</table>\n");
}

/// Writes `bytes` to `path` through a temporary file beside it, so that a
/// failed write never leaves a partial file under the final name.
fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let written = fs::write(&tmp, bytes).and_then(|_| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// The page, written to `path`.
pub fn write_html(path: &Path, a: &Analysis) -> anyhow::Result<()> {
    write_whole(path, render(a).as_bytes())
}

/// Each picture as its own SVG file in `dir` (made if missing); returns
/// the files written.
pub fn write_plots(dir: &Path, a: &Analysis) -> anyhow::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for p in pictures(a).all() {
        let path = dir.join(format!("{}.svg", p.name));
        let mut text = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        text.push_str(&p.svg);
        text.push('\n');
        write_whole(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_down_to_the_limit() {
        let r = merge_ranges(vec![(10, 10), (0, 1), (3, 4), (100, 120)], 0, 2);
        assert_eq!(r, vec![(0, 10), (100, 120)]);
        assert_eq!(merge_ranges(vec![(5, 6)], 0, 2), vec![(5, 6)]);
        // Gaps too small to see close first, whatever the limit.
        let r = merge_ranges(vec![(0, 1), (3, 4), (10, 10)], 2, 10);
        assert_eq!(r, vec![(0, 4), (10, 10)]);
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
