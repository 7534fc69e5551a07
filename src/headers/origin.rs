//! The HTTP/1.1 request for a host's response header, and the head of the
//! answer read, bounded, and checked with httparse.
//!
//! The request is written here rather than by an HTTP client library
//! because the lab keeps the header byte for byte as the origin sent it:
//! clients such as ureq hand back parsed fields (names lower-cased, the
//! raw lines gone). httparse checks that what was read is one whole
//! HTTP/1.x response head.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{MAX_DATAGRAM, Refusal};

/// Where the requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The queried host itself, on port 80.
    Host,
    /// One server for every name, with the name as `Host`.
    Fixed(SocketAddr),
}

/// Why no header came from the origin: the answer to the client and what
/// the log says.
#[derive(Debug, thiserror::Error)]
#[error("{refusal}: {detail}")]
pub struct Failure {
    pub refusal: Refusal,
    pub detail: String,
}

fn fail(refusal: Refusal, detail: impl Into<String>) -> Failure {
    Failure {
        refusal,
        detail: detail.into(),
    }
}

/// The request sent for `host`.
pub fn request(host: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: udplab\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
}

/// Asks `origin` for `host`'s `/` and returns the response's head, status
/// line through the blank line, as sent. The whole exchange (connect,
/// send, read) has `timeout`; a head longer than a datagram is refused as
/// soon as that many bytes have come without its end.
pub fn fetch(host: &str, origin: Origin, timeout: Duration) -> Result<Vec<u8>, Failure> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = match origin {
        Origin::Fixed(a) => vec![a],
        Origin::Host => (host, 80)
            .to_socket_addrs()
            .map_err(|e| fail(Refusal::OriginUnreachable, format!("resolving {host}: {e}")))?
            .collect(),
    };
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some((addr, e)),
        }
    }
    let mut stream = stream.ok_or_else(|| match last {
        Some((addr, e)) if e.kind() == io::ErrorKind::TimedOut => {
            fail(Refusal::OriginTimeout, format!("connecting to {addr}: {e}"))
        }
        Some((addr, e)) => fail(
            Refusal::OriginUnreachable,
            format!("connecting to {addr}: {e}"),
        ),
        None => fail(Refusal::OriginUnreachable, format!("{host} has no address")),
    })?;
    let timed_out = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    };
    stream
        .set_write_timeout(Some(timeout))
        .and_then(|()| stream.write_all(request(host).as_bytes()))
        .map_err(|e| {
            let r = if timed_out(&e) {
                Refusal::OriginTimeout
            } else {
                Refusal::OriginUnreachable
            };
            fail(r, format!("sending the request: {e}"))
        })?;
    let mut head = Vec::with_capacity(4096);
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = find_end(&head) {
            head.truncate(end);
            break;
        }
        if head.len() > MAX_DATAGRAM {
            return Err(fail(
                Refusal::TooLarge,
                format!("more than {MAX_DATAGRAM} bytes without the header's end"),
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(fail(
                Refusal::OriginTimeout,
                format!("{} bytes of header in {timeout:?}", head.len()),
            ));
        }
        // set_read_timeout refuses zero, which `left` is not here.
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| fail(Refusal::OriginUnreachable, e.to_string()))?;
        match stream.read(&mut buf) {
            Ok(0) => {
                return Err(fail(
                    Refusal::OriginBadResponse,
                    format!("closed after {} bytes, before the header's end", head.len()),
                ));
            }
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => {
                return Err(fail(
                    Refusal::OriginTimeout,
                    format!("{} bytes of header in {timeout:?}", head.len()),
                ));
            }
            Err(e) => return Err(fail(Refusal::OriginUnreachable, format!("reading: {e}"))),
        }
    }
    if head.len() > MAX_DATAGRAM {
        return Err(fail(Refusal::TooLarge, format!("{} bytes", head.len())));
    }
    check(&head).map_err(|e| fail(Refusal::OriginBadResponse, e))?;
    Ok(head)
}

/// The length of the head: up to and including the first CR LF CR LF.
fn find_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// Checks with httparse that `head` is one whole response head.
pub fn check(head: &[u8]) -> Result<(), String> {
    // A head of at most 65,507 bytes has fewer fields than this.
    let mut fields = vec![httparse::EMPTY_HEADER; MAX_DATAGRAM / 4];
    let mut response = httparse::Response::new(&mut fields);
    match response.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => Ok(()),
        Ok(httparse::Status::Complete(n)) => {
            Err(format!("the head ends at byte {n} of {}", head.len()))
        }
        Ok(httparse::Status::Partial) => Err("the head is incomplete".into()),
        Err(e) => Err(format!("httparse: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_heads() {
        assert!(check(b"HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\n\r\n").is_ok());
        assert!(check(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(check(b"hello\r\n\r\n").is_err());
        assert_eq!(find_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some(19));
    }
}
