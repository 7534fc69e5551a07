//! pcapng's numbers, written once: block types, the byte-order magic, where
//! a block's fields and data sit, and the option codes and values this
//! project reads or writes (draft-ietf-opsawg-pcapng). The reader
//! (`analyze::reader`) and the writer (`capture::writer`) both take them from
//! here.
//!
//! pcap-parser already names most block types (`*_MAGIC`) and option codes
//! (`OptionCode`'s constants): those are re-exported, the option codes under
//! the specification's names; what pcap-parser does not name is written
//! here. Option codes are per block type: 2 is `if_name` in an Interface
//! Description Block and `isb_starttime` in an Interface Statistics Block.
//! No I/O.

pub use pcap_parser::{
    BOM_MAGIC, CB_MAGIC, EPB_MAGIC, IDB_MAGIC, ISB_MAGIC, NRB_MAGIC, OptionCode, SHB_MAGIC,
    SPB_MAGIC,
};

/// Obsolete Packet Block, superseded by the Enhanced Packet Block
/// (pcap-parser has no name for it and passes it as an unknown block).
pub const PB_MAGIC: u32 = 0x0000_0002;

// --- block layout ---------------------------------------------------------------

/// Block type and block total length: the start of every block.
pub const BLOCK_HEADER_LEN: usize = 8;
/// The block total length again: the end of every block.
pub const BLOCK_TRAILER_LEN: usize = 4;
/// The smallest block: a header and a trailer, no body.
pub const BLOCK_MIN_LEN: usize = BLOCK_HEADER_LEN + BLOCK_TRAILER_LEN;

/// Where a Section Header Block's byte-order magic ends (block type, block
/// length, magic): what must be read to know a file's byte order.
pub const SHB_BOM_END: usize = BLOCK_HEADER_LEN + 4;
/// Smallest Section Header Block: the magic, major and minor version (16
/// bits each) and the 64-bit section length.
pub const SHB_MIN_LEN: usize = SHB_BOM_END + 2 + 2 + 8 + BLOCK_TRAILER_LEN;
/// The version of the format a Section Header Block states.
pub const VERSION_MAJOR: u16 = 1;
pub const VERSION_MINOR: u16 = 0;
/// A Section Header Block's section length when it is not given.
pub const SECTION_LEN_UNSPECIFIED: i64 = -1;

/// Smallest Interface Description Block: link type and reserved (16 bits
/// each), snap length.
pub const IDB_MIN_LEN: usize = BLOCK_HEADER_LEN + 2 + 2 + 4 + BLOCK_TRAILER_LEN;

/// Where the packet bytes start in an Enhanced Packet Block: interface id,
/// timestamp (high and low words), captured length, original length.
pub const EPB_DATA_OFFSET: usize = BLOCK_HEADER_LEN + 5 * 4;
/// Smallest Enhanced Packet Block, and the bytes of one besides its data,
/// padding and options.
pub const EPB_MIN_LEN: usize = EPB_DATA_OFFSET + BLOCK_TRAILER_LEN;

/// Where they start in an obsolete Packet Block: interface id and drops
/// count (16 bits each), timestamp high and low, captured length, original
/// length.
pub const PB_DATA_OFFSET: usize = BLOCK_HEADER_LEN + 2 + 2 + 4 * 4;
/// Smallest obsolete Packet Block.
pub const PB_MIN_LEN: usize = PB_DATA_OFFSET + BLOCK_TRAILER_LEN;

/// Where they start in a Simple Packet Block: the original length only.
pub const SPB_DATA_OFFSET: usize = BLOCK_HEADER_LEN + 4;
/// Smallest Simple Packet Block.
pub const SPB_MIN_LEN: usize = SPB_DATA_OFFSET + BLOCK_TRAILER_LEN;

/// Smallest Interface Statistics Block: interface id, timestamp high and
/// low.
pub const ISB_MIN_LEN: usize = BLOCK_HEADER_LEN + 3 * 4 + BLOCK_TRAILER_LEN;

// --- options --------------------------------------------------------------------

/// `opt_endofopt`: ends a block's options.
pub const OPT_ENDOFOPT: OptionCode = OptionCode::EndOfOpt;
/// `opt_comment`, in any block.
pub const OPT_COMMENT: OptionCode = OptionCode::Comment;

/// `shb_userappl`: the application that wrote the section.
pub const SHB_USERAPPL: OptionCode = OptionCode::ShbUserAppl;

/// `if_name`.
pub const IF_NAME: OptionCode = OptionCode::IfName;
/// `if_description`.
pub const IF_DESCRIPTION: OptionCode = OptionCode::IfDescription;
/// `if_tsresol`: the unit of the interface's timestamps.
pub const IF_TSRESOL: OptionCode = OptionCode::IfTsresol;
/// `if_filter`: the capture filter, its syntax in the first byte.
pub const IF_FILTER: OptionCode = OptionCode::IfFilter;
/// `if_tsoffset`: seconds to add to the interface's timestamps.
pub const IF_TSOFFSET: OptionCode = OptionCode::IfTsoffset;

/// `isb_starttime`.
pub const ISB_STARTTIME: OptionCode = OptionCode::IsbStartTime;
/// `isb_endtime`.
pub const ISB_ENDTIME: OptionCode = OptionCode::IsbEndTime;
/// `isb_ifrecv`: packets received by the interface.
pub const ISB_IFRECV: OptionCode = OptionCode::IsbIfRecv;
/// `isb_ifdrop`: packets the interface dropped (no buffer space).
pub const ISB_IFDROP: OptionCode = OptionCode::IsbIfDrop;
/// `isb_filteraccept`: packets the capture filter accepted.
pub const ISB_FILTERACCEPT: OptionCode = OptionCode::IsbFilterAccept;
/// `isb_osdrop`: packets the operating system dropped.
pub const ISB_OSDROP: OptionCode = OptionCode::IsbOsDrop;
/// `isb_usrdeliv`: packets delivered to the capturing program.
pub const ISB_USRDELIV: OptionCode = OptionCode::IsbUsrDeliv;

/// `if_tsresol` when an interface does not state it: microseconds.
pub const TSRESOL_DEFAULT: u8 = 6;
/// `if_tsresol` of nanosecond timestamps.
pub const TSRESOL_NS: u8 = 9;
/// `if_tsresol`'s top bit: the other bits are a power of 2, not of 10.
pub const TSRESOL_POWER_OF_TWO: u8 = 0x80;
/// `if_filter`'s first byte for a libpcap filter expression.
pub const IF_FILTER_LIBPCAP: u8 = 0;
