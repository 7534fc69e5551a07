//! Text a peer sent, made safe to show, and names made to fit the file
//! system.
//!
//! A peer's words (an abort reason, a file name, a host name) reach the
//! terminal and the logs. Control characters in them would be obeyed by a
//! terminal (ESC sequences move the cursor, rewrite lines, set the title)
//! or break a log's one-fact-a-line layout, so [`escape_peer_text`] writes
//! them out as `\x1b`, `\u{9b}`: what the peer sent stays readable, and
//! nothing it sent acts.
//!
//! Names: Linux file systems take at most [`NAME_MAX`] bytes per name. A
//! received file may use all of them, so the names built around it (its
//! temporary name, `.incomplete`, the logs) are cut to fit by
//! [`fit_name`], with a hash of what was cut so that two long names stay
//! apart.

use std::borrow::Cow;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// The longest file name (bytes) Linux file systems take.
pub const NAME_MAX: usize = 255;

/// Whether `c` must not reach a terminal or a log as it is: the C0 and C1
/// control characters and DEL, and the bidirectional formatting
/// characters, which reorder what a terminal shows after them.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character written out: `\x1b` for those
/// below U+0080, `\u{9b}` for the others. Text with none is returned as
/// it is, so escaping twice changes nothing.
pub fn escape_peer_text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if u32::from(c) < 0x80 {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// Hex digits of the hash [`fit_name`] puts in place of what it cuts.
const HASH_HEX: usize = 16;

/// `stem` followed by `suffix`, in at most `max` bytes: as it is when it
/// fits, otherwise the start of `stem`, `~`, 16 hex digits of the
/// SHA-256 of the whole `stem`, then `suffix`. `suffix` is kept whole;
/// it must leave room for the hash (`max - suffix.len() > 17`).
pub fn fit_name(stem: &str, suffix: &str, max: usize) -> String {
    if stem.len() + suffix.len() <= max {
        return format!("{stem}{suffix}");
    }
    let hash = Sha256::digest(stem.as_bytes());
    let mut hex = String::with_capacity(HASH_HEX);
    for b in &hash[..HASH_HEX / 2] {
        let _ = write!(hex, "{b:02x}");
    }
    let mut keep = max
        .saturating_sub(suffix.len() + 1 + HASH_HEX)
        .min(stem.len());
    while !stem.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}~{hex}{suffix}", &stem[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_written_out() {
        assert_eq!(
            escape_peer_text("plain text, ñ é 100%"),
            "plain text, ñ é 100%"
        );
        assert!(matches!(escape_peer_text("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape_peer_text("\x1b]0;owned\x07\x1b[2Jbye\r\n\t\x7f"),
            "\\x1b]0;owned\\x07\\x1b[2Jbye\\x0d\\x0a\\x09\\x7f"
        );
        // C1's CSI and a right-to-left override.
        assert_eq!(
            escape_peer_text("a\u{9b}31mb\u{202e}c"),
            "a\\u{9b}31mb\\u{202e}c"
        );
        // Escaped text has nothing left to escape.
        let once = escape_peer_text("\x1b[31m").into_owned();
        assert_eq!(escape_peer_text(&once), once);
    }

    #[test]
    fn names_fit_and_stay_apart() {
        assert_eq!(
            fit_name("file.bin", ".incomplete", NAME_MAX),
            "file.bin.incomplete"
        );
        let long = "é".repeat(127) + "x"; // 255 bytes
        let fitted = fit_name(&long, ".incomplete", NAME_MAX);
        assert!(fitted.len() <= NAME_MAX, "{}", fitted.len());
        assert!(fitted.ends_with(".incomplete"));
        assert!(fitted.starts_with("éé"));
        let other = "é".repeat(127) + "y";
        assert_ne!(fit_name(&other, ".incomplete", NAME_MAX), fitted);
        // The same name always fits the same way.
        assert_eq!(fit_name(&long, ".incomplete", NAME_MAX), fitted);
        let tiny = fit_name(&"a".repeat(100), ".part", 40);
        assert_eq!(tiny.len(), 40);
    }
}
