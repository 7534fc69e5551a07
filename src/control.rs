//! Reading the TCP control connection: the lab's fixed-size fields and v1's
//! framed messages, with timeouts and errors that say what was expected.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::protocol::{self, v1::Message};

/// Why a control exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer closed the connection before the whole field arrived.
    #[error("connection closed after {got} of {need} bytes of the {what}")]
    Closed {
        what: &'static str,
        got: usize,
        need: usize,
    },
    /// Nothing (or not enough) arrived in time.
    #[error("no {what} within {}", humantime::format_duration(*.timeout))]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
    /// The bytes arrived but do not make a valid message.
    #[error(transparent)]
    Protocol(#[from] protocol::Error),
    /// The socket itself failed (reset, unreachable ...). The message
    /// says the cause, so it is not also the error's source: a chain
    /// printed whole (`{:#}`) would say it twice.
    #[error("{what}: {error}")]
    Io {
        what: &'static str,
        error: io::Error,
    },
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Read exactly `buf.len()` bytes within `timeout`, saying how many came if
/// the peer closed early.
pub fn read_field(
    stream: &mut TcpStream,
    buf: &mut [u8],
    what: &'static str,
    timeout: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout { what, timeout });
        }
        set_timeout(stream, left, what)?;
        match stream.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(Error::Closed {
                    what,
                    got,
                    need: buf.len(),
                });
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(Error::Timeout { what, timeout }),
            Err(error) => return Err(Error::Io { what, error }),
        }
    }
    Ok(())
}

fn set_timeout(stream: &TcpStream, t: Duration, what: &'static str) -> Result<(), Error> {
    stream
        .set_read_timeout(Some(t.max(Duration::from_millis(1))))
        .map_err(|error| Error::Io { what, error })
}

/// Write a whole message; a peer that reads nothing for `timeout` fails it.
pub fn write_all(
    stream: &mut TcpStream,
    bytes: &[u8],
    what: &'static str,
    timeout: Duration,
) -> Result<(), Error> {
    stream
        .set_write_timeout(Some(timeout))
        .and_then(|()| stream.write_all(bytes))
        .map_err(|error| {
            if is_timeout(&error) {
                Error::Timeout { what, timeout }
            } else {
                Error::Io { what, error }
            }
        })
}

/// Send one v1 message.
pub fn send(stream: &mut TcpStream, msg: &Message, timeout: Duration) -> Result<(), Error> {
    write_all(stream, &msg.encode(), "control message", timeout)
}

/// What the peer is doing, seen without blocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Nothing to read, connection open.
    Quiet,
    /// Bytes are waiting.
    Data,
    /// The peer closed or reset the connection.
    Closed,
}

/// Look at the connection without taking anything from it.
pub fn peek_state(stream: &TcpStream) -> PeerState {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: one writable byte; MSG_PEEK leaves the data queued.
    let ret = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match ret {
        0 => PeerState::Closed,
        n if n > 0 => PeerState::Data,
        _ => match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => PeerState::Quiet,
            _ => PeerState::Closed,
        },
    }
}

/// Buffers a control connection's bytes and cuts them into v1 messages.
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    pub fn new() -> Reader {
        Reader::default()
    }

    /// A whole message from what is buffered, if there is one.
    pub fn next_message(&mut self) -> Result<Option<Message>, Error> {
        match Message::decode(&self.buf)? {
            Some((msg, used)) => {
                self.buf.drain(..used);
                Ok(Some(msg))
            }
            None => Ok(None),
        }
    }

    /// One read from the stream into the buffer: Ok(0) when the peer closed,
    /// a WouldBlock/TimedOut error when nothing came.
    pub fn fill(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// One read from a stream that poll said is readable: Ok(true) when
    /// bytes came, Ok(false) when none did (a spurious wake-up), an
    /// `UnexpectedEof` error when the peer has closed.
    pub fn fill_readable(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        match self.fill(stream) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the control connection",
            )),
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Wait up to `timeout` for the next message.
    pub fn read(
        &mut self,
        stream: &mut TcpStream,
        what: &'static str,
        timeout: Duration,
    ) -> Result<Message, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(msg) = self.next_message()? {
                return Ok(msg);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout { what, timeout });
            }
            set_timeout(stream, left, what)?;
            match self.fill(stream) {
                Ok(0) => {
                    return Err(Error::Closed {
                        what,
                        got: self.buf.len(),
                        need: self.buf.len() + 1,
                    });
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(Error::Timeout { what, timeout }),
                Err(error) => return Err(Error::Io { what, error }),
            }
        }
    }
}
