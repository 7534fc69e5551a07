//! The server: register clients over TCP, hold them at a barrier until a
//! round of N has formed, then send the file to each of them at once from
//! its own UDP port (control port + client number), one thread per client.
//!
//! Clients that speak the lab's bytes (third byte of the port message 0) get
//! exactly the lab's transfer: name datagram, size datagram, 1024-byte
//! chunks, and their control connection closed at the barrier. v1 clients
//! keep theirs open: announce, start, done, and their report. So the
//! server knows whether a v1 client got the file, and never whether a lab
//! client did: its [`Ending`] and its log say "sent; delivery unknown".
//!
//! [`run`] takes a bound listener and a [`Shutdown`], so tests serve on
//! port 0 and stop the server when they are done.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use chrono::{DateTime, Local};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use log::{info, warn};
use sha2::{Digest, Sha256};

use crate::admission::{self, Admit, Numbers, Slots, Throttle};
use crate::control::{self, PeerState};
use crate::engine::{
    Abort, Action, Finish, Next, ReportTaken, Rule, Run, Service, Transfer, TransferConfig,
};
use crate::net::{self, SendBatch};
use crate::protocol::hex;
use crate::protocol::lab::{self, PortMessage};
use crate::protocol::v1::{self, Message};
use crate::protocol::{Mode, Protocol};
use crate::shutdown::{POLL_INTERVAL, Shutdown};
use crate::text::escape_peer_text;
use crate::transfer_log::{self, Delivery, Role, TransferLog};

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    /// Clients per round: the barrier waits for this many.
    pub clients: u16,
    /// Address the UDP data sockets bind to.
    pub bind_ip: IpAddr,
    pub log_dir: PathBuf,
    /// Stop after this many rounds; `None` serves until stopped.
    pub rounds: Option<u32>,
    /// Give up on a round that has not filled within this time.
    pub barrier_timeout: Option<Duration>,
    /// How long a new connection may take to register.
    pub register_timeout: Duration,
    /// How long a new connection may take to send the first byte of its
    /// port message, once it has its number: a silent one gives its slot
    /// up this soon (the rest of the registration has `register_timeout`).
    pub first_byte_timeout: Duration,
    /// Registrations one address may have under way at once; more from
    /// it wait for one of them to end.
    pub per_address: usize,
    /// How long a v1 client may take to report after `Done`, and (reliable
    /// mode) go without feedback while a pass is sent.
    pub report_timeout: Duration,
    /// UDP payload of a v1 data datagram, header included.
    pub datagram_size: u16,
    /// Draw progress bars (only ever on a terminal).
    pub progress: bool,
    /// How v1 clients are served: blast, or reliable with repair rounds.
    pub mode: Mode,
    /// Ceiling of each client's sending rate, bits per second; `None` sends
    /// as fast as the kernel takes datagrams (blast) or as fast as the
    /// client's feedback allows (reliable).
    pub rate: Option<f64>,
    /// Reliable mode: give up on a client that has not confirmed its file
    /// within this time from the start of its transfer.
    pub deadline: Duration,
}

impl Config {
    pub fn new(file: PathBuf, clients: u16) -> Config {
        Config {
            file,
            clients,
            bind_ip: IpAddr::from([0, 0, 0, 0]),
            log_dir: PathBuf::from("logs"),
            rounds: None,
            barrier_timeout: None,
            register_timeout: Duration::from_secs(10),
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
            per_address: admission::DEFAULT_PER_ADDRESS,
            report_timeout: Duration::from_secs(30),
            datagram_size: v1::DEFAULT_DATAGRAM_SIZE,
            progress: true,
            mode: Mode::Blast,
            rate: None,
            deadline: Duration::from_secs(600),
        }
    }
}

/// What the server knows of the file it offers.
#[derive(Debug, Clone)]
struct Offer {
    path: PathBuf,
    name: String,
    size: u64,
    sha256: [u8; 32],
}

impl Offer {
    fn load(path: &Path) -> anyhow::Result<Offer> {
        let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", path.display());
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{} has no file name", path.display()))?;
        let name = lab::safe_file_name(name.as_bytes())
            .with_context(|| format!("file name of {}", path.display()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok(Offer {
            path: path.to_path_buf(),
            name,
            size,
            sha256: hasher.finalize().into(),
        })
    }
}

/// A client that has registered and waits at the barrier.
#[derive(Debug)]
struct Registration {
    id: u16,
    stream: TcpStream,
    peer: SocketAddr,
    udp_port: u16,
    protocol: Protocol,
}

/// Most connections registering at once; more wait, or are refused, so a
/// flood of silent connections cannot exhaust threads while others wait to
/// be served.
pub use crate::admission::MAX_REGISTERING;

/// Default of `--first-byte-timeout`: a client answers its number at once
/// (the lab's does in well under a millisecond); a peer silent this long
/// holds a slot it will not use.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the server knows, at the end, of one client's transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The client confirmed the whole file: a v1 report whose SHA-256
    /// matched.
    Delivered,
    /// Everything was sent, and the protocol brings nothing back (the
    /// lab's): what arrived is unknown to the server.
    SentDeliveryUnknown,
    /// The transfer failed, or the client reported a file that is not whole.
    Failed,
}

/// What became of one client's transfer.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub client_id: u16,
    pub ending: Ending,
    /// Why the server gave up on the client, when it did (a v1 transfer
    /// ended by the server's own rules: deadline, timeouts, refused or
    /// impossible reports, the resend limits).
    pub gave_up: Option<Abort>,
    pub log: TransferLog,
    /// Where the log was written (None if writing it failed).
    pub log_path: Option<PathBuf>,
}

/// What a run of the server did.
#[derive(Debug, Default)]
pub struct Summary {
    pub rounds: u32,
    pub outcomes: Vec<Outcome>,
}

/// How many transfers of a run ended with each [`Ending`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub delivered: usize,
    pub delivery_unknown: usize,
    pub failed: usize,
}

impl Summary {
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for o in &self.outcomes {
            match o.ending {
                Ending::Delivered => t.delivered += 1,
                Ending::SentDeliveryUnknown => t.delivery_unknown += 1,
                Ending::Failed => t.failed += 1,
            }
        }
        t
    }
}

impl fmt::Display for Summary {
    /// `2 round(s), 3 transfer(s): 1 complete, 1 incomplete, 1 sent;
    /// delivery unknown (lab protocol)`; the last part only when some
    /// client spoke the lab's protocol and was sent everything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.tally();
        write!(
            f,
            "{} round(s), {} transfer(s): {} complete, {} incomplete",
            self.rounds,
            self.outcomes.len(),
            t.delivered,
            t.failed
        )?;
        if t.delivery_unknown > 0 {
            write!(
                f,
                ", {} sent; delivery unknown (lab protocol)",
                t.delivery_unknown
            )?;
        }
        Ok(())
    }
}

/// Serve `cfg.file` on `listener` until `cfg.rounds` rounds are done, the
/// barrier times out, or `shutdown` is triggered.
pub fn run(listener: TcpListener, cfg: Config, shutdown: Shutdown) -> anyhow::Result<Summary> {
    if cfg.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let offer = Offer::load(&cfg.file)?;
    v1::plan(offer.size, cfg.datagram_size).context("--datagram-size")?;
    let control_port = listener.local_addr()?.port();
    listener
        .set_nonblocking(true)
        .context("setting the listener non-blocking")?;
    info!(
        "serving {} ({} bytes) on port {control_port}, {} client(s) per round",
        offer.name, offer.size, cfg.clients
    );

    let mut registrar = Registrar::new(&offer, &cfg, control_port);
    let mut pending: Vec<Registration> = Vec::new();
    let mut first_waiting: Option<Instant> = None;
    let mut last_notice = Instant::now();
    let mut rounds: Vec<Round> = Vec::new();
    let mut failure = None;

    'serve: while !shutdown.is_triggered() {
        registrar.wait_for_connections(&listener);
        // What ended gives its numbers back before new connections take
        // any: a peer that has seen its connection close finds its number
        // free.
        registrar.collect();
        for round in &mut rounds {
            round.reap(&mut registrar.numbers);
        }
        pending.retain(|reg| {
            let keep = match control::peek_state(&reg.stream) {
                PeerState::Quiet => true,
                PeerState::Closed => {
                    warn!("client {} left while waiting for the round to fill", reg.id);
                    false
                }
                PeerState::Data => {
                    warn!(
                        "client {} sent unexpected bytes while waiting; dropped",
                        reg.id
                    );
                    false
                }
            };
            if !keep {
                registrar.numbers.give_back(reg.id);
            }
            keep
        });
        registrar.admit_waiting();
        registrar.accept_all(&listener);
        for reg in registrar.take_registered() {
            first_waiting.get_or_insert_with(Instant::now);
            pending.push(reg);
        }
        if pending.is_empty() {
            first_waiting = None;
        }
        while pending.len() >= usize::from(cfg.clients) {
            let members: Vec<Registration> = pending.drain(..usize::from(cfg.clients)).collect();
            let number = rounds.len() as u32 + 1;
            info!(
                "round {number}: {} client(s) registered, sending",
                members.len()
            );
            let ctx = RoundCtx {
                offer: offer.clone(),
                cfg: cfg.clone(),
                control_port,
                shutdown: shutdown.clone(),
            };
            rounds.push(Round::start(members, ctx));
            first_waiting = (!pending.is_empty()).then(Instant::now);
            if cfg.rounds.is_some_and(|max| number >= max) {
                break 'serve;
            }
        }
        if let Some(since) = first_waiting {
            let waited = since.elapsed();
            if cfg.barrier_timeout.is_some_and(|t| waited >= t) {
                failure = Some(format!(
                    "barrier timeout: {} of {} client(s) registered within {}",
                    pending.len(),
                    cfg.clients,
                    humantime::format_duration(Duration::from_secs(waited.as_secs()))
                ));
                break 'serve;
            }
            if last_notice.elapsed() >= Duration::from_secs(5) {
                info!(
                    "waiting for {} more client(s): {} of {} registered",
                    usize::from(cfg.clients) - pending.len(),
                    pending.len(),
                    cfg.clients
                );
                last_notice = Instant::now();
            }
        }
    }
    // Whoever connected before the server stopped forming rounds is told
    // so: finish their registration, then say why they will not be served.
    registrar.accept_all(&listener);
    drop(listener);
    registrar.wait_idle(if shutdown.is_triggered() {
        Duration::from_secs(1)
    } else {
        cfg.register_timeout + Duration::from_secs(1)
    });
    pending.extend(registrar.take_registered());
    let reason = failure
        .clone()
        .unwrap_or_else(|| "the server is not forming more rounds".into());
    for mut reg in pending.drain(..) {
        warn!("client {}: not served: {reason}", reg.id);
        abort_v1(&mut reg, &reason);
    }

    let mut summary = Summary::default();
    for round in rounds {
        if let Some(outcomes) = round.join() {
            summary.rounds += 1;
            summary.outcomes.extend(outcomes);
        }
    }
    match failure {
        Some(why) => bail!(why),
        None => Ok(summary),
    }
}

/// A round being served, on a thread of its own, then what came of it.
enum Round {
    Running {
        /// Its clients' numbers, free again when the round ends.
        numbers: Vec<u16>,
        handle: thread::JoinHandle<Vec<Outcome>>,
    },
    /// `None` when the round's thread failed.
    Ended(Option<Vec<Outcome>>),
}

impl Round {
    fn start(members: Vec<Registration>, ctx: RoundCtx) -> Round {
        Round::Running {
            numbers: members.iter().map(|reg| reg.id).collect(),
            handle: thread::spawn(move || run_round(members, ctx)),
        }
    }

    /// If the round's thread is done, take its outcomes and give its
    /// numbers back: its data ports are closed.
    fn reap(&mut self, free: &mut Numbers) {
        if !matches!(self, Round::Running { handle, .. } if handle.is_finished()) {
            return;
        }
        if let Round::Running { numbers, handle } = std::mem::replace(self, Round::Ended(None)) {
            for k in numbers {
                free.give_back(k);
            }
            *self = Round::Ended(Round::outcomes(handle));
        }
    }

    /// Wait for the round to end; its outcomes.
    fn join(self) -> Option<Vec<Outcome>> {
        match self {
            Round::Running { handle, .. } => Round::outcomes(handle),
            Round::Ended(outcomes) => outcomes,
        }
    }

    fn outcomes(handle: thread::JoinHandle<Vec<Outcome>>) -> Option<Vec<Outcome>> {
        let outcomes = handle.join().ok();
        if outcomes.is_none() {
            warn!("a round's thread failed");
        }
        outcomes
    }
}

/// Accepts connections and registers each on a thread of its own, so a slow
/// or silent client never holds up the others. What one peer may hold is
/// bounded (docs/PROTOCOL.md, "Limits a server enforces"): slots per
/// address with a share kept for new addresses, a short deadline for the
/// first byte, numbers taken back, and a pause when file descriptors run out.
struct Registrar {
    offer: Offer,
    cfg: Config,
    control_port: u16,
    numbers: Numbers,
    slots: Slots,
    /// Accepted, no number yet: waiting for a slot or a number, oldest
    /// first.
    waiting: VecDeque<Waiting>,
    /// When `waiting` was last swept of connections closed or too old.
    last_sweep: Instant,
    /// Accepting pauses until then: the process is out of file descriptors.
    paused_until: Option<Instant>,
    accept_errors: Throttle,
    refusals: Throttle,
    failures: Throttle,
    /// Waiting connections dropped: closed, or waited too long.
    dropped: Throttle,
    ports_taken: Throttle,
    registered: Vec<Registration>,
    tx: mpsc::Sender<Attempt>,
    rx: mpsc::Receiver<Attempt>,
}

/// A connection accepted and waiting to start its registration.
struct Waiting {
    stream: TcpStream,
    peer: SocketAddr,
    since: Instant,
}

/// What a registration thread hands back, its connection included: the
/// registrar closes a failed one only once its number and slot are free.
struct Attempt {
    id: u16,
    peer: SocketAddr,
    stream: TcpStream,
    result: anyhow::Result<(u16, Protocol)>,
}

impl Registrar {
    fn new(offer: &Offer, cfg: &Config, control_port: u16) -> Registrar {
        let (tx, rx) = mpsc::channel();
        Registrar {
            offer: offer.clone(),
            cfg: cfg.clone(),
            control_port,
            numbers: Numbers::new(control_port),
            slots: Slots::new(cfg.per_address),
            waiting: VecDeque::new(),
            last_sweep: Instant::now(),
            paused_until: None,
            accept_errors: Throttle::per_second(),
            refusals: Throttle::per_second(),
            failures: Throttle::per_second(),
            dropped: Throttle::per_second(),
            ports_taken: Throttle::per_second(),
            registered: Vec::new(),
            tx,
            rx,
        }
    }

    /// Sleep until the listener has a connection, or for a while: less
    /// while connections wait for a slot, all of it while accepting is
    /// paused.
    fn wait_for_connections(&mut self, listener: &TcpListener) {
        let timeout = if self.waiting.is_empty() {
            POLL_INTERVAL
        } else {
            Duration::from_millis(10)
        };
        if let Some(until) = self.paused_until {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                thread::sleep(left.min(timeout));
                return;
            }
            self.paused_until = None;
        }
        if let Err(e) = net::poll_readable([listener.as_raw_fd()], timeout) {
            warn!("polling the control port: {e}");
        }
    }

    /// Accept the connections waiting on the (non-blocking) listener: all
    /// of them, up to a queue's worth, so that a flood of connections still
    /// leaves the rest of the serving loop its turn.
    fn accept_all(&mut self, listener: &TcpListener) {
        if self.paused_until.is_some() {
            return;
        }
        for _ in 0..net::LISTEN_BACKLOG {
            let (stream, peer) = match listener.accept() {
                Ok(conn) => conn,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if admission::out_of_resources(&e) => {
                    // The connection stays queued in the kernel and is
                    // served once connections that end free what it needs.
                    self.paused_until = Some(Instant::now() + admission::ACCEPT_PAUSE);
                    if let Some(n) = self.accept_errors.event(Instant::now()) {
                        warn!(
                            "accepting connections: {e}; pausing {} ms between tries \
                             ({n} failed accept(s) since the last warning)",
                            admission::ACCEPT_PAUSE.as_millis()
                        );
                    }
                    return;
                }
                Err(e) => {
                    if let Some(n) = self.accept_errors.event(Instant::now()) {
                        warn!(
                            "accepting a connection: {e} ({n} failed accept(s) since the last warning)"
                        );
                    }
                    return;
                }
            };
            let waiting = Waiting {
                stream,
                peer,
                since: Instant::now(),
            };
            // Registrations that ended free their slots for this one.
            self.collect();
            if self.waiting.len() >= admission::MAX_WAITING
                && self.last_sweep.elapsed() >= Duration::from_millis(10)
            {
                self.sweep_waiting();
            }
            // Whoever waits could not start (admit_waiting just ran): one
            // that can goes ahead of them.
            if self.can_start(peer.ip()) {
                self.start(waiting);
            } else if self.waiting.len() < admission::MAX_WAITING {
                self.waiting.push_back(waiting);
            } else {
                self.refuse(
                    peer,
                    format_args!(
                        "{} connections wait for a registration slot already",
                        admission::MAX_WAITING
                    ),
                );
            }
        }
    }

    fn refuse(&mut self, peer: SocketAddr, why: fmt::Arguments<'_>) {
        if let Some(n) = self.refusals.event(Instant::now()) {
            warn!("refusing {peer}: {why} ({n} connection(s) refused since the last warning)");
        }
    }

    fn can_start(&self, ip: IpAddr) -> bool {
        self.numbers.available() && self.slots.admit(ip) == Admit::Yes
    }

    /// Start the registrations of waiting connections that may start now,
    /// oldest first; now and then drop those that closed or waited longer
    /// than a registration may take.
    fn admit_waiting(&mut self) {
        if self.last_sweep.elapsed() >= POLL_INTERVAL {
            self.sweep_waiting();
        }
        let mut i = 0;
        while i < self.waiting.len() && self.numbers.available() {
            match self.slots.admit(self.waiting[i].peer.ip()) {
                Admit::Yes => {
                    if let Some(w) = self.waiting.remove(i) {
                        self.start(w);
                    }
                }
                // Those kept for new addresses may still take a slot.
                Admit::Full if self.slots.total() >= MAX_REGISTERING => break,
                Admit::AddressFull | Admit::Full => i += 1,
            }
        }
    }

    /// Drop the waiting connections that closed or waited longer than a
    /// registration may take.
    fn sweep_waiting(&mut self) {
        let now = Instant::now();
        self.last_sweep = now;
        let limit = self.cfg.register_timeout;
        let before = self.waiting.len();
        self.waiting.retain(|w| {
            now.saturating_duration_since(w.since) < limit
                && control::peek_state(&w.stream) == PeerState::Quiet
        });
        let dropped = before - self.waiting.len();
        if let Some(n) = self.dropped.add(now, dropped as u64) {
            info!(
                "{n} waiting connection(s) closed, or waited {}, before they could register",
                humantime::format_duration(limit)
            );
        }
    }

    /// The lowest free number whose data port is free too. A number whose
    /// port another socket holds is set aside for a while, with a warning:
    /// lowest first, it would otherwise go to every client after and fail
    /// each. (The port may still be taken between this look and the
    /// round; that client alone fails.)
    fn take_number(&mut self) -> Option<u16> {
        loop {
            let k = self.numbers.take()?;
            let Some(port) = self.control_port.checked_add(k) else {
                return Some(k);
            };
            match UdpSocket::bind((self.cfg.bind_ip, port)) {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    let until = Instant::now() + admission::PORT_TAKEN_ASIDE;
                    self.numbers.set_aside(k, until);
                    if let Some(n) = self.ports_taken.event(Instant::now()) {
                        warn!(
                            "data port {port} is taken by another socket: client number {k} \
                             is set aside for {} ({n} number(s) set aside since the last warning)",
                            humantime::format_duration(admission::PORT_TAKEN_ASIDE)
                        );
                    }
                }
                // Free, or nothing to tell (out of descriptors): the round
                // says if it cannot bind it.
                _ => return Some(k),
            }
        }
    }

    /// Give `conn` a number and a slot and register it on a thread of its own.
    fn start(&mut self, conn: Waiting) {
        let Some(id) = self.take_number() else {
            let capacity = self.numbers.capacity();
            self.refuse(
                conn.peer,
                format_args!(
                    "all {capacity} client numbers are in use (data ports {} to 65535)",
                    u32::from(self.control_port) + 1
                ),
            );
            return;
        };
        let Waiting { stream, peer, .. } = conn;
        let ctx = RegisterCtx {
            id,
            control_port: self.control_port,
            clients: self.cfg.clients,
            first_byte_timeout: self.cfg.first_byte_timeout.min(self.cfg.register_timeout),
            timeout: self.cfg.register_timeout,
            announce: announce_for(&self.offer, &self.cfg, self.control_port, id),
        };
        let tx = self.tx.clone();
        self.slots.take(peer.ip());
        let spawned = thread::Builder::new()
            .name(format!("register-{id}"))
            .spawn(move || {
                let mut stream = stream;
                let result = register(&mut stream, ctx);
                let _ = tx.send(Attempt {
                    id,
                    peer,
                    stream,
                    result,
                });
            });
        if let Err(e) = spawned {
            // The connection went with the closure: it is closed. Threads
            // come back as others end: accepting pauses as for descriptors.
            self.slots.give_back(peer.ip());
            self.numbers.give_back(id);
            self.paused_until = Some(Instant::now() + admission::ACCEPT_PAUSE);
            self.refuse(peer, format_args!("no thread to register it on: {e}"));
        }
    }

    /// Take in the registrations that ended since the last call: the
    /// registered wait in `registered`, the failed are logged and closed.
    fn collect(&mut self) {
        self.numbers.release_aside(Instant::now());
        while let Ok(attempt) = self.rx.try_recv() {
            self.take_in(attempt);
        }
    }

    fn take_in(&mut self, attempt: Attempt) {
        let Attempt {
            id,
            peer,
            stream,
            result,
        } = attempt;
        self.slots.give_back(peer.ip());
        match result {
            Ok((udp_port, protocol)) => {
                info!("client {id} registered from {peer} (UDP port {udp_port}, {protocol})");
                self.registered.push(Registration {
                    id,
                    stream,
                    peer,
                    udp_port,
                    protocol,
                });
            }
            Err(e) => {
                self.numbers.give_back(id);
                if let Some(n) = self.failures.event(Instant::now()) {
                    warn!(
                        "client {id} failed to register: {e:#} \
                         ({n} failed registration(s) since the last warning)"
                    );
                }
                drop(stream);
            }
        }
    }

    /// The clients that finished registering since the last call.
    fn take_registered(&mut self) -> Vec<Registration> {
        self.collect();
        std::mem::take(&mut self.registered)
    }

    /// Wait (at most `limit`) until no registration is under way or waits
    /// to start; whoever still waits then is closed.
    fn wait_idle(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            self.admit_waiting();
            let left = deadline.saturating_duration_since(Instant::now());
            if (self.slots.total() == 0 && self.waiting.is_empty()) || left.is_zero() {
                break;
            }
            if let Ok(attempt) = self.rx.recv_timeout(left.min(Duration::from_millis(10))) {
                self.take_in(attempt);
            }
        }
        self.waiting.clear();
    }
}

/// Tell a v1 client why it will not get (the rest of) the file. Best
/// effort: the client may be gone already. Lab clients have no way to be told.
fn abort_v1(reg: &mut Registration, reason: &str) {
    if reg.protocol == Protocol::V1 {
        let _ = reg.stream.set_nonblocking(false);
        let _ = control::send(
            &mut reg.stream,
            &Message::Abort {
                reason: reason.to_string(),
            },
            Duration::from_secs(1),
        );
    }
}

fn announce_for(offer: &Offer, cfg: &Config, control_port: u16, id: u16) -> v1::Announce {
    v1::Announce {
        file_name: offer.name.clone(),
        file_size: offer.size,
        datagrams: v1::plan(offer.size, cfg.datagram_size).unwrap_or(0),
        datagram_size: cfg.datagram_size,
        data_port: control_port.wrapping_add(id),
        mode: cfg.mode,
        sha256: offer.sha256,
    }
}

struct RegisterCtx {
    id: u16,
    control_port: u16,
    clients: u16,
    first_byte_timeout: Duration,
    timeout: Duration,
    announce: v1::Announce,
}

/// The lab's three registration steps, then v1's announce: the client's
/// UDP port and protocol.
fn register(stream: &mut TcpStream, ctx: RegisterCtx) -> anyhow::Result<(u16, Protocol)> {
    if ctx.control_port.checked_add(ctx.id).is_none() {
        bail!(
            "no data port: {} + {} is past 65535",
            ctx.control_port,
            ctx.id
        );
    }
    let started = Instant::now();
    stream.set_nonblocking(false)?;
    let _ = stream.set_nodelay(true);
    control::write_all(
        stream,
        &lab::emit_client_id(ctx.id),
        "client number",
        ctx.timeout,
    )?;
    // A client answers its number at once: one that does not holds a slot
    // others need, so it has a deadline of its own for the first byte.
    let mut port_msg = [0u8; lab::PORT_MSG_LEN];
    let (first, rest) = port_msg.split_at_mut(1);
    control::read_field(stream, first, "port message", ctx.first_byte_timeout)?;
    let left = ctx.timeout.saturating_sub(started.elapsed());
    control::read_field(
        stream,
        rest,
        "port message",
        left.max(Duration::from_millis(1)),
    )?;
    let msg = PortMessage::parse(&port_msg)?;
    let protocol = match msg.version {
        0 => Protocol::Lab,
        v1::VERSION => Protocol::V1,
        other => bail!("unsupported protocol version tag {other} in the port message"),
    };
    control::write_all(
        stream,
        &lab::emit_concurrency(ctx.clients),
        "concurrency",
        ctx.timeout,
    )?;
    if protocol == Protocol::V1 {
        control::send(stream, &Message::Announce(ctx.announce), ctx.timeout)?;
    }
    stream.set_nonblocking(true)?;
    Ok((msg.port, protocol))
}

struct RoundCtx {
    offer: Offer,
    cfg: Config,
    control_port: u16,
    shutdown: Shutdown,
}

fn run_round(members: Vec<Registration>, ctx: RoundCtx) -> Vec<Outcome> {
    let stamp = Local::now();
    let bars = MultiProgress::with_draw_target(if ctx.cfg.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template(
        "client {prefix:>3} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let ctx = &ctx;
    thread::scope(|scope| {
        let handles: Vec<_> = members
            .into_iter()
            .map(|reg| {
                let bar = bars.add(ProgressBar::new(ctx.offer.size));
                bar.set_style(style.clone());
                bar.set_prefix(reg.id.to_string());
                scope.spawn(move || serve_client(reg, ctx, stamp, bar))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

/// Send the file to one client and write the server's log of it.
fn serve_client(
    mut reg: Registration,
    ctx: &RoundCtx,
    stamp: DateTime<Local>,
    bar: ProgressBar,
) -> Outcome {
    let cfg = &ctx.cfg;
    let offer = &ctx.offer;
    let chunk = match reg.protocol {
        Protocol::Lab => lab::CHUNK,
        Protocol::V1 => usize::from(cfg.datagram_size) - v1::HEADER_LEN,
    };
    let mut log = TransferLog {
        role: Some(Role::Server),
        protocol: Some(reg.protocol),
        file_name: Some(offer.name.clone()),
        file_size: Some(offer.size),
        client_id: Some(reg.id),
        clients: Some(cfg.clients),
        server_ip: Some(cfg.bind_ip),
        server_port: ctx.control_port.checked_add(reg.id),
        client_ip: Some(reg.peer.ip()),
        client_port: Some(reg.udp_port),
        control_port: Some(ctx.control_port),
        datagram_size: Some(match reg.protocol {
            Protocol::Lab => lab::CHUNK as u32,
            Protocol::V1 => u32::from(cfg.datagram_size),
        }),
        chunk_size: Some(chunk as u32),
        datagrams_total: Some(lab::datagram_count(offer.size, chunk as u64)),
        sha256: Some(hex(&offer.sha256)),
        ..TransferLog::default()
    };
    let mut gave_up = None;
    let ending = match send_to_client(&mut reg, ctx, chunk, &mut log, &bar) {
        Ok(ending) => ending,
        Err(e) => {
            gave_up = e.downcast_ref::<Abort>().cloned();
            warn!("client {}: {e:#}", reg.id);
            log.error = Some(format!("{e:#}"));
            abort_v1(&mut reg, &format!("{e:#}"));
            Ending::Failed
        }
    };
    bar.finish();
    // A lab client sends nothing back: whether all was sent is known,
    // whether it arrived is not, and the log claims no more than that.
    if reg.protocol == Protocol::Lab {
        log.delivery = Some(Delivery::Unknown);
    }
    log.success = match ending {
        Ending::Delivered => Some(true),
        Ending::SentDeliveryUnknown => None,
        Ending::Failed => Some(false),
    };
    info!(
        "client {}: {}",
        reg.id,
        transfer_summary(&log, ending, gave_up.as_ref())
    );
    let name = transfer_log::unused_log_name(
        &cfg.log_dir,
        Role::Server,
        log.client_id.unwrap_or(0),
        stamp.naive_local(),
        &offer.name,
        cfg.clients,
    );
    let log_path = match transfer_log::write_log(&cfg.log_dir, &name, &log) {
        Ok(p) => Some(p),
        Err(e) => {
            warn!("writing {}: {e}", cfg.log_dir.join(&name).display());
            None
        }
    };
    Outcome {
        client_id: log.client_id.unwrap_or(0),
        ending,
        gave_up,
        log,
        log_path,
    }
}

/// The transfer itself; fills `log` as it goes. v1: `Delivered` when the
/// client confirmed a byte-identical file, `Failed` when its report says
/// otherwise; lab: `SentDeliveryUnknown` once everything was sent.
fn send_to_client(
    reg: &mut Registration,
    ctx: &RoundCtx,
    chunk: usize,
    log: &mut TransferLog,
    bar: &ProgressBar,
) -> anyhow::Result<Ending> {
    let cfg = &ctx.cfg;
    let offer = &ctx.offer;
    let data_port = ctx
        .control_port
        .checked_add(reg.id)
        .context("no data port past 65535")?;
    // Data leaves from the address the client reached the control port
    // at: a client takes data from that IP only. Bound to the wildcard,
    // the kernel would pick the source by route, which on a host of many
    // addresses need not be that one.
    let mut data_addr = SocketAddr::new(cfg.bind_ip, data_port);
    if cfg.bind_ip.is_unspecified()
        && let Ok(local) = reg.stream.local_addr()
    {
        data_addr = local;
        data_addr.set_port(data_port);
    }
    let sock = UdpSocket::bind(data_addr)
        .with_context(|| format!("binding UDP port {data_port} for client {}", reg.id))?;
    // A deep send queue keeps the sender from sleeping between batches.
    let _ = net::set_send_buffer(&sock, 4 << 20);
    sock.connect((reg.peer.ip(), reg.udp_port))
        .with_context(|| format!("addressing {}:{}", reg.peer.ip(), reg.udp_port))?;
    log.server_ip = Some(data_addr.ip());
    reg.stream.set_nonblocking(false)?;

    let started = Instant::now();
    let start_wall = SystemTime::now();
    log.start = Some(DateTime::<Local>::from(start_wall).fixed_offset());
    let io_timeout = Duration::from_secs(5);
    match reg.protocol {
        Protocol::Lab => {
            // As the lab's server does: the control connection ends at the barrier.
            let _ = reg.stream.shutdown(std::net::Shutdown::Both);
            sock.send(offer.name.as_bytes())
                .context("sending the name datagram")?;
            sock.send(&lab::emit_size(offer.size))
                .context("sending the size datagram")?;
        }
        Protocol::V1 => {
            control::send(
                &mut reg.stream,
                &Message::Start {
                    time_us: unix_us(start_wall),
                },
                io_timeout,
            )?;
        }
    }

    let file =
        File::open(&offer.path).with_context(|| format!("opening {}", offer.path.display()))?;
    let total = u32::try_from(lab::datagram_count(offer.size, chunk as u64))
        .context("the file needs more than 2^32 datagrams")?;
    let service = match (reg.protocol, cfg.mode) {
        (Protocol::Lab, _) => Service::Lab,
        (Protocol::V1, Mode::Blast) => Service::Blast,
        (Protocol::V1, Mode::Reliable) => Service::Reliable,
    };
    let header_len = match reg.protocol {
        Protocol::Lab => 0,
        Protocol::V1 => v1::HEADER_LEN,
    };
    let mut transfer = Transfer::new(
        TransferConfig {
            service,
            datagrams: total,
            file_size: offer.size,
            datagram_size: chunk + header_len,
            max_batch: net::BATCH,
            ceiling: cfg.rate,
            deadline: cfg.deadline,
            report_timeout: cfg.report_timeout,
            rule: Rule::Delay,
        },
        started,
    );
    let mut sender = Sender {
        sock,
        file,
        path: &offer.path,
        size: offer.size,
        chunk,
        header_len,
        block: vec![0u8; chunk * net::BATCH],
        batch: SendBatch::new(),
        reader: control::Reader::new(),
        shutdown: &ctx.shutdown,
        bar,
        log,
        started,
        last_check: started,
        report_complete: false,
        send_time: None,
        datagrams: 0,
        bytes: 0,
    };
    if cfg.rate.is_some() || service == Service::Reliable {
        net::fine_timer_slack();
    }
    let result = sender.run(&mut reg.stream, &mut transfer);
    let elapsed = started.elapsed();
    let log = sender.log;
    log.end = Some(Local::now().fixed_offset());
    log.datagrams_sent = Some(sender.datagrams);
    log.bytes_sent = Some(sender.bytes);
    log.duration_s = Some(elapsed.as_secs_f64());
    log.send_duration_s = sender.send_time.map(|t| t.as_secs_f64());
    log.rate_mb_s = rate_mb_s(sender.bytes, elapsed);
    log.rate_limit_mbit_s = cfg.rate.map(|r| r / 1e6);
    log.final_rate_mbit_s = transfer.rate().map(|r| r / 1e6);
    if reg.protocol == Protocol::V1 {
        log.mode = Some(cfg.mode);
    }
    if service == Service::Reliable {
        let repair = transfer.repair();
        log.datagrams_retransmitted = Some(repair.retransmitted);
        log.repair_rounds = Some(repair.round);
        log.reports_rejected = Some(repair.rejected);
    } else if transfer.repair().rejected > 0 {
        log.reports_rejected = Some(transfer.repair().rejected);
    }
    let ending = result.map(|finish| match finish {
        Finish::Sent => Ending::SentDeliveryUnknown,
        Finish::Confirmed => Ending::Delivered,
        Finish::Reported if sender.report_complete => Ending::Delivered,
        Finish::Reported => Ending::Failed,
    });
    if matches!(ending, Ok(Ending::Delivered)) {
        log.goodput_mb_s = rate_mb_s(offer.size, elapsed);
    }
    ending
}

pub use crate::engine::{MAX_REJECTED, MAX_STALLED_ROUNDS, MIN_RESEND_LIMIT, RESEND_FACTOR};

/// One client's data socket, file and control connection: the I/O around
/// a [`Transfer`], which decides what is sent when and how it ends.
struct Sender<'a> {
    sock: UdpSocket,
    file: File,
    path: &'a Path,
    size: u64,
    chunk: usize,
    /// Bytes of header before each chunk: v1's 16, none for the lab's.
    header_len: usize,
    block: Vec<u8>,
    batch: SendBatch,
    reader: control::Reader,
    shutdown: &'a Shutdown,
    bar: &'a ProgressBar,
    log: &'a mut TransferLog,
    started: Instant,
    /// Blast: when the control connection was last looked at mid-pass.
    last_check: Instant,
    /// Blast: the client's report says it has the whole file.
    report_complete: bool,
    /// From `started` to the end of the last pass that finished: the
    /// sending alone, without the wait for the client's report.
    send_time: Option<Duration>,
    datagrams: u64,
    bytes: u64,
}

impl Sender<'_> {
    /// Do what `transfer` asks until it ends.
    fn run(&mut self, stream: &mut TcpStream, transfer: &mut Transfer) -> anyhow::Result<Finish> {
        loop {
            if self.shutdown.is_triggered() {
                bail!("stopped by the server's shutdown");
            }
            match transfer.poll(Instant::now()) {
                Action::Send(run) => {
                    self.send_run(run, transfer)?;
                    self.look_between_batches(stream, transfer)?;
                }
                Action::Wait(until) => self.wait(stream, transfer, until)?,
                Action::SendDone => {
                    self.send_time = Some(self.started.elapsed());
                    self.done(stream)?;
                }
                Action::Finish(finish) => {
                    if finish == Finish::Sent {
                        self.send_time = Some(self.started.elapsed());
                    }
                    return Ok(finish);
                }
                Action::Abort(why) => return Err(why.into()),
            }
        }
    }

    /// Read, stamp and send one run of datagrams.
    fn send_run(&mut self, run: Run, transfer: &mut Transfer) -> anyhow::Result<()> {
        let offset = u64::from(run.first) * self.chunk as u64;
        let len =
            ((self.size - offset.min(self.size)) as usize).min(self.chunk * run.count as usize);
        if let Err(e) = self.file.read_exact_at(&mut self.block[..len], offset) {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                bail!("{} shrank while being sent", self.path.display());
            }
            return Err(e).with_context(|| format!("reading {}", self.path.display()));
        }
        let flags = if run.retransmit {
            v1::FLAG_RETRANSMIT
        } else {
            0
        };
        let now = Instant::now();
        let now_us = unix_us(SystemTime::now());
        let mut headers = [[0u8; v1::HEADER_LEN]; net::BATCH];
        let pieces = self.block[..len].chunks(self.chunk);
        if self.header_len > 0 {
            for (i, h) in headers.iter_mut().take(pieces.len()).enumerate() {
                *h = v1::DataHeader {
                    flags,
                    seq: run.first + i as u32,
                    send_time_us: now_us,
                }
                .emit();
            }
        }
        let parts: Vec<(&[u8], &[u8])> = pieces
            .enumerate()
            .map(|(i, piece)| (&headers[i][..self.header_len], piece))
            .collect();
        let (sent, err) = self.batch.send_all(&self.sock, &parts);
        let sent_bytes: usize = parts[..sent].iter().map(|(_, p)| p.len()).sum();
        self.datagrams += sent as u64;
        self.bytes += sent_bytes as u64;
        if !run.retransmit {
            self.bar.inc(sent_bytes as u64);
        }
        transfer.sent(now, (sent_bytes + sent * self.header_len) as u64);
        match err {
            None => Ok(()),
            Some(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                bail!("the client's UDP port is unreachable (ICMP port unreachable): it has gone")
            }
            Some(e) => Err(anyhow::Error::new(e).context("sending data")),
        }
    }

    /// Take in what the client said while the pass goes on: after every
    /// batch when its feedback paces the pass, else now and then to see
    /// whether it left.
    fn look_between_batches(
        &mut self,
        stream: &mut TcpStream,
        transfer: &mut Transfer,
    ) -> anyhow::Result<()> {
        if self.header_len == 0 {
            return Ok(());
        }
        if transfer.service() != Service::Reliable {
            if self.last_check.elapsed() < POLL_INTERVAL {
                return Ok(());
            }
            self.last_check = Instant::now();
        }
        if net::poll_readable([stream.as_raw_fd()], Duration::ZERO)?[0] {
            self.take_messages(stream, transfer)?;
        }
        Ok(())
    }

    /// Sleep until `until`, unless the client speaks first (the lab's
    /// clients have no control connection to speak on).
    fn wait(
        &mut self,
        stream: &mut TcpStream,
        transfer: &mut Transfer,
        until: Instant,
    ) -> anyhow::Result<()> {
        let left = until.saturating_duration_since(Instant::now());
        if self.header_len == 0 {
            thread::sleep(left);
            return Ok(());
        }
        // Stay responsive to the server's shutdown while a report is due.
        let left = left.min(POLL_INTERVAL);
        if net::poll_readable([stream.as_raw_fd()], left)?[0] {
            self.take_messages(stream, transfer)?;
        }
        Ok(())
    }

    /// Read what the control connection holds (it is readable) and hand
    /// every message in it to `transfer`.
    fn take_messages(
        &mut self,
        stream: &mut TcpStream,
        transfer: &mut Transfer,
    ) -> anyhow::Result<()> {
        match self.reader.fill_readable(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                bail!("the client closed its control connection")
            }
            Err(e) => return Err(e).context("reading the control connection"),
        }
        while let Some(msg) = self.reader.next_message().map_err(anyhow::Error::new)? {
            match msg {
                Message::Feedback(f) => transfer.feedback(Instant::now(), &f),
                Message::Report(r) => self.take_report(&r, transfer)?,
                Message::Abort { reason } => {
                    bail!("the client aborted: {}", escape_peer_text(&reason))
                }
                other => bail!("unexpected control message: {other:?}"),
            }
        }
        Ok(())
    }

    /// A report: logged when valid, refused with a warning.
    fn take_report(&mut self, r: &v1::Report, transfer: &mut Transfer) -> anyhow::Result<()> {
        match transfer.report(Instant::now(), r) {
            ReportTaken::Accepted(next) => {
                log_report(self.log, r, self.size);
                self.report_complete = r.sha256_match && r.bytes_received == self.size;
                if let (Next::Repair { datagrams }, None) = (next, transfer.aborted()) {
                    info!(
                        "repair round {}: resending {datagrams} datagram(s)",
                        transfer.repair().round
                    );
                }
            }
            ReportTaken::Refused(refusal) => warn!("refused the client's report: {refusal}"),
            ReportTaken::Unexpected => bail!("unexpected report while sending"),
        }
        Ok(())
    }

    fn done(&self, stream: &mut TcpStream) -> anyhow::Result<()> {
        control::send(
            stream,
            &Message::Done(v1::Done {
                datagrams_sent: self.datagrams,
                bytes_sent: self.bytes,
                duration_us: self.started.elapsed().as_micros() as u64,
            }),
            Duration::from_secs(5),
        )?;
        Ok(())
    }
}

/// The client's report, into the server's log of it.
fn log_report(log: &mut TransferLog, r: &v1::Report, size: u64) {
    log.datagrams_received = Some(r.datagrams_received);
    log.bytes_received = Some(r.bytes_received);
    log.duplicates = Some(r.duplicates);
    log.malformed = Some(r.malformed);
    log.missing_datagrams = Some(r.missing_datagrams);
    log.missing_ranges =
        (!r.missing.is_empty()).then(|| v1::format_ranges(&r.missing, r.ranges_truncated));
    log.kernel_drops = r.kernel_drops;
    log.sha256_match = Some(r.sha256_match);
    log.error = (!r.sha256_match).then(|| {
        format!(
            "client received {} of {size} bytes ({} datagrams missing)",
            r.bytes_received, r.missing_datagrams
        )
    });
}

/// One line on what a transfer did, for the server's console.
fn transfer_summary(log: &TransferLog, ending: Ending, gave_up: Option<&Abort>) -> String {
    let mut line = format!(
        "sent {} bytes in {} datagrams, {:.3} s, {:.1} MB/s",
        log.bytes_sent.unwrap_or(0),
        log.datagrams_sent.unwrap_or(0),
        log.duration_s.unwrap_or(0.0),
        log.rate_mb_s.unwrap_or(0.0)
    );
    if let Some(got) = log.bytes_received {
        line += &format!(
            "; the client kept {got} bytes, kernel drops {}",
            log.kernel_drops
                .map_or_else(|| "unknown".to_string(), |d| d.to_string())
        );
    }
    match ending {
        Ending::Delivered => {}
        Ending::SentDeliveryUnknown => line += "; delivery unknown (lab protocol)",
        Ending::Failed => line += " (incomplete)",
    }
    if let Some(why) = gave_up {
        line += &format!("; given up: {why}");
    }
    line
}

/// Microseconds since the Unix epoch.
pub(crate) fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Megabytes (10^6 bytes) per second, if any time passed.
pub(crate) fn rate_mb_s(bytes: u64, elapsed: Duration) -> Option<f64> {
    let s = elapsed.as_secs_f64();
    (s > 0.0).then(|| bytes as f64 / s / 1e6)
}
