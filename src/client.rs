//! The client: register with the server, receive the file over UDP, store
//! it safely, tell the server what arrived (v1), and write its log.
//!
//! The file is written under a temporary name inside `--out` and only given
//! its real name when the transfer has ended: complete files get the name
//! the server sent (stripped of any directories), incomplete ones the same
//! name with `.incomplete` appended. Nothing is ever overwritten: a name
//! that exists gets `.1`, `.2` ... appended. Every client that registered
//! leaves its log, whatever ended it.
//!
//! The server is a peer like any other: an announce is checked against
//! `--max-size` and the output's free space before anything is allocated,
//! names built around the file's (its temporary name, `.incomplete`, the
//! log) are cut to fit the file system, what it says is escaped before it
//! is shown, and data is taken only from its data address (v1: the
//! server's IP and the announced data port; lab: the server's IP, then the
//! port the name datagram came from, the lab's protocol naming no port).
//! Anything else that reaches the socket is counted as foreign.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use chrono::{DateTime, Local};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use log::{error, info, warn};
use sha2::{Digest, Sha256};

use crate::control::{self, Error as ControlError};
use crate::engine::{Arrival, Reception, feedback_interval};
use crate::net::{self, RecvBatch};
use crate::protocol::hex;
use crate::protocol::lab::{self, PortMessage};
use crate::protocol::v1::{self, Message};
use crate::protocol::{Mode, Protocol};
use crate::server::{rate_mb_s, unix_us};
use crate::shutdown::{POLL_INTERVAL, Shutdown};
use crate::text::{NAME_MAX, escape_peer_text, fit_name};
use crate::transfer_log::{self, Role, TransferLog};

/// The lab's default control port.
pub const DEFAULT_PORT: u16 = 5005;

/// The largest file a client takes unless told otherwise (`--max-size`).
pub const DEFAULT_MAX_SIZE: u64 = 16 << 30;

/// Validated client settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST[:PORT]`, port 5005 when absent.
    pub server: String,
    pub out_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Speak the lab's protocol instead of v1.
    pub legacy: bool,
    /// Lab protocol: the transfer ends after this long with nothing received.
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    /// How long registration steps may take.
    pub register_timeout: Duration,
    /// How long to wait for the round to fill and the data to start.
    pub start_timeout: Duration,
    /// v1: give up when nothing at all has arrived for this long mid-transfer.
    pub stall_timeout: Duration,
    /// v1: after `Done`, how long stragglers may take to arrive.
    pub linger: Duration,
    /// Ask the kernel for this receive buffer (bytes); `None` keeps its default.
    pub recv_buffer: Option<usize>,
    /// Refuse a file the server announces larger than this (bytes).
    pub max_size: u64,
    pub progress: bool,
}

impl Config {
    pub fn new(server: impl Into<String>) -> Config {
        Config {
            server: server.into(),
            out_dir: PathBuf::from("received"),
            log_dir: PathBuf::from("logs"),
            legacy: false,
            idle_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            register_timeout: Duration::from_secs(10),
            start_timeout: Duration::from_secs(600),
            stall_timeout: Duration::from_secs(60),
            linger: Duration::from_millis(100),
            recv_buffer: None,
            max_size: DEFAULT_MAX_SIZE,
            progress: true,
        }
    }
}

/// What the client did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub log: TransferLog,
    pub log_path: Option<PathBuf>,
    /// Where the file landed (complete, or marked `.incomplete`).
    pub output: Option<PathBuf>,
    /// The whole file arrived (v1: byte-identical by SHA-256; lab: as many
    /// bytes as announced).
    pub complete: bool,
    /// The transfer ended on a [`Failure`] (the file could not be written,
    /// the server broke the protocol) rather than running to its end or
    /// being stopped: an error, not just an incomplete file.
    pub failed: bool,
}

/// What ends a transfer that began as an error rather than as an
/// incomplete file (loss, a stop, a server gone): the log says why and
/// the bytes that arrived keep their `.incomplete` name.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The output file could not be made, written, read back or named (a
    /// full disk, no permission ...).
    #[error("{action} {}: {error}", .path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    /// The server sent what the protocol does not allow.
    #[error("bad data from the server: {0}")]
    BadData(String),
}

impl Failure {
    /// `error` doing `action` on `path`, as a [`Failure::File`].
    fn file<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Failure + 'a {
        move |error| Failure::File {
            action,
            path: path.to_path_buf(),
            error,
        }
    }
}

/// `HOST[:PORT]` -> socket address; IPv6 literals as `[::1]:5005` or `::1`.
pub fn resolve_server(spec: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = spec.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = spec.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let (host, port) = match spec.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .with_context(|| format!("bad port in --server {spec}"))?,
        ),
        None => (spec, DEFAULT_PORT),
    };
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))
}

/// Register with the server and receive one file. Once registered, the
/// client always writes its log: an error before the file's name is known
/// (nothing within the start timeout, no announce, bad data from the
/// server) is returned after it, naming the log; a later one ends the
/// transfer as incomplete, its log saying why.
pub fn run(cfg: Config, shutdown: Shutdown) -> anyhow::Result<Outcome> {
    let server = resolve_server(&cfg.server)?;
    let mut stream = TcpStream::connect_timeout(&server, cfg.connect_timeout)
        .with_context(|| format!("server not reachable at {server}"))?;
    let _ = stream.set_nodelay(true);
    let local_ip = stream.local_addr()?.ip();
    let sock = UdpSocket::bind((local_ip, 0)).context("binding the UDP receive socket")?;
    let recv_buffer = match cfg.recv_buffer {
        Some(bytes) => net::set_recv_buffer(&sock, bytes).context("setting --recv-buffer")?,
        None => net::recv_buffer(&sock)?,
    };
    if let Err(e) = net::enable_rxq_ovfl(&sock) {
        warn!("SO_RXQ_OVFL unavailable ({e}): no running drop count, only the final one");
    }
    let udp_port = sock.local_addr()?.port();

    let mut id = [0u8; lab::CLIENT_ID_LEN];
    control::read_field(&mut stream, &mut id, "client number", cfg.register_timeout)
        .context("registering")?;
    let id = lab::parse_client_id(&id)?;
    let version = if cfg.legacy { 0 } else { v1::VERSION };
    control::write_all(
        &mut stream,
        &PortMessage {
            port: udp_port,
            version,
        }
        .emit(),
        "port message",
        cfg.register_timeout,
    )
    .context("registering")?;
    let mut n = [0u8; lab::CONCURRENCY_LEN];
    control::read_field(&mut stream, &mut n, "concurrency", cfg.register_timeout)
        .context("registering")?;
    let clients = lab::parse_concurrency(&n)?;
    info!("registered as client {id} (round of {clients}), receiving on UDP port {udp_port}");

    let mut log = TransferLog {
        role: Some(Role::Client),
        protocol: Some(if cfg.legacy {
            Protocol::Lab
        } else {
            Protocol::V1
        }),
        client_id: Some(id),
        clients: Some(clients),
        server_ip: Some(server.ip()),
        client_ip: Some(local_ip),
        client_port: Some(udp_port),
        control_port: Some(server.port()),
        recv_buffer: Some(recv_buffer),
        ..TransferLog::default()
    };
    let session = Session {
        cfg: &cfg,
        server_ip: server.ip(),
        sock,
        shutdown: &shutdown,
        bar: progress_bar(cfg.progress),
    };
    let result = if cfg.legacy {
        session.receive_lab(&mut log)
    } else {
        session.receive_v1(stream, &mut log)
    };
    // Every way out from here leaves the log. An error before the file's
    // name is known (no data in time, no announce, bad data) means no
    // transfer began: it stays an error, after the log is written.
    let (output, complete, failed, before_transfer) = match result {
        Ok((output, complete)) => (output, complete, false, None),
        Err(e) => {
            log.error = Some(format!("{e:#}"));
            if log.file_name.is_some() {
                let failed = e.downcast_ref::<Failure>().is_some();
                if failed {
                    error!("{e:#}");
                } else {
                    warn!("{e:#}");
                }
                (None, false, failed, None)
            } else {
                (None, false, false, Some(e))
            }
        }
    };
    let output = output.or_else(|| log.output.as_ref().map(PathBuf::from));
    log.success = Some(complete);
    let stamp = log
        .start
        .map(|t| t.with_timezone(&Local))
        .unwrap_or_else(Local::now);
    let name = transfer_log::unused_log_name(
        &cfg.log_dir,
        Role::Client,
        id,
        stamp.naive_local(),
        log.file_name
            .as_deref()
            .unwrap_or(transfer_log::UNKNOWN_FILE_NAME),
        clients,
    );
    let log_path = match transfer_log::write_log(&cfg.log_dir, &name, &log) {
        Ok(p) => Some(p),
        Err(e) => {
            // The error names the path.
            warn!("writing the log: {e}");
            None
        }
    };
    if let Some(e) = before_transfer {
        return Err(match &log_path {
            Some(path) => e.context(format!("client {id} (log: {})", path.display())),
            None => e,
        });
    }
    Ok(Outcome {
        log,
        log_path,
        output,
        complete,
        failed,
    })
}

fn progress_bar(enabled: bool) -> ProgressBar {
    let target = if enabled {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

struct Session<'a> {
    cfg: &'a Config,
    /// The server's IP, as the control connection reached it: the only
    /// source data is taken from.
    server_ip: IpAddr,
    sock: UdpSocket,
    shutdown: &'a Shutdown,
    bar: ProgressBar,
}

impl Session<'_> {
    /// Wait for the next datagram batch for up to `timeout`; Ok(0) if none.
    fn wait_batch(&self, batch: &mut RecvBatch, timeout: Duration) -> anyhow::Result<usize> {
        let n = batch.recv(&self.sock)?;
        if n > 0 {
            return Ok(n);
        }
        net::poll_readable([self.sock.as_raw_fd()], timeout.min(POLL_INTERVAL))?;
        Ok(batch.recv(&self.sock)?)
    }

    fn check_shutdown(&self) -> anyhow::Result<()> {
        if self.shutdown.is_triggered() {
            bail!("interrupted");
        }
        Ok(())
    }

    /// The lab's transfer: name, size, then chunks until an idle second.
    fn receive_lab(&self, log: &mut TransferLog) -> anyhow::Result<(Option<PathBuf>, bool)> {
        let cfg = self.cfg;
        let mut batch = RecvBatch::new(64 * 1024);
        // The name datagram: the round may take long to fill.
        let waiting = Instant::now();
        self.sock.set_nonblocking(true)?;
        let mut foreign = 0u64;
        // The lab's protocol tells no data port (its server sends from
        // control port + client number, but says so nowhere): the name
        // datagram is taken from the server's IP, and from then on only
        // what comes from the address it came from.
        let (name, from) = loop {
            self.check_shutdown()?;
            if waiting.elapsed() >= cfg.start_timeout {
                bail!(
                    "no data within the start timeout ({}) of registering",
                    humantime::format_duration(cfg.start_timeout)
                );
            }
            let mut buf = [0u8; 1024];
            net::poll_readable([self.sock.as_raw_fd()], POLL_INTERVAL)?;
            match self.sock.recv_from(&mut buf) {
                Ok((_, from)) if from.ip() != self.server_ip => foreign += 1,
                Ok((n, from)) => break (lab::safe_file_name(&buf[..n.min(buf.len())])?, from),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("receiving the name datagram"),
            }
        };
        log.foreign_datagrams = Some(foreign);
        let start = SystemTime::now();
        log.start = Some(DateTime::<Local>::from(start).fixed_offset());
        log.file_name = Some(name.clone());
        log.server_port = Some(from.port());
        log.server_ip = Some(from.ip());
        log.datagram_size = Some(lab::CHUNK as u32);
        log.chunk_size = Some(lab::CHUNK as u32);

        let asked = Instant::now();
        let size = loop {
            self.check_shutdown()?;
            let mut buf = [0u8; 64];
            let left = cfg.idle_timeout.saturating_sub(asked.elapsed());
            if left.is_zero() || net::poll_readable([self.sock.as_raw_fd()], left)? == [false] {
                log.foreign_datagrams = Some(foreign);
                bail!(
                    "no size datagram within {}",
                    humantime::format_duration(cfg.idle_timeout)
                );
            }
            match self.sock.recv_from(&mut buf) {
                Ok((_, source)) if !same_endpoint(source, from) => foreign += 1,
                Ok((n, _)) => {
                    break lab::parse_size(&buf[..n.min(buf.len())])
                        .map_err(|e| Failure::BadData(format!("size datagram: {e}")))?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e).context("receiving the size datagram"),
            }
        };
        log.foreign_datagrams = Some(foreign);
        log.file_size = Some(size);
        log.datagrams_total = Some(lab::datagram_count(size, lab::CHUNK as u64));
        info!(
            "receiving {}: {size} bytes from {from}",
            escape_peer_text(&name)
        );
        let room = Room::check(cfg, &name, size)?;
        self.bar.set_length(size);

        let mut part = PartFile::create(&cfg.out_dir, &name, log.client_id.unwrap_or(0), &room)?;
        let part_path = part.path().to_path_buf();
        let mut out = BufWriter::with_capacity(1 << 20, part.file()?);
        let (mut bytes, mut datagrams, mut malformed) = (0u64, 0u64, 0u64);
        let mut last = Instant::now();
        let mut last_wall = start;
        let write_result: anyhow::Result<()> = (|| {
            while bytes < size {
                self.check_shutdown()?;
                let idle = last.elapsed();
                if idle >= cfg.idle_timeout {
                    break;
                }
                let n = self.wait_batch(&mut batch, cfg.idle_timeout - idle)?;
                if n == 0 {
                    continue;
                }
                let taken = datagrams;
                for i in 0..n {
                    let Some((data, truncated)) = batch.get(i) else {
                        continue;
                    };
                    if !batch.source(i).is_some_and(|s| same_endpoint(s, from)) {
                        foreign += 1;
                        continue;
                    }
                    // Anything past the announced size is not the file's.
                    let room = (size - bytes).min(data.len() as u64) as usize;
                    if truncated || room < data.len() {
                        malformed += 1;
                    }
                    out.write_all(&data[..room])
                        .map_err(Failure::file("writing", &part_path))?;
                    bytes += room as u64;
                    datagrams += 1;
                }
                // Only the server's datagrams keep the transfer going.
                if datagrams > taken {
                    last = Instant::now();
                    last_wall = SystemTime::now();
                }
                self.bar.set_position(bytes);
            }
            out.flush().map_err(Failure::file("writing", &part_path))?;
            Ok(())
        })();
        drop(out);
        self.bar.finish();
        let elapsed = last_wall.duration_since(start).unwrap_or_default();
        log.end = Some(DateTime::<Local>::from(last_wall).fixed_offset());
        log.duration_s = Some(elapsed.as_secs_f64());
        log.rate_mb_s = rate_mb_s(bytes, elapsed);
        log.datagrams_received = Some(datagrams);
        log.bytes_received = Some(bytes);
        log.malformed = Some(malformed);
        log.foreign_datagrams = Some(foreign);
        log.kernel_drops = net::kernel_drops(&self.sock).or(batch.ovfl);
        let complete = write_result.is_ok() && bytes == size;
        let path = part.finish_or_discard(complete, datagrams > 0 || size == 0)?;
        log.output = path.as_ref().map(|p| p.display().to_string());
        write_result?;
        if !complete {
            log.error = Some(format!(
                "received {bytes} of {size} bytes before {} of silence",
                humantime::format_duration(cfg.idle_timeout)
            ));
        }
        Ok((path, complete))
    }

    /// v1: announce, start, sequenced data, done, report; in the reliable
    /// mode, reports and repair rounds until the file is whole.
    fn receive_v1(
        &self,
        mut stream: TcpStream,
        log: &mut TransferLog,
    ) -> anyhow::Result<(Option<PathBuf>, bool)> {
        let cfg = self.cfg;
        let mut reader = control::Reader::new();
        let announce = match reader.read(&mut stream, "announce", cfg.register_timeout)? {
            Message::Announce(a) => a,
            Message::Abort { reason } => {
                bail!("the server aborted: {}", escape_peer_text(&reason))
            }
            other => bail!("expected the server's announce, got {other:?}"),
        };
        let total = u64::from(announce.datagrams);
        log.file_name = Some(announce.file_name.clone());
        log.file_size = Some(announce.file_size);
        log.server_port = Some(announce.data_port);
        log.datagram_size = Some(u32::from(announce.datagram_size));
        log.chunk_size = Some(announce.chunk_size() as u32);
        log.datagrams_total = Some(total);
        log.sha256 = Some(hex(&announce.sha256));
        log.mode = Some(announce.mode);
        if announce.mode == Mode::Reliable && cfg.recv_buffer.is_none() {
            // Room for bursts while this thread is descheduled.
            match net::set_recv_buffer(&self.sock, RELIABLE_RECV_BUFFER) {
                Ok(granted) => log.recv_buffer = Some(granted),
                Err(e) => warn!("sizing the receive buffer: {e}"),
            }
        }
        info!(
            "announced {}: {} bytes in {} datagrams, {} mode; receive buffer {} bytes",
            escape_peer_text(&announce.file_name),
            announce.file_size,
            total,
            announce.mode.as_str(),
            log.recv_buffer.unwrap_or(0)
        );
        let room = match Room::check(cfg, &announce.file_name, announce.file_size) {
            Ok(room) => room,
            Err(e) => {
                // Tell the server why, so that its log says it too.
                let why = Message::Abort {
                    reason: format!("{e:#}"),
                };
                let _ = control::send(&mut stream, &why, Duration::from_secs(1));
                return Err(e);
            }
        };
        self.bar.set_length(announce.file_size);

        let mut part = PartFile::create(
            &cfg.out_dir,
            &announce.file_name,
            log.client_id.unwrap_or(0),
            &room,
        )?;
        let file = part.file()?;
        if let Err(e) = file.set_len(announce.file_size) {
            // Nothing was received: no empty file is left behind.
            drop(file);
            let path = part.path().to_path_buf();
            part.finish_or_discard(false, false)?;
            return Err(Failure::file("sizing", &path)(e).into());
        }
        let mut state = State {
            rx: Reception::new(&announce),
            file,
            path: part.path().to_path_buf(),
            data_from: SocketAddr::new(self.server_ip, announce.data_port),
            foreign: 0,
            ovfl: None,
            first_wall: None,
            last_wall: None,
            hasher: Sha256::new(),
            hashed: 0,
        };
        let result = self.v1_loop(&mut stream, &mut reader, &mut state, &announce, log);
        self.bar.finish();
        let kernel_drops = net::kernel_drops(&self.sock).or(state.ovfl);
        let rx = &state.rx;
        let sha_match = matches!(result, Ok(true));
        let missing = rx.missing_count();
        let (ranges, truncated) = rx.missing_ranges(v1::MAX_REPORT_RANGES);
        log.datagrams_received = Some(rx.received());
        log.bytes_received = Some(rx.bytes);
        log.duplicates = Some(rx.duplicates);
        log.malformed = Some(rx.malformed);
        log.late = Some(rx.late);
        log.foreign_datagrams = Some(state.foreign);
        log.missing_datagrams = Some(missing);
        log.missing_ranges = (!ranges.is_empty()).then(|| v1::format_ranges(&ranges, truncated));
        log.kernel_drops = kernel_drops;
        log.sha256_match = Some(sha_match);
        if announce.mode == Mode::Reliable {
            log.datagrams_retransmitted = Some(rx.retransmitted);
            log.repair_rounds = Some(rx.round);
        }
        if let (Some(first), Some(last)) = (state.first_wall, state.last_wall) {
            let elapsed = last.duration_since(first).unwrap_or_default();
            log.start = Some(DateTime::<Local>::from(first).fixed_offset());
            log.end = Some(DateTime::<Local>::from(last).fixed_offset());
            log.duration_s = Some(elapsed.as_secs_f64());
            log.rate_mb_s = rate_mb_s(rx.bytes, elapsed);
            if sha_match {
                log.goodput_mb_s = rate_mb_s(announce.file_size, elapsed);
            }
        }
        let complete = sha_match;
        let keep = rx.received() > 0 || total == 0;
        drop(state);
        let path = part.finish_or_discard(complete, keep)?;
        log.output = path.as_ref().map(|p| p.display().to_string());
        result?;
        if !complete {
            log.error = Some(if missing == 0 {
                "every datagram arrived but the file's SHA-256 differs".to_string()
            } else {
                format!("{missing} of {total} datagrams missing")
            });
        }
        Ok((path, complete))
    }

    /// Receive until the transfer ends; Ok(true) when the stored file's
    /// SHA-256 matches the announce. Sends the reports.
    fn v1_loop(
        &self,
        stream: &mut TcpStream,
        reader: &mut control::Reader,
        state: &mut State,
        announce: &v1::Announce,
        log: &mut TransferLog,
    ) -> anyhow::Result<bool> {
        let cfg = self.cfg;
        let reliable = announce.mode == Mode::Reliable;
        let mut batch = RecvBatch::new(usize::from(announce.datagram_size));
        let mut started: Option<Instant> = None;
        let registered = Instant::now();
        let mut last_activity = Instant::now();
        let mut done_at: Option<Instant> = None;
        // The server's count of datagrams sent, from its last `Done`.
        let mut server_sent: Option<u64> = None;
        let mut last_feedback = Instant::now();
        let mut fed_back = 0;
        loop {
            self.check_shutdown()?;
            if let Some(at) = done_at {
                // The pass is over: report once the stragglers are in. A
                // reliable client reports once its socket has gone quiet
                // (what is still queued there would only come again).
                let quiet = last_activity.elapsed() >= QUIET.min(cfg.linger);
                let waited = at.elapsed();
                let report_now = if reliable {
                    quiet
                        || self.all_accounted(state, server_sent)
                        || waited >= cfg.linger.max(Duration::from_secs(1))
                } else {
                    waited >= cfg.linger
                };
                if state.rx.complete() || report_now {
                    let sha_match = state.rx.complete() && state.sha256()? == announce.sha256;
                    let report = self.report(state, sha_match);
                    if let Err(e) = control::send(stream, &report, Duration::from_secs(5)) {
                        if !reliable {
                            warn!("sending the report: {e}");
                            return Ok(sha_match);
                        }
                        return Err(e).context("sending the report");
                    }
                    if !reliable || state.rx.complete() {
                        return Ok(sha_match);
                    }
                    state.rx.next_round();
                    done_at = None;
                    last_activity = Instant::now();
                }
            }
            let interval = feedback_interval(started.map_or(Duration::ZERO, |t| t.elapsed()));
            let wait = if reliable {
                interval.saturating_sub(last_feedback.elapsed())
            } else {
                POLL_INTERVAL
            };
            // Hash what a filled gap joined to the prefix, a slice a turn,
            // while waiting (on a repair round's datagrams, the report).
            let hashing = state.hash_held(HASH_SLICE)?;
            let wait = if hashing {
                Duration::ZERO
            } else {
                wait.clamp(Duration::from_millis(1), POLL_INTERVAL)
            };
            let ready = net::poll_readable([self.sock.as_raw_fd(), stream.as_raw_fd()], wait)?;
            if ready[0] {
                loop {
                    let n = batch.recv(&self.sock)?;
                    if n == 0 {
                        break;
                    }
                    // Only the server's datagrams keep the transfer going.
                    let taken = state
                        .take(&batch, n)
                        .map_err(Failure::file("writing", &state.path))?;
                    if taken > 0 {
                        last_activity = Instant::now();
                    }
                    if n < net::BATCH {
                        break;
                    }
                }
                if batch.ovfl != state.ovfl {
                    // The running count: it lags, the final one comes from /proc.
                    state.ovfl = batch.ovfl;
                    self.bar
                        .set_message(format!("kernel drops {}", state.ovfl.unwrap_or(0)));
                }
                self.bar.set_position(state.rx.bytes);
            }
            if reliable
                && started.is_some()
                && done_at.is_none()
                && !state.rx.complete()
                && last_feedback.elapsed() >= interval
            {
                last_feedback = Instant::now();
                if state.rx.arrived != fed_back {
                    fed_back = state.rx.arrived;
                    control::send(
                        stream,
                        &Message::Feedback(
                            state.rx.feedback(state.ovfl, unix_us(SystemTime::now())),
                        ),
                        Duration::from_secs(5),
                    )
                    .context("sending feedback")?;
                }
            }
            if ready[1] {
                match reader.fill_readable(stream) {
                    Ok(true) => last_activity = Instant::now(),
                    Ok(false) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        bail!("the server closed the control connection before the end")
                    }
                    Err(e) => return Err(e).context("reading the control connection"),
                }
            }
            // Messages may have come in with the announce: always look.
            while let Some(msg) = reader
                .next_message()
                .map_err(|e: ControlError| Failure::BadData(e.to_string()))?
            {
                match msg {
                    Message::Start { .. } => {
                        started.get_or_insert_with(Instant::now);
                    }
                    Message::Done(d) => {
                        log.datagrams_sent = Some(d.datagrams_sent);
                        log.bytes_sent = Some(d.bytes_sent);
                        server_sent = Some(d.datagrams_sent);
                        done_at = Some(Instant::now());
                    }
                    Message::Abort { reason } => {
                        bail!("the server aborted: {}", escape_peer_text(&reason))
                    }
                    other => {
                        return Err(Failure::BadData(format!(
                            "unexpected control message {other:?}"
                        ))
                        .into());
                    }
                }
            }
            let quiet = last_activity.elapsed();
            if started.is_some() && done_at.is_none() && quiet >= cfg.stall_timeout {
                bail!(
                    "nothing from the server for {}",
                    humantime::format_duration(cfg.stall_timeout)
                );
            }
            if started.is_none() && registered.elapsed() >= cfg.start_timeout {
                bail!(
                    "the transfer did not start within {}",
                    humantime::format_duration(cfg.start_timeout)
                );
            }
        }
    }

    /// Every datagram the server says it sent was taken from the socket or
    /// dropped by the kernel at it: nothing more is on its way, and waiting
    /// for the socket to go quiet would only add [`QUIET`] to the round (on
    /// loopback, where only this socket drops, that is every round). Loss on
    /// a path leaves the count short, and the client waits as before.
    fn all_accounted(&self, state: &State, server_sent: Option<u64>) -> bool {
        server_sent.is_some_and(|sent| {
            state.rx.arrived >= sent
                || net::kernel_drops(&self.sock)
                    .is_some_and(|drops| state.rx.arrived.saturating_add(drops) >= sent)
        })
    }

    /// The report of what `state` holds.
    fn report(&self, state: &State, sha256_match: bool) -> Message {
        let rx = &state.rx;
        let (missing, truncated) = rx.missing_ranges(v1::MAX_REPORT_RANGES);
        Message::Report(v1::Report {
            datagrams_received: rx.received(),
            bytes_received: rx.bytes,
            duplicates: rx.duplicates,
            malformed: rx.malformed,
            missing_datagrams: rx.missing_count(),
            kernel_drops: net::kernel_drops(&self.sock).or(state.ovfl),
            sha256_match,
            missing,
            ranges_truncated: truncated,
        })
    }
}

/// Receive buffer a reliable-mode client asks for when `--recv-buffer` is
/// not given.
pub const RELIABLE_RECV_BUFFER: usize = 8 << 20;

/// After `Done`, a reliable client reports once nothing has arrived for this
/// long (or after `linger`, whichever comes first).
const QUIET: Duration = Duration::from_millis(20);

/// A v1 client's transfer in progress: the book and the file.
struct State {
    rx: Reception,
    file: File,
    path: PathBuf,
    /// The server's data address: datagrams from anywhere else are not
    /// taken.
    data_from: SocketAddr,
    /// Datagrams that came from anywhere else.
    foreign: u64,
    /// The kernel's running drop count (SO_RXQ_OVFL).
    ovfl: Option<u64>,
    first_wall: Option<SystemTime>,
    last_wall: Option<SystemTime>,
    /// SHA-256 of the file's first `hashed` bytes, as they were written:
    /// datagrams that arrive in order are hashed from the receive buffers
    /// as they go to the file, what a filled gap joins to the prefix is
    /// read back from the file ([`State::hash_held`]). The file's hash is
    /// then known when its last datagram is in, not a read of the whole
    /// file later.
    hasher: Sha256,
    hashed: u64,
}

/// Bytes [`State::hash_held`] reads back and hashes in one turn of the
/// receive loop (about a millisecond).
const HASH_SLICE: u64 = 1 << 20;

impl State {
    /// Take `n` datagrams of `batch`: new ones go straight from the receive
    /// buffers to the file, consecutive ones in one vectored write. Those
    /// not from the server's data address are only counted. Returns how
    /// many came from it.
    fn take(&mut self, batch: &RecvBatch, n: usize) -> io::Result<usize> {
        let now = SystemTime::now();
        let now_us = unix_us(now);
        let mut run: Vec<&[u8]> = Vec::with_capacity(n);
        let (mut run_start, mut run_end) = (0u64, 0u64);
        let mut taken = 0;
        for i in 0..n {
            let Some((datagram, truncated)) = batch.get(i) else {
                continue;
            };
            if !batch
                .source(i)
                .is_some_and(|s| same_endpoint(s, self.data_from))
            {
                self.foreign += 1;
                continue;
            }
            taken += 1;
            let Arrival::New { offset, payload } = self.rx.arrive(datagram, truncated, now_us)
            else {
                continue;
            };
            let piece = &datagram[payload.0..payload.1];
            if offset == self.hashed {
                // The next bytes of the prefix, as they go to the file (a
                // failed write ends the transfer).
                self.hasher.update(piece);
                self.hashed += piece.len() as u64;
            }
            if offset != run_end && !run.is_empty() {
                net::write_all_at_vectored(&self.file, run_start, &run)?;
                run.clear();
            }
            if run.is_empty() {
                run_start = offset;
                run_end = offset;
            }
            run.push(piece);
            run_end += piece.len() as u64;
        }
        if !run.is_empty() {
            net::write_all_at_vectored(&self.file, run_start, &run)?;
        }
        if taken > 0 {
            self.first_wall.get_or_insert(now);
            self.last_wall = Some(now);
        }
        Ok(taken)
    }

    /// Read back and hash up to `budget` bytes of the file's gapless
    /// prefix past what is hashed. True when more is left to hash.
    fn hash_held(&mut self, budget: u64) -> anyhow::Result<bool> {
        let held = self.rx.held_prefix();
        if self.hashed >= held {
            return Ok(false);
        }
        let end = held.min(self.hashed.saturating_add(budget));
        let mut buf = vec![0u8; (end - self.hashed) as usize];
        self.file
            .read_exact_at(&mut buf, self.hashed)
            .map_err(Failure::file("reading back", &self.path))?;
        self.hasher.update(&buf);
        self.hashed = end;
        Ok(end < held)
    }

    /// The SHA-256 of the whole file (call once it is whole): the rest of
    /// the prefix read back, then the running hash.
    fn sha256(&mut self) -> anyhow::Result<[u8; 32]> {
        while self.hash_held(HASH_SLICE)? {}
        Ok(self.hasher.clone().finalize().into())
    }
}

/// Whether `a` and `b` are one endpoint: IP and port (an IPv6 scope or
/// flow label aside).
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip() == b.ip() && a.port() == b.port()
}

/// What the output directory's file system takes, as far as an announced
/// file has been checked against it.
struct Room {
    /// The longest name it takes, in bytes.
    name_max: usize,
}

impl Room {
    /// Check a file the server announced (`name`, `size` bytes) before
    /// anything is allocated for it: at most `--max-size`, no more than
    /// the free space of the output's file system, a name it can hold.
    fn check(cfg: &Config, name: &str, size: u64) -> anyhow::Result<Room> {
        if size > cfg.max_size {
            bail!(
                "refusing the announced file of {size} bytes ({}): more than --max-size {} \
                 ({} bytes); pass a larger --max-size to take it",
                indicatif::HumanBytes(size),
                indicatif::HumanBytes(cfg.max_size),
                cfg.max_size
            );
        }
        let dir = &cfg.out_dir;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let fs = FsSpace::of(dir).with_context(|| format!("statvfs {}", dir.display()))?;
        if size > fs.free {
            bail!(
                "refusing the announced file of {size} bytes ({}): the file system of {} has \
                 {} bytes ({}) free",
                indicatif::HumanBytes(size),
                dir.display(),
                fs.free,
                indicatif::HumanBytes(fs.free)
            );
        }
        if name.len() > fs.name_max {
            bail!(
                "refusing the announced file: its name is {} bytes long, the file system of {} \
                 takes names of at most {}",
                name.len(),
                dir.display(),
                fs.name_max
            );
        }
        Ok(Room {
            name_max: fs.name_max,
        })
    }
}

/// A file system's free space and name limit (statvfs).
struct FsSpace {
    /// Bytes an unprivileged writer may still take.
    free: u64,
    /// The longest name, in bytes (at most [`NAME_MAX`]).
    name_max: usize,
}

impl FsSpace {
    fn of(dir: &Path) -> io::Result<FsSpace> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL"))?;
        // SAFETY: statvfs is a plain C struct that the call fills in.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a NUL-terminated string and `st` is valid for
        // writes, both alive across the call.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let name_max = usize::try_from(st.f_namemax).unwrap_or(NAME_MAX);
        Ok(FsSpace {
            free: st.f_bavail.saturating_mul(st.f_frsize),
            name_max: if name_max == 0 {
                NAME_MAX
            } else {
                name_max.min(NAME_MAX)
            },
        })
    }
}

/// The file being received, under a temporary name until [`PartFile::finish`].
struct PartFile {
    dir: PathBuf,
    name: String,
    temp: PathBuf,
    /// The longest name the directory's file system takes.
    name_max: usize,
    file: Option<File>,
    finished: bool,
}

impl PartFile {
    /// Create the temporary file for `name` in `dir`, which `room` checked;
    /// the temporary name holds as much of `name` as fits.
    fn create(dir: &Path, name: &str, client_id: u16, room: &Room) -> anyhow::Result<PartFile> {
        fs::create_dir_all(dir).map_err(Failure::file("creating", dir))?;
        let temp = dir.join(fit_name(
            &format!(".{name}"),
            &format!(".c{client_id}-{}.part", std::process::id()),
            room.name_max,
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(Failure::file("creating", &temp))?;
        Ok(PartFile {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            temp,
            name_max: room.name_max,
            file: Some(file),
            finished: false,
        })
    }

    fn path(&self) -> &Path {
        &self.temp
    }

    /// The open file (once).
    fn file(&mut self) -> anyhow::Result<File> {
        self.file.take().context("output file already taken")
    }

    /// [`PartFile::finish`] if anything arrived (`keep`); otherwise remove
    /// the temporary file, as there is nothing worth keeping.
    fn finish_or_discard(&mut self, complete: bool, keep: bool) -> anyhow::Result<Option<PathBuf>> {
        if keep {
            return self.finish(complete).map(Some);
        }
        self.file = None;
        fs::remove_file(&self.temp).map_err(Failure::file("removing", &self.temp))?;
        self.finished = true;
        Ok(None)
    }

    /// Give the file its final name without overwriting anything:
    /// `name` when complete, `name.incomplete` otherwise, `.1`, `.2` ... on
    /// collision; where `name` and what follows it do not fit the file
    /// system, the start of `name` and a hash of it ([`fit_name`]).
    fn finish(&mut self, complete: bool) -> anyhow::Result<PathBuf> {
        let marker = if complete { "" } else { ".incomplete" };
        let base = fit_name(&self.name, marker, self.name_max);
        for n in 0..1000 {
            let candidate = if n == 0 {
                self.dir.join(&base)
            } else {
                self.dir.join(fit_name(
                    &self.name,
                    &format!("{marker}.{n}"),
                    self.name_max,
                ))
            };
            // A hard link fails rather than replace an existing name.
            match fs::hard_link(&self.temp, &candidate) {
                Ok(()) => {
                    let _ = fs::remove_file(&self.temp);
                    self.finished = true;
                    return Ok(candidate);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Failure::file("naming", &candidate)(e).into()),
            }
        }
        bail!("no free name for {} in {}", base, self.dir.display())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.finished {
            // Leave it, under its temporary name that says it is partial.
            warn!("partial file left at {}", self.temp.display());
        }
    }
}
