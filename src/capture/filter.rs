//! The capture's default filter, and the classic-BPF splice that gives it
//! two snap lengths.
//!
//! A snap length short enough to keep up with the data (128 bytes) cuts
//! v1's control messages (an Announce frame is at least 131 bytes), and the
//! analyzer then has to take the file size and the receiver's reports from
//! the logs. A classic BPF filter's return value *is* the number of bytes
//! to keep (`ret #k`), so the default filter is compiled as two programs,
//! "control" (the TCP control port, ICMP) kept whole, and "data" (UDP from
//! the data ports) kept to the snap length, and spliced into one: every
//! `ret #0` of the first becomes a jump to the start of the second, and
//! every accepting `ret` of the second returns the snap length.
//!
//! On a loopback interface every packet passes the capture point twice,
//! once going out and once coming in; libpcap discards the outgoing copy in
//! user space, but only after it has taken room in the ring buffer and been
//! counted in `ps_recv`. The kernel's copy of the filter therefore starts
//! with `inbound` there ([`inbound`]): each packet is carried and counted
//! once.

/// One classic BPF instruction, laid out as `struct bpf_insn` /
/// `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const BPF_CLASS_MASK: u16 = 0x07;
const BPF_RET: u16 = 0x06;
const BPF_JMP: u16 = 0x05;
const BPF_JA: u16 = BPF_JMP; // BPF_JMP | BPF_JA (0x00)
const BPF_RVAL_MASK: u16 = 0x18;
const BPF_K: u16 = 0x00;
/// The kernel's limit on a classic BPF program.
pub const BPF_MAXINSNS: usize = 4096;

/// The highest client number whose data port the default filter takes;
/// the analyzer infers clients up to the same bound.
pub const MAX_CLIENTS: u16 = 4096;

/// The default filter of a run on `control_port`, as its two halves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultFilter {
    /// Kept whole: the TCP control connections and ICMP errors.
    pub control: String,
    /// Kept to the snap length: UDP from the server's data ports.
    pub data: String,
}

impl DefaultFilter {
    pub fn new(control_port: u16) -> DefaultFilter {
        let first = control_port.saturating_add(1);
        let last = control_port.saturating_add(MAX_CLIENTS);
        DefaultFilter {
            control: format!("tcp port {control_port} or icmp or icmp6"),
            data: format!("udp src portrange {first}-{last}"),
        }
    }

    /// The two halves as one libpcap filter expression, as the file's
    /// `if_filter` records it.
    pub fn expression(&self) -> String {
        format!("({}) or ({})", self.control, self.data)
    }
}

/// `expr` for the kernel of a loopback interface: only the incoming copy
/// of each packet. libpcap cannot run `inbound` in user space (it has no
/// packet type there), so this form goes only into the kernel; libpcap
/// filters the blocks already in its ring when a filter is installed with
/// the plain form.
pub fn inbound(expr: &str) -> String {
    format!("inbound and ({expr})")
}

/// Why two programs could not be spliced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpliceError {
    /// A `ret` returns the accumulator, not a constant, so its snap length
    /// cannot be rewritten.
    #[error("instruction {index} returns the accumulator")]
    ReturnsAccumulator { index: usize },
    /// The result would exceed the kernel's program size.
    #[error("the spliced filter has {len} instructions (at most {BPF_MAXINSNS})")]
    TooLong { len: usize },
}

fn is_ret(i: &Insn) -> bool {
    i.code & BPF_CLASS_MASK == BPF_RET
}

/// `whole` then `data`: a packet `whole` rejects is tried against `data`,
/// whose accepted packets are kept to `data_snaplen` bytes.
pub fn splice(whole: &[Insn], data: &[Insn], data_snaplen: u32) -> Result<Vec<Insn>, SpliceError> {
    let len = whole.len() + data.len();
    if len > BPF_MAXINSNS {
        return Err(SpliceError::TooLong { len });
    }
    let mut out = Vec::with_capacity(len);
    for (index, i) in whole.iter().enumerate() {
        if !is_ret(i) {
            out.push(*i);
            continue;
        }
        if i.code & BPF_RVAL_MASK != BPF_K {
            return Err(SpliceError::ReturnsAccumulator { index });
        }
        if i.k == 0 {
            // `ja k` goes to pc + 1 + k: the first instruction of `data`.
            out.push(Insn {
                code: BPF_JA,
                jt: 0,
                jf: 0,
                k: (whole.len() - index - 1) as u32,
            });
        } else {
            out.push(*i);
        }
    }
    for (index, i) in data.iter().enumerate() {
        if !is_ret(i) {
            out.push(*i);
            continue;
        }
        if i.code & BPF_RVAL_MASK != BPF_K {
            return Err(SpliceError::ReturnsAccumulator {
                index: whole.len() + index,
            });
        }
        out.push(Insn {
            k: if i.k == 0 { 0 } else { data_snaplen.min(i.k) },
            ..*i
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RET: u16 = 0x06;
    const RET_A: u16 = 0x16;
    const LDH_ABS: u16 = 0x28;
    const JEQ_K: u16 = 0x15;

    fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }

    /// A tiny classic-BPF interpreter for the instructions used here.
    fn run(prog: &[Insn], pkt: &[u8]) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            match i.code {
                LDH_ABS => {
                    let o = i.k as usize;
                    a = u32::from(u16::from_be_bytes([pkt[o], pkt[o + 1]]));
                }
                JEQ_K => {
                    pc += usize::from(if a == i.k { i.jt } else { i.jf });
                }
                BPF_JA => pc += i.k as usize,
                RET => return i.k,
                other => panic!("unexpected code {other:#x}"),
            }
            pc += 1;
        }
    }

    /// Accepts packets whose first half-word is `v`, whole (262144 bytes).
    fn accept_if(v: u32) -> Vec<Insn> {
        vec![
            insn(LDH_ABS, 0, 0, 0),
            insn(JEQ_K, 0, 1, v),
            insn(RET, 0, 0, 262_144),
            insn(RET, 0, 0, 0),
        ]
    }

    #[test]
    fn control_is_kept_whole_data_is_cut_and_the_rest_rejected() {
        let prog = splice(&accept_if(5005), &accept_if(5006), 128).unwrap();
        assert_eq!(prog.len(), 8);
        assert_eq!(prog[3], insn(BPF_JA, 0, 0, 0));
        assert_eq!(run(&prog, &5005u16.to_be_bytes()), 262_144);
        assert_eq!(run(&prog, &5006u16.to_be_bytes()), 128);
        assert_eq!(run(&prog, &80u16.to_be_bytes()), 0);
    }

    #[test]
    fn a_reject_in_the_middle_jumps_over_the_rest_of_the_first_program() {
        let mut whole = accept_if(1);
        whole.insert(2, insn(RET, 0, 0, 0));
        whole[1].jf = 0; // jeq #1 jt 0 jf 0: falls through to ret #0
        let prog = splice(&whole, &accept_if(2), 96).unwrap();
        assert_eq!(prog[2], insn(BPF_JA, 0, 0, 2));
        assert_eq!(run(&prog, &2u16.to_be_bytes()), 96);
        assert_eq!(run(&prog, &1u16.to_be_bytes()), 0);
    }

    #[test]
    fn a_snap_length_above_the_program_s_own_is_not_raised() {
        let prog = splice(&accept_if(1), &accept_if(2), 1_000_000).unwrap();
        assert_eq!(run(&prog, &2u16.to_be_bytes()), 262_144);
    }

    #[test]
    fn returning_the_accumulator_or_too_many_instructions_is_refused() {
        let mut data = accept_if(2);
        data[2] = insn(RET_A, 0, 0, 0);
        assert_eq!(
            splice(&accept_if(1), &data, 128),
            Err(SpliceError::ReturnsAccumulator { index: 6 })
        );
        let long = vec![insn(RET, 0, 0, 0); BPF_MAXINSNS];
        assert!(matches!(
            splice(&long, &accept_if(2), 128),
            Err(SpliceError::TooLong { len: 4100 })
        ));
    }

    #[test]
    fn the_default_filter_names_the_control_and_data_ports() {
        let f = DefaultFilter::new(5005);
        assert_eq!(f.control, "tcp port 5005 or icmp or icmp6");
        assert_eq!(f.data, "udp src portrange 5006-9101");
        assert_eq!(
            inbound(&f.data),
            "inbound and (udp src portrange 5006-9101)"
        );
        let f = DefaultFilter::new(65000);
        assert_eq!(f.data, "udp src portrange 65001-65535");
        assert!(f.expression().starts_with("(tcp port 65000"));
    }
}
