//! Typed errors.

use thiserror::Error;

/// Why untrusted bytes (envelope, statement, predicate) or a policy could
/// not be parsed. Every variant names the document and field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// A size or count bound was exceeded.
    #[error("{what} is {size}, over the limit of {max}")]
    TooLarge {
        /// what was too large
        what: String,
        /// its size (bytes or count)
        size: usize,
        /// the limit
        max: usize,
    },
    /// The DSSE envelope is malformed.
    #[error("DSSE envelope field {field}: {reason}")]
    Envelope {
        /// offending field
        field: String,
        /// what is wrong
        reason: String,
    },
    /// The in-toto statement is malformed.
    #[error("in-toto statement field {field}: {reason}")]
    Statement {
        /// offending field
        field: String,
        /// what is wrong
        reason: String,
    },
    /// The SLSA provenance predicate is malformed.
    #[error("SLSA provenance predicate field {field}: {reason}")]
    Provenance {
        /// offending field
        field: String,
        /// what is wrong
        reason: String,
    },
}

/// Why a policy file is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// TOML or JSON syntax / schema error (unknown fields are refused so a
    /// typo cannot silently widen the policy).
    #[error("provenance policy {source_name}: {reason}")]
    Syntax {
        /// file name or description of the input
        source_name: String,
        /// parser message
        reason: String,
    },
    /// A rule breaks a policy rule.
    #[error("provenance policy rule '{rule}': {reason}")]
    Rule {
        /// rule name
        rule: String,
        /// what is wrong
        reason: String,
    },
}
