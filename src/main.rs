//! The `udplab` binary: parse arguments, set up logging and Ctrl-C, call
//! the library, and turn the result into an exit status.
//!
//! Exit status: 0 success; 1 error (for `lab`: a client or the server
//! failed, or Ctrl-C; loss is a result, not an error); 2 the transfer ran to its end but the
//! file is incomplete (the client) or some client did not get all of it
//! (the server). The server's 0 says that nothing failed on its side and
//! that every v1 client confirmed its file; of lab clients, which send
//! nothing back, it says only that they were sent everything. `analyze`
//! exits with 1 when a capture could not be read to its end (after
//! printing the report of what was read; `--format jsonl` writes no line
//! then) or its lines could not be written. `headers client` exits with 2
//! when the session ran but some name got no header; `lab headers` with 1
//! when a client or the server failed, a name got no header, or on Ctrl-C.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use log::{error, info};

use cli::{Cli, Command};
use udplab::analyze::{self, reader::Reader};
use udplab::protocol::DEFAULT_PORT;
use udplab::shutdown::Shutdown;
use udplab::{client, lab, server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet);
    let shutdown = Shutdown::new();
    let on_signal = shutdown.clone();
    if let Err(e) = ctrlc::set_handler(move || on_signal.trigger()) {
        log::warn!("Ctrl-C will not stop cleanly: {e}");
    }
    match run(cli, shutdown) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Server(args) => {
            let (listener, cfg) = args.into_config(cli.quiet)?;
            let summary = server::run(listener, cfg, shutdown)?;
            info!("{summary}");
            // Lab clients' delivery is unknown: it counts neither way, and
            // the summary says so.
            Ok(if summary.tally().failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Client(args) => {
            let outcome = client::run(args.into_config(cli.quiet)?, shutdown)?;
            let log = &outcome.log;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "client {}: {} of {} bytes, {} datagrams, kernel drops {}, {}",
                log.client_id.unwrap_or(0),
                log.bytes_received.unwrap_or(0),
                log.file_size.map_or("?".into(), |s| s.to_string()),
                log.datagrams_received.unwrap_or(0),
                log.kernel_drops.map_or("unknown".into(), |d| d.to_string()),
                if outcome.complete {
                    "complete"
                } else {
                    "INCOMPLETE"
                },
            )?;
            if let Some(path) = &outcome.output {
                writeln!(out, "file: {}", path.display())?;
            }
            if let Some(path) = &outcome.log_path {
                writeln!(out, "log:  {}", path.display())?;
            }
            Ok(if outcome.complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Analyze(args) => run_analyze(args, cli.quiet),
        Command::Capture(args) => run_capture(args, cli.quiet, &shutdown),
        Command::Lab(args) => run_lab(args, &shutdown),
        Command::Headers(cmd) => run_headers(cmd, shutdown),
    }
}

fn run_headers(cmd: cli::HeadersCommand, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    use udplab::headers::{client::Reply, server as hserver};
    match cmd {
        cli::HeadersCommand::Server(args) => {
            let (listener, cfg) = args.into_config()?;
            let summary = hserver::run(listener, cfg, shutdown)?;
            info!("{} sessions served", summary.sessions.len());
            Ok(ExitCode::SUCCESS)
        }
        cli::HeadersCommand::Client(args) => {
            let outcome = udplab::headers::client::run(&args.into_config())?;
            let mut out = std::io::stdout().lock();
            let mut all = true;
            for q in &outcome.queries {
                match &q.result {
                    Reply::Stored { bytes, path, .. } => {
                        writeln!(out, "{}: {bytes} bytes in {}", q.name, path.display())?
                    }
                    Reply::Refused(r) => {
                        all = false;
                        writeln!(out, "{}: {r}", q.name)?
                    }
                    Reply::Failed(why) => {
                        all = false;
                        writeln!(out, "{}: failed: {why}", q.name)?
                    }
                }
            }
            if let Some(path) = &outcome.log_path {
                writeln!(out, "log: {}", path.display())?;
            }
            // 2: the session ran, but some name got no header.
            Ok(if all {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}

#[cfg(feature = "capture")]
fn run_capture(
    args: cli::CaptureArgs,
    quiet: bool,
    shutdown: &Shutdown,
) -> anyhow::Result<ExitCode> {
    use udplab::capture::live;
    let cfg = args.into_config()?;
    let cap = live::Capture::open(cfg)?;
    info!(
        "capturing on {} into {} (Ctrl-C to stop)",
        cap.interface(),
        cap.path().display()
    );
    use std::io::IsTerminal;
    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_message("0 packets");
        b
    });
    let summary = cap.run(shutdown, &mut |n| {
        if let Some(b) = &bar {
            b.set_message(format!("{} packets", analyze::report::group(n)));
            b.tick();
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} packets captured ({} bytes) in {:.1} s, {}: {}",
        analyze::report::group(summary.packets),
        analyze::report::group(summary.bytes),
        summary.duration.as_secs_f64(),
        summary.stopped_by.as_str(),
        summary.path.display()
    )?;
    writeln!(
        out,
        "libpcap: {} received, {} dropped (buffer full), {} dropped by the interface",
        analyze::report::group(summary.received),
        analyze::report::group(summary.dropped),
        analyze::report::group(summary.if_dropped)
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "capture"))]
fn run_capture(_: cli::CaptureArgs, _: bool, _: &Shutdown) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "{}",
        udplab::capture::unavailable().unwrap_or("capture unavailable")
    )
}

/// `udplab lab --link --exec-server CMD`: the commands on the path, its
/// counters as JSON on stdout; exit status 1 when a command failed.
fn run_exec(
    shape: &lab::link::Shape,
    cmds: &lab::exec::Commands,
    shutdown: &Shutdown,
) -> anyhow::Result<ExitCode> {
    let o = lab::exec::run(shape, cmds, shutdown)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &o.counters)?;
    writeln!(out)?;
    let ok = o.server.success()
        && o.client.is_none_or(|s| s.success() || o.client_terminated)
        && !shutdown.is_triggered();
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_lab(args: cli::LabArgs, shutdown: &Shutdown) -> anyhow::Result<ExitCode> {
    use analyze::report::{self, Format, SuiteRow};
    if let Some(cli::LabCommand::Headers(args)) = args.lab {
        return run_headers_lab(args, shutdown);
    }
    if args.cleanup {
        return run_cleanup();
    }
    if let Some((shape, cmds)) = args.exec()? {
        return run_exec(&shape, &cmds, shutdown);
    }
    let suite = args.suite;
    let cfg = args.into_config()?;
    if cfg.link.is_some() {
        lab::netns::check_privileges(lab::link::MAKES).map_err(anyhow::Error::msg)?;
    }
    let mut failed = false;
    if suite {
        let mut rows = Vec::new();
        let dir = lab::suite(&cfg, &lab::SUITE, shutdown, &mut |i, t, o| {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "\nTest {}: {} MiB to {} client{}",
                i + 1,
                t.size >> 20,
                t.clients,
                if t.clients == 1 { "" } else { "s" }
            )?;
            report::write_clients(&mut out, &o.analysis)?;
            write_kernel_check(&mut out, o)?;
            write_lab_footer(&mut out, o)?;
            failed |= !o.client_errors.is_empty();
            rows.push(SuiteRow::new(
                i + 1,
                t.size,
                t.clients,
                &o.analysis,
                o.elapsed.as_secs_f64(),
            ));
            Ok(())
        })?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "\nSummary: loss per test")?;
        report::write_suite_summary(&mut out, &rows)?;
        writeln!(out, "suite directory: {}", dir.display())?;
    } else {
        let dir = lab::new_run_dir(&cfg.dir, "")?;
        let o = lab::run(&cfg, &dir, shutdown)?;
        let mut out = std::io::stdout().lock();
        report::write(&mut out, &o.analysis, Format::Table)?;
        writeln!(out)?;
        write_kernel_check(&mut out, &o)?;
        write_lab_footer(&mut out, &o)?;
        failed = !o.client_errors.is_empty();
    }
    if shutdown.is_triggered() {
        log::warn!("interrupted: the report covers the transfer as far as it ran");
        failed = true;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `udplab lab headers`: the summary on stdout; exit status 1 when
/// something failed or a name got no header, or on Ctrl-C.
fn run_headers_lab(args: cli::HeadersLabArgs, shutdown: &Shutdown) -> anyhow::Result<ExitCode> {
    let cfg = args.into_config()?;
    let o = lab::headers::run(&cfg, shutdown)?;
    let mut out = std::io::stdout().lock();
    lab::headers::write_summary(&mut out, &o)?;
    let mut failed = !o.errors.is_empty() || o.unanswered() > 0;
    if shutdown.is_triggered() {
        log::warn!("interrupted: the run covers the sessions as far as they ran");
        failed = true;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `udplab lab --cleanup`: what killed --link runs left behind, removed.
fn run_cleanup() -> anyhow::Result<ExitCode> {
    lab::netns::check_privileges("udplab lab --cleanup removes network namespaces")
        .map_err(anyhow::Error::msg)?;
    let removed = lab::link::cleanup_leftovers()?;
    let mut out = std::io::stdout().lock();
    if removed.is_empty() {
        writeln!(
            out,
            "nothing to remove: no udplab namespace or link of a run that is gone"
        )?;
    }
    for r in &removed {
        writeln!(out, "{r}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// On the path: the analyzer's figure beside the kernel's, place by place.
fn write_kernel_check(out: &mut dyn Write, o: &lab::Outcome) -> std::io::Result<()> {
    let Some(link) = &o.link else {
        return Ok(());
    };
    writeln!(
        out,
        "Where the loss was, by the analyzer and by the kernel's own counters ({})",
        link.counters_path.display()
    )?;
    lab::counters::write_table(out, &link.check)?;
    writeln!(out)
}

fn write_lab_footer(out: &mut dyn Write, o: &lab::Outcome) -> std::io::Result<()> {
    for c in &o.captures {
        // On loopback the one point needs no name.
        let at = if c.point == lab::CaptureAt::Loopback {
            String::new()
        } else {
            format!(" at the {} ({})", c.point, c.interface)
        };
        match &c.status {
            lab::CaptureStatus::Captured {
                path,
                packets,
                received,
                dropped,
            } => writeln!(
                out,
                "capture{at}: {} packets in {} (libpcap: {} received, {} dropped)",
                analyze::report::group(*packets),
                path.display(),
                analyze::report::group(*received),
                analyze::report::group(*dropped)
            )?,
            lab::CaptureStatus::Missing { reason } => writeln!(
                out,
                "capture{at}: none ({reason}); the wire columns are empty"
            )?,
        }
    }
    writeln!(out, "report: {}", o.report_path.display())?;
    writeln!(
        out,
        "run directory: {} ({:.1} s)",
        o.run_dir.display(),
        o.elapsed.as_secs_f64()
    )
}

fn run_analyze(args: cli::AnalyzeArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let logs = analyze::logs::load(&args.logs)?;
    for ignored in &logs.ignored {
        log::warn!("{ignored}");
    }
    let mut opts = analyze::Options {
        control_port: args.port.unwrap_or(DEFAULT_PORT),
        chunk: args.chunk as usize,
        log_utc_offset: args.log_utc_offset,
        conversations: args.conversations,
    };
    let mut analysis = analyze_files(&args.captures, &logs, &opts, quiet)?;
    // Without --port, a run on another control port is found by reading
    // again with the port the capture's connections went to.
    if args.port.is_none()
        && analysis.control.is_empty()
        && let Some(port) = analysis.suggested_port
    {
        opts.control_port = port;
        let again = analyze_files(&args.captures, &logs, &opts, quiet)?;
        if !again.clients.is_empty() {
            info!(
                "no connection to port {} in the capture: using control port {port}",
                DEFAULT_PORT
            );
            analysis = again;
        }
    }
    if args.format == analyze::report::Format::Jsonl {
        return append_jsonl(&analysis);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    analyze::report::write(&mut out, &analysis, args.format)?;
    out.flush()?;
    for e in &analysis.errors {
        error!("{e}");
    }
    Ok(if analysis.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--format jsonl`: the run's lines appended to standard output whole
/// or not at all, and none when a capture could not be read to its end,
/// so that a file of many runs holds only whole analyses.
fn append_jsonl(analysis: &analyze::Analysis) -> anyhow::Result<ExitCode> {
    use std::os::fd::AsFd;
    if !analysis.errors.is_empty() {
        for e in &analysis.errors {
            error!("{e}");
        }
        error!("no line written: a capture could not be read to its end");
        return Ok(ExitCode::FAILURE);
    }
    let lines = analyze::jsonl::lines(analysis, chrono::Utc::now())?;
    let mut stdout = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    analyze::jsonl::append(&mut stdout, &lines).context("writing to standard output")?;
    Ok(ExitCode::SUCCESS)
}

fn analyze_files(
    paths: &[std::path::PathBuf],
    logs: &analyze::logs::LogSet,
    opts: &analyze::Options,
    quiet: bool,
) -> anyhow::Result<analyze::Analysis> {
    let mut reader = Reader::open(paths)?;
    let bar = progress_bar(quiet, reader.progress().1);
    let analysis = analyze::analyze(&mut reader, logs, opts, &mut |done, total| {
        if let Some(bar) = &bar {
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(done);
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(analysis)
}

/// A bar on stderr for captures big enough to wait for, when stderr is a
/// terminal.
fn progress_bar(quiet: bool, total: Option<u64>) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    const WORTH_A_BAR: u64 = 64 * 1024 * 1024;
    let total = total?;
    if quiet || total < WORTH_A_BAR || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "reading {bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .ok()?,
    );
    Some(bar)
}

fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format(|buf, record| {
            writeln!(
                buf,
                "udplab: {}{}",
                match record.level() {
                    log::Level::Error => "error: ",
                    log::Level::Warn => "warning: ",
                    _ => "",
                },
                record.args()
            )
        })
        .init();
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
