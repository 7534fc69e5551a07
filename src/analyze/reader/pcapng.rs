//! The pcapng format: the framing of its blocks (checked before pcap-parser
//! parses them), sections and their byte order, interfaces numbered over
//! the whole file, packet blocks (Enhanced, Simple, and the obsolete Packet
//! Block) as packet heads, and Interface Statistics Blocks as the capture's
//! own counts. The format's numbers come from [`crate::pcapng`].
//!
//! Options are decoded here in the section's byte order: pcap-parser 0.17
//! reads `if_tsoffset` and the statistics counters as little-endian
//! whatever the section says, and rejects every power-of-two `if_tsresol`.
//! It passes the obsolete Packet Block as unknown: its fields are read here
//! too.

use std::cell::Cell;
use std::io::{self, Read};
use std::path::Path;
use std::rc::Rc;

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{
    Block, EnhancedPacketBlock, InterfaceDescriptionBlock, InterfaceStatisticsBlock, Linktype,
    PcapBlockOwned, PcapNGOption, PcapNGReader, SimplePacketBlock, UnknownBlock,
};

use super::clock::Clock;
use super::input::{Head, Kind, Src, Stream, describe};
use super::{
    FileFacts, Format, InterfaceFacts, InterfaceStats, MAX_BLOCK, MAX_INTERFACES, OpenError,
    Opened, bad_header, fill, open_failure, u16_at, u32_at,
};
use crate::pcapng::{
    BLOCK_HEADER_LEN, BLOCK_MIN_LEN, BLOCK_TRAILER_LEN, BOM_MAGIC, EPB_DATA_OFFSET, EPB_MAGIC,
    EPB_MIN_LEN, IDB_MAGIC, IDB_MIN_LEN, IF_NAME, IF_TSOFFSET, IF_TSRESOL, ISB_FILTERACCEPT,
    ISB_IFDROP, ISB_IFRECV, ISB_MAGIC, ISB_MIN_LEN, ISB_OSDROP, ISB_USRDELIV, PB_DATA_OFFSET,
    PB_MAGIC, PB_MIN_LEN, SHB_BOM_END, SHB_MAGIC, SHB_MIN_LEN, SPB_DATA_OFFSET, SPB_MAGIC,
    SPB_MIN_LEN, TSRESOL_DEFAULT,
};

/// Interface names longer than this are cut (they come from the file).
const MAX_NAME: usize = 256;

/// A pcapng file's blocks, and what the blocks read so far say about the
/// next ones.
pub(super) struct Blocks {
    pub(super) parser: PcapNGReader<Src>,
    section: Section,
}

/// The current section, and the clocks of every interface so far.
struct Section {
    /// Byte order of the current section.
    big_endian: bool,
    /// Index in [`FileFacts::interfaces`] of the current section's
    /// interface 0.
    base: usize,
    /// One per interface, in [`FileFacts::interfaces`] order.
    clocks: Vec<Clock>,
}

/// Whether a file starting with `magic` is pcapng: a Section Header Block,
/// whose type reads the same in both byte orders.
pub(super) fn is_magic(magic: [u8; 4]) -> bool {
    u32::from_le_bytes(magic) == SHB_MAGIC
}

/// Reads the first Section Header Block: `prefix` holds the bytes read so
/// far, up to its byte-order magic; `reader` the rest.
pub(super) fn open(
    path: &Path,
    mut prefix: Vec<u8>,
    mut reader: Box<dyn Read>,
    initial: usize,
    io_error: &Rc<Cell<Option<io::Error>>>,
) -> Result<Opened, OpenError> {
    let ends_inside = "the file ends inside its section header";
    let shb_len = match frame(&prefix, false) {
        Ok(Some((len, _))) => len,
        Ok(None) => return Err(bad_header(path, "pcapng", ends_inside)),
        Err(detail) => return Err(bad_header(path, "pcapng", &detail)),
    };
    if let Err(error) = fill(&mut *reader, &mut prefix, shb_len) {
        return Err(OpenError::Io {
            path: path.to_path_buf(),
            error,
        });
    }
    if prefix.len() < shb_len {
        return Err(bad_header(path, "pcapng", ends_inside));
    }
    // frame() checked the byte-order magic.
    let big_endian =
        prefix.get(BLOCK_HEADER_LEN..SHB_BOM_END) == Some(&BOM_MAGIC.to_be_bytes()[..]);
    let src = Src::new(prefix, reader, io_error);
    // frame() held shb_len to MAX_BLOCK.
    let capacity = initial.max(shb_len);
    let parser = match PcapNGReader::new(capacity, src) {
        Ok(parser) => parser,
        Err(e) => return Err(open_failure(path, "pcapng", &e, io_error)),
    };
    let blocks = Blocks {
        parser,
        section: Section {
            big_endian,
            base: 0,
            clocks: Vec::new(),
        },
    };
    Ok(Opened {
        stream: Stream::PcapNg(blocks),
        format: Format::PcapNg { big_endian },
        interfaces: Vec::new(),
        capacity,
        bytes_read: 0,
    })
}

impl Blocks {
    /// Length and kind of the block at the start of the buffer (see
    /// [`frame`]).
    pub(super) fn frame(&self) -> Result<Option<(usize, Kind)>, String> {
        frame(self.parser.data(), self.section.big_endian)
    }

    /// Parses the complete block at the start of the buffer: a packet gives
    /// a head (a Simple Packet Block takes `last_ts_ns`, having no
    /// timestamp of its own), a description or statistics block updates
    /// `facts`.
    pub(super) fn take(
        &mut self,
        kind: Kind,
        facts: &mut FileFacts,
        last_ts_ns: Option<i64>,
    ) -> Result<Option<Head>, String> {
        if kind == Kind::Other {
            return Ok(None);
        }
        let block = match self.parser.next() {
            Ok((_, PcapBlockOwned::NG(block))) => block,
            Ok(_) => return Err("not a pcapng block".to_owned()),
            Err(e) => return Err(describe(&e, kind)),
        };
        let section = &mut self.section;
        match block {
            Block::SectionHeader(shb) => {
                section.start(shb.big_endian(), facts);
                Ok(None)
            }
            Block::InterfaceDescription(idb) => {
                section.add_interface(&idb, facts)?;
                Ok(None)
            }
            Block::EnhancedPacket(epb) => section.enhanced_packet(&epb, facts, kind).map(Some),
            Block::SimplePacket(spb) => section
                .simple_packet(&spb, facts, last_ts_ns, kind)
                .map(Some),
            Block::Unknown(pb) if kind == Kind::ObsoletePacket => {
                section.obsolete_packet(&pb, facts, kind).map(Some)
            }
            Block::InterfaceStatistics(isb) => {
                section.record_statistics(&isb, facts, kind)?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

impl Section {
    /// A Section Header Block: its byte order from now on, and interfaces
    /// numbered afresh.
    fn start(&mut self, big_endian: bool, facts: &FileFacts) {
        self.big_endian = big_endian;
        self.base = facts.interfaces.len();
    }

    /// An Interface Description Block: one more interface, with its clock.
    fn add_interface(
        &mut self,
        idb: &InterfaceDescriptionBlock,
        facts: &mut FileFacts,
    ) -> Result<(), String> {
        if facts.interfaces.len() >= MAX_INTERFACES {
            return Err(format!("more than {MAX_INTERFACES} interfaces"));
        }
        let options = IdbOptions::parse(&idb.options, self.big_endian);
        let Some(clock) = Clock::new(options.tsresol, options.tsoffset_s) else {
            return Err(format!(
                "interface {} has an unusable if_tsresol 0x{:02x}",
                facts.interfaces.len().saturating_sub(self.base),
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
        self.clocks.push(clock);
        Ok(())
    }

    fn enhanced_packet(
        &self,
        epb: &EnhancedPacketBlock,
        facts: &FileFacts,
        kind: Kind,
    ) -> Result<Head, String> {
        let (interface, link_type, clock) = self.interface(facts, epb.if_id, kind)?;
        let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
        let len = (epb.caplen as usize).min(epb.data.len());
        Ok(Head {
            interface,
            link_type,
            ts_ns: clock.ns(ticks),
            orig_len: epb.origlen,
            start: EPB_DATA_OFFSET,
            end: EPB_DATA_OFFSET + len,
        })
    }

    /// A Simple Packet Block: interface 0, at `last_ts_ns` (or 0).
    fn simple_packet(
        &self,
        spb: &SimplePacketBlock,
        facts: &FileFacts,
        last_ts_ns: Option<i64>,
        kind: Kind,
    ) -> Result<Head, String> {
        let (interface, link_type, _) = self.interface(facts, 0, kind)?;
        // The captured length is not in the block: the original length cut
        // to the snap length.
        let mut len = spb.data.len().min(spb.origlen as usize);
        if let Some(snaplen) = facts
            .interfaces
            .get(interface)
            .map(|i| i.snaplen as usize)
            .filter(|&s| s > 0)
        {
            len = len.min(snaplen);
        }
        Ok(Head {
            interface,
            link_type,
            ts_ns: last_ts_ns.unwrap_or(0),
            orig_len: spb.origlen,
            start: SPB_DATA_OFFSET,
            end: SPB_DATA_OFFSET + len,
        })
    }

    /// An obsolete Packet Block, whose fields pcap-parser does not read.
    fn obsolete_packet(
        &self,
        pb: &UnknownBlock,
        facts: &FileFacts,
        kind: Kind,
    ) -> Result<Head, String> {
        let be = self.big_endian;
        // Interface (16 bits), drops (16), timestamp high and low, captured
        // length, original length, data.
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
        if caplen
            > pb.data
                .len()
                .saturating_sub(PB_DATA_OFFSET - BLOCK_HEADER_LEN)
        {
            return Err(format!(
                "{} of {} bytes claims {caplen} captured bytes",
                kind.name(),
                pb.block_len1
            ));
        }
        let (interface, link_type, clock) = self.interface(facts, u32::from(if_id), kind)?;
        let ticks = (u64::from(ts_high) << 32) | u64::from(ts_low);
        Ok(Head {
            interface,
            link_type,
            ts_ns: clock.ns(ticks),
            orig_len: origlen,
            start: PB_DATA_OFFSET,
            end: PB_DATA_OFFSET + caplen,
        })
    }

    /// An Interface Statistics Block: its counters replace the interface's
    /// earlier ones.
    fn record_statistics(
        &self,
        isb: &InterfaceStatisticsBlock,
        facts: &mut FileFacts,
        kind: Kind,
    ) -> Result<(), String> {
        let (interface, _, _) = self.interface(facts, isb.if_id, kind)?;
        let stats = isb_stats(&isb.options, self.big_endian);
        if let Some(facts) = facts.interfaces.get_mut(interface) {
            facts.stats = Some(stats);
        }
        Ok(())
    }

    /// The flattened index, link type and clock of `if_id` in the current
    /// section, or why there is none. The clock is lent, not copied: a
    /// copy through the stack on every packet made reading pcapng several
    /// per cent slower (`scripts/bench-analyze --baseline`).
    fn interface(
        &self,
        facts: &FileFacts,
        if_id: u32,
        kind: Kind,
    ) -> Result<(usize, Linktype, &Clock), String> {
        let declared = facts.interfaces.len().saturating_sub(self.base);
        let found = usize::try_from(if_id)
            .ok()
            .and_then(|id| self.base.checked_add(id))
            .and_then(|i| Some((i, facts.interfaces.get(i)?, self.clocks.get(i)?)));
        match found {
            Some((i, interface, clock)) => Ok((i, interface.link_type, clock)),
            None => Err(format!(
                "{} on interface {if_id}, but its section declares {declared} interface(s)",
                kind.name()
            )),
        }
    }
}

/// Length and kind of the pcapng block at the start of `data`, in a section
/// of the given byte order (a Section Header Block sets its own); `None`
/// while its header is not all there; `Err` when its length cannot be
/// right.
fn frame(data: &[u8], big_endian: bool) -> Result<Option<(usize, Kind)>, String> {
    let Some(type_le) = u32_at(data, 0, false) else {
        return Ok(None);
    };
    let (be, kind) = if type_le == SHB_MAGIC {
        // The type reads the same in both orders; the section's order is
        // in its byte-order magic.
        let Some(bom) = u32_at(data, BLOCK_HEADER_LEN, false) else {
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
    // The block's total length follows its type.
    let Some(len) = u32_at(data, 4, be) else {
        return Ok(None);
    };
    let len = len as usize;
    let min_len = min_len(kind);
    if len < min_len {
        return Err(format!(
            "{} with length {len}, less than the {min_len} its fields take",
            kind.name(),
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
    if let Some(trailer) = u32_at(data, len - BLOCK_TRAILER_LEN, be)
        && trailer as usize != len
    {
        return Err(format!(
            "{} with length {len} at its start but {trailer} at its end",
            kind.name()
        ));
    }
    Ok(Some((len, kind)))
}

/// Smallest valid total length of a pcapng block of this kind.
fn min_len(kind: Kind) -> usize {
    match kind {
        Kind::PcapRecord | Kind::Other => BLOCK_MIN_LEN,
        Kind::SectionHeader => SHB_MIN_LEN,
        Kind::InterfaceDescription => IDB_MIN_LEN,
        Kind::EnhancedPacket => EPB_MIN_LEN,
        Kind::ObsoletePacket => PB_MIN_LEN,
        Kind::SimplePacket => SPB_MIN_LEN,
        Kind::InterfaceStatistics => ISB_MIN_LEN,
    }
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
            tsresol: TSRESOL_DEFAULT,
            tsoffset_s: 0,
        };
        for option in options {
            match option.code {
                IF_NAME => {
                    if let Ok(bytes) = option.as_bytes() {
                        let bytes = bytes.get(..MAX_NAME).unwrap_or(bytes);
                        parsed.name = Some(String::from_utf8_lossy(bytes).into_owned());
                    }
                }
                IF_TSRESOL if option.len == 1 => {
                    if let Some(&v) = option.value().first() {
                        parsed.tsresol = v;
                    }
                }
                IF_TSOFFSET => {
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

/// The counters of an Interface Statistics Block.
fn isb_stats(options: &[PcapNGOption], big_endian: bool) -> InterfaceStats {
    let mut stats = InterfaceStats::default();
    for option in options {
        let Some(value) = u64_option(option, big_endian) else {
            continue;
        };
        match option.code {
            ISB_IFRECV => stats.received = Some(value),
            ISB_IFDROP => stats.dropped = Some(value),
            ISB_FILTERACCEPT => stats.filter_accepted = Some(value),
            ISB_OSDROP => stats.os_dropped = Some(value),
            ISB_USRDELIV => stats.delivered = Some(value),
            _ => {}
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{ReadError, Reader};
    use super::*;
    use crate::pcapng::{CB_MAGIC, ISB_STARTTIME, NRB_MAGIC, OPT_COMMENT};

    #[test]
    fn pcapng_interfaces_with_own_link_type_resolution_and_offset() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[(IF_NAME, b"lo".to_vec()), (IF_TSRESOL, vec![6])])
            // Nanoseconds, clock 100 s behind.
            .idb(
                0,
                262_144,
                &[
                    (IF_TSRESOL, vec![9]),
                    (IF_TSOFFSET, 100u64.to_le_bytes().to_vec()),
                ],
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
        ng.idb(1, 0, &[(IF_TSOFFSET, offset)])
            .epb(0, 5_000_000, b"x", 1)
            .isb(0, 0, &[(ISB_IFRECV, recv)]);
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
        ng.idb(1, 0, &[(IF_TSRESOL, vec![0x80 | 10])])
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
        ng.block(PB_MAGIC, &body);
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
            .isb(0, 0, &[(ISB_IFRECV, recv1), (ISB_IFDROP, drop1)])
            .epb(0, 1, b"x", 1)
            .isb(
                0,
                2,
                &[
                    (ISB_IFRECV, recv2),
                    (ISB_IFDROP, drop2),
                    (ISB_OSDROP, osdrop),
                ],
            )
            // Not a counter: start time, and a comment.
            .isb(
                1,
                2,
                &[(OPT_COMMENT, b"hi".to_vec()), (ISB_STARTTIME, start)],
            );
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
            .block(NRB_MAGIC, &[0, 0, 0, 0]) // name resolution, empty
            .block(CB_MAGIC, &[1, 2, 3, 4, 5, 6, 7, 8]) // custom
            .block(0x1234_5678, &[]) // unknown
            .epb(0, 1, b"a", 1);
        let total = ng.out.len() as u64;
        let (packets, facts) = read_one(ng.bytes());
        assert_eq!(packets.len(), 1);
        assert_eq!(facts.bytes_read, total);
        assert!(facts.error.is_none());
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
    }

    #[test]
    fn a_section_header_alone_is_an_empty_capture() {
        let (packets, facts) = read_one(Ng::new(false).bytes());
        assert!(packets.is_empty());
        assert!(facts.error.is_none());
        assert!(facts.interfaces.is_empty());
    }

    #[test]
    fn damaged_input_never_panics() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[(IF_TSRESOL, vec![9]), (IF_NAME, b"x".to_vec())])
            .epb(0, 1, b"abcdef", 6)
            .spb(b"gh", 2)
            .isb(0, 2, &[(ISB_IFRECV, vec![1; 8])])
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
}
