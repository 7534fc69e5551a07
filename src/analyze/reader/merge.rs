//! Several files' packets in timestamp order. Each file keeps its next
//! packet (its head) in its buffer; the earliest head is lent out, the
//! lowest file index winning ties, and that file moves on at the next call,
//! once the borrow has ended. A file that stops on an error stops alone.

use super::FileFacts;
use super::input::{Head, Input};

/// Which file moves on at the next call.
#[derive(Debug, Default)]
pub(super) struct Merge {
    /// Every file has read its first packet.
    started: bool,
    /// The file whose head packet was lent out last.
    lent: Option<usize>,
}

impl Merge {
    /// Moves on the file lent out last (every file, the first time) and
    /// gives the earliest head with its file's index; `None` when every
    /// file has ended.
    pub(super) fn next(
        &mut self,
        inputs: &mut [Input],
        files: &mut [FileFacts],
    ) -> Option<(usize, Head)> {
        if !self.started {
            self.started = true;
            for (input, facts) in inputs.iter_mut().zip(files.iter_mut()) {
                input.advance(facts);
            }
        } else if let Some(i) = self.lent.take()
            && let (Some(input), Some(facts)) = (inputs.get_mut(i), files.get_mut(i))
        {
            input.advance(facts);
        }
        let (file, head) = earliest(inputs)?;
        self.lent = Some(file);
        Some((file, head))
    }
}

/// The earliest head of all files and its file's index, the lowest index
/// winning ties.
fn earliest(inputs: &[Input]) -> Option<(usize, Head)> {
    let mut best: Option<(usize, &Head)> = None;
    for (i, input) in inputs.iter().enumerate() {
        if let Some(head) = input.head()
            && best.is_none_or(|(_, b)| head.ts_ns < b.ts_ns)
        {
            best = Some((i, head));
        }
    }
    best.map(|(i, head)| (i, *head))
}

#[cfg(test)]
mod tests {
    use super::super::ReadError;
    use super::super::testing::*;
    use crate::pcapng::IF_TSRESOL;

    #[test]
    fn files_merge_by_timestamp() {
        let mut a = pcap_header(false, false, 65535, 1);
        for (sec, tag) in [(1, 1u8), (3, 3), (5, 5)] {
            pcap_record(&mut a, false, sec, 0, &[tag], 1);
        }
        let mut b = Ng::new(false);
        b.idb(0, 0, &[(IF_TSRESOL, vec![0])]);
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
}
