//! The whole `udplab analyze` pipeline on one capture file's bytes: reader,
//! decoder, TCP and UDP tables, the conversation view, correlation, and the
//! report in every format.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use udplab::analyze::reader::{Reader, Source};
use udplab::analyze::report::{self, Format};
use udplab::analyze::{self, Options};

fuzz_target!(|data: &[u8]| {
    let source = Source {
        label: "fuzz".into(),
        reader: Box::new(Cursor::new(data.to_vec())),
        len: Some(data.len() as u64),
    };
    let Ok(mut reader) = Reader::from_sources(vec![source]) else {
        return;
    };
    let analysis = analyze::analyze(
        &mut reader,
        &analyze::logs::LogSet::default(),
        // With the conversation view, so that its code is run too.
        &Options {
            conversations: true,
            ..Options::default()
        },
        &mut |_, _| {},
    );
    for format in [Format::Json, Format::Table, Format::Csv, Format::Jsonl] {
        report::write(&mut std::io::sink(), &analysis, format).expect("writing to a sink");
    }
});
