//! Streaming verification of target files.
//!
//! Hash rule (targets and metadata alike): at least one listed algorithm
//! must be supported (sha256, sha512), otherwise the file is rejected;
//! algorithms we do not know are ignored; every supported algorithm listed
//! must match.
//!
//! Length rule: the signed length is an upper bound enforced *while*
//! streaming ([`TargetVerifier::update`] fails as soon as one byte too many
//! arrives: endless-data attack) and an exact value at
//! [`TargetVerifier::finish`].

use ring::digest;

use crate::crypto::{compare_digest, known_hashes};
use crate::error::{Error, Result};
use crate::schema::TargetFile;

/// Incremental verifier for one target file.
pub struct TargetVerifier {
    path: String,
    length: u64,
    received: u64,
    contexts: Vec<(String, String, digest::Context)>,
}

impl std::fmt::Debug for TargetVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetVerifier")
            .field("path", &self.path)
            .field("length", &self.length)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl TargetVerifier {
    /// Start verifying the target `path` described by `target`. Fails if no
    /// listed hash algorithm is supported.
    pub fn new(path: &str, target: &TargetFile) -> Result<Self> {
        let contexts = known_hashes(path, &target.hashes)?
            .into_iter()
            .map(|(name, alg, expected)| {
                (
                    name.to_owned(),
                    expected.to_owned(),
                    digest::Context::new(alg.ring()),
                )
            })
            .collect();
        Ok(TargetVerifier {
            path: path.to_owned(),
            length: target.length,
            received: 0,
            contexts,
        })
    }

    /// The signed length: the maximum number of bytes to read.
    pub fn expected_length(&self) -> u64 {
        self.length
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Feed the next chunk. Fails as soon as the total exceeds the signed length.
    pub fn update(&mut self, chunk: &[u8]) -> Result<()> {
        let total = self.received.saturating_add(chunk.len() as u64);
        if total > self.length {
            return Err(Error::TooLarge {
                role: self.path.clone(),
                limit: self.length,
            });
        }
        self.received = total;
        for (_, _, ctx) in &mut self.contexts {
            ctx.update(chunk);
        }
        Ok(())
    }

    /// Finish: length must be exact and all supported hashes must match.
    pub fn finish(self) -> Result<()> {
        if self.received != self.length {
            return Err(Error::LengthMismatch {
                role: self.path,
                expected: self.length,
                found: self.received,
            });
        }
        for (name, expected, ctx) in self.contexts {
            compare_digest(&self.path, &name, &expected, ctx.finish().as_ref())?;
        }
        Ok(())
    }

    /// One-shot convenience: verify complete bytes.
    pub fn verify_all(path: &str, target: &TargetFile, bytes: &[u8]) -> Result<()> {
        let mut v = TargetVerifier::new(path, target)?;
        v.update(bytes)?;
        v.finish()
    }
}
