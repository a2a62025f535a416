//! How keys and values cross the command line: the [`Codec`] picked by `--hex`, hex itself,
//! and JSON strings for `--json` output.
//!
//! Without `--hex`, bytes use the escapes of `escape.rs`; with it, plain hex digits (two per
//! byte, lowercase on output, either case on input, no `0x` prefix). Both are pure ASCII, so a
//! JSON string of either needs only `"` and `\` escaped.

use std::ffi::OsStr;

use crate::escape;
use crate::outcome::Failure;

/// How a command reads its arguments and prints: the global `--hex` and `--json` flags.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// The text form of keys and values.
    pub codec: Codec,
    /// Print JSON instead of text.
    pub json: bool,
}

/// The text form of keys and values, on input and output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `escape.rs`: printable ASCII as is, `\xNN` for other bytes.
    Escape,
    /// Two hex digits per byte.
    Hex,
}

impl Codec {
    /// A key for display.
    pub fn key(self, bytes: &[u8]) -> String {
        match self {
            Self::Escape => escape::key(bytes),
            Self::Hex => to_hex(bytes),
        }
    }

    /// A value for display.
    pub fn value(self, bytes: &[u8]) -> String {
        match self {
            Self::Escape => escape::value(bytes),
            Self::Hex => to_hex(bytes),
        }
    }

    /// Decodes one input token.
    ///
    /// # Errors
    /// A message naming the bad escape or hex digit.
    pub fn decode(self, text: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Self::Escape => escape::parse(text),
            Self::Hex => from_hex(text),
        }
    }

    /// Decodes a command-line argument.
    ///
    /// # Errors
    /// `Failure::Usage` naming the bad escape or hex digit.
    pub fn arg(self, arg: &OsStr) -> Result<Vec<u8>, Failure> {
        self.decode(arg.as_encoded_bytes()).map_err(Failure::Usage)
    }
}

/// Lowercase hex, two digits per byte.
pub fn to_hex(bytes: &[u8]) -> String {
    to_hex_with(bytes, b"0123456789abcdef")
}

/// Uppercase hex, as RocksDB's `ldb --hex` writes it.
pub fn to_hex_upper(bytes: &[u8]) -> String {
    to_hex_with(bytes, b"0123456789ABCDEF")
}

fn to_hex_with(bytes: &[u8], digits: &[u8; 16]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            // A nibble is below 16, so the lookup cannot miss.
            out.push(char::from(
                digits.get(usize::from(nibble)).copied().unwrap_or(b'?'),
            ));
        }
    }
    out
}

/// Decodes hex digits (either case) into bytes.
///
/// # Errors
/// A message for an odd number of digits or a character that is not a hex digit.
pub fn from_hex(text: &[u8]) -> Result<Vec<u8>, String> {
    let shown = || String::from_utf8_lossy(text).into_owned();
    if !text.len().is_multiple_of(2) {
        return Err(format!(
            "bad hex {:?}: an odd number of digits (two per byte)",
            shown()
        ));
    }
    text.chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => match (hex_digit(*hi), hex_digit(*lo)) {
                (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
                _ => Err(format!(
                    "bad hex {:?}: only 0-9, a-f and A-F are hex digits",
                    shown()
                )),
            },
            _ => Err(format!("bad hex {:?}", shown())),
        })
        .collect()
}

fn hex_digit(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// A JSON string literal of ASCII text (control characters escaped too, for safety).
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_through_hex() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(to_hex(&all).as_bytes()).unwrap(), all);
        assert_eq!(to_hex(b"\x00\xffa"), "00ff61");
    }

    #[test]
    fn bad_hex_is_refused_with_a_message() {
        assert!(from_hex(b"abc").unwrap_err().contains("odd"));
        assert!(from_hex(b"zz").unwrap_err().contains("hex digits"));
        assert_eq!(from_hex(b"").unwrap(), b"");
    }

    #[test]
    fn json_strings_escape_quotes_and_backslashes() {
        assert_eq!(json_string("a\"b\\x00"), "\"a\\\"b\\\\x00\"");
    }
}
