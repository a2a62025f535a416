//! How `kv` shows bytes on a terminal and reads them back from the command line.
//!
//! The grammar is one for output and input, so a key printed by `scan` can be pasted into
//! `get`:
//!
//! ```text
//! printable ASCII (0x20..=0x7e) except `\`   itself
//! `\`                                        \\
//! any other byte                             \xNN (two lowercase hex digits)
//! ```
//!
//! Keys also escape `=` (as `\x3d`) so that the first ` = ` of a `scan` line always separates
//! the key from the value. On input, `\xNN` (either case) and `\\` are the only escapes; any
//! other backslash is an error.

use std::fmt::Write as _;

/// Escapes a value for display.
pub fn value(bytes: &[u8]) -> String {
    escape(bytes, false)
}

/// Escapes a key for display: as [`value`], and `=` too.
pub fn key(bytes: &[u8]) -> String {
    escape(bytes, true)
}

fn escape(bytes: &[u8], is_key: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'=' if is_key => out.push_str("\\x3d"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// Decodes an escaped command-line argument into bytes.
///
/// # Errors
/// A message naming the bad escape, for a backslash not followed by `\` or two hex digits.
pub fn parse(text: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match rest {
            [b'\\', tail @ ..] => {
                out.push(b'\\');
                rest = tail;
            }
            [b'x', hi, lo, tail @ ..] => {
                let (Some(hi), Some(lo)) = (hex_digit(*hi), hex_digit(*lo)) else {
                    return Err(bad_escape(text));
                };
                out.push(hi << 4 | lo);
                rest = tail;
            }
            _ => return Err(bad_escape(text)),
        }
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn bad_escape(text: &[u8]) -> String {
    format!(
        "bad escape in {:?}: use \\xNN for a byte or \\\\ for a backslash",
        String::from_utf8_lossy(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_is_shown_as_is() {
        assert_eq!(value(b"user:42 {\"a\": 1}"), "user:42 {\"a\": 1}");
    }

    #[test]
    fn other_bytes_become_hex_escapes() {
        assert_eq!(value(b"a\x00\n\xff\\"), "a\\x00\\x0a\\xff\\\\");
    }

    #[test]
    fn keys_escape_equals_signs_and_values_do_not() {
        assert_eq!(key(b"a=b"), "a\\x3db");
        assert_eq!(value(b"a=b"), "a=b");
    }

    #[test]
    fn every_byte_round_trips_through_escape_and_parse() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(parse(key(&all).as_bytes()).unwrap(), all);
        assert_eq!(parse(value(&all).as_bytes()).unwrap(), all);
    }

    #[test]
    fn parse_accepts_uppercase_hex() {
        assert_eq!(parse(b"\\xFFz").unwrap(), b"\xffz");
    }

    #[test]
    fn parse_refuses_unknown_and_truncated_escapes() {
        assert!(parse(b"\\n").is_err());
        assert!(parse(b"\\x4").is_err());
        assert!(parse(b"\\xzz").is_err());
        assert!(parse(b"trailing\\").is_err());
    }
}
