//! Names of the files in a database directory (`docs/design.md`, "Files").
//!
//! ```text
//! LOCK               held by the open Db
//! CURRENT            names the live manifest
//! MANIFEST-000007    log of version edits
//! 000012.wal         write-ahead log of one memtable
//! 000015.sst         sorted table
//! 000003.seg         segment 3 of the block store (value blocks)
//! ```
//!
//! File numbers come from one counter, so a name is never reused within a database. Segment
//! files are the exception: a segment's number is its index in the block store's physical
//! block space (`value/store.rs`), not a counter value.

/// What a file in the directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Wal(u64),
    Table(u64),
    Manifest(u64),
    /// A block store segment, by index.
    Segment(u64),
    Current,
    Lock,
    Temp,
}

pub(crate) const CURRENT: &str = "CURRENT";
pub(crate) const LOCK: &str = "LOCK";

pub(crate) fn wal(number: u64) -> String {
    format!("{number:06}.wal")
}

pub(crate) fn table(number: u64) -> String {
    format!("{number:06}.sst")
}

pub(crate) fn manifest(number: u64) -> String {
    format!("MANIFEST-{number:06}")
}

pub(crate) fn segment(index: u64) -> String {
    format!("{index:06}.seg")
}

pub(crate) fn temp(number: u64) -> String {
    format!("{number:06}.tmp")
}

/// Classifies a directory entry; `None` for files that are not the database's.
pub(crate) fn parse(name: &str) -> Option<FileKind> {
    let number = |s: &str| {
        s.parse::<u64>()
            .ok()
            .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
    };
    match name {
        CURRENT => return Some(FileKind::Current),
        LOCK => return Some(FileKind::Lock),
        _ => {}
    }
    if let Some(n) = name.strip_prefix("MANIFEST-") {
        return number(n).map(FileKind::Manifest);
    }
    let (stem, ext) = name.rsplit_once('.')?;
    let n = number(stem)?;
    match ext {
        "wal" => Some(FileKind::Wal(n)),
        "sst" => Some(FileKind::Table(n)),
        "seg" => Some(FileKind::Segment(n)),
        "tmp" => Some(FileKind::Temp),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_their_kind() {
        assert_eq!(parse(&wal(12)), Some(FileKind::Wal(12)));
        assert_eq!(parse(&table(1_234_567)), Some(FileKind::Table(1_234_567)));
        assert_eq!(parse(&manifest(3)), Some(FileKind::Manifest(3)));
        assert_eq!(parse("CURRENT"), Some(FileKind::Current));
        assert_eq!(parse("000001.tmp"), Some(FileKind::Temp));
        assert_eq!(parse("notes.txt"), None);
        assert_eq!(parse("+12.sst"), None);
    }

    #[test]
    fn segment_names_parse_back_to_their_index() {
        assert_eq!(segment(0), "000000.seg");
        assert_eq!(parse(&segment(0)), Some(FileKind::Segment(0)));
        assert_eq!(
            parse(&segment(12_345_678)),
            Some(FileKind::Segment(12_345_678))
        );
        assert_eq!(parse("x1.seg"), None);
    }
}
