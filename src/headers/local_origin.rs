//! A local HTTP/1.1 origin on loopback: answers `GET /` for any host name
//! with a response whose head is fixed per host, and counts the requests
//! it gets, per host. `udplab lab headers` sends the header server here
//! instead of to the Internet, and the tests do the same.
//!
//! # What it answers
//! - The sites of [`SITES`]: heads like those the real sites sent, as
//!   varied as theirs: a 200 with three `Set-Cookie` lines
//!   (`www.twitch.tv`), a 301 and a 302 with `Location`, a small one, and
//!   a long one of several KB (`www.reddit.com`, a long
//!   `Content-Security-Policy` and cookies), still well under a datagram.
//! - Any other name ending in `.cl`: a 301 to `https://<name>/`.
//! - Any other name: a 200 with two `Set-Cookie` lines naming the host.
//! - A few names that try the header server's refusals: [`SILENT`] gets
//!   no answer within [`SILENT_FOR`], [`GARBAGE`] gets bytes that are not
//!   HTTP, [`HUGE`] a head longer than a datagram, [`FULL`] one exactly as
//!   long as a datagram carries.
//!
//! Every answer has `Connection: close` and a body of its
//! `Content-Length`; the origin closes after it. Heads are the same bytes
//! on every request (a fixed `Date`), so a stored header can be compared
//! with [`header_for`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use log::warn;

use super::MAX_DATAGRAM;
use crate::shutdown::{POLL_INTERVAL, Shutdown};

/// A host the origin holds without answering, for [`SILENT_FOR`].
pub const SILENT: &str = "silent.test";
/// A host whose head is longer than a datagram (70,000 bytes).
pub const HUGE: &str = "huge.test";
/// A host whose head is exactly [`MAX_DATAGRAM`] bytes.
pub const FULL: &str = "full.test";
/// A host answered with bytes that are not an HTTP response.
pub const GARBAGE: &str = "garbage.test";

/// How long [`SILENT`] is held before the connection is closed.
pub const SILENT_FOR: Duration = Duration::from_secs(5);

/// The `Date` of every answer.
const DATE: &str = "Tue, 01 Dec 2026 12:00:00 GMT";

/// The hosts answered with a head of their own.
pub const SITES: [&str; 8] = [
    "www.twitch.tv",
    "www.google.cl",
    "google.cl",
    "www.uchile.cl",
    "example.org",
    "www.wikipedia.org",
    "www.reddit.com",
    "news.ycombinator.com",
];

/// How long a request may take to arrive whole.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request head read.
const MAX_REQUEST: usize = 8192;
/// How often the accept loop looks for new connections.
const ACCEPT_INTERVAL: Duration = Duration::from_millis(5);

/// What the origin sends for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An HTTP response: its head (status line through the blank line)
    /// and its body.
    Http { head: Vec<u8>, body: Vec<u8> },
    /// Bytes that are not HTTP.
    NotHttp(Vec<u8>),
    /// Nothing: the connection is held, then closed.
    Silent,
}

/// A response in parts, before it is written out.
struct Response {
    status: &'static str,
    fields: Vec<(&'static str, String)>,
    body: String,
}

impl Response {
    fn new(status: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            fields: Vec::new(),
            body: body.into(),
        }
    }

    fn field(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.fields.push((name, value.into()));
        self
    }

    /// The head as sent: status line, fields in order, `Content-Length`
    /// of the body, the blank line.
    fn into_reply(self) -> Reply {
        let mut head = format!("HTTP/1.1 {}\r\n", self.status);
        for (name, value) in &self.fields {
            // Writing to a String cannot fail.
            let _ = write!(head, "{name}: {value}\r\n");
        }
        let _ = write!(head, "Content-Length: {}\r\n\r\n", self.body.len());
        Reply::Http {
            head: head.into_bytes(),
            body: self.body.into_bytes(),
        }
    }
}

/// A redirect's body, as servers send it.
fn moved(status: &'static str, to: &str) -> Response {
    let body = format!(
        "<HTML><HEAD><meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n<TITLE>{status}</TITLE></HEAD><BODY>\n<H1>{status}</H1>\nThe document has moved\n<A HREF=\"{to}\">here</A>.\n</BODY></HTML>\n"
    );
    Response::new(status, body).field("Location", to)
}

/// A page's body of about `len` bytes.
fn page(host: &str, len: usize) -> String {
    let mut body = format!("<!doctype html><html><head><title>{host}</title></head><body>");
    while body.len() + 15 < len {
        body.push_str("<p>udplab</p>");
    }
    body.push_str("</body></html>");
    body
}

/// The long policy of [`SITES`]' long head: a few KB of sources.
fn long_policy() -> String {
    let sources = [
        "'self'",
        "https://*.reddit.com",
        "https://*.redditmedia.com",
        "https://*.redditstatic.com",
        "https://*.redd.it",
        "https://reddit-uploaded-media.s3-accelerate.amazonaws.com",
        "https://www.google.com",
        "https://www.gstatic.com",
        "https://www.recaptcha.net",
        "https://js.stripe.com",
        "https://accounts.google.com",
        "https://appleid.cdn-apple.com",
        "https://static.adsafeprotected.com",
        "https://pixel-config.reddit.com",
        "https://w3-reporting.reddit.com",
        "https://events.redditmedia.com",
    ];
    let all = sources.join(" ");
    let directives = [
        "default-src",
        "script-src",
        "style-src",
        "img-src",
        "connect-src",
        "frame-src",
        "media-src",
        "worker-src",
    ];
    let mut policy: Vec<String> = directives.iter().map(|d| format!("{d} {all}")).collect();
    policy.push("object-src 'none'".into());
    policy.push("upgrade-insecure-requests".into());
    policy.push("report-uri https://w3-reporting.reddit.com/reports".into());
    policy.join("; ")
}

/// What the origin sends for `host`.
pub fn reply_for(host: &str) -> Reply {
    let base = |r: Response| r.field("Date", DATE).field("Connection", "close");
    let response = match host {
        SILENT => return Reply::Silent,
        GARBAGE => return Reply::NotHttp(b"hello there\r\n\r\n".to_vec()),
        HUGE | FULL => {
            let want = if host == HUGE { 70_000 } else { MAX_DATAGRAM };
            let mut head = b"HTTP/1.1 200 OK\r\nServer: udplab-origin\r\nX-Filler: ".to_vec();
            head.resize(want - 4, b'x');
            head.extend_from_slice(b"\r\n\r\n");
            return Reply::Http {
                head,
                body: Vec::new(),
            };
        }
        "www.twitch.tv" => base(Response::new("200 OK", page(host, 600)))
            .field("Content-Type", "text/html")
            .field(
                "Cache-Control",
                "no-cache, no-store, must-revalidate, private",
            )
            .field("Expires", "0")
            .field("Pragma", "no-cache")
            .field(
                "Set-Cookie",
                "unique_id=0C5KtQEJg1Cpg7ZSnRHI8C8g4dDfuLuz; path=/; domain=.twitch.tv; expires=Wed, 01 Dec 2027 12:00:00 GMT; secure",
            )
            .field(
                "Set-Cookie",
                "unique_id_durable=0C5KtQEJg1Cpg7ZSnRHI8C8g4dDfuLuz; path=/; domain=.twitch.tv; expires=Wed, 01 Dec 2027 12:00:00 GMT; secure; HttpOnly; SameSite=None",
            )
            .field(
                "Set-Cookie",
                "twilight-user=; path=/; domain=.twitch.tv; expires=Thu, 01 Jan 1970 00:00:00 GMT",
            )
            .field("Strict-Transport-Security", "max-age=300")
            .field("Timing-Allow-Origin", "https://www.twitch.tv")
            .field("X-Frame-Options", "SAMEORIGIN")
            .field("Via", "1.1 varnish")
            .field("X-Served-By", "cache-scl2120-SCL")
            .field("X-Cache", "MISS"),
        "www.google.cl" => base(Response::new("200 OK", page(host, 900)))
            .field("Expires", "-1")
            .field("Cache-Control", "private, max-age=0")
            .field("Content-Type", "text/html; charset=ISO-8859-1")
            .field("Server", "gws")
            .field("X-XSS-Protection", "0")
            .field("X-Frame-Options", "SAMEORIGIN")
            .field(
                "Set-Cookie",
                "AEC=AVcja2e6Qm0x; expires=Sun, 30-May-2027 12:00:00 GMT; path=/; domain=.google.cl; Secure; HttpOnly; SameSite=lax",
            ),
        "google.cl" => base(moved("301 Moved Permanently", "http://www.google.cl/"))
            .field("Content-Type", "text/html; charset=UTF-8")
            .field("Server", "gws")
            .field("Cache-Control", "public, max-age=2592000")
            .field("X-XSS-Protection", "0"),
        "www.uchile.cl" => base(moved("302 Found", "https://www.uchile.cl/portal"))
            .field("Server", "Apache")
            .field("Content-Type", "text/html; charset=iso-8859-1")
            .field(
                "Set-Cookie",
                "JSESSIONID=8F1C0A3B5D2E47A6B9C0D1E2F3A4B5C6; Path=/; HttpOnly",
            ),
        "example.org" => base(Response::new("200 OK", page(host, 300)))
            .field("Content-Type", "text/html")
            .field("ETag", "\"84238dfc8092e5d9c0dac8ef93371a07:1736799080.121134\""),
        "www.wikipedia.org" => base(moved(
            "301 Moved Permanently",
            "https://www.wikipedia.org/",
        ))
        .field("Server", "HAProxy")
        .field("X-Cache", "cp4037 int")
        .field("X-Cache-Status", "int-tls"),
        "www.reddit.com" => {
            let mut r = base(Response::new("200 OK", page(host, 1200)))
                .field("Content-Type", "text/html; charset=utf-8")
                .field("Cache-Control", "private, s-maxage=0, max-age=0, must-revalidate")
                .field("Content-Security-Policy", long_policy())
                .field("Strict-Transport-Security", "max-age=31536000; includeSubdomains")
                .field("X-Content-Type-Options", "nosniff")
                .field("X-Frame-Options", "SAMEORIGIN")
                .field("Accept-Ranges", "bytes")
                .field("Via", "1.1 varnish");
            for (name, value) in [
                ("loid", "000000000abcdefghi.2.1764590400000.Z0FBQUFBQm5UeVRM"),
                ("session_tracker", "hqjbpkmloaqgidpdna.0.1764590400000.Z0FBQUFBQm5UeVRN"),
                ("csv", "2"),
                ("edgebucket", "lN1cQbFxRmVo8iB2PO"),
                ("rdt", "3f1a6e0b9c8d7e6f5a4b3c2d1e0f9a8b"),
            ] {
                r = r.field(
                    "Set-Cookie",
                    format!(
                        "{name}={value}; Domain=reddit.com; Max-Age=63071999; Path=/; expires=Thu, 01-Dec-2028 12:00:00 GMT; secure; SameSite=None; Secure"
                    ),
                );
            }
            r
        }
        "news.ycombinator.com" => base(Response::new("200 OK", page(host, 500)))
            .field("Server", "nginx")
            .field("Content-Type", "text/html; charset=utf-8")
            .field("Vary", "Accept-Encoding")
            .field("Cache-Control", "private; max-age=0")
            .field("X-Frame-Options", "DENY")
            .field("Referrer-Policy", "origin"),
        _ if host.ends_with(".cl") => base(moved(
            "301 Moved Permanently",
            &format!("https://{host}/"),
        ))
        .field("Content-Type", "text/html; charset=UTF-8")
        .field("X-XSS-Protection", "0"),
        _ => base(Response::new("200 OK", page(host, 200)))
            .field("Content-Type", "text/html")
            .field("set-cookie", format!("unique_id={host}; Path=/; Secure"))
            .field("Set-Cookie", "session=1; HttpOnly")
            .field("X-Host", format!(" {host} "))
            .field("Cache-Control", "no-cache, no-store"),
    };
    response.into_reply()
}

/// The head the origin sends for `host`, status line through the blank
/// line (what the header server keeps); for a host answered with bytes
/// that are not HTTP, those bytes; empty for [`SILENT`].
pub fn header_for(host: &str) -> Vec<u8> {
    match reply_for(host) {
        Reply::Http { head, .. } => head,
        Reply::NotHttp(bytes) => bytes,
        Reply::Silent => Vec::new(),
    }
}

/// The requests the origin got: per `Host`, and those that were no
/// `GET / HTTP/1.1` with a `Host`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests {
    pub by_host: BTreeMap<String, usize>,
    pub bad: usize,
}

impl Requests {
    pub fn total(&self) -> usize {
        self.by_host.values().sum()
    }

    pub fn of(&self, host: &str) -> usize {
        self.by_host.get(host).copied().unwrap_or(0)
    }

    /// The origin's log, `key: value`: the hosts in name order.
    pub fn render(&self, addr: SocketAddr) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "role: http-origin\norigin: {addr}\nrequests: {}\nhosts: {}\nbad_requests: {}",
            self.total(),
            self.by_host.len(),
            self.bad
        );
        for (i, (host, n)) in self.by_host.iter().enumerate() {
            let k = i + 1;
            let _ = writeln!(out, "host_{k}_name: {host}\nhost_{k}_requests: {n}");
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each update is one increment: a panicked thread leaves whole counts.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The origin, serving on its own threads until [`LocalOrigin::stop`]
/// (or drop).
pub struct LocalOrigin {
    addr: SocketAddr,
    requests: Arc<Mutex<Requests>>,
    stop: Shutdown,
    thread: Option<thread::JoinHandle<()>>,
}

impl LocalOrigin {
    /// Serves on `listener` (an ephemeral port on 127.0.0.1 for a test:
    /// `LocalOrigin::start(TcpListener::bind("127.0.0.1:0")?)`).
    pub fn start(listener: TcpListener) -> io::Result<LocalOrigin> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let requests = Arc::new(Mutex::new(Requests::default()));
        let stop = Shutdown::new();
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            thread::Builder::new()
                .name("http-origin".into())
                .spawn(move || accept_loop(&listener, &requests, &stop))?
        };
        Ok(LocalOrigin {
            addr,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The requests so far.
    pub fn requests(&self) -> Requests {
        lock(&self.requests).clone()
    }

    /// Stops accepting, waits for the connections being answered, and
    /// returns every request it got.
    pub fn stop(mut self) -> Requests {
        self.shut();
        self.requests()
    }

    fn shut(&mut self) {
        self.stop.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LocalOrigin {
    fn drop(&mut self) {
        self.shut();
    }
}

fn accept_loop(listener: &TcpListener, requests: &Arc<Mutex<Requests>>, stop: &Shutdown) {
    let mut open: Vec<thread::JoinHandle<()>> = Vec::new();
    while !stop.is_triggered() {
        open.retain(|t| !t.is_finished());
        match listener.accept() {
            Ok((stream, _)) => {
                let (requests, stop) = (requests.clone(), stop.clone());
                open.push(thread::spawn(move || respond(stream, &requests, &stop)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_INTERVAL),
            Err(e) => {
                warn!("origin: accepting a connection: {e}");
                thread::sleep(ACCEPT_INTERVAL);
            }
        }
    }
    for t in open {
        let _ = t.join();
    }
}

/// The request's `Host` when it is `GET / HTTP/1.1` with one.
fn requested_host(head: &[u8]) -> Option<String> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    if req.method != Some("GET") || req.path != Some("/") || req.version != Some(1) {
        return None;
    }
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(|h| h.trim().to_owned())
}

fn respond(mut stream: TcpStream, requests: &Mutex<Requests>, stop: &Shutdown) {
    let answered = (|| -> io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > MAX_REQUEST {
                break;
            }
            match stream.read(&mut buf)? {
                0 => return Ok(()),
                n => head.extend_from_slice(&buf[..n]),
            }
        }
        let Some(host) = requested_host(&head) else {
            lock(requests).bad += 1;
            return stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            );
        };
        *lock(requests).by_host.entry(host.clone()).or_default() += 1;
        match reply_for(&host) {
            Reply::Http { head, body } => {
                // Head and body in one write: one segment on loopback, as a
                // site's first answer segment.
                let mut all = head;
                all.extend_from_slice(&body);
                stream.write_all(&all)
            }
            Reply::NotHttp(bytes) => stream.write_all(&bytes),
            Reply::Silent => {
                let since = Instant::now();
                while since.elapsed() < SILENT_FOR && !stop.is_triggered() {
                    thread::sleep(POLL_INTERVAL);
                }
                Ok(())
            }
        }
    })();
    if let Err(e) = answered {
        warn!("origin: answering a request: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_whole_http_and_varied() {
        let mut lengths = Vec::new();
        for host in SITES.iter().copied().chain(["a.test", "c.cl"]) {
            let Reply::Http { head, body } = reply_for(host) else {
                panic!("{host}: not HTTP");
            };
            super::super::origin::check(&head).unwrap_or_else(|e| panic!("{host}: {e}"));
            let text = String::from_utf8(head.clone()).unwrap();
            assert!(
                text.contains(&format!("Content-Length: {}\r\n", body.len())),
                "{host}: {text}"
            );
            assert!(head.len() < 8192, "{host}: {} bytes", head.len());
            lengths.push(head.len());
        }
        assert!(
            lengths.iter().any(|&n| n > 3000),
            "a long head: {lengths:?}"
        );
        assert!(
            lengths.iter().any(|&n| n < 400),
            "a short head: {lengths:?}"
        );
        let google = String::from_utf8(header_for("google.cl")).unwrap();
        assert!(google.starts_with("HTTP/1.1 301 "), "{google}");
        assert!(google.contains("\r\nLocation: http://www.google.cl/\r\n"));
        let twitch = String::from_utf8(header_for("www.twitch.tv")).unwrap();
        assert_eq!(twitch.matches("\r\nSet-Cookie: ").count(), 3, "{twitch}");
        assert_eq!(header_for(FULL).len(), MAX_DATAGRAM);
        assert!(header_for(HUGE).len() > MAX_DATAGRAM);
    }

    #[test]
    fn requests_are_read_by_their_host() {
        assert_eq!(
            requested_host(b"GET / HTTP/1.1\r\nhost: a.b \r\n\r\n").as_deref(),
            Some("a.b")
        );
        assert_eq!(requested_host(b"POST / HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        assert_eq!(requested_host(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(requested_host(b"hello\r\n\r\n"), None);
    }
}
