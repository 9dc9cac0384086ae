//! custody-log
#![forbid(unsafe_code)]
