//! custody-repo
#![forbid(unsafe_code)]
