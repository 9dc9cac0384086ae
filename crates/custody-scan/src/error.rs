//! Why an image could not be scanned. Every error names where (the image or
//! the layer, the byte offset, the tar entry) and the rule broken; an image
//! that cannot be scanned is refused, never passed.

use std::fmt;

/// A limit of [`crate::Limits`] or a path rule that an entry broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitRule {
    /// A path component is `..`.
    DotDot,
    /// The path starts with `/`.
    Absolute,
    /// More path components than allowed.
    TooDeep { depth: usize, max: usize },
    /// A path longer than allowed.
    PathTooLong { len: usize, max: usize },
    /// The header declares more bytes than one entry may have.
    EntryTooLarge { size: u64, max: u64 },
    /// A file that must be read (CA bundle, package database) is larger than its cap.
    FileTooLarge { size: u64, max: u64 },
    /// More entries than allowed.
    TooManyEntries { max: u64 },
    /// GNU long names / pax headers before one entry larger than allowed.
    HeadersTooLarge { max: u64 },
    /// More uncompressed bytes than allowed.
    ImageTooLarge { max: u64 },
    /// More certificates and packages than allowed.
    TooManyRecords { max: usize },
}

impl fmt::Display for LimitRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitRule::DotDot => write!(f, "path has a `..` component"),
            LimitRule::Absolute => write!(f, "absolute path"),
            LimitRule::TooDeep { depth, max } => {
                write!(f, "path has {depth} components, more than {max}")
            }
            LimitRule::PathTooLong { len, max } => {
                write!(f, "path is {len} bytes, more than {max}")
            }
            LimitRule::EntryTooLarge { size, max } => {
                write!(
                    f,
                    "declared size {size} bytes exceeds the entry limit of {max}"
                )
            }
            LimitRule::FileTooLarge { size, max } => {
                write!(
                    f,
                    "file to scan is {size} bytes, more than its cap of {max}"
                )
            }
            LimitRule::TooManyEntries { max } => write!(f, "more than {max} entries"),
            LimitRule::HeadersTooLarge { max } => {
                write!(
                    f,
                    "extension headers (GNU long name, pax) exceed {max} bytes"
                )
            }
            LimitRule::ImageTooLarge { max } => write!(f, "more than {max} uncompressed bytes"),
            LimitRule::TooManyRecords { max } => {
                write!(f, "more than {max} certificates and packages")
            }
        }
    }
}

/// An image that cannot be scanned.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{scope}: unsupported compression {format} (tar, gzip and zstd are scanned)")]
    UnsupportedCompression { scope: String, format: &'static str },
    #[error(
        "{scope}: truncated or corrupt {format} stream at compressed offset {offset}: {detail}"
    )]
    Decompress {
        scope: String,
        format: &'static str,
        offset: u64,
        detail: String,
    },
    #[error("{scope}: malformed tar at offset {offset}{}: {detail}", after_entry(.entry))]
    MalformedTar {
        scope: String,
        offset: u64,
        entry: Option<String>,
        detail: String,
    },
    #[error("{scope}: tar entry {entry:?} at offset {offset} refused: {rule}")]
    Refused {
        scope: String,
        offset: u64,
        entry: String,
        rule: LimitRule,
    },
    #[error("{scope}: {rule}")]
    Limit { scope: String, rule: LimitRule },
    #[error("OCI layout: {0}")]
    Oci(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn after_entry(e: &Option<String>) -> String {
    match e {
        Some(e) => format!(" (after entry {e:?})"),
        None => String::new(),
    }
}
