//! Where a passphrase or PIN comes from: an environment variable, a file, or
//! an interactive prompt on the terminal (echo off, via `rpassword`, the
//! maintained crate every Rust CLI uses for this; it reads the controlling
//! terminal, not stdin, so piped input cannot be mistaken for a passphrase).
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::error::SignerError;

/// A source of a secret string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Read the named environment variable.
    Env(String),
    /// Read the file; one trailing newline (LF or CRLF) is removed.
    File(PathBuf),
    /// Ask on the terminal.
    Prompt,
}

/// Largest passphrase file custody reads.
const MAX_SECRET_FILE: u64 = 4096;

impl SecretSource {
    /// Get the secret. `what` names it in prompts and errors ("passphrase
    /// for root.pem"). With `confirm`, a prompt asks twice and the two must match.
    pub fn read(&self, what: &str, confirm: bool) -> Result<Zeroizing<String>, SignerError> {
        let err = |m: String| SignerError::Passphrase(m);
        match self {
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) => Ok(Zeroizing::new(v)),
                Err(std::env::VarError::NotPresent) => Err(err(format!(
                    "{what}: environment variable {name} is not set"
                ))),
                Err(std::env::VarError::NotUnicode(_)) => Err(err(format!(
                    "{what}: environment variable {name} is not valid UTF-8"
                ))),
            },
            SecretSource::File(path) => {
                use std::io::Read;
                let f = std::fs::File::open(path)
                    .map_err(|e| err(format!("{what}: cannot open {}: {e}", path.display())))?;
                let mut s = Zeroizing::new(String::new());
                f.take(MAX_SECRET_FILE + 1)
                    .read_to_string(&mut s)
                    .map_err(|e| err(format!("{what}: cannot read {}: {e}", path.display())))?;
                if s.len() as u64 > MAX_SECRET_FILE {
                    return Err(err(format!(
                        "{what}: {} is larger than {MAX_SECRET_FILE} bytes; is it really a passphrase file?",
                        path.display()
                    )));
                }
                let trimmed = s
                    .strip_suffix("\r\n")
                    .or_else(|| s.strip_suffix('\n'))
                    .unwrap_or(&s);
                Ok(Zeroizing::new(trimmed.to_owned()))
            }
            SecretSource::Prompt => {
                let first = Zeroizing::new(
                    rpassword::prompt_password(format!("{what}: "))
                        .map_err(|e| err(format!("{what}: cannot read from the terminal ({e}); use --passphrase-env or --passphrase-file in scripts")))?,
                );
                if confirm {
                    let second = Zeroizing::new(
                        rpassword::prompt_password(format!("{what} (again): ")).map_err(|e| {
                            err(format!("{what}: cannot read from the terminal ({e})"))
                        })?,
                    );
                    if *first != *second {
                        return Err(err(format!("{what}: the two entries differ")));
                    }
                }
                Ok(first)
            }
        }
    }
}
