//! custody-tuf
#![forbid(unsafe_code)]
