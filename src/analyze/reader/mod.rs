//! pcap and pcapng files -> packets with file, interface, link type and
//! time, several files merged by timestamp.
//!
//! Streaming, with memory bounded whatever the file size: each file has one
//! read buffer of [`INITIAL_BUFFER`] bytes, grown only to hold a single
//! block larger than that, up to [`MAX_BLOCK`]; a longer block is reported
//! as corrupt. Packet bytes are never copied out of that buffer:
//! [`Reader::next_packet`] lends them until the next call.
//!
//! pcap-parser does the buffering and parses the blocks this module uses.
//! Block lengths are checked here before parsing, so that a damaged length
//! ends the file with [`ReadError::Corrupt`] instead of a huge read, and
//! blocks nothing here needs (name resolution, secrets, custom, ...) are
//! skipped unparsed. Options are decoded here in the section's byte order:
//! pcap-parser 0.17 reads `if_tsoffset` and the statistics counters as
//! little-endian whatever the section says, and rejects every power-of-two
//! `if_tsresol`.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{
    BOM_MAGIC, Block, EPB_MAGIC, IDB_MAGIC, ISB_MAGIC, LegacyPcapReader, Linktype, PcapBlockOwned,
    PcapError, PcapNGOption, PcapNGReader, SHB_MAGIC, SPB_MAGIC,
};

use crate::protocol::hex;

/// Size of each file's read buffer when it is opened (smaller for a file
/// known to be smaller, down to [`MIN_BUFFER`]).
pub const INITIAL_BUFFER: usize = 256 * 1024;

/// The smallest read buffer.
const MIN_BUFFER: usize = 4096;

/// The largest block (pcap record or pcapng block) read; a longer one is
/// [`ReadError::Corrupt`]. A file's buffer never grows beyond this.
pub const MAX_BLOCK: usize = 16 * 1024 * 1024;

/// The most interfaces a pcapng file may declare over all its sections:
/// more is taken as a damaged file rather than kept in memory.
pub const MAX_INTERFACES: usize = 4096;

/// A pcap record claiming more captured bytes than both this and the file's
/// snap length is taken as garbage, as Wireshark does (its largest standard
/// snap length).
const PLAUSIBLE_CAPLEN: u32 = 262_144;

/// Interface names longer than this are cut (they come from the file).
const MAX_NAME: usize = 256;

/// Obsolete pcapng Packet Block, superseded by the Enhanced Packet Block.
const PB_MAGIC: u32 = 0x0000_0002;

/// pcap magic numbers as the file's first four bytes.
const PCAP_LE_US: [u8; 4] = [0xd4, 0xc3, 0xb2, 0xa1];
const PCAP_LE_NS: [u8; 4] = [0x4d, 0x3c, 0xb2, 0xa1];
const PCAP_BE_US: [u8; 4] = [0xa1, 0xb2, 0xc3, 0xd4];
const PCAP_BE_NS: [u8; 4] = [0xa1, 0xb2, 0x3c, 0x4d];
/// Alexey Kuznetzov's modified pcap: 24-byte record headers.
const PCAP_MODIFIED_LE: [u8; 4] = [0x34, 0xcd, 0xb2, 0xa1];
const PCAP_MODIFIED_BE: [u8; 4] = [0xa1, 0xb2, 0xcd, 0x34];

const PCAP_HEADER_LEN: usize = 24;
/// Where the packet bytes start in an Enhanced Packet Block and in an
/// obsolete Packet Block (type, length, 20 bytes of fields).
const EPB_DATA_OFFSET: usize = 28;
const PB_DATA_OFFSET: usize = 28;
/// Where they start in a Simple Packet Block (type, length, original length).
const SPB_DATA_OFFSET: usize = 12;
/// Block type, block length and byte-order magic of a Section Header Block.
const SHB_PREFIX_LEN: usize = 12;

/// One input of [`Reader::from_sources`].
pub struct Source {
    /// Names the input in [`FileFacts::path`] and in errors.
    pub label: PathBuf,
    pub reader: Box<dyn Read>,
    /// Its size in bytes, if known (for [`Reader::progress`]).
    pub len: Option<u64>,
}

/// One captured packet, its bytes borrowed from the [`Reader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Index into [`Reader::files`].
    pub file: usize,
    /// Index into that file's [`FileFacts::interfaces`].
    pub interface: usize,
    pub link_type: Linktype,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// Length of the packet on the wire.
    pub orig_len: u32,
    /// The captured bytes: shorter than `orig_len` when the snap length cut
    /// the packet.
    pub data: &'a [u8],
}

/// What one input file is and what reading it found so far.
#[derive(Debug, Clone)]
pub struct FileFacts {
    pub path: PathBuf,
    pub format: Format,
    /// Every interface of every section, in order of declaration (pcapng
    /// numbers them per section; here they are numbered over the file). A
    /// pcap file has exactly one.
    pub interfaces: Vec<InterfaceFacts>,
    /// Packets read from this file.
    pub packets: u64,
    /// Bytes of complete blocks read, headers included.
    pub bytes_read: u64,
    /// Earliest packet timestamp read (files are not always in order).
    pub first_ts_ns: Option<i64>,
    /// Latest packet timestamp read.
    pub last_ts_ns: Option<i64>,
    /// Why reading stopped before the end of the file, if it did.
    pub error: Option<ReadError>,
}

/// The container format of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pcap {
        /// Timestamps in nanoseconds rather than microseconds.
        nanosecond: bool,
        big_endian: bool,
    },
    PcapNg {
        /// The byte order of the first section.
        big_endian: bool,
    },
}

impl Format {
    /// `pcap` or `pcapng`.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Pcap { .. } => "pcap",
            Format::PcapNg { .. } => "pcapng",
        }
    }
}

/// One capture interface: a pcap file's header, or a pcapng Interface
/// Description Block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceFacts {
    pub link_type: Linktype,
    /// 0 means no limit.
    pub snaplen: u32,
    /// The `if_name` option (pcapng only).
    pub name: Option<String>,
    /// Packets read on this interface.
    pub packets: u64,
    /// From the interface's last Interface Statistics Block (pcapng only).
    pub stats: Option<InterfaceStats>,
}

/// From the last Interface Statistics Block of that interface (pcapng only).
/// A counter the block does not carry is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// `isb_ifrecv`: packets received by the interface.
    pub received: Option<u64>,
    /// `isb_ifdrop`: packets the interface dropped (no buffer space).
    pub dropped: Option<u64>,
    /// `isb_filteraccept`: packets the capture filter accepted.
    pub filter_accepted: Option<u64>,
    /// `isb_osdrop`: packets the operating system dropped.
    pub os_dropped: Option<u64>,
    /// `isb_usrdeliv`: packets delivered to the capturing program.
    pub delivered: Option<u64>,
}

/// Why a file could not be opened as a capture.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be opened, or reading its first bytes failed.
    #[error("cannot open {}: {error}", .path.display())]
    Io { path: PathBuf, error: io::Error },
    /// The file has no bytes at all.
    #[error("{} is empty", .path.display())]
    Empty { path: PathBuf },
    /// The first bytes are neither a pcap magic number nor a pcapng Section
    /// Header Block.
    #[error("{} is not a pcap or pcapng file (starts with 0x{})", .path.display(), hex(.start))]
    NotCapture { path: PathBuf, start: Vec<u8> },
    /// The magic number is right but the file header is cut short or
    /// damaged.
    #[error("{} has a damaged {format} file header: {detail}", .path.display())]
    BadHeader {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },
}

/// Why reading a file stopped before its end. `packets` is how many packets
/// were read from the file before; `offset` is where the record at fault
/// starts, and every byte before it was read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// The file ends inside a record: usually a capture still being written
    /// or killed before it could flush.
    #[error("file ends in the middle of a record after {packets} packets ({offset} bytes read)")]
    Truncated { packets: u64, offset: u64 },
    /// A block whose length or contents cannot be right: reading cannot
    /// find the next block after it.
    #[error("corrupt block at byte {offset} after {packets} packets: {detail}")]
    Corrupt {
        packets: u64,
        offset: u64,
        detail: String,
    },
    /// Reading the underlying file failed.
    #[error("read error at byte {offset} after {packets} packets: {error}")]
    Io {
        packets: u64,
        offset: u64,
        error: Arc<io::Error>,
    },
}

/// Packets from one or several capture files, in timestamp order.
pub struct Reader {
    files: Vec<FileFacts>,
    inputs: Vec<Input>,
    total_len: Option<u64>,
    started: bool,
    /// The file whose head packet was lent out last: it moves on at the
    /// next call, once the borrow has ended.
    lent: Option<usize>,
}

impl Reader {
    /// Opens every file; a missing file or one that is not pcap/pcapng gives
    /// OpenError naming the path (one-line message).
    pub fn open(paths: &[PathBuf]) -> Result<Reader, OpenError> {
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let file = File::open(path).map_err(|error| OpenError::Io {
                path: path.clone(),
                error,
            })?;
            let len = file.metadata().ok().map(|m| m.len());
            sources.push(Source {
                label: path.clone(),
                reader: Box::new(file),
                len,
            });
        }
        Reader::from_sources(sources)
    }

    /// Same over arbitrary byte sources (used by tests and the fuzz target).
    pub fn from_sources(sources: Vec<Source>) -> Result<Reader, OpenError> {
        let total_len = sources
            .iter()
            .try_fold(0u64, |total, s| Some(total.saturating_add(s.len?)));
        let mut files = Vec::with_capacity(sources.len());
        let mut inputs = Vec::with_capacity(sources.len());
        for source in sources {
            let (input, facts) = Input::open(source)?;
            inputs.push(input);
            files.push(facts);
        }
        Ok(Reader {
            files,
            inputs,
            total_len,
            started: false,
            lent: None,
        })
    }

    /// Next packet in timestamp order across files (a lending iterator: the
    /// data borrows the reader's buffer until the next call). None when
    /// every file has ended or stopped on an error.
    ///
    /// Each file keeps its next packet in its buffer; the earliest of them
    /// is lent out, the lowest file index winning ties.
    pub fn next_packet(&mut self) -> Option<Packet<'_>> {
        if !self.started {
            self.started = true;
            for (input, facts) in self.inputs.iter_mut().zip(self.files.iter_mut()) {
                input.advance(facts);
            }
        } else if let Some(i) = self.lent.take()
            && let (Some(input), Some(facts)) = (self.inputs.get_mut(i), self.files.get_mut(i))
        {
            input.advance(facts);
        }

        let mut best: Option<(usize, &Head)> = None;
        for (i, input) in self.inputs.iter().enumerate() {
            if let Some(head) = &input.head
                && best.is_none_or(|(_, b)| head.ts_ns < b.ts_ns)
            {
                best = Some((i, head));
            }
        }
        let (file, head) = best?;
        self.lent = Some(file);
        let data = self
            .inputs
            .get(file)?
            .stream
            .data()
            .get(head.start..head.end)
            .unwrap_or_default();
        Some(Packet {
            file,
            interface: head.interface,
            link_type: head.link_type,
            ts_ns: head.ts_ns,
            orig_len: head.orig_len,
            data,
        })
    }

    /// What is known of each file so far, in the order they were given.
    pub fn files(&self) -> &[FileFacts] {
        &self.files
    }

    /// Bytes consumed so far over all files, and the total if known (for a
    /// progress bar).
    pub fn progress(&self) -> (u64, Option<u64>) {
        let read = self.files.iter().map(|f| f.bytes_read).sum();
        (read, self.total_len)
    }
}

/// The next packet of one file, still in that file's buffer.
#[derive(Debug, Clone, Copy)]
struct Head {
    interface: usize,
    link_type: Linktype,
    ts_ns: i64,
    orig_len: u32,
    /// Where the packet's bytes are in the buffer's data.
    start: usize,
    end: usize,
}

/// Reading state of one file.
struct Input {
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

enum Stream {
    Pcap {
        blocks: LegacyPcapReader<Src>,
        big_endian: bool,
        nanosecond: bool,
        /// 16, or 24 in the modified format.
        record_header: usize,
        snaplen: u32,
        link_type: Linktype,
    },
    PcapNg {
        blocks: PcapNGReader<Src>,
        /// Byte order of the current section.
        big_endian: bool,
        /// Index in [`FileFacts::interfaces`] of the current section's
        /// interface 0.
        section_base: usize,
        /// One per interface, in [`FileFacts::interfaces`] order.
        clocks: Vec<Clock>,
    },
}

/// What the next bytes of a file hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
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
    fn name(self) -> &'static str {
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

    /// Smallest valid total length of a pcapng block of this kind.
    fn min_len(self) -> usize {
        match self {
            Kind::PcapRecord | Kind::Other => 12,
            Kind::SectionHeader => 28,
            Kind::InterfaceDescription => 20,
            Kind::EnhancedPacket | Kind::ObsoletePacket => 32,
            Kind::SimplePacket => 16,
            Kind::InterfaceStatistics => 24,
        }
    }
}

impl Input {
    fn open(source: Source) -> Result<(Input, FileFacts), OpenError> {
        let Source {
            label: path,
            mut reader,
            len,
        } = source;
        let initial = len.map_or(INITIAL_BUFFER, |len| {
            usize::try_from(len).map_or(INITIAL_BUFFER, |len| len.clamp(MIN_BUFFER, INITIAL_BUFFER))
        });
        let mut prefix = Vec::new();
        if let Err(error) = fill(&mut *reader, &mut prefix, SHB_PREFIX_LEN) {
            return Err(OpenError::Io { path, error });
        }
        let Some(magic) = prefix.first_chunk::<4>().copied() else {
            return Err(if prefix.is_empty() {
                OpenError::Empty { path }
            } else {
                OpenError::NotCapture {
                    path,
                    start: prefix,
                }
            });
        };

        let io_error = Rc::new(Cell::new(None));
        let bad_header = |path, format, detail: &str| OpenError::BadHeader {
            path,
            format,
            detail: detail.to_owned(),
        };
        let (stream, format, interfaces, capacity) = match magic {
            PCAP_LE_US | PCAP_LE_NS | PCAP_BE_US | PCAP_BE_NS | PCAP_MODIFIED_LE => {
                if let Err(error) = fill(&mut *reader, &mut prefix, PCAP_HEADER_LEN) {
                    return Err(OpenError::Io { path, error });
                }
                if prefix.len() < PCAP_HEADER_LEN {
                    return Err(bad_header(
                        path,
                        "pcap",
                        "the file ends inside its 24-byte header",
                    ));
                }
                let src = Src::new(prefix, reader, &io_error);
                let mut blocks = match LegacyPcapReader::new(initial, src) {
                    Ok(blocks) => blocks,
                    Err(e) => return Err(open_failure(path, "pcap", &e, &io_error)),
                };
                let header = match blocks.next() {
                    Ok((_, PcapBlockOwned::LegacyHeader(header))) => header,
                    _ => return Err(bad_header(path, "pcap", "the header does not parse")),
                };
                blocks.consume_noshift(PCAP_HEADER_LEN);
                // The upper bits of the link type field carry FCS facts.
                let link_type = Linktype(header.network.0 & 0x03ff_ffff);
                let big_endian = header.is_bigendian();
                let nanosecond = header.is_nanosecond_precision();
                let stream = Stream::Pcap {
                    blocks,
                    big_endian,
                    nanosecond,
                    record_header: if header.is_modified_format() { 24 } else { 16 },
                    snaplen: header.snaplen,
                    link_type,
                };
                let interface = InterfaceFacts {
                    link_type,
                    snaplen: header.snaplen,
                    name: None,
                    packets: 0,
                    stats: None,
                };
                let format = Format::Pcap {
                    nanosecond,
                    big_endian,
                };
                (stream, format, vec![interface], initial)
            }
            PCAP_MODIFIED_BE => {
                return Err(bad_header(
                    path,
                    "pcap",
                    "big-endian modified pcap is not supported",
                ));
            }
            _ if u32::from_le_bytes(magic) == SHB_MAGIC => {
                let shb_len = match ng_frame(&prefix, false) {
                    Ok(Some((len, _))) => len,
                    Ok(None) => {
                        return Err(bad_header(
                            path,
                            "pcapng",
                            "the file ends inside its section header",
                        ));
                    }
                    Err(detail) => return Err(bad_header(path, "pcapng", &detail)),
                };
                if let Err(error) = fill(&mut *reader, &mut prefix, shb_len) {
                    return Err(OpenError::Io { path, error });
                }
                if prefix.len() < shb_len {
                    return Err(bad_header(
                        path,
                        "pcapng",
                        "the file ends inside its section header",
                    ));
                }
                // ng_frame checked the byte-order magic.
                let big_endian = prefix.get(8..12) == Some(&BOM_MAGIC.to_be_bytes()[..]);
                let src = Src::new(prefix, reader, &io_error);
                // ng_frame held shb_len to MAX_BLOCK.
                let capacity = initial.max(shb_len);
                let blocks = match PcapNGReader::new(capacity, src) {
                    Ok(blocks) => blocks,
                    Err(e) => return Err(open_failure(path, "pcapng", &e, &io_error)),
                };
                let stream = Stream::PcapNg {
                    blocks,
                    big_endian,
                    section_base: 0,
                    clocks: Vec::new(),
                };
                (stream, Format::PcapNg { big_endian }, Vec::new(), capacity)
            }
            _ => {
                prefix.truncate(4);
                return Err(OpenError::NotCapture {
                    path,
                    start: prefix,
                });
            }
        };
        let bytes_read = match stream {
            Stream::Pcap { .. } => PCAP_HEADER_LEN as u64,
            Stream::PcapNg { .. } => 0,
        };
        let input = Input {
            stream,
            capacity,
            pending: 0,
            head: None,
            last_ts_ns: None,
            done: false,
            io_error,
        };
        let facts = FileFacts {
            path,
            format,
            interfaces,
            packets: 0,
            bytes_read,
            first_ts_ns: None,
            last_ts_ns: None,
            error: None,
        };
        Ok((input, facts))
    }

    /// Reads this file's next packet into `head`, or ends the file.
    fn advance(&mut self, facts: &mut FileFacts) {
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
            if self.pending > 0 {
                // Without shifting: the buffer shifts when it is refilled,
                // which then moves only the start of one block.
                self.stream.blocks().consume_noshift(self.pending);
                self.pending = 0;
            }
            let packets = facts.packets;
            let offset = facts.bytes_read;
            let available = self.stream.data().len();
            let frame = self.stream.frame().map_err(|detail| ReadError::Corrupt {
                packets,
                offset,
                detail,
            })?;
            let exhausted = self.stream.blocks().reader_exhausted();
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
                if self.capacity < len {
                    // frame() refused anything over MAX_BLOCK.
                    let grown = len.max(self.capacity.saturating_mul(2)).min(MAX_BLOCK);
                    self.stream.blocks().grow(grown);
                    self.capacity = grown;
                }
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

    fn refill(&mut self, packets: u64, offset: u64) -> Result<(), ReadError> {
        match self.stream.blocks().refill() {
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
            Stream::Pcap {
                blocks,
                nanosecond,
                record_header,
                link_type,
                ..
            } => {
                let record = match blocks.next() {
                    Ok((_, PcapBlockOwned::Legacy(record))) => record,
                    Ok(_) => return Err("not a pcap record".to_owned()),
                    Err(e) => return Err(describe(&e, kind)),
                };
                let frac = i64::from(record.ts_usec) * if *nanosecond { 1 } else { 1_000 };
                // At most about 4.3e18: no overflow.
                let ts_ns = i64::from(record.ts_sec) * 1_000_000_000 + frac;
                Ok(Some(Head {
                    interface: 0,
                    link_type: *link_type,
                    ts_ns,
                    orig_len: record.origlen,
                    start: *record_header,
                    end: *record_header + record.data.len(),
                }))
            }
            Stream::PcapNg {
                blocks,
                big_endian,
                section_base,
                clocks,
            } => {
                if kind == Kind::Other {
                    return Ok(None);
                }
                let block = match blocks.next() {
                    Ok((_, PcapBlockOwned::NG(block))) => block,
                    Ok(_) => return Err("not a pcapng block".to_owned()),
                    Err(e) => return Err(describe(&e, kind)),
                };
                let be = *big_endian;
                match block {
                    Block::SectionHeader(shb) => {
                        *big_endian = shb.big_endian();
                        *section_base = facts.interfaces.len();
                        Ok(None)
                    }
                    Block::InterfaceDescription(idb) => {
                        if facts.interfaces.len() >= MAX_INTERFACES {
                            return Err(format!("more than {MAX_INTERFACES} interfaces"));
                        }
                        let options = IdbOptions::parse(&idb.options, be);
                        let Some(clock) = Clock::new(options.tsresol, options.tsoffset_s) else {
                            return Err(format!(
                                "interface {} has an unusable if_tsresol 0x{:02x}",
                                facts.interfaces.len().saturating_sub(*section_base),
                                options.tsresol
                            ));
                        };
                        facts.interfaces.push(InterfaceFacts {
                            link_type: idb.linktype,
                            snaplen: idb.snaplen,
                            name: options.name,
                            packets: 0,
                            stats: None,
                        });
                        clocks.push(clock);
                        Ok(None)
                    }
                    Block::EnhancedPacket(epb) => {
                        let (interface, link_type, clock) =
                            interface_at(facts, clocks, *section_base, epb.if_id, kind)?;
                        let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                        let len = (epb.caplen as usize).min(epb.data.len());
                        Ok(Some(Head {
                            interface,
                            link_type,
                            ts_ns: clock.ns(ticks),
                            orig_len: epb.origlen,
                            start: EPB_DATA_OFFSET,
                            end: EPB_DATA_OFFSET + len,
                        }))
                    }
                    Block::SimplePacket(spb) => {
                        let (interface, link_type, _) =
                            interface_at(facts, clocks, *section_base, 0, kind)?;
                        // The captured length is not in the block: the
                        // original length cut to the snap length.
                        let mut len = spb.data.len().min(spb.origlen as usize);
                        if let Some(snaplen) = facts
                            .interfaces
                            .get(interface)
                            .map(|i| i.snaplen as usize)
                            .filter(|&s| s > 0)
                        {
                            len = len.min(snaplen);
                        }
                        Ok(Some(Head {
                            interface,
                            link_type,
                            ts_ns: self.last_ts_ns.unwrap_or(0),
                            orig_len: spb.origlen,
                            start: SPB_DATA_OFFSET,
                            end: SPB_DATA_OFFSET + len,
                        }))
                    }
                    Block::Unknown(pb) if kind == Kind::ObsoletePacket => {
                        // Interface (16 bits), drops (16), timestamp high and
                        // low, captured length, original length, data.
                        let field = |at| u32_at(pb.data, at, be);
                        let (Some(if_id), Some(ts_high), Some(ts_low), Some(caplen), Some(origlen)) = (
                            u16_at(pb.data, 0, be),
                            field(4),
                            field(8),
                            field(12),
                            field(16),
                        ) else {
                            return Err(format!("{} too short for its fields", kind.name()));
                        };
                        let caplen = caplen as usize;
                        if caplen > pb.data.len().saturating_sub(PB_DATA_OFFSET - 8) {
                            return Err(format!(
                                "{} of {} bytes claims {caplen} captured bytes",
                                kind.name(),
                                pb.block_len1
                            ));
                        }
                        let (interface, link_type, clock) =
                            interface_at(facts, clocks, *section_base, u32::from(if_id), kind)?;
                        let ticks = (u64::from(ts_high) << 32) | u64::from(ts_low);
                        Ok(Some(Head {
                            interface,
                            link_type,
                            ts_ns: clock.ns(ticks),
                            orig_len: origlen,
                            start: PB_DATA_OFFSET,
                            end: PB_DATA_OFFSET + caplen,
                        }))
                    }
                    Block::InterfaceStatistics(isb) => {
                        let (interface, _, _) =
                            interface_at(facts, clocks, *section_base, isb.if_id, kind)?;
                        let stats = isb_stats(&isb.options, be);
                        if let Some(facts) = facts.interfaces.get_mut(interface) {
                            facts.stats = Some(stats);
                        }
                        Ok(None)
                    }
                    _ => Ok(None),
                }
            }
        }
    }
}

/// The flattened index, link type and clock of `if_id` in the current
/// section, or why there is none.
fn interface_at(
    facts: &FileFacts,
    clocks: &[Clock],
    section_base: usize,
    if_id: u32,
    kind: Kind,
) -> Result<(usize, Linktype, Clock), String> {
    let declared = facts.interfaces.len().saturating_sub(section_base);
    let found = usize::try_from(if_id)
        .ok()
        .and_then(|id| section_base.checked_add(id))
        .and_then(|i| Some((i, facts.interfaces.get(i)?, clocks.get(i)?)));
    match found {
        Some((i, interface, clock)) => Ok((i, interface.link_type, *clock)),
        None => Err(format!(
            "{} on interface {if_id}, but its section declares {declared} interface(s)",
            kind.name()
        )),
    }
}

impl Stream {
    fn blocks(&mut self) -> &mut dyn PcapReaderIterator {
        match self {
            Stream::Pcap { blocks, .. } => blocks,
            Stream::PcapNg { blocks, .. } => blocks,
        }
    }

    fn data(&self) -> &[u8] {
        match self {
            Stream::Pcap { blocks, .. } => blocks.data(),
            Stream::PcapNg { blocks, .. } => blocks.data(),
        }
    }

    /// Length and kind of the block at the start of the buffer; `None`
    /// while its header is not all there; `Err` when the header cannot be
    /// right.
    fn frame(&self) -> Result<Option<(usize, Kind)>, String> {
        match self {
            Stream::Pcap {
                blocks,
                big_endian,
                record_header,
                snaplen,
                ..
            } => {
                let data = blocks.data();
                if data.len() < *record_header {
                    return Ok(None);
                }
                let Some(caplen) = u32_at(data, 8, *big_endian) else {
                    return Ok(None);
                };
                if caplen > (*snaplen).max(PLAUSIBLE_CAPLEN)
                    || caplen as usize > MAX_BLOCK - *record_header
                {
                    return Err(format!(
                        "record claims {caplen} captured bytes, with a snap length of {snaplen}"
                    ));
                }
                Ok(Some((*record_header + caplen as usize, Kind::PcapRecord)))
            }
            Stream::PcapNg {
                blocks, big_endian, ..
            } => ng_frame(blocks.data(), *big_endian),
        }
    }
}

/// Length and kind of the pcapng block at the start of `data`, in a section
/// of the given byte order (a Section Header Block sets its own).
fn ng_frame(data: &[u8], big_endian: bool) -> Result<Option<(usize, Kind)>, String> {
    let Some(type_le) = u32_at(data, 0, false) else {
        return Ok(None);
    };
    let (be, kind) = if type_le == SHB_MAGIC {
        // The type reads the same in both orders; the section's order is
        // in its byte-order magic.
        let Some(bom) = u32_at(data, 8, false) else {
            return Ok(None);
        };
        if bom == BOM_MAGIC {
            (false, Kind::SectionHeader)
        } else if bom == BOM_MAGIC.swap_bytes() {
            (true, Kind::SectionHeader)
        } else {
            return Err(format!(
                "section header with an unknown byte-order magic 0x{bom:08x}"
            ));
        }
    } else {
        let kind = match u32_at(data, 0, big_endian) {
            Some(IDB_MAGIC) => Kind::InterfaceDescription,
            Some(EPB_MAGIC) => Kind::EnhancedPacket,
            Some(SPB_MAGIC) => Kind::SimplePacket,
            Some(PB_MAGIC) => Kind::ObsoletePacket,
            Some(ISB_MAGIC) => Kind::InterfaceStatistics,
            _ => Kind::Other,
        };
        (big_endian, kind)
    };
    let Some(len) = u32_at(data, 4, be) else {
        return Ok(None);
    };
    let len = len as usize;
    if len < kind.min_len() {
        return Err(format!(
            "{} with length {len}, less than the {} its fields take",
            kind.name(),
            kind.min_len()
        ));
    }
    if !len.is_multiple_of(4) {
        return Err(format!(
            "{} with length {len}, not a multiple of 4",
            kind.name()
        ));
    }
    if len > MAX_BLOCK {
        return Err(format!(
            "{} with length {len}, over the {MAX_BLOCK}-byte limit",
            kind.name()
        ));
    }
    if let Some(trailer) = u32_at(data, len - 4, be)
        && trailer as usize != len
    {
        return Err(format!(
            "{} with length {len} at its start but {trailer} at its end",
            kind.name()
        ));
    }
    Ok(Some((len, kind)))
}

fn u16_at(data: &[u8], at: usize, big_endian: bool) -> Option<u16> {
    let bytes = *data.get(at..)?.first_chunk::<2>()?;
    Some(if big_endian {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    })
}

fn u32_at(data: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let bytes = *data.get(at..)?.first_chunk::<4>()?;
    Some(if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    })
}

fn u64_option(option: &PcapNGOption, big_endian: bool) -> Option<u64> {
    if option.len != 8 {
        return None;
    }
    let bytes = *option.value().first_chunk::<8>()?;
    Some(if big_endian {
        u64::from_be_bytes(bytes)
    } else {
        u64::from_le_bytes(bytes)
    })
}

/// The options of an Interface Description Block this module uses.
struct IdbOptions {
    name: Option<String>,
    tsresol: u8,
    tsoffset_s: i64,
}

impl IdbOptions {
    fn parse(options: &[PcapNGOption], big_endian: bool) -> IdbOptions {
        let mut parsed = IdbOptions {
            name: None,
            // Microseconds unless said otherwise.
            tsresol: 6,
            tsoffset_s: 0,
        };
        for option in options {
            match option.code.0 {
                // if_name
                2 => {
                    if let Ok(bytes) = option.as_bytes() {
                        let bytes = bytes.get(..MAX_NAME).unwrap_or(bytes);
                        parsed.name = Some(String::from_utf8_lossy(bytes).into_owned());
                    }
                }
                // if_tsresol
                9 if option.len == 1 => {
                    if let Some(&v) = option.value().first() {
                        parsed.tsresol = v;
                    }
                }
                // if_tsoffset
                14 => {
                    if let Some(v) = u64_option(option, big_endian) {
                        parsed.tsoffset_s = v as i64;
                    }
                }
                _ => {}
            }
        }
        parsed
    }
}

fn isb_stats(options: &[PcapNGOption], big_endian: bool) -> InterfaceStats {
    let mut stats = InterfaceStats::default();
    for option in options {
        let Some(value) = u64_option(option, big_endian) else {
            continue;
        };
        match option.code.0 {
            4 => stats.received = Some(value),
            5 => stats.dropped = Some(value),
            6 => stats.filter_accepted = Some(value),
            7 => stats.os_dropped = Some(value),
            8 => stats.delivered = Some(value),
            _ => {}
        }
    }
    stats
}

/// Turns a pcapng interface's timestamp units into Unix nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Clock {
    scale: Scale,
    /// `if_tsoffset`, in nanoseconds.
    offset_ns: i128,
}

#[derive(Debug, Clone, Copy)]
enum Scale {
    /// Units of 10^-n s with n <= 9.
    NsPerTick(u64),
    /// Units of 10^-n s with n > 9.
    TicksPerNs(u64),
    /// Units of 2^-n s: this many per second.
    PerSecond(u64),
}

impl Clock {
    /// `None` for a resolution finer than 10^-19 s or 2^-63 s.
    fn new(tsresol: u8, tsoffset_s: i64) -> Option<Clock> {
        let exponent = u32::from(tsresol & 0x7f);
        let scale = if tsresol & 0x80 == 0 {
            match exponent {
                0..=9 => Scale::NsPerTick(10u64.pow(9 - exponent)),
                10..=19 => Scale::TicksPerNs(10u64.pow(exponent - 9)),
                _ => return None,
            }
        } else {
            Scale::PerSecond(1u64.checked_shl(exponent).filter(|_| exponent <= 63)?)
        };
        Some(Clock {
            scale,
            offset_ns: i128::from(tsoffset_s) * 1_000_000_000,
        })
    }

    fn ns(&self, ticks: u64) -> i64 {
        let since_offset = match self.scale {
            Scale::NsPerTick(k) => i128::from(ticks) * i128::from(k),
            Scale::TicksPerNs(d) => i128::from(ticks / d),
            Scale::PerSecond(n) => i128::from(ticks) * 1_000_000_000 / i128::from(n),
        };
        let ns = since_offset + self.offset_ns;
        i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
    }
}

/// A file's bytes: the ones read while opening, then the rest. Keeps the
/// I/O error that pcap-parser reduces to `PcapError::ReadError`.
struct Src {
    prefix: Cursor<Vec<u8>>,
    inner: Box<dyn Read>,
    error: Rc<Cell<Option<io::Error>>>,
}

impl Src {
    fn new(prefix: Vec<u8>, inner: Box<dyn Read>, error: &Rc<Cell<Option<io::Error>>>) -> Src {
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

/// Reads until `buf` holds `want` bytes or the input ends.
fn fill(reader: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> io::Result<()> {
    let missing = want.saturating_sub(buf.len()) as u64;
    reader.take(missing).read_to_end(buf)?;
    Ok(())
}

/// Why pcap-parser refused a file header that [`Input::open`] had read in
/// full: reading failed, or the header does not parse.
fn open_failure(
    path: PathBuf,
    format: &'static str,
    error: &PcapError<&[u8]>,
    io_error: &Rc<Cell<Option<io::Error>>>,
) -> OpenError {
    match io_error.take() {
        Some(error) => OpenError::Io { path, error },
        None => OpenError::BadHeader {
            path,
            format,
            detail: match error {
                PcapError::NomError(_, e) | PcapError::OwnedNomError(_, e) => {
                    format!("it does not parse ({e:?})")
                }
                _ => "it does not parse".to_owned(),
            },
        },
    }
}

/// A parse failure of a complete block, without its bytes.
fn describe(error: &PcapError<&[u8]>, kind: Kind) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet with its bytes copied, to collect a whole file in a test.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Owned {
        file: usize,
        interface: usize,
        link_type: i32,
        ts_ns: i64,
        orig_len: u32,
        data: Vec<u8>,
    }

    fn source(bytes: Vec<u8>) -> Source {
        let len = Some(bytes.len() as u64);
        Source {
            label: PathBuf::from("test.pcap"),
            reader: Box::new(Cursor::new(bytes)),
            len,
        }
    }

    /// Gives at most `step` bytes per read, as a pipe may.
    struct Trickle {
        bytes: Cursor<Vec<u8>>,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step);
            self.bytes.read(&mut buf[..n])
        }
    }

    fn trickle(bytes: Vec<u8>, step: usize) -> Source {
        Source {
            label: PathBuf::from("trickle.pcapng"),
            reader: Box::new(Trickle {
                bytes: Cursor::new(bytes),
                step,
            }),
            len: None,
        }
    }

    fn collect(reader: &mut Reader) -> Vec<Owned> {
        let mut out = Vec::new();
        while let Some(p) = reader.next_packet() {
            out.push(Owned {
                file: p.file,
                interface: p.interface,
                link_type: p.link_type.0,
                ts_ns: p.ts_ns,
                orig_len: p.orig_len,
                data: p.data.to_vec(),
            });
        }
        out
    }

    fn read_sources(sources: Vec<Source>) -> (Vec<Owned>, Vec<FileFacts>) {
        let mut reader = Reader::from_sources(sources).expect("opens");
        let packets = collect(&mut reader);
        (packets, reader.files().to_vec())
    }

    fn read_one(bytes: Vec<u8>) -> (Vec<Owned>, FileFacts) {
        let (packets, mut files) = read_sources(vec![source(bytes)]);
        (packets, files.remove(0))
    }

    fn open_err(bytes: Vec<u8>) -> OpenError {
        match Reader::from_sources(vec![source(bytes)]) {
            Ok(_) => panic!("opened"),
            Err(e) => e,
        }
    }

    // --- writers ---

    fn put16(out: &mut Vec<u8>, be: bool, v: u16) {
        out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
    }

    fn put32(out: &mut Vec<u8>, be: bool, v: u32) {
        out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
    }

    fn put64(out: &mut Vec<u8>, be: bool, v: u64) {
        out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
    }

    fn pad4(out: &mut Vec<u8>) {
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    fn pcap_header(nanosecond: bool, be: bool, snaplen: u32, link_type: u32) -> Vec<u8> {
        let mut out = Vec::new();
        put32(
            &mut out,
            be,
            if nanosecond { 0xa1b2_3c4d } else { 0xa1b2_c3d4 },
        );
        put16(&mut out, be, 2);
        put16(&mut out, be, 4);
        put32(&mut out, be, 0);
        put32(&mut out, be, 0);
        put32(&mut out, be, snaplen);
        put32(&mut out, be, link_type);
        out
    }

    fn pcap_record(out: &mut Vec<u8>, be: bool, sec: u32, frac: u32, data: &[u8], orig: u32) {
        put32(out, be, sec);
        put32(out, be, frac);
        put32(out, be, data.len() as u32);
        put32(out, be, orig);
        out.extend_from_slice(data);
    }

    /// A pcapng image, block by block.
    struct Ng {
        be: bool,
        out: Vec<u8>,
    }

    impl Ng {
        fn new(be: bool) -> Ng {
            let mut ng = Ng {
                be,
                out: Vec::new(),
            };
            ng.shb(be);
            ng
        }

        fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Ng {
            let mut body = body.to_vec();
            pad4(&mut body);
            let len = 12 + body.len() as u32;
            put32(&mut self.out, self.be, block_type);
            put32(&mut self.out, self.be, len);
            self.out.extend_from_slice(&body);
            put32(&mut self.out, self.be, len);
            self
        }

        /// Starts a new section, possibly in the other byte order.
        fn shb(&mut self, be: bool) -> &mut Ng {
            self.be = be;
            let mut body = Vec::new();
            put32(&mut body, be, 0x1a2b_3c4d);
            put16(&mut body, be, 1);
            put16(&mut body, be, 0);
            put64(&mut body, be, u64::MAX);
            self.block(0x0a0d_0d0a, &body)
        }

        fn options(&self, body: &mut Vec<u8>, options: &[(u16, Vec<u8>)]) {
            for (code, value) in options {
                put16(body, self.be, *code);
                put16(body, self.be, value.len() as u16);
                body.extend_from_slice(value);
                pad4(body);
            }
            if !options.is_empty() {
                put32(body, self.be, 0);
            }
        }

        fn idb(&mut self, link_type: u16, snaplen: u32, options: &[(u16, Vec<u8>)]) -> &mut Ng {
            let mut body = Vec::new();
            put16(&mut body, self.be, link_type);
            put16(&mut body, self.be, 0);
            put32(&mut body, self.be, snaplen);
            self.options(&mut body, options);
            self.block(1, &body)
        }

        fn epb(&mut self, if_id: u32, ticks: u64, data: &[u8], orig: u32) -> &mut Ng {
            let mut body = Vec::new();
            put32(&mut body, self.be, if_id);
            put32(&mut body, self.be, (ticks >> 32) as u32);
            put32(&mut body, self.be, ticks as u32);
            put32(&mut body, self.be, data.len() as u32);
            put32(&mut body, self.be, orig);
            body.extend_from_slice(data);
            self.block(6, &body)
        }

        fn spb(&mut self, data: &[u8], orig: u32) -> &mut Ng {
            let mut body = Vec::new();
            put32(&mut body, self.be, orig);
            body.extend_from_slice(data);
            self.block(3, &body)
        }

        fn isb(&mut self, if_id: u32, ticks: u64, options: &[(u16, Vec<u8>)]) -> &mut Ng {
            let mut body = Vec::new();
            put32(&mut body, self.be, if_id);
            put32(&mut body, self.be, (ticks >> 32) as u32);
            put32(&mut body, self.be, ticks as u32);
            self.options(&mut body, options);
            self.block(5, &body)
        }

        fn u64_opt(&self, v: u64) -> Vec<u8> {
            let mut out = Vec::new();
            put64(&mut out, self.be, v);
            out
        }

        fn bytes(&self) -> Vec<u8> {
            self.out.clone()
        }
    }

    const SEC: i64 = 1_000_000_000;

    // --- pcap ---

    #[test]
    fn pcap_microsecond_little_endian() {
        #[rustfmt::skip]
        let bytes = vec![
            0xd4, 0xc3, 0xb2, 0xa1, // magic: microseconds, little-endian
            0x02, 0x00, 0x04, 0x00, // version 2.4
            0x00, 0x00, 0x00, 0x00, // thiszone
            0x00, 0x00, 0x00, 0x00, // sigfigs
            0x60, 0x00, 0x00, 0x00, // snaplen 96
            0x01, 0x00, 0x00, 0x00, // Ethernet
            // record 1: 1700000000.000001, 4 of 1066 bytes
            0x00, 0xf1, 0x53, 0x65, 0x01, 0x00, 0x00, 0x00,
            0x04, 0x00, 0x00, 0x00, 0x2a, 0x04, 0x00, 0x00,
            0xde, 0xad, 0xbe, 0xef,
            // record 2: 1700000001.999999, 2 of 2 bytes
            0x01, 0xf1, 0x53, 0x65, 0x3f, 0x42, 0x0f, 0x00,
            0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
            0x01, 0x02,
        ];
        let total = bytes.len() as u64;
        let (packets, facts) = read_one(bytes);
        assert_eq!(
            packets,
            vec![
                Owned {
                    file: 0,
                    interface: 0,
                    link_type: 1,
                    ts_ns: 1_700_000_000 * SEC + 1_000,
                    orig_len: 1066,
                    data: vec![0xde, 0xad, 0xbe, 0xef],
                },
                Owned {
                    file: 0,
                    interface: 0,
                    link_type: 1,
                    ts_ns: 1_700_000_001 * SEC + 999_999_000,
                    orig_len: 2,
                    data: vec![1, 2],
                },
            ]
        );
        assert_eq!(
            facts.format,
            Format::Pcap {
                nanosecond: false,
                big_endian: false
            }
        );
        assert_eq!(facts.format.name(), "pcap");
        assert_eq!(facts.interfaces.len(), 1);
        assert_eq!(facts.interfaces[0].snaplen, 96);
        assert_eq!(facts.interfaces[0].link_type, Linktype(1));
        assert_eq!(facts.interfaces[0].packets, 2);
        assert_eq!(facts.packets, 2);
        assert_eq!(facts.bytes_read, total);
        assert_eq!(facts.first_ts_ns, Some(1_700_000_000 * SEC + 1_000));
        assert_eq!(facts.last_ts_ns, Some(1_700_000_001 * SEC + 999_999_000));
        assert!(facts.error.is_none());
    }

    #[test]
    fn pcap_nanosecond_big_endian() {
        #[rustfmt::skip]
        let bytes = vec![
            0xa1, 0xb2, 0x3c, 0x4d, // magic: nanoseconds, big-endian
            0x00, 0x02, 0x00, 0x04,
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0xff, 0xff, // snaplen 65535
            0x00, 0x00, 0x00, 0x71, // Linux SLL (113)
            // 1700000000.123456789, 3 of 60 bytes
            0x65, 0x53, 0xf1, 0x00, 0x07, 0x5b, 0xcd, 0x15,
            0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x3c,
            0xaa, 0xbb, 0xcc,
        ];
        let (packets, facts) = read_one(bytes);
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].ts_ns, 1_700_000_000 * SEC + 123_456_789);
        assert_eq!(packets[0].link_type, 113);
        assert_eq!(packets[0].orig_len, 60);
        assert_eq!(packets[0].data, vec![0xaa, 0xbb, 0xcc]);
        assert_eq!(
            facts.format,
            Format::Pcap {
                nanosecond: true,
                big_endian: true
            }
        );
        assert_eq!(facts.interfaces[0].snaplen, 65535);
        assert!(facts.error.is_none());
    }

    // --- pcapng ---

    #[test]
    fn pcapng_interfaces_with_own_link_type_resolution_and_offset() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[(2, b"lo".to_vec()), (9, vec![6])])
            // Nanoseconds, clock 100 s behind.
            .idb(
                0,
                262_144,
                &[(9, vec![9]), (14, 100u64.to_le_bytes().to_vec())],
            )
            .epb(0, 1_700_000_000_000_001, b"eth", 1066)
            .epb(1, 1_699_999_900_000_000_007, b"null", 1056)
            .epb(0, 1_700_000_000_000_002, b"eth2", 1066);
        let (packets, facts) = read_one(ng.bytes());
        let summary: Vec<_> = packets
            .iter()
            .map(|p| {
                (
                    p.interface,
                    p.link_type,
                    p.ts_ns,
                    p.orig_len,
                    p.data.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, 1, 1_700_000_000 * SEC + 1_000, 1066, b"eth".to_vec()),
                (1, 0, 1_700_000_000 * SEC + 7, 1056, b"null".to_vec()),
                (0, 1, 1_700_000_000 * SEC + 2_000, 1066, b"eth2".to_vec()),
            ]
        );
        assert_eq!(facts.format, Format::PcapNg { big_endian: false });
        assert_eq!(facts.format.name(), "pcapng");
        assert_eq!(facts.interfaces.len(), 2);
        assert_eq!(facts.interfaces[0].name.as_deref(), Some("lo"));
        assert_eq!(facts.interfaces[1].name, None);
        assert_eq!(facts.interfaces[1].snaplen, 262_144);
        assert_eq!(facts.interfaces[0].packets, 2);
        assert_eq!(facts.interfaces[1].packets, 1);
        assert_eq!(facts.first_ts_ns, Some(1_700_000_000 * SEC + 7));
        assert_eq!(facts.last_ts_ns, Some(1_700_000_000 * SEC + 2_000));
        assert!(facts.error.is_none());
    }

    #[test]
    fn pcapng_big_endian_options_read_in_section_order() {
        let mut ng = Ng::new(true);
        let offset = ng.u64_opt(3);
        let recv = ng.u64_opt(1234);
        ng.idb(1, 0, &[(14, offset)])
            .epb(0, 5_000_000, b"x", 1)
            .isb(0, 0, &[(4, recv)]);
        let (packets, facts) = read_one(ng.bytes());
        assert_eq!(packets[0].ts_ns, 8 * SEC);
        assert_eq!(facts.format, Format::PcapNg { big_endian: true });
        assert_eq!(
            facts.interfaces[0].stats.and_then(|s| s.received),
            Some(1234)
        );
    }

    #[test]
    fn pcapng_power_of_two_resolution() {
        let mut ng = Ng::new(false);
        // 2^-10 s units: 1024 ticks per second.
        ng.idb(1, 0, &[(9, vec![0x80 | 10])])
            .epb(0, 3 * 1024 + 512, b"x", 1);
        let (packets, _) = read_one(ng.bytes());
        assert_eq!(packets[0].ts_ns, 3 * SEC + SEC / 2);
    }

    #[test]
    fn pcapng_simple_packet_block() {
        let mut ng = Ng::new(false);
        ng.idb(1, 4, &[])
            .epb(0, 42_000_000, b"abcd", 100)
            // 100 bytes on the wire, 4 captured (the snap length), padded.
            .spb(b"wxyz", 100);
        let (packets, facts) = read_one(ng.bytes());
        assert_eq!(packets.len(), 2);
        let spb = &packets[1];
        assert_eq!(spb.interface, 0);
        assert_eq!(spb.link_type, 1);
        assert_eq!(spb.orig_len, 100);
        assert_eq!(spb.data, b"wxyz".to_vec());
        assert_eq!(spb.ts_ns, 42 * SEC, "reuses the last timestamp");
        assert_eq!(facts.interfaces[0].packets, 2);

        // Shorter than the snap length: the original length bounds it.
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[]).spb(b"ab", 2);
        let (packets, _) = read_one(ng.bytes());
        assert_eq!(packets[0].data, b"ab".to_vec());
        assert_eq!(packets[0].ts_ns, 0);
    }

    #[test]
    fn pcapng_obsolete_packet_block() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[]);
        let mut body = Vec::new();
        put16(&mut body, false, 0); // interface
        put16(&mut body, false, 0); // drops
        put32(&mut body, false, 0);
        put32(&mut body, false, 2_000_000); // 2 s in microseconds
        put32(&mut body, false, 3);
        put32(&mut body, false, 70);
        body.extend_from_slice(b"pkt");
        ng.block(2, &body);
        let (packets, facts) = read_one(ng.bytes());
        assert!(facts.error.is_none(), "{:?}", facts.error);
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].ts_ns, 2 * SEC);
        assert_eq!(packets[0].orig_len, 70);
        assert_eq!(packets[0].data, b"pkt".to_vec());
    }

    #[test]
    fn pcapng_interface_statistics_last_block_wins() {
        let mut ng = Ng::new(false);
        let (recv1, drop1) = (ng.u64_opt(10), ng.u64_opt(1));
        let (recv2, drop2, osdrop) = (ng.u64_opt(1000), ng.u64_opt(7), ng.u64_opt(3));
        let start = ng.u64_opt(5);
        ng.idb(1, 0, &[])
            .idb(1, 0, &[])
            .isb(0, 0, &[(4, recv1), (5, drop1)])
            .epb(0, 1, b"x", 1)
            .isb(0, 2, &[(4, recv2), (5, drop2), (7, osdrop)])
            // Not a counter: start time (2), and a comment (1).
            .isb(1, 2, &[(1, b"hi".to_vec()), (2, start)]);
        let (packets, facts) = read_one(ng.bytes());
        assert_eq!(packets.len(), 1);
        assert_eq!(
            facts.interfaces[0].stats,
            Some(InterfaceStats {
                received: Some(1000),
                dropped: Some(7),
                filter_accepted: None,
                os_dropped: Some(3),
                delivered: None,
            })
        );
        assert_eq!(facts.interfaces[1].stats, Some(InterfaceStats::default()));
        assert!(facts.error.is_none());
    }

    #[test]
    fn pcapng_sections_number_interfaces_afresh() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[])
            .epb(0, 1, b"a", 1)
            // The next section is big-endian, in microseconds as default.
            .shb(true)
            .idb(113, 0, &[])
            .idb(0, 0, &[])
            .epb(1, 2, b"b", 1)
            .epb(0, 3, b"c", 1);
        let (packets, facts) = read_one(ng.bytes());
        let seen: Vec<_> = packets
            .iter()
            .map(|p| (p.interface, p.link_type, p.ts_ns))
            .collect();
        assert_eq!(seen, vec![(0, 1, 1_000), (2, 0, 2_000), (1, 113, 3_000)]);
        assert_eq!(facts.interfaces.len(), 3);
        assert_eq!(facts.format, Format::PcapNg { big_endian: false });
        assert!(facts.error.is_none());
    }

    #[test]
    fn pcapng_undeclared_interface_is_corrupt() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[]).epb(0, 1, b"a", 1);
        let at = ng.out.len() as u64;
        ng.epb(1, 2, b"b", 1).epb(0, 3, b"c", 1);
        let (packets, facts) = read_one(ng.bytes());
        assert_eq!(packets.len(), 1);
        match facts.error {
            Some(ReadError::Corrupt {
                packets: 1,
                offset,
                ref detail,
            }) if offset == at => assert!(detail.contains("interface 1"), "{detail}"),
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_blocks_are_skipped() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[])
            .block(4, &[0, 0, 0, 0]) // name resolution, empty
            .block(0x0000_0bad, &[1, 2, 3, 4, 5, 6, 7, 8]) // custom
            .block(0x1234_5678, &[]) // unknown
            .epb(0, 1, b"a", 1);
        let total = ng.out.len() as u64;
        let (packets, facts) = read_one(ng.bytes());
        assert_eq!(packets.len(), 1);
        assert_eq!(facts.bytes_read, total);
        assert!(facts.error.is_none());
    }

    // --- merging ---

    #[test]
    fn files_merge_by_timestamp() {
        let mut a = pcap_header(false, false, 65535, 1);
        for (sec, tag) in [(1, 1u8), (3, 3), (5, 5)] {
            pcap_record(&mut a, false, sec, 0, &[tag], 1);
        }
        let mut b = Ng::new(false);
        b.idb(0, 0, &[(9, vec![0])]);
        for (sec, tag) in [(2u64, 20u8), (3, 30), (4, 40)] {
            b.epb(0, sec, &[tag], 1);
        }
        let (packets, files) = read_sources(vec![source(a), source(b.bytes())]);
        let order: Vec<_> = packets
            .iter()
            .map(|p| (p.file, p.ts_ns / SEC, p.data[0], p.link_type))
            .collect();
        assert_eq!(
            order,
            vec![
                (0, 1, 1, 1),
                (1, 2, 20, 0),
                (0, 3, 3, 1), // tie: the lower file index first
                (1, 3, 30, 0),
                (1, 4, 40, 0),
                (0, 5, 5, 1),
            ]
        );
        assert_eq!(files[0].packets, 3);
        assert_eq!(files[1].packets, 3);
    }

    #[test]
    fn a_damaged_file_stops_alone() {
        let mut a = pcap_header(false, false, 65535, 1);
        pcap_record(&mut a, false, 1, 0, b"a", 1);
        pcap_record(&mut a, false, 3, 0, b"a", 1);
        a.truncate(a.len() - 3);
        let mut b = pcap_header(false, false, 65535, 1);
        for sec in [2, 4, 6] {
            pcap_record(&mut b, false, sec, 0, b"b", 1);
        }
        let (packets, files) = read_sources(vec![source(a), source(b)]);
        let secs: Vec<_> = packets.iter().map(|p| (p.file, p.ts_ns / SEC)).collect();
        assert_eq!(secs, vec![(0, 1), (1, 2), (1, 4), (1, 6)]);
        assert!(matches!(
            files[0].error,
            Some(ReadError::Truncated { packets: 1, .. })
        ));
        assert!(files[1].error.is_none());
    }

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

    #[test]
    fn garbage_block_lengths_are_corrupt() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[]).epb(0, 1, b"abc", 3);
        let at = ng.out.len();
        ng.epb(0, 2, b"def", 3);
        for (len, what) in [
            (45u32, "not a multiple of 4"),
            (8, "less than"),
            (0x7fff_fff0, "limit"),
            (32, "at its end"),
        ] {
            let mut bytes = ng.bytes();
            bytes[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
            let (packets, facts) = read_one(bytes);
            assert_eq!(packets.len(), 1);
            let error = facts.error.expect("an error");
            match &error {
                ReadError::Corrupt {
                    packets: 1,
                    offset,
                    detail,
                } if *offset == at as u64 => assert!(detail.contains(what), "{detail}"),
                other => panic!("{other:?}"),
            }
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("corrupt block at byte {at} after 1 packets: "))
            );
        }

        // An enhanced packet block whose captured length overruns it.
        let mut bytes = ng.bytes();
        bytes[at + 20..at + 24].copy_from_slice(&200u32.to_le_bytes());
        let (_, facts) = read_one(bytes);
        assert!(matches!(
            facts.error,
            Some(ReadError::Corrupt { packets: 1, .. })
        ));

        // A pcap record claiming 2 GB.
        let mut bytes = pcap_header(false, false, 65535, 1);
        pcap_record(&mut bytes, false, 1, 0, b"ok", 2);
        pcap_record(&mut bytes, false, 2, 0, b"bad", 3);
        let at = 24 + 16 + 2;
        bytes[at + 8..at + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        let (packets, facts) = read_one(bytes);
        assert_eq!(packets.len(), 1);
        assert!(matches!(
            facts.error,
            Some(ReadError::Corrupt { packets: 1, offset, .. }) if offset == at as u64
        ));
    }

    #[test]
    fn open_errors_name_the_file() {
        let e = open_err(b"\x7fELF\x02\x01\x01\x00rest".to_vec());
        assert!(matches!(e, OpenError::NotCapture { .. }));
        assert_eq!(
            e.to_string(),
            "test.pcap is not a pcap or pcapng file (starts with 0x7f454c46)"
        );

        let e = open_err(Vec::new());
        assert_eq!(e.to_string(), "test.pcap is empty");

        let e = open_err(vec![0xd4, 0xc3]);
        assert!(matches!(e, OpenError::NotCapture { .. }), "{e}");

        let e = open_err(pcap_header(false, false, 96, 1)[..20].to_vec());
        assert!(matches!(e, OpenError::BadHeader { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("test.pcap has a damaged pcap file header")
        );

        let e = open_err(Ng::new(false).bytes()[..20].to_vec());
        assert!(matches!(e, OpenError::BadHeader { .. }), "{e}");

        let missing = PathBuf::from("/nonexistent/udplab/none.pcap");
        let e = match Reader::open(std::slice::from_ref(&missing)) {
            Ok(_) => panic!("opened"),
            Err(e) => e,
        };
        let text = e.to_string();
        assert!(
            text.starts_with("cannot open /nonexistent/udplab/none.pcap: No such file"),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn a_section_header_alone_is_an_empty_capture() {
        let (packets, facts) = read_one(Ng::new(false).bytes());
        assert!(packets.is_empty());
        assert!(facts.error.is_none());
        assert!(facts.interfaces.is_empty());
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
        ng.idb(1, 0, &[(2, b"eth0".to_vec())]);
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

    #[test]
    fn pcap_modified_format() {
        let mut bytes = vec![0x34, 0xcd, 0xb2, 0xa1, 2, 0, 4, 0];
        bytes.extend_from_slice(&[0; 8]);
        put32(&mut bytes, false, 65535);
        put32(&mut bytes, false, 1);
        for (sec, data) in [(1, &b"ab"[..]), (2, b"cde")] {
            pcap_record(&mut bytes, false, sec, 5, data, 60);
            // Interface index, protocol, packet type, padding: placed
            // after the data here, moved before it below.
            let at = bytes.len() - data.len();
            let tail = bytes.split_off(at);
            bytes.extend_from_slice(&[0; 8]);
            bytes.extend_from_slice(&tail);
        }
        let (packets, facts) = read_one(bytes);
        assert!(facts.error.is_none(), "{:?}", facts.error);
        let seen: Vec<_> = packets.iter().map(|p| (p.ts_ns, p.data.clone())).collect();
        assert_eq!(
            seen,
            vec![
                (SEC + 5_000, b"ab".to_vec()),
                (2 * SEC + 5_000, b"cde".to_vec())
            ]
        );
    }

    #[test]
    fn progress_counts_bytes_read() {
        let mut bytes = pcap_header(false, false, 65535, 1);
        pcap_record(&mut bytes, false, 1, 0, b"abcd", 4);
        let total = bytes.len() as u64;
        let mut reader = Reader::from_sources(vec![source(bytes)]).expect("opens");
        assert_eq!(reader.progress(), (24, Some(total)));
        while reader.next_packet().is_some() {}
        assert_eq!(reader.progress(), (total, Some(total)));
    }

    #[test]
    fn damaged_input_never_panics() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[(9, vec![9]), (2, b"x".to_vec())])
            .epb(0, 1, b"abcdef", 6)
            .spb(b"gh", 2)
            .isb(0, 2, &[(4, vec![1; 8])])
            .shb(true)
            .idb(0, 0, &[])
            .epb(0, 3, b"ij", 2);
        let image = ng.bytes();
        for cut in 0..image.len() {
            if let Ok(mut reader) = Reader::from_sources(vec![source(image[..cut].to_vec())]) {
                while reader.next_packet().is_some() {}
            }
        }
        for at in 0..image.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bytes = image.clone();
                bytes[at] = value;
                if let Ok(mut reader) = Reader::from_sources(vec![source(bytes)]) {
                    let mut n = 0;
                    while reader.next_packet().is_some() {
                        n += 1;
                    }
                    assert!(n <= 4);
                }
            }
        }
    }

    // --- a real capture ---

    #[test]
    fn lab_sample_capture() {
        let path = PathBuf::from("/work/shared/lab-samples/run-2clients-10MB/run.pcap");
        if !path.exists() {
            eprintln!("skipped: {} is absent", path.display());
            return;
        }
        let mut reader = Reader::open(std::slice::from_ref(&path)).expect("opens");
        let (mut total, mut full, mut last) = (0u64, 0u64, i64::MIN);
        while let Some(p) = reader.next_packet() {
            total += 1;
            assert!(p.ts_ns >= last, "capinfos says it is in time order");
            last = p.ts_ns;
            assert_eq!(p.link_type, Linktype(1));
            assert!(p.data.len() <= 96);
            if p.orig_len == 1066 {
                full += 1;
            }
        }
        let facts = &reader.files()[0];
        assert!(facts.error.is_none(), "{:?}", facts.error);
        // capinfos: 20508 packets, snap length 96, Ethernet.
        assert_eq!(total, 20_508);
        assert_eq!(full, 20_480);
        assert_eq!(facts.packets, 20_508);
        assert_eq!(facts.interfaces[0].snaplen, 96);
        assert_eq!(
            facts.bytes_read,
            std::fs::metadata(&path).expect("size").len()
        );
        assert_eq!(
            reader.progress().0,
            reader.progress().1.expect("size known")
        );
    }
}
