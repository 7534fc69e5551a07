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
//! skipped unparsed.
//!
//! This file owns what the rest of the analyzer sees: [`Reader`] (open
//! paths or byte sources, tell pcap from pcapng by the first bytes, lend
//! packets, progress), [`Packet`], [`FileFacts`] and the errors. The rest:
//! - `input`: one file's reading, whatever its format: the read buffer and
//!   its growth, the loop from block header to complete block to packet,
//!   and the byte source that keeps I/O errors.
//! - `pcap`: the pcap file header and records (both byte orders, micro- and
//!   nanoseconds, the modified format).
//! - `pcapng`: sections, interfaces, packet blocks (EPB, SPB, the obsolete
//!   PB) and Interface Statistics Blocks.
//! - `clock`: a pcapng interface's timestamp units -> Unix nanoseconds.
//! - `merge`: several files' packets in timestamp order.
//! - `testing` (tests only): byte sources and pcap/pcapng image writers.

mod clock;
mod input;
mod merge;
mod pcap;
mod pcapng;
#[cfg(test)]
mod testing;

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use pcap_parser::{Linktype, PcapError};

use self::input::{Input, Stream};
use self::merge::Merge;
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
    merge: Merge,
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
            let (input, facts) = open_source(source)?;
            inputs.push(input);
            files.push(facts);
        }
        Ok(Reader {
            files,
            inputs,
            total_len,
            merge: Merge::default(),
        })
    }

    /// Next packet in timestamp order across files (a lending iterator: the
    /// data borrows the reader's buffer until the next call). None when
    /// every file has ended or stopped on an error.
    pub fn next_packet(&mut self) -> Option<Packet<'_>> {
        let (file, head) = self.merge.next(&mut self.inputs, &mut self.files)?;
        let data = self.inputs.get(file)?.data(&head);
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

/// A file header as a format's `open` read it.
struct Opened {
    stream: Stream,
    format: Format,
    /// A pcap file's one interface; none yet for pcapng, whose interfaces
    /// come in blocks.
    interfaces: Vec<InterfaceFacts>,
    /// The read buffer's size.
    capacity: usize,
    /// Bytes of the file header already consumed.
    bytes_read: u64,
}

/// Opens one input: reads enough of it to tell pcap from pcapng, then its
/// file header.
fn open_source(source: Source) -> Result<(Input, FileFacts), OpenError> {
    let Source {
        label: path,
        mut reader,
        len,
    } = source;
    let initial = initial_buffer(len);
    // Enough for a pcap magic number, and for a pcapng Section Header
    // Block up to the byte-order magic that says how to read its length.
    let mut prefix = Vec::new();
    if let Err(error) = fill(&mut *reader, &mut prefix, crate::pcapng::SHB_BOM_END) {
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
    let opened = if pcap::is_magic(magic) {
        pcap::open(&path, magic, prefix, reader, initial, &io_error)?
    } else if pcapng::is_magic(magic) {
        pcapng::open(&path, prefix, reader, initial, &io_error)?
    } else {
        prefix.truncate(4);
        return Err(OpenError::NotCapture {
            path,
            start: prefix,
        });
    };
    let input = Input::new(opened.stream, opened.capacity, io_error);
    let facts = FileFacts {
        path,
        format: opened.format,
        interfaces: opened.interfaces,
        packets: 0,
        bytes_read: opened.bytes_read,
        first_ts_ns: None,
        last_ts_ns: None,
        error: None,
    };
    Ok((input, facts))
}

/// The read buffer for an input of `len` bytes, if known.
fn initial_buffer(len: Option<u64>) -> usize {
    len.map_or(INITIAL_BUFFER, |len| {
        usize::try_from(len).map_or(INITIAL_BUFFER, |len| len.clamp(MIN_BUFFER, INITIAL_BUFFER))
    })
}

/// Reads until `buf` holds `want` bytes or the input ends.
fn fill(reader: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> io::Result<()> {
    let missing = want.saturating_sub(buf.len()) as u64;
    reader.take(missing).read_to_end(buf)?;
    Ok(())
}

fn bad_header(path: &Path, format: &'static str, detail: &str) -> OpenError {
    OpenError::BadHeader {
        path: path.to_path_buf(),
        format,
        detail: detail.to_owned(),
    }
}

/// Why pcap-parser refused a file header that a format's `open` had read in
/// full: reading failed, or the header does not parse.
fn open_failure(
    path: &Path,
    format: &'static str,
    error: &PcapError<&[u8]>,
    io_error: &Rc<Cell<Option<io::Error>>>,
) -> OpenError {
    let path = path.to_path_buf();
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

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

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
    fn progress_counts_bytes_read() {
        let mut bytes = pcap_header(false, false, 65535, 1);
        pcap_record(&mut bytes, false, 1, 0, b"abcd", 4);
        let total = bytes.len() as u64;
        let mut reader = Reader::from_sources(vec![source(bytes)]).expect("opens");
        assert_eq!(reader.progress(), (24, Some(total)));
        while reader.next_packet().is_some() {}
        assert_eq!(reader.progress(), (total, Some(total)));
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
