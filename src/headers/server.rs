//! The header server: TCP sessions of queries, a thread each; one thread
//! answering the UDP port; the cache shared under one lock and written
//! back when a session ends.
//!
//! A host missing from the cache is fetched once however many sessions
//! ask for it at the same time: the first asks the origin, the others
//! wait for its answer and are hits (they made no request). The origin
//! thus gets one request per host name, as long as its answers are
//! cached (refusals are not).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use log::{info, warn};

use super::cache::Cache;
use super::origin::{self, Origin};
use super::{Answer, MAX_MESSAGE, REQUEST_LEN, Refusal, TERMINATE, is_host_name};
use crate::shutdown::{POLL_INTERVAL, Shutdown};
use crate::text::escape_peer_text;

/// How often the accept loop looks for new connections.
const ACCEPT_INTERVAL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
pub struct Config {
    /// The UDP address the headers are sent from; its port is the answer.
    pub udp_addr: SocketAddr,
    /// The cache file, read at the start (absent: empty) and written back
    /// after each session.
    pub cache_path: PathBuf,
    pub origin: Origin,
    /// How long the origin has for a whole header.
    pub origin_timeout: Duration,
    /// A session with no message for this long is closed.
    pub idle_timeout: Duration,
    /// Where each session's log goes; none when `None`.
    pub log_dir: Option<PathBuf>,
}

impl Config {
    pub fn new(udp_addr: SocketAddr, cache_path: PathBuf) -> Config {
        Config {
            udp_addr,
            cache_path,
            origin: Origin::Host,
            origin_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            log_dir: None,
        }
    }
}

/// How a query was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// From the cache, no request: the header's length.
    Hit(usize),
    /// From the origin, now cached.
    Miss(usize),
    Refused(Refusal),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Hit(len) => write!(f, "hit, {len} bytes from the cache"),
            Outcome::Miss(len) => write!(f, "miss, {len} bytes from the origin"),
            Outcome::Refused(r) => write!(f, "refused: {r}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The message as text (lossy).
    pub name: String,
    pub outcome: Outcome,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// `terminate`, then the client closed.
    Terminated,
    /// The client closed or reset without `terminate`.
    Vanished(String),
    /// No message within the idle timeout.
    Idle,
    /// The server was stopped.
    Shutdown,
}

impl End {
    fn as_str(&self) -> &str {
        match self {
            End::Terminated => "terminated",
            End::Vanished(_) => "vanished",
            End::Idle => "idle",
            End::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub peer: SocketAddr,
    pub queries: Vec<Query>,
    pub end: End,
    /// Whether the cache file was written after it.
    pub cache_saved: bool,
}

impl Session {
    /// The session's log, `key: value`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let count = |f: fn(&Outcome) -> bool| self.queries.iter().filter(|q| f(&q.outcome)).count();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "role: headers-server\nclient: {}\nqueries: {}",
            self.peer,
            self.queries.len()
        );
        for (i, q) in self.queries.iter().enumerate() {
            let k = i + 1;
            let _ = writeln!(out, "query_{k}_name: {}", escape_peer_text(&q.name));
            let _ = match &q.outcome {
                Outcome::Hit(n) => writeln!(out, "query_{k}_result: hit\nquery_{k}_bytes: {n}"),
                Outcome::Miss(n) => writeln!(out, "query_{k}_result: miss\nquery_{k}_bytes: {n}"),
                Outcome::Refused(r) => {
                    writeln!(out, "query_{k}_result: refused\nquery_{k}_answer: {r}")
                }
            };
        }
        let _ = writeln!(
            out,
            "hits: {}\nmisses: {}\nrefused: {}\nend: {}",
            count(|o| matches!(o, Outcome::Hit(_))),
            count(|o| matches!(o, Outcome::Miss(_))),
            count(|o| matches!(o, Outcome::Refused(_))),
            self.end.as_str()
        );
        if let End::Vanished(why) = &self.end {
            let _ = writeln!(out, "end_detail: {why}");
        }
        let _ = writeln!(out, "cache_saved: {}", self.cache_saved);
        out
    }
}

#[derive(Debug, Default)]
pub struct Summary {
    pub sessions: Vec<Session>,
}

/// Headers waiting for their datagram, by (client IP, client's TCP port).
type Pending = Mutex<HashMap<(IpAddr, u16), Arc<[u8]>>>;

/// One fetch from the origin that other sessions wait for.
#[derive(Default)]
struct Flight {
    result: Mutex<Option<Result<Arc<[u8]>, Refusal>>>,
    done: Condvar,
}

struct Shared {
    cfg: Config,
    cache: Mutex<Cache>,
    pending: Pending,
    /// Hosts being fetched, by name.
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    udp_port: u16,
    shutdown: Shutdown,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicked session leaves whole values behind: each update is one
    // insert.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves sessions from `listener` until `shutdown`, then waits for the
/// open sessions to end and returns what each did.
pub fn run(listener: TcpListener, cfg: Config, shutdown: Shutdown) -> anyhow::Result<Summary> {
    let udp =
        UdpSocket::bind(cfg.udp_addr).with_context(|| format!("binding UDP {}", cfg.udp_addr))?;
    serve(listener, udp, cfg, shutdown)
}

/// [`run`] with the UDP socket already bound (`cfg.udp_addr` unused): a
/// caller that must know the port first, as a capture's filter does,
/// binds it.
pub fn serve(
    listener: TcpListener,
    udp: UdpSocket,
    cfg: Config,
    shutdown: Shutdown,
) -> anyhow::Result<Summary> {
    let cache = Cache::load(&cfg.cache_path)?;
    udp.set_read_timeout(Some(POLL_INTERVAL))?;
    let udp_port = udp.local_addr()?.port();
    listener
        .set_nonblocking(true)
        .context("making the listener non-blocking")?;
    info!(
        "headers server: tcp {} udp {udp_port} cache {} ({} hosts)",
        listener.local_addr()?,
        cfg.cache_path.display(),
        cache.len()
    );
    let shared = Arc::new(Shared {
        cfg,
        cache: Mutex::new(cache),
        pending: Mutex::new(HashMap::new()),
        flights: Mutex::new(HashMap::new()),
        udp_port,
        shutdown: shutdown.clone(),
    });
    let udp_stop = Arc::new(AtomicBool::new(false));
    let udp_thread = {
        let (shared, stop) = (shared.clone(), udp_stop.clone());
        thread::spawn(move || serve_udp(&udp, &shared, &stop))
    };
    let mut sessions = Vec::new();
    let mut summary = Summary::default();
    while !shutdown.is_triggered() {
        // Ended sessions' threads are joined as the server goes on.
        let (ended, open): (Vec<_>, Vec<_>) = sessions
            .into_iter()
            .partition(|s: &thread::JoinHandle<Session>| s.is_finished());
        sessions = open;
        join_sessions(ended, &mut summary);
        match listener.accept() {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                sessions.push(thread::spawn(move || serve_session(stream, peer, &shared)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_INTERVAL),
            Err(e) => warn!("accepting a connection: {e}"),
        }
    }
    join_sessions(sessions, &mut summary);
    udp_stop.store(true, Ordering::SeqCst);
    let _ = udp_thread.join();
    Ok(summary)
}

fn join_sessions(handles: Vec<thread::JoinHandle<Session>>, summary: &mut Summary) {
    for s in handles {
        match s.join() {
            Ok(session) => summary.sessions.push(session),
            Err(_) => warn!("a session thread panicked"),
        }
    }
}

/// Answers each 2-byte request whose session has a header waiting.
fn serve_udp(udp: &UdpSocket, shared: &Shared, stop: &AtomicBool) {
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::SeqCst) {
        let (n, from) = match udp.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                warn!("udp: receiving: {e}");
                continue;
            }
        };
        let Some(&[hi, lo]) = buf.get(..n).filter(|_| n == REQUEST_LEN) else {
            warn!("udp: {n}-byte datagram from {from} ignored: a request has {REQUEST_LEN} bytes");
            continue;
        };
        let key = (from.ip(), u16::from_be_bytes([hi, lo]));
        let Some(header) = lock(&shared.pending).remove(&key) else {
            warn!(
                "udp: request from {from} for session port {} with no header waiting",
                key.1
            );
            continue;
        };
        match udp.send_to(&header, from) {
            Ok(_) => info!("udp: {} bytes of header to {from}", header.len()),
            Err(e) => warn!("udp: sending {} bytes to {from}: {e}", header.len()),
        }
    }
}

fn serve_session(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) -> Session {
    info!("session {peer}: connected");
    let mut queries = Vec::new();
    let end = converse(&mut stream, peer, shared, &mut queries);
    lock(&shared.pending).remove(&(peer.ip(), peer.port()));
    let cache_saved = {
        let cache = lock(&shared.cache);
        // Saved under the lock: two sessions' files never interleave.
        match cache.save(&shared.cfg.cache_path) {
            Ok(()) => true,
            Err(e) => {
                warn!("session {peer}: writing the cache: {e}");
                false
            }
        }
    };
    let session = Session {
        peer,
        queries,
        end,
        cache_saved,
    };
    match &session.end {
        End::Vanished(why) => warn!("session {peer}: the client vanished mid-session ({why})"),
        end => info!("session {peer}: ended ({})", end.as_str()),
    }
    if let Some(dir) = &shared.cfg.log_dir {
        let name = format!("headers-server-{}-{}.txt", peer.ip(), peer.port());
        // Through a rename, as the cache: a reader never sees half a log.
        let tmp = dir.join(format!(".{name}.tmp"));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, session.render()))
            .and_then(|()| std::fs::rename(&tmp, dir.join(&name)));
        if let Err(e) = written {
            warn!(
                "session {peer}: writing its log {}: {e}",
                dir.join(name).display()
            );
        }
    }
    session
}

/// Reads messages and answers them until the session ends.
fn converse(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    queries: &mut Vec<Query>,
) -> End {
    if let Err(e) = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(POLL_INTERVAL)))
    {
        return End::Vanished(e.to_string());
    }
    let mut buf = [0u8; MAX_MESSAGE];
    loop {
        let msg = match read_message(stream, &mut buf, shared) {
            Ok(Some(n)) => &buf[..n],
            Ok(None) => return End::Vanished("closed without terminate".into()),
            Err(end) => return end,
        };
        if msg == TERMINATE {
            // The client closes first: wait for its FIN, then close.
            let _ = read_message(stream, &mut buf, shared);
            return End::Terminated;
        }
        let query = answer(msg, peer, shared);
        let bytes = match &query.outcome {
            Outcome::Refused(r) => Answer::Refused(*r),
            _ => Answer::Port(shared.udp_port),
        }
        .to_bytes();
        info!(
            "session {peer}: {} -> {}",
            escape_peer_text(&query.name),
            query.outcome
        );
        queries.push(query);
        if let Err(e) = stream.write_all(&bytes) {
            return End::Vanished(format!("sending the answer: {e}"));
        }
    }
}

/// One read: `Some(n)` bytes, `None` at the client's close.
fn read_message(
    stream: &mut TcpStream,
    buf: &mut [u8],
    shared: &Shared,
) -> Result<Option<usize>, End> {
    let since = Instant::now();
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(None),
            Ok(n) => return Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if shared.shutdown.is_triggered() {
                    return Err(End::Shutdown);
                }
                if since.elapsed() >= shared.cfg.idle_timeout {
                    return Err(End::Idle);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(End::Vanished(e.to_string())),
        }
    }
}

/// The header for one query, from the cache or the origin, left waiting
/// for the session's datagram.
fn answer(msg: &[u8], peer: SocketAddr, shared: &Shared) -> Query {
    let name = String::from_utf8_lossy(msg).into_owned();
    let outcome = match header_for(msg, peer, shared) {
        Ok((header, hit)) => {
            let n = header.len();
            lock(&shared.pending).insert((peer.ip(), peer.port()), header);
            if hit {
                Outcome::Hit(n)
            } else {
                Outcome::Miss(n)
            }
        }
        Err(r) => Outcome::Refused(r),
    };
    Query { name, outcome }
}

fn header_for(msg: &[u8], peer: SocketAddr, shared: &Shared) -> Result<(Arc<[u8]>, bool), Refusal> {
    if !is_host_name(msg) {
        return Err(Refusal::NotAHostName);
    }
    // A host name is ASCII.
    let host = String::from_utf8_lossy(msg).into_owned();
    if let Some(h) = lock(&shared.cache).get(&host) {
        return Ok((h, true));
    }
    let (flight, leader) = {
        let mut flights = lock(&shared.flights);
        // Looked at again under the flights' lock: a fetch that ended
        // since has put its header in the cache before leaving.
        if let Some(h) = lock(&shared.cache).get(&host) {
            return Ok((h, true));
        }
        match flights.get(&host) {
            Some(f) => (f.clone(), false),
            None => {
                let f = Arc::new(Flight::default());
                flights.insert(host.clone(), f.clone());
                (f, true)
            }
        }
    };
    if !leader {
        return wait_for(&flight, &host, peer, shared).map(|h| (h, true));
    }
    let landing = Landing {
        flight,
        host: &host,
        shared,
    };
    // Not under a lock: the other sessions go on while the origin answers.
    let fetched: Result<Arc<[u8]>, Refusal> =
        origin::fetch(&host, shared.cfg.origin, shared.cfg.origin_timeout)
            .map(Into::into)
            .map_err(|f| {
                warn!("session {peer}: {host}: {f}");
                f.refusal
            });
    if let Ok(header) = &fetched {
        lock(&shared.cache).insert(host.clone(), header.clone());
    }
    *lock(&landing.flight.result) = Some(fetched.clone());
    drop(landing);
    fetched.map(|h| (h, false))
}

/// Ends a fetch others may wait for, also when its session's thread
/// panics: the waiters are woken (with a refusal when no answer was set)
/// and the host's next query starts a fetch of its own.
struct Landing<'a> {
    flight: Arc<Flight>,
    host: &'a str,
    shared: &'a Shared,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        lock(&self.flight.result).get_or_insert(Err(Refusal::OriginBadResponse));
        self.flight.done.notify_all();
        lock(&self.shared.flights).remove(self.host);
    }
}

/// The answer of another session's fetch of `host`.
fn wait_for(
    flight: &Flight,
    host: &str,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<Arc<[u8]>, Refusal> {
    // The fetch ends within its timeout; a margin for the thread's turn.
    let deadline = Instant::now() + shared.cfg.origin_timeout + Duration::from_secs(1);
    let mut result = lock(&flight.result);
    loop {
        if let Some(r) = result.as_ref() {
            return r.clone();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            warn!("session {peer}: {host}: the other session's fetch did not end in time");
            return Err(Refusal::OriginTimeout);
        }
        result = flight
            .done
            .wait_timeout(result, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}
