//! A pcapng writer for one live interface: a Section Header Block, one
//! Interface Description Block, an Enhanced Packet Block per packet and,
//! at the end, an Interface Statistics Block carrying the capturer's own
//! counts, so that a reader knows whether the capture itself lost packets.
//!
//! The header blocks and the statistics block are built with pcap-parser's
//! serializer; packets take a hand-written path (28 bytes of header, the
//! data, padding, the trailing length) that the tests check against
//! pcap-parser's `EnhancedPacketBlock` byte for byte. Timestamps are in
//! nanoseconds (`if_tsresol` = 9). Blocks are little-endian. The format's
//! block types, layout and option codes come from [`crate::pcapng`].

use std::borrow::Cow;
use std::io::{self, Write};

use pcap_parser::{
    InterfaceDescriptionBlock, InterfaceStatisticsBlock, Linktype, PcapNGOption,
    SectionHeaderBlock, ToVec,
};

use crate::pcapng::{
    BLOCK_TRAILER_LEN, EPB_DATA_OFFSET, EPB_MAGIC, EPB_MIN_LEN, IF_DESCRIPTION, IF_FILTER,
    IF_FILTER_LIBPCAP, IF_NAME, ISB_ENDTIME, ISB_IFDROP, ISB_IFRECV, ISB_STARTTIME, ISB_USRDELIV,
    OPT_COMMENT, OptionCode, SECTION_LEN_UNSPECIFIED, SHB_USERAPPL, TSRESOL_NS, VERSION_MAJOR,
    VERSION_MINOR,
};

/// `PATH.part`: where a file is written until it is complete, so that a
/// file under its final name is never cut short.
pub fn partial_name(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

/// The interface a capture was made on, as its IDB states it.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub link_type: i32,
    /// The largest number of bytes kept of a packet.
    pub snaplen: u32,
    /// The capture filter, as libpcap's filter syntax.
    pub filter: Option<String>,
    pub description: Option<String>,
}

/// What the capturer counted, written into the Interface Statistics Block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Nanoseconds since the epoch.
    pub start_ns: u64,
    pub end_ns: u64,
    /// libpcap's `ps_recv` (`isb_ifrecv`).
    pub received: u64,
    /// libpcap's `ps_drop`: no room in the capture buffer (`isb_ifdrop`,
    /// where dumpcap puts it too, and where Wireshark shows it as dropped).
    pub dropped: u64,
    /// libpcap's `ps_ifdrop`: dropped by the interface or its driver.
    pub if_dropped: u64,
    /// Packets written to the file (`isb_usrdeliv`).
    pub delivered: u64,
}

/// Writes one section with one interface.
pub struct PcapngWriter<W: Write> {
    out: W,
    packets: u64,
    bytes: u64,
}

fn option(code: OptionCode, value: Vec<u8>) -> PcapNGOption<'static> {
    PcapNGOption {
        code,
        // Lengths are checked by the callers: names and comments are short.
        len: u16::try_from(value.len()).unwrap_or(u16::MAX),
        value: Cow::Owned(value),
    }
}

/// A UTF-8 option value, cut to what an option length can hold.
fn text(s: &str) -> Vec<u8> {
    let mut end = s.len().min(u16::MAX as usize - 3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.as_bytes()[..end].to_vec()
}

fn to_io(e: impl std::fmt::Debug) -> io::Error {
    io::Error::other(format!("serializing a pcapng block: {e:?}"))
}

/// The two 32-bit halves of a timestamp, high word first.
fn ts_words(ts: u64) -> (u32, u32) {
    ((ts >> 32) as u32, ts as u32)
}

fn ts_option(code: OptionCode, ts: u64) -> PcapNGOption<'static> {
    let (high, low) = ts_words(ts);
    let mut v = high.to_le_bytes().to_vec();
    v.extend_from_slice(&low.to_le_bytes());
    option(code, v)
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the Section Header Block and the Interface Description Block.
    pub fn new(mut out: W, iface: &Interface, application: &str) -> io::Result<Self> {
        let mut shb = SectionHeaderBlock {
            block_type: 0,
            block_len1: 0,
            bom: 0,
            major_version: VERSION_MAJOR,
            minor_version: VERSION_MINOR,
            section_len: SECTION_LEN_UNSPECIFIED,
            options: vec![option(SHB_USERAPPL, text(application))],
            block_len2: 0,
        };
        out.write_all(&shb.to_vec().map_err(to_io)?)?;

        let mut options = vec![option(IF_NAME, text(&iface.name))];
        if let Some(d) = &iface.description {
            options.push(option(IF_DESCRIPTION, text(d)));
        }
        if let Some(f) = &iface.filter {
            // The first byte says the filter's syntax.
            let mut v = vec![IF_FILTER_LIBPCAP];
            v.extend(text(f));
            v.truncate(u16::MAX as usize - 3);
            options.push(option(IF_FILTER, v));
        }
        let mut idb = InterfaceDescriptionBlock {
            block_type: 0,
            block_len1: 0,
            linktype: Linktype(iface.link_type),
            reserved: 0,
            snaplen: iface.snaplen,
            options,
            block_len2: 0,
            if_tsresol: TSRESOL_NS,
            if_tsoffset: 0,
        };
        out.write_all(&idb.to_vec().map_err(to_io)?)?;
        Ok(PcapngWriter {
            out,
            packets: 0,
            bytes: 0,
        })
    }

    /// Writes one Enhanced Packet Block on interface 0. `data` is what was
    /// captured; `orig_len` the packet's length on the wire.
    pub fn write_packet(&mut self, ts_ns: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
        let caplen = u32::try_from(data.len())
            .ok()
            .filter(|&l| l <= u32::MAX - 64)
            .ok_or_else(|| io::Error::other("a captured packet of more than 4 GiB"))?;
        let pad = (4 - data.len() % 4) % 4;
        let block_len = EPB_MIN_LEN as u32 + caplen + pad as u32;
        let (high, low) = ts_words(ts_ns);
        let mut head = [0u8; EPB_DATA_OFFSET];
        for (i, word) in [
            EPB_MAGIC,
            block_len,
            0,
            high,
            low,
            caplen,
            orig_len.max(caplen),
        ]
        .into_iter()
        .enumerate()
        {
            head[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
        }
        self.out.write_all(&head)?;
        self.out.write_all(data)?;
        let mut tail = [0u8; 3 + BLOCK_TRAILER_LEN];
        tail[pad..pad + BLOCK_TRAILER_LEN].copy_from_slice(&block_len.to_le_bytes());
        self.out.write_all(&tail[..pad + BLOCK_TRAILER_LEN])?;
        self.packets += 1;
        self.bytes += u64::from(block_len);
        Ok(())
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Bytes of packet blocks written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes the Interface Statistics Block, flushes, and gives the output
    /// back. `comment` goes into the block's `opt_comment`.
    pub fn finish(mut self, stats: &Stats, comment: Option<&str>) -> io::Result<W> {
        let (high, low) = ts_words(stats.end_ns);
        let mut options = Vec::new();
        if let Some(c) = comment {
            options.push(option(OPT_COMMENT, text(c)));
        }
        options.push(ts_option(ISB_STARTTIME, stats.start_ns));
        options.push(ts_option(ISB_ENDTIME, stats.end_ns));
        options.push(option(ISB_IFRECV, stats.received.to_le_bytes().to_vec()));
        options.push(option(ISB_IFDROP, stats.dropped.to_le_bytes().to_vec()));
        options.push(option(ISB_USRDELIV, stats.delivered.to_le_bytes().to_vec()));
        let mut isb = InterfaceStatisticsBlock {
            block_type: 0,
            block_len1: 0,
            if_id: 0,
            ts_high: high,
            ts_low: low,
            options,
            block_len2: 0,
        };
        self.out.write_all(&isb.to_vec().map_err(to_io)?)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::reader::Reader;
    use pcap_parser::EnhancedPacketBlock;

    fn iface() -> Interface {
        Interface {
            name: "lo".into(),
            link_type: 1,
            snaplen: 65535,
            filter: Some("tcp port 5005".into()),
            description: None,
        }
    }

    #[test]
    fn packet_blocks_match_pcap_parser_byte_for_byte() {
        for len in 0..9usize {
            let data: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            let mut w = PcapngWriter {
                out: Vec::new(),
                packets: 0,
                bytes: 0,
            };
            let ts = 1_763_700_000_123_456_789u64;
            w.write_packet(ts, &data, 1066).unwrap();
            let mut epb = EnhancedPacketBlock {
                block_type: 0,
                block_len1: 0,
                if_id: 0,
                ts_high: (ts >> 32) as u32,
                ts_low: ts as u32,
                caplen: len as u32,
                origlen: 1066,
                data: &data,
                options: Vec::new(),
                block_len2: 0,
            };
            assert_eq!(w.out, epb.to_vec().unwrap(), "data of {len} bytes");
            assert_eq!(w.bytes, w.out.len() as u64);
        }
    }

    #[test]
    fn a_written_file_reads_back_with_its_statistics() {
        let mut w = PcapngWriter::new(Vec::new(), &iface(), "udplab test").unwrap();
        let frame = [0xabu8; 60];
        w.write_packet(1_000_000_001, &frame, 60).unwrap();
        w.write_packet(2_000_000_002, &frame[..7], 1066).unwrap();
        let stats = Stats {
            start_ns: 1_000_000_000,
            end_ns: 3_000_000_000,
            received: 10,
            dropped: 3,
            if_dropped: 0,
            delivered: 2,
        };
        let bytes = w.finish(&stats, Some("libpcap: 10 received")).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pcapng");
        std::fs::write(&path, &bytes).unwrap();
        let mut r = Reader::open(std::slice::from_ref(&path)).unwrap();
        let mut seen = Vec::new();
        while let Some(p) = r.next_packet() {
            seen.push((p.ts_ns, p.orig_len, p.data.len(), p.link_type));
        }
        assert_eq!(
            seen,
            vec![
                (1_000_000_001, 60, 60, Linktype(1)),
                (2_000_000_002, 1066, 7, Linktype(1))
            ]
        );
        let files = r.files();
        let i = &files[0].interfaces[0];
        assert_eq!(i.name.as_deref(), Some("lo"));
        assert_eq!(i.snaplen, 65535);
        let s = i.stats.unwrap();
        assert_eq!(s.received, Some(10));
        assert_eq!(s.dropped, Some(3));
        assert_eq!(s.delivered, Some(2));
        assert_eq!(s.os_dropped, None);
    }

    #[test]
    fn an_orig_len_below_the_captured_length_is_raised_to_it() {
        let mut w = PcapngWriter {
            out: Vec::new(),
            packets: 0,
            bytes: 0,
        };
        w.write_packet(0, &[1, 2, 3, 4, 5], 2).unwrap();
        assert_eq!(&w.out[24..28], &5u32.to_le_bytes());
    }
}
