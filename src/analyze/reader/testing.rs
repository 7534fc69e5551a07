//! What the reader's tests share: byte sources (whole, or trickling as a
//! pipe does), a whole file read into owned packets, and writers of pcap and
//! pcapng images.

use std::io::{self, Cursor, Read};
use std::path::PathBuf;

use super::pcap::{MAGIC_NS, MAGIC_US};
use super::{FileFacts, OpenError, Reader, Source};
use crate::pcapng::{
    BLOCK_MIN_LEN, BOM_MAGIC, EPB_MAGIC, IDB_MAGIC, ISB_MAGIC, OPT_ENDOFOPT, OptionCode,
    SECTION_LEN_UNSPECIFIED, SHB_MAGIC, SPB_MAGIC, VERSION_MAJOR, VERSION_MINOR,
};

/// A packet with its bytes copied, to collect a whole file in a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Owned {
    pub(super) file: usize,
    pub(super) interface: usize,
    pub(super) link_type: i32,
    pub(super) ts_ns: i64,
    pub(super) orig_len: u32,
    pub(super) data: Vec<u8>,
}

pub(super) const SEC: i64 = 1_000_000_000;

pub(super) fn source(bytes: Vec<u8>) -> Source {
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

pub(super) fn trickle(bytes: Vec<u8>, step: usize) -> Source {
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

pub(super) fn read_sources(sources: Vec<Source>) -> (Vec<Owned>, Vec<FileFacts>) {
    let mut reader = Reader::from_sources(sources).expect("opens");
    let packets = collect(&mut reader);
    (packets, reader.files().to_vec())
}

pub(super) fn read_one(bytes: Vec<u8>) -> (Vec<Owned>, FileFacts) {
    let (packets, mut files) = read_sources(vec![source(bytes)]);
    (packets, files.remove(0))
}

pub(super) fn open_err(bytes: Vec<u8>) -> OpenError {
    match Reader::from_sources(vec![source(bytes)]) {
        Ok(_) => panic!("opened"),
        Err(e) => e,
    }
}

// --- writers ---

pub(super) fn put16(out: &mut Vec<u8>, be: bool, v: u16) {
    out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
}

pub(super) fn put32(out: &mut Vec<u8>, be: bool, v: u32) {
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

pub(super) fn pcap_header(nanosecond: bool, be: bool, snaplen: u32, link_type: u32) -> Vec<u8> {
    let mut out = Vec::new();
    put32(&mut out, be, if nanosecond { MAGIC_NS } else { MAGIC_US });
    put16(&mut out, be, 2);
    put16(&mut out, be, 4);
    put32(&mut out, be, 0);
    put32(&mut out, be, 0);
    put32(&mut out, be, snaplen);
    put32(&mut out, be, link_type);
    out
}

pub(super) fn pcap_record(
    out: &mut Vec<u8>,
    be: bool,
    sec: u32,
    frac: u32,
    data: &[u8],
    orig: u32,
) {
    put32(out, be, sec);
    put32(out, be, frac);
    put32(out, be, data.len() as u32);
    put32(out, be, orig);
    out.extend_from_slice(data);
}

/// A pcapng image, block by block.
pub(super) struct Ng {
    be: bool,
    pub(super) out: Vec<u8>,
}

impl Ng {
    pub(super) fn new(be: bool) -> Ng {
        let mut ng = Ng {
            be,
            out: Vec::new(),
        };
        ng.shb(be);
        ng
    }

    pub(super) fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Ng {
        let mut body = body.to_vec();
        pad4(&mut body);
        let len = (BLOCK_MIN_LEN + body.len()) as u32;
        put32(&mut self.out, self.be, block_type);
        put32(&mut self.out, self.be, len);
        self.out.extend_from_slice(&body);
        put32(&mut self.out, self.be, len);
        self
    }

    /// Starts a new section, possibly in the other byte order.
    pub(super) fn shb(&mut self, be: bool) -> &mut Ng {
        self.be = be;
        let mut body = Vec::new();
        put32(&mut body, be, BOM_MAGIC);
        put16(&mut body, be, VERSION_MAJOR);
        put16(&mut body, be, VERSION_MINOR);
        put64(&mut body, be, SECTION_LEN_UNSPECIFIED as u64);
        self.block(SHB_MAGIC, &body)
    }

    fn options(&self, body: &mut Vec<u8>, options: &[(OptionCode, Vec<u8>)]) {
        for (code, value) in options {
            put16(body, self.be, code.0);
            put16(body, self.be, value.len() as u16);
            body.extend_from_slice(value);
            pad4(body);
        }
        if !options.is_empty() {
            put16(body, self.be, OPT_ENDOFOPT.0);
            put16(body, self.be, 0);
        }
    }

    pub(super) fn idb(
        &mut self,
        link_type: u16,
        snaplen: u32,
        options: &[(OptionCode, Vec<u8>)],
    ) -> &mut Ng {
        let mut body = Vec::new();
        put16(&mut body, self.be, link_type);
        put16(&mut body, self.be, 0);
        put32(&mut body, self.be, snaplen);
        self.options(&mut body, options);
        self.block(IDB_MAGIC, &body)
    }

    pub(super) fn epb(&mut self, if_id: u32, ticks: u64, data: &[u8], orig: u32) -> &mut Ng {
        let mut body = Vec::new();
        put32(&mut body, self.be, if_id);
        put32(&mut body, self.be, (ticks >> 32) as u32);
        put32(&mut body, self.be, ticks as u32);
        put32(&mut body, self.be, data.len() as u32);
        put32(&mut body, self.be, orig);
        body.extend_from_slice(data);
        self.block(EPB_MAGIC, &body)
    }

    pub(super) fn spb(&mut self, data: &[u8], orig: u32) -> &mut Ng {
        let mut body = Vec::new();
        put32(&mut body, self.be, orig);
        body.extend_from_slice(data);
        self.block(SPB_MAGIC, &body)
    }

    pub(super) fn isb(
        &mut self,
        if_id: u32,
        ticks: u64,
        options: &[(OptionCode, Vec<u8>)],
    ) -> &mut Ng {
        let mut body = Vec::new();
        put32(&mut body, self.be, if_id);
        put32(&mut body, self.be, (ticks >> 32) as u32);
        put32(&mut body, self.be, ticks as u32);
        self.options(&mut body, options);
        self.block(ISB_MAGIC, &body)
    }

    pub(super) fn u64_opt(&self, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put64(&mut out, self.be, v);
        out
    }

    pub(super) fn bytes(&self) -> Vec<u8> {
        self.out.clone()
    }
}
