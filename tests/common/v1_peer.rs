//! A v1 client made of raw sockets, driven by a test: it registers,
//! receives passes and sends what reports the test chooses (hostile ones
//! included).

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use udplab::control;
use udplab::net;
use udplab::protocol::lab::PortMessage;
use udplab::protocol::v1::{self, Message, Report, SeqRange};

/// A v1 client made of raw sockets, driven by the test.
pub struct Peer {
    pub tcp: TcpStream,
    pub udp: UdpSocket,
    pub reader: control::Reader,
    pub announce: v1::Announce,
}

/// What the server said at the end of a pass.
pub enum PassEnd {
    Done,
    Abort(String),
}

impl Peer {
    pub fn register(server: SocketAddr) -> Peer {
        use std::io::Read;
        let mut tcp = TcpStream::connect(server).unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        net::set_recv_buffer(&udp, 64 << 20).unwrap();
        let mut id = [0u8; 2];
        tcp.read_exact(&mut id).unwrap();
        let port = udp.local_addr().unwrap().port();
        tcp.write_all(
            &PortMessage {
                port,
                version: v1::VERSION,
            }
            .emit(),
        )
        .unwrap();
        let mut n = [0u8; 2];
        tcp.read_exact(&mut n).unwrap();
        let mut reader = control::Reader::new();
        let Message::Announce(announce) = reader
            .read(&mut tcp, "announce", Duration::from_secs(10))
            .unwrap()
        else {
            panic!("no announce");
        };
        udp.set_nonblocking(true).unwrap();
        Peer {
            tcp,
            udp,
            reader,
            announce,
        }
    }

    /// Receive until the server's `Done` (or `Abort`), telling it every
    /// 10 ms while data comes that nothing was lost: the datagrams that
    /// came, and how the pass ended.
    pub fn pass(&mut self, round: u32) -> (u64, PassEnd) {
        let mut got = 0u64;
        let mut buf = vec![0u8; 2048];
        let mut last_feedback = Instant::now();
        let mut fed_back = 0;
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < Duration::from_secs(20), "no Done");
            let ready = net::poll_readable(
                [self.udp.as_raw_fd(), self.tcp.as_raw_fd()],
                Duration::from_millis(5),
            )
            .unwrap();
            while self.udp.recv(&mut buf).is_ok() {
                got += 1;
            }
            // As an honest client does: only once data comes, so never
            // while the round fills.
            if got > fed_back && last_feedback.elapsed() >= Duration::from_millis(10) {
                last_feedback = Instant::now();
                fed_back = got;
                self.send(&Message::Feedback(v1::Feedback {
                    round,
                    arrived: got,
                    lost: 0,
                    kernel_drops: Some(0),
                    timing: None,
                }));
            }
            if ready[1] {
                if self.reader.fill(&mut self.tcp).unwrap() == 0 {
                    return (got, PassEnd::Abort("closed".into()));
                }
                while let Some(msg) = self.reader.next_message().unwrap() {
                    match msg {
                        Message::Start { .. } => {}
                        Message::Done(_) => return (got, PassEnd::Done),
                        Message::Abort { reason } => return (got, PassEnd::Abort(reason)),
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
        }
    }

    pub fn send(&mut self, msg: &Message) {
        // The server may have given up and closed: that is what is tested.
        let _ = self.tcp.write_all(&msg.encode());
    }

    /// A report that the client holds nothing at all.
    pub fn nothing_held(&self) -> Message {
        let total = self.announce.datagrams;
        Message::Report(Report {
            datagrams_received: 0,
            bytes_received: 0,
            duplicates: 0,
            malformed: 0,
            missing_datagrams: u64::from(total),
            kernel_drops: Some(0),
            sha256_match: false,
            missing: vec![SeqRange {
                first: 0,
                last: total - 1,
            }],
            ranges_truncated: false,
        })
    }

    /// The report of a client that holds the whole file.
    pub fn everything_held(&self) -> Report {
        Report {
            datagrams_received: u64::from(self.announce.datagrams),
            bytes_received: self.announce.file_size,
            duplicates: 0,
            malformed: 0,
            missing_datagrams: 0,
            kernel_drops: Some(0),
            sha256_match: true,
            missing: Vec::new(),
            ranges_truncated: false,
        }
    }
}
