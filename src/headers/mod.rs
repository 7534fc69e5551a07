//! The second lab: a cache of HTTP response headers served over TCP and UDP
//! (issue 13, "The system, as the report shows it").
//!
//! # Protocol
//! A client keeps one TCP connection for a session of queries. Per query:
//!
//! 1. client -> server, TCP: the host name, ASCII, no terminator
//!    (`www.twitch.tv`, 13 bytes);
//! 2. server -> client, TCP: the server's UDP port as decimal text
//!    (`50367`, 5 bytes), or a refusal, `error: ` and a reason
//!    ([`Refusal`]; the exact bytes are its `Display`);
//! 3. client -> server, UDP, from a fresh ephemeral port: 2 bytes, the
//!    local port of the client's TCP connection, big-endian. The report
//!    shows a 2-byte datagram without its bytes; these let the server tell
//!    which session a datagram belongs to when several share its UDP port
//!    (with the datagram's source IP, which must be the TCP connection's);
//! 4. server -> client, UDP: the site's HTTP response header, the status
//!    line through the blank line, as the origin sent it.
//!
//! `terminate` (9 bytes) ends the session; the client then closes first.
//!
//! # Framing
//! TCP is a byte stream with no message boundaries; like the report's
//! programs, a message is what one read returns, at most
//! [`MAX_MESSAGE`] bytes. It holds because each side sends one message and
//! waits for the answer before sending the next (no two messages are ever
//! in flight in one direction), and a message this short goes in one
//! segment. A peer that splits a name over two sends gets two (probably
//! refused) names; one longer than [`MAX_MESSAGE`] is read as a first
//! part, refused as not a host name, and its rest as the next query.
//!
//! # Layout
//! - [`cache`]: the shared cache and its file (format, atomic write-back).
//! - [`origin`]: the HTTP/1.1 request to the origin, its head read and
//!   checked with httparse.
//! - [`server`]: `server::run(listener, cfg, shutdown)`: a thread per
//!   session, one thread for the UDP port.
//! - [`client`]: one session asking a list of names.
//! - [`local_origin`]: an HTTP/1.1 origin on loopback with varied heads
//!   per host, counting its requests (`udplab lab headers`, the tests).

pub mod cache;
pub mod client;
pub mod local_origin;
pub mod origin;
pub mod server;

use std::fmt;

/// The message that ends a session.
pub const TERMINATE: &[u8] = b"terminate";

/// The most bytes one TCP read takes as a message: a host name's 253 and
/// room to see that a longer one is too long.
pub const MAX_MESSAGE: usize = 512;

/// The longest host name (RFC 1035 section 2.3.4, without the final dot).
pub const MAX_HOST_NAME: usize = 253;

/// The largest UDP payload over IPv4: 65,535 - 20 (IP) - 8 (UDP).
pub const MAX_DATAGRAM: usize = 65_507;

/// The UDP request's length.
pub const REQUEST_LEN: usize = 2;

/// Why the server answers a query with an error instead of its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The message is not a host name (see [`is_host_name`]).
    NotAHostName,
    /// The origin accepted no connection (refused, no route, no address).
    OriginUnreachable,
    /// The origin did not send a whole header within the timeout.
    OriginTimeout,
    /// What the origin sent is not an HTTP/1.x response header.
    OriginBadResponse,
    /// The header is longer than [`MAX_DATAGRAM`]: no datagram carries it.
    TooLarge,
}

impl Refusal {
    const ALL: [Refusal; 5] = [
        Refusal::NotAHostName,
        Refusal::OriginUnreachable,
        Refusal::OriginTimeout,
        Refusal::OriginBadResponse,
        Refusal::TooLarge,
    ];

    /// The answer's bytes, as sent over TCP.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotAHostName => "error: not a host name",
            Refusal::OriginUnreachable => "error: origin unreachable",
            Refusal::OriginTimeout => "error: origin did not answer in time",
            Refusal::OriginBadResponse => "error: origin sent no valid HTTP header",
            Refusal::TooLarge => "error: header larger than a datagram (65507 bytes)",
        }
    }

    /// The refusal whose bytes these are.
    pub fn parse(bytes: &[u8]) -> Option<Refusal> {
        Refusal::ALL
            .into_iter()
            .find(|r| r.as_str().as_bytes() == bytes)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The server's answer to a query over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Ask this UDP port for the header.
    Port(u16),
    Refused(Refusal),
}

impl Answer {
    pub fn to_bytes(self) -> Vec<u8> {
        match self {
            Answer::Port(p) => p.to_string().into_bytes(),
            Answer::Refused(r) => r.as_str().as_bytes().to_vec(),
        }
    }

    /// `None` when the bytes are neither a port nor a known refusal.
    pub fn parse(bytes: &[u8]) -> Option<Answer> {
        if let Some(r) = Refusal::parse(bytes) {
            return Some(Answer::Refused(r));
        }
        if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(bytes)
            .ok()?
            .parse()
            .ok()
            .map(Answer::Port)
    }
}

/// A host name as the server takes it: 1 to 253 bytes of ASCII letters,
/// digits, hyphens and dots, each dot-separated label 1 to 63 bytes,
/// neither starting nor ending with a hyphen (RFC 1123 section 2.1).
pub fn is_host_name(bytes: &[u8]) -> bool {
    if bytes.is_empty() || bytes.len() > MAX_HOST_NAME {
        return false;
    }
    bytes.split(|&b| b == b'.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert!(is_host_name(b"www.twitch.tv"));
        assert!(is_host_name(b"localhost"));
        assert!(is_host_name(b"a-b.c9"));
        assert!(is_host_name(
            "a.".repeat(126).trim_end_matches('.').as_bytes()
        ));
        assert!(!is_host_name(b""));
        assert!(!is_host_name(b"www twitch"));
        assert!(!is_host_name(b"../etc/passwd"));
        assert!(!is_host_name(b"a..b"));
        assert!(!is_host_name(b"-a.b"));
        assert!(!is_host_name(b"www.twitch.tv\n"));
        assert!(!is_host_name(&[b'a'; 64]));
        assert!(!is_host_name("ab.".repeat(85).as_bytes()));
    }

    #[test]
    fn answers_round_trip() {
        assert_eq!(Answer::Port(50367).to_bytes(), b"50367");
        assert_eq!(Answer::parse(b"50367"), Some(Answer::Port(50367)));
        assert_eq!(Answer::parse(b"99999"), None);
        assert_eq!(Answer::parse(b"error: what"), None);
        for r in Refusal::ALL {
            assert_eq!(
                Answer::parse(&Answer::Refused(r).to_bytes()),
                Some(Answer::Refused(r))
            );
        }
    }
}
