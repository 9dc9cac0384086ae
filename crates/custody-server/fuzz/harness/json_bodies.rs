//! The server's JSON request bodies: the first byte picks the endpoint,
//! the rest is its body, parsed by `axum::Json::from_bytes`, the parse the
//! `Json` extractor of each handler runs, into the handler's request type;
//! a refusal is rendered as the 400 message the handlers send
//! (`JsonRejection::body_text`). Nothing may panic.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/json_bodies.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use axum::Json;
use custody_server::fuzzing::{
    CreateCredential, CreateRepo, FleetYankRequest, PinRequest, Reason, RolloutRequest,
    StageTarget, TokenIssue, TokenRequest, YankRequest,
};

macro_rules! parse {
    ($t:ty, $body:expr) => {
        if let Err(e) = Json::<$t>::from_bytes($body) {
            let msg = e.body_text();
            assert!(!msg.is_empty());
        }
    };
}

pub fn run(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 10 {
        0 => parse!(TokenRequest, body),     // POST /api/v1/token
        1 => parse!(CreateCredential, body), // POST /api/v1/credentials
        2 => parse!(StageTarget, body),      // PUT  /api/v1/repos/{repo}/targets/{name}
        3 => parse!(YankRequest, body),      // POST /api/v1/repos/{repo}/yanks
        4 => parse!(CreateRepo, body),       // POST /api/v1/repos/{repo}
        5 => parse!(TokenIssue, body),       // POST /api/v1/fleet/enrolment-tokens
        6 => parse!(PinRequest, body),       // PUT  /api/v1/fleet/devices/{id}/pin
        7 => parse!(RolloutRequest, body),   // POST /api/v1/fleet/rollouts
        8 => parse!(FleetYankRequest, body), // POST /api/v1/fleet/yanks
        _ => parse!(Reason, body), // pause / resume / abort / suspend (serde_json, same deserialiser)
    }
}
