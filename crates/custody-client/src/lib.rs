//! custody-client
#![forbid(unsafe_code)]
