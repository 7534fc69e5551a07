//! One file's reading, whatever its format: the read buffer (grown only to
//! hold a single block larger than it), the loop from the next block's
//! header to the complete block to a packet, the file's next packet (its
//! head) kept in the buffer, and the byte source that keeps the I/O errors
//! pcap-parser reduces to a fact. What a block means is `pcap`'s and
//! `pcapng`'s job.

use std::cell::Cell;
use std::io::{self, Cursor, Read};
use std::rc::Rc;
use std::sync::Arc;

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{Linktype, PcapError};

use super::pcap::Records;
use super::pcapng::Blocks;
use super::{FileFacts, MAX_BLOCK, ReadError};

/// The next packet of one file, still in that file's buffer.
///
/// `repr(C)` keeps `link_type` and `orig_len` apart: side by side (Rust's
/// own layout) they were assembled into one word through the stack, a
/// store-forwarding stall on every packet that made `udplab analyze` 3 %
/// slower on a pcap file (`scripts/bench-analyze --baseline`).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(super) struct Head {
    pub(super) interface: usize,
    pub(super) link_type: Linktype,
    pub(super) ts_ns: i64,
    pub(super) orig_len: u32,
    /// Where the packet's bytes are in the buffer's data.
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Reading state of one file.
pub(super) struct Input {
    stream: Stream,
    /// Current size of the read buffer.
    capacity: usize,
    /// Length of the block lent out last, consumed at the next read.
    pending: usize,
    head: Option<Head>,
    /// Timestamp of the last packet read, for Simple Packet Blocks.
    last_ts_ns: Option<i64>,
    done: bool,
    /// The I/O error behind a failed read (pcap-parser keeps only the fact).
    io_error: Rc<Cell<Option<io::Error>>>,
}

/// A file's blocks, in its format.
pub(super) enum Stream {
    Pcap(Records),
    PcapNg(Blocks),
}

/// What the next bytes of a file hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    PcapRecord,
    SectionHeader,
    InterfaceDescription,
    EnhancedPacket,
    SimplePacket,
    ObsoletePacket,
    InterfaceStatistics,
    /// Any other pcapng block: skipped.
    Other,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::PcapRecord => "pcap record",
            Kind::SectionHeader => "section header block",
            Kind::InterfaceDescription => "interface description block",
            Kind::EnhancedPacket => "enhanced packet block",
            Kind::SimplePacket => "simple packet block",
            Kind::ObsoletePacket => "packet block",
            Kind::InterfaceStatistics => "interface statistics block",
            Kind::Other => "block",
        }
    }
}

impl Input {
    /// A file whose header `stream` has read, with a buffer of `capacity`
    /// bytes; `io_error` is shared with the stream's byte source.
    pub(super) fn new(
        stream: Stream,
        capacity: usize,
        io_error: Rc<Cell<Option<io::Error>>>,
    ) -> Input {
        Input {
            stream,
            capacity,
            pending: 0,
            head: None,
            last_ts_ns: None,
            done: false,
            io_error,
        }
    }

    /// This file's next packet, if it has one.
    pub(super) fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// The bytes of `head`, this file's head.
    pub(super) fn data(&self, head: &Head) -> &[u8] {
        self.stream
            .data()
            .get(head.start..head.end)
            .unwrap_or_default()
    }

    /// Reads this file's next packet into `head`, or ends the file.
    pub(super) fn advance(&mut self, facts: &mut FileFacts) {
        self.head = None;
        if self.done {
            return;
        }
        match self.read_next(facts) {
            Ok(Some(head)) => {
                facts.packets += 1;
                if let Some(interface) = facts.interfaces.get_mut(head.interface) {
                    interface.packets += 1;
                }
                let ts = head.ts_ns;
                facts.first_ts_ns = Some(facts.first_ts_ns.map_or(ts, |t| t.min(ts)));
                facts.last_ts_ns = Some(facts.last_ts_ns.map_or(ts, |t| t.max(ts)));
                self.last_ts_ns = Some(ts);
                self.head = Some(head);
            }
            Ok(None) => self.done = true,
            Err(e) => {
                facts.error = Some(e);
                self.done = true;
            }
        }
    }

    /// Reads blocks until the next packet; `Ok(None)` at a clean end.
    fn read_next(&mut self, facts: &mut FileFacts) -> Result<Option<Head>, ReadError> {
        loop {
            self.consume_lent();
            let packets = facts.packets;
            let offset = facts.bytes_read;
            let available = self.stream.data().len();
            let frame = self.stream.frame().map_err(|detail| ReadError::Corrupt {
                packets,
                offset,
                detail,
            })?;
            let exhausted = self.stream.parser().reader_exhausted();
            let Some((len, kind)) = frame else {
                if exhausted {
                    return if available == 0 {
                        Ok(None)
                    } else {
                        Err(ReadError::Truncated { packets, offset })
                    };
                }
                self.refill(packets, offset)?;
                continue;
            };
            if available < len {
                if exhausted {
                    return Err(ReadError::Truncated { packets, offset });
                }
                self.make_room(len);
                self.refill(packets, offset)?;
                continue;
            }
            let head = self
                .take_block(kind, facts)
                .map_err(|detail| ReadError::Corrupt {
                    packets,
                    offset,
                    detail,
                })?;
            self.pending = len;
            facts.bytes_read += len as u64;
            if head.is_some() {
                return Ok(head);
            }
        }
    }

    /// Drops the block read last from the buffer.
    fn consume_lent(&mut self) {
        if self.pending > 0 {
            // Without shifting: the buffer shifts when it is refilled,
            // which then moves only the start of one block.
            self.stream.parser().consume_noshift(self.pending);
            self.pending = 0;
        }
    }

    /// Grows the buffer to hold a block of `len` bytes, if it cannot yet.
    fn make_room(&mut self, len: usize) {
        if self.capacity < len {
            // frame() refused anything over MAX_BLOCK.
            let grown = len.max(self.capacity.saturating_mul(2)).min(MAX_BLOCK);
            self.stream.parser().grow(grown);
            self.capacity = grown;
        }
    }

    fn refill(&mut self, packets: u64, offset: u64) -> Result<(), ReadError> {
        match self.stream.parser().refill() {
            Ok(()) => Ok(()),
            Err(_) => {
                let error = self
                    .io_error
                    .take()
                    .unwrap_or_else(|| io::Error::other("read failed"));
                Err(ReadError::Io {
                    packets,
                    offset,
                    error: Arc::new(error),
                })
            }
        }
    }

    /// Parses the complete block at the start of the buffer: a packet gives
    /// a head, a description or statistics block updates `facts`.
    fn take_block(&mut self, kind: Kind, facts: &mut FileFacts) -> Result<Option<Head>, String> {
        match &mut self.stream {
            Stream::Pcap(records) => records.take(kind),
            Stream::PcapNg(blocks) => blocks.take(kind, facts, self.last_ts_ns),
        }
    }
}

impl Stream {
    fn parser(&mut self) -> &mut dyn PcapReaderIterator {
        match self {
            Stream::Pcap(records) => &mut records.parser,
            Stream::PcapNg(blocks) => &mut blocks.parser,
        }
    }

    fn data(&self) -> &[u8] {
        match self {
            Stream::Pcap(records) => records.parser.data(),
            Stream::PcapNg(blocks) => blocks.parser.data(),
        }
    }

    /// Length and kind of the block at the start of the buffer; `None`
    /// while its header is not all there; `Err` when the header cannot be
    /// right.
    fn frame(&self) -> Result<Option<(usize, Kind)>, String> {
        match self {
            Stream::Pcap(records) => records.frame(),
            Stream::PcapNg(blocks) => blocks.frame(),
        }
    }
}

/// A parse failure of a complete block, without its bytes.
pub(super) fn describe(error: &PcapError<&[u8]>, kind: Kind) -> String {
    let name = kind.name();
    match error {
        PcapError::NomError(_, e) | PcapError::OwnedNomError(_, e) => {
            format!("{name} does not parse ({e:?})")
        }
        PcapError::Incomplete(_) | PcapError::UnexpectedEof | PcapError::BufferTooSmall => {
            format!("{name} whose fields run past its end")
        }
        PcapError::HeaderNotRecognized => format!("{name} not recognized"),
        PcapError::Eof | PcapError::ReadError => format!("{name}: {error}"),
    }
}

/// A file's bytes: the ones read while opening, then the rest. Keeps the
/// I/O error that pcap-parser reduces to `PcapError::ReadError`.
pub(super) struct Src {
    prefix: Cursor<Vec<u8>>,
    inner: Box<dyn Read>,
    error: Rc<Cell<Option<io::Error>>>,
}

impl Src {
    pub(super) fn new(
        prefix: Vec<u8>,
        inner: Box<dyn Read>,
        error: &Rc<Cell<Option<io::Error>>>,
    ) -> Src {
        Src {
            prefix: Cursor::new(prefix),
            inner,
            error: Rc::clone(error),
        }
    }
}

impl Read for Src {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if (self.prefix.position() as usize) < self.prefix.get_ref().len() {
            let n = self.prefix.read(buf)?;
            if self.prefix.position() as usize >= self.prefix.get_ref().len() {
                self.prefix = Cursor::new(Vec::new());
            }
            return Ok(n);
        }
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let kind = e.kind();
                    self.error.set(Some(e));
                    return Err(kind.into());
                }
                Ok(n) => return Ok(n),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::testing::*;
    use super::super::{INITIAL_BUFFER, Source};
    use super::*;
    use crate::pcapng::IF_NAME;

    // --- damage ---

    #[test]
    fn truncated_file_yields_what_precedes_the_cut() {
        let mut bytes = pcap_header(false, false, 65535, 1);
        for sec in 1..=3 {
            pcap_record(&mut bytes, false, sec, 0, &[0x55; 100], 100);
        }
        let complete = 24 + 2 * (16 + 100);
        // Cut inside the third record's data, then inside its header.
        for cut in [bytes.len() - 1, complete + 10] {
            let (packets, facts) = read_one(bytes[..cut].to_vec());
            assert_eq!(packets.len(), 2);
            assert_eq!(facts.packets, 2);
            let error = facts.error.expect("an error");
            assert!(matches!(
                error,
                ReadError::Truncated {
                    packets: 2,
                    offset
                } if offset == complete as u64
            ));
            assert_eq!(
                error.to_string(),
                format!(
                    "file ends in the middle of a record after 2 packets ({complete} bytes read)"
                )
            );
        }

        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[]).epb(0, 1, b"abc", 3).epb(0, 2, b"def", 3);
        let cut = ng.out.len() - 5;
        let (packets, facts) = read_one(ng.out[..cut].to_vec());
        assert_eq!(packets.len(), 1);
        assert!(matches!(
            facts.error,
            Some(ReadError::Truncated { packets: 1, .. })
        ));
    }

    // --- buffers ---

    #[test]
    fn blocks_larger_than_the_buffer_are_read() {
        let big: Vec<u8> = (0..INITIAL_BUFFER + 50_000).map(|i| i as u8).collect();
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[])
            .epb(0, 1, b"small", 5)
            .epb(0, 2, &big, big.len() as u32)
            .epb(0, 3, b"after", 5);
        for src in [source(ng.bytes()), trickle(ng.bytes(), 4093)] {
            let (packets, mut files) = read_sources(vec![src]);
            assert!(files[0].error.is_none(), "{:?}", files[0].error);
            assert_eq!(packets.len(), 3);
            assert_eq!(packets[1].data, big);
            assert_eq!(packets[2].data, b"after".to_vec());
            assert_eq!(files.remove(0).bytes_read, ng.out.len() as u64);
        }

        let mut bytes = pcap_header(false, false, 1 << 20, 1);
        pcap_record(&mut bytes, false, 1, 0, &big, big.len() as u32);
        pcap_record(&mut bytes, false, 2, 0, b"after", 5);
        let (packets, facts) = read_one(bytes);
        assert!(facts.error.is_none(), "{:?}", facts.error);
        assert_eq!(packets[0].data, big);
        assert_eq!(packets[1].data, b"after".to_vec());
    }

    #[test]
    fn short_reads_change_nothing() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[(IF_NAME, b"eth0".to_vec())]);
        for i in 0..50u64 {
            ng.epb(0, i, &[i as u8; 37], 60);
        }
        let whole = read_sources(vec![source(ng.bytes())]).0;
        for step in [1, 3, 7, 64] {
            let (packets, files) = read_sources(vec![trickle(ng.bytes(), step)]);
            assert_eq!(packets, whole, "step {step}");
            assert!(files[0].error.is_none());
        }
    }

    /// Gives `bytes` (interrupted once on the way), then fails.
    struct Failing {
        bytes: Cursor<Vec<u8>>,
        interrupted: bool,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.interrupted {
                self.interrupted = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            match self.bytes.read(buf)? {
                0 => Err(io::Error::other("disk on fire")),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn read_errors_stop_the_file_and_say_where() {
        let mut bytes = pcap_header(false, false, 65535, 1);
        pcap_record(&mut bytes, false, 1, 0, b"abcd", 4);
        pcap_record(&mut bytes, false, 2, 0, b"ef", 2);
        let cut = bytes.len() - 1;
        let src = Source {
            label: PathBuf::from("failing.pcap"),
            reader: Box::new(Failing {
                bytes: Cursor::new(bytes[..cut].to_vec()),
                interrupted: false,
            }),
            len: None,
        };
        let (packets, files) = read_sources(vec![src]);
        assert_eq!(packets.len(), 1);
        let error = files[0].error.clone().expect("an error");
        assert!(matches!(
            error,
            ReadError::Io {
                packets: 1,
                offset: 44,
                ..
            }
        ));
        assert_eq!(
            error.to_string(),
            "read error at byte 44 after 1 packets: disk on fire"
        );
    }
}
