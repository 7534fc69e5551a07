//! Inputs that once made the analyzer panic (found by the fuzz targets in
//! fuzz/), run through the whole pipeline in a debug build, where integer
//! overflow panics too.

use std::io::Cursor;

use udplab::analyze::reader::{Reader, Source};
use udplab::analyze::report::{self, Format};
use udplab::analyze::{self, Options};

#[test]
fn past_crashes_stay_fixed() {
    let mut seen = 0;
    for entry in std::fs::read_dir("fuzz/regressions").expect("fuzz/regressions") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let source = Source {
            label: path.clone(),
            reader: Box::new(Cursor::new(data.clone())),
            len: Some(data.len() as u64),
        };
        let Ok(mut reader) = Reader::from_sources(vec![source]) else {
            continue;
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
            report::write(&mut std::io::sink(), &analysis, format).unwrap();
        }
        seen += 1;
    }
    assert!(seen > 0, "no regression input could be opened");
}
