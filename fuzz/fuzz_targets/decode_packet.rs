//! One frame through the decoder. The first byte picks the link type, the
//! rest is the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pcap_parser::Linktype;
use udplab::analyze::decode;

/// NULL, ETHERNET, RAW (12 and 101), LOOP, LINUX_SLL, IPV4, IPV6,
/// LINUX_SLL2, and one the decoder does not know (USB_LINUX).
const LINK_TYPES: [i32; 10] = [0, 1, 12, 101, 108, 113, 228, 229, 276, 189];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, frame)) = data.split_first() else {
        return;
    };
    let lt = LINK_TYPES[usize::from(pick) % LINK_TYPES.len()];
    let _ = decode::decode(Linktype(lt), frame);
});
