//! The pcap format (libpcap's classic files): its magic numbers (byte order,
//! micro- or nanosecond timestamps, Kuznetzov's modified format with 24-byte
//! record headers), the file header as the one interface, and each record
//! as a packet head.

use std::cell::Cell;
use std::io::{self, Read};
use std::path::Path;
use std::rc::Rc;

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapReader, Linktype, PcapBlockOwned};

use super::input::{Head, Kind, Src, Stream, describe};
use super::{
    Format, InterfaceFacts, MAX_BLOCK, OpenError, Opened, bad_header, fill, open_failure, u32_at,
};

/// The magic numbers, as written in the file's own byte order.
pub(super) const MAGIC_US: u32 = 0xa1b2_c3d4;
pub(super) const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// Alexey Kuznetzov's modified pcap: 24-byte record headers.
const MAGIC_MODIFIED: u32 = 0xa1b2_cd34;

/// The magic numbers as the file's first four bytes.
const LE_US: [u8; 4] = MAGIC_US.to_le_bytes();
const LE_NS: [u8; 4] = MAGIC_NS.to_le_bytes();
const BE_US: [u8; 4] = MAGIC_US.to_be_bytes();
const BE_NS: [u8; 4] = MAGIC_NS.to_be_bytes();
const MODIFIED_LE: [u8; 4] = MAGIC_MODIFIED.to_le_bytes();
const MODIFIED_BE: [u8; 4] = MAGIC_MODIFIED.to_be_bytes();

/// The file header.
pub(super) const HEADER_LEN: usize = 24;
/// A record header: seconds, fraction, captured length, original length.
const RECORD_HEADER_LEN: usize = 16;
/// A record header in the modified format: 8 more bytes (interface index,
/// protocol, packet type, padding).
const MODIFIED_RECORD_HEADER_LEN: usize = 24;
/// Where a record header holds the captured length.
const CAPLEN_AT: usize = 8;

/// The link type field's upper bits carry FCS facts, not the link type.
const LINKTYPE_MASK: i32 = 0x03ff_ffff;

/// A pcap record claiming more captured bytes than both this and the file's
/// snap length is taken as garbage, as Wireshark does (its largest standard
/// snap length).
const PLAUSIBLE_CAPLEN: u32 = 262_144;

/// A pcap file's records, and what its header says about them.
pub(super) struct Records {
    pub(super) parser: LegacyPcapReader<Src>,
    big_endian: bool,
    nanosecond: bool,
    /// 16, or 24 in the modified format.
    record_header: usize,
    snaplen: u32,
    link_type: Linktype,
}

/// Whether a file starting with `magic` is pcap (of any kind, the ones
/// [`open`] refuses included).
pub(super) fn is_magic(magic: [u8; 4]) -> bool {
    matches!(
        magic,
        LE_US | LE_NS | BE_US | BE_NS | MODIFIED_LE | MODIFIED_BE
    )
}

/// Reads the file header: `prefix` holds the bytes read so far, starting
/// with `magic`; `reader` the rest.
pub(super) fn open(
    path: &Path,
    magic: [u8; 4],
    mut prefix: Vec<u8>,
    mut reader: Box<dyn Read>,
    initial: usize,
    io_error: &Rc<Cell<Option<io::Error>>>,
) -> Result<Opened, OpenError> {
    if magic == MODIFIED_BE {
        return Err(bad_header(
            path,
            "pcap",
            "big-endian modified pcap is not supported",
        ));
    }
    if let Err(error) = fill(&mut *reader, &mut prefix, HEADER_LEN) {
        return Err(OpenError::Io {
            path: path.to_path_buf(),
            error,
        });
    }
    if prefix.len() < HEADER_LEN {
        return Err(bad_header(
            path,
            "pcap",
            "the file ends inside its 24-byte header",
        ));
    }
    let src = Src::new(prefix, reader, io_error);
    let mut parser = match LegacyPcapReader::new(initial, src) {
        Ok(parser) => parser,
        Err(e) => return Err(open_failure(path, "pcap", &e, io_error)),
    };
    let header = match parser.next() {
        Ok((_, PcapBlockOwned::LegacyHeader(header))) => header,
        _ => return Err(bad_header(path, "pcap", "the header does not parse")),
    };
    parser.consume_noshift(HEADER_LEN);
    let link_type = Linktype(header.network.0 & LINKTYPE_MASK);
    let big_endian = header.is_bigendian();
    let nanosecond = header.is_nanosecond_precision();
    let records = Records {
        parser,
        big_endian,
        nanosecond,
        record_header: if header.is_modified_format() {
            MODIFIED_RECORD_HEADER_LEN
        } else {
            RECORD_HEADER_LEN
        },
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
    Ok(Opened {
        stream: Stream::Pcap(records),
        format: Format::Pcap {
            nanosecond,
            big_endian,
        },
        interfaces: vec![interface],
        capacity: initial,
        bytes_read: HEADER_LEN as u64,
    })
}

impl Records {
    /// Length of the record at the start of the buffer; `None` while its
    /// header is not all there; `Err` when its captured length cannot be
    /// right.
    pub(super) fn frame(&self) -> Result<Option<(usize, Kind)>, String> {
        let data = self.parser.data();
        if data.len() < self.record_header {
            return Ok(None);
        }
        let Some(caplen) = u32_at(data, CAPLEN_AT, self.big_endian) else {
            return Ok(None);
        };
        if caplen > self.snaplen.max(PLAUSIBLE_CAPLEN)
            || caplen as usize > MAX_BLOCK - self.record_header
        {
            return Err(format!(
                "record claims {caplen} captured bytes, with a snap length of {}",
                self.snaplen
            ));
        }
        Ok(Some((
            self.record_header + caplen as usize,
            Kind::PcapRecord,
        )))
    }

    /// Parses the complete record at the start of the buffer.
    pub(super) fn take(&mut self, kind: Kind) -> Result<Option<Head>, String> {
        let record = match self.parser.next() {
            Ok((_, PcapBlockOwned::Legacy(record))) => record,
            Ok(_) => return Err("not a pcap record".to_owned()),
            Err(e) => return Err(describe(&e, kind)),
        };
        let frac = i64::from(record.ts_usec) * if self.nanosecond { 1 } else { 1_000 };
        // At most about 4.3e18: no overflow.
        let ts_ns = i64::from(record.ts_sec) * 1_000_000_000 + frac;
        Ok(Some(Head {
            interface: 0,
            link_type: self.link_type,
            ts_ns,
            orig_len: record.origlen,
            start: self.record_header,
            end: self.record_header + record.data.len(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::ReadError;
    use super::super::testing::*;
    use super::*;

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
    fn a_record_claiming_2_gb_is_corrupt() {
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
}
