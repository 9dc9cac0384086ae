//! Target lookup through delegations, as a sans-IO step machine.
//!
//! ```text
//! let mut search = TargetSearch::new("a/b.tgz", limits.max_delegations);
//! loop {
//!     match search.next(&trusted)? {
//!         SearchStep::Found { role, target } => break Some(target),
//!         SearchStep::NotFound => break None,
//!         SearchStep::Load { role, delegator } => {
//!             // fetch ROLE (local cache first, then remote) and hand it to
//!             // trusted.update_delegated_targets(bytes, &role, &delegator, now)?
//!             // (update_targets for role "targets")
//!         }
//!     }
//! }
//! ```
//!
//! Order: pre-order depth-first, delegations in listed order; a matching
//! `terminating` delegation stops the search from backtracking to anything
//! not yet visited. At most `max_roles + 1` roles are visited (top-level
//! targets plus `max_roles` delegations, as python-tuf does); a (role,
//! delegator) pair is visited once, so cycles end.
//!
//! Stricter than python-tuf/go-tuf: a role is only searched after it has
//! been verified against the delegation *in this lookup's path* (the
//! delegator's keys and threshold for that role). If the role was loaded
//! earlier through another delegator, the search asks for it again
//! (`Load`) and [`TrustedMetadata::update_delegated_targets`] re-verifies
//! it against the current delegator.

use std::collections::BTreeSet;

use crate::crypto::sha256_hex;
use crate::error::Result;
use crate::schema::{DelegatedRole, Delegations, SuccinctRoles, TargetFile};
use crate::trusted::TrustedMetadata;

/// One step of a target lookup.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchStep {
    /// The target was found in `role`.
    Found {
        /// role that lists the target
        role: String,
        /// the signed target info
        target: TargetFile,
    },
    /// No role on the search path lists the target.
    NotFound,
    /// Load (or re-verify) `role` as delegated by `delegator`, then call
    /// [`TargetSearch::next`] again.
    Load {
        /// role to load ("targets" for the top-level role)
        role: String,
        /// delegating role ("root" for top-level targets)
        delegator: String,
    },
}

/// State of one target lookup.
#[derive(Debug, Clone)]
pub struct TargetSearch {
    path: String,
    max_roles: usize,
    stack: Vec<(String, String)>,
    visited: BTreeSet<(String, String)>,
    finished: Option<SearchStep>,
    limit_reached: bool,
}

impl TargetSearch {
    /// Start looking up `path`, visiting at most `max_roles` delegated roles
    /// (use `Limits::max_delegations`).
    pub fn new(path: &str, max_roles: usize) -> Self {
        TargetSearch {
            path: path.to_owned(),
            max_roles,
            stack: vec![("targets".to_owned(), "root".to_owned())],
            visited: BTreeSet::new(),
            finished: None,
            limit_reached: false,
        }
    }

    /// The target path being looked up.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// True if the search ended because the role cap was reached.
    pub fn limit_reached(&self) -> bool {
        self.limit_reached
    }

    /// Advance the search.
    pub fn next(&mut self, trusted: &TrustedMetadata) -> Result<SearchStep> {
        loop {
            if let Some(done) = &self.finished {
                return Ok(done.clone());
            }
            let Some((role, delegator)) = self.stack.last().cloned() else {
                self.finished = Some(SearchStep::NotFound);
                continue;
            };
            if self.visited.len() > self.max_roles {
                self.limit_reached = true;
                self.finished = Some(SearchStep::NotFound);
                continue;
            }
            if self.visited.contains(&(role.clone(), delegator.clone())) {
                self.stack.pop();
                continue;
            }
            if !trusted.is_verified_by(&role, &delegator) {
                return Ok(SearchStep::Load { role, delegator });
            }
            self.stack.pop();
            let Some(targets) = trusted.targets_role(&role) else {
                // is_verified_by implies presence; be defensive, never panic.
                return Ok(SearchStep::Load { role, delegator });
            };
            if let Some(t) = targets.targets.get(&self.path) {
                self.finished = Some(SearchStep::Found {
                    role: role.clone(),
                    target: t.clone(),
                });
                continue;
            }
            self.visited.insert((role.clone(), delegator));
            if let Some(d) = &targets.delegations {
                let mut children = Vec::new();
                for (child, terminating) in roles_for_target(d, &self.path) {
                    children.push((child, role.clone()));
                    if terminating {
                        self.stack.clear();
                        break;
                    }
                }
                children.reverse();
                self.stack.extend(children);
            }
        }
    }
}

/// The delegated roles of `d` responsible for `path`, in order, with their
/// `terminating` flag (succinct bins are never terminating, as in python-tuf).
pub fn roles_for_target(d: &Delegations, path: &str) -> Vec<(String, bool)> {
    if let Some(roles) = &d.roles {
        roles
            .iter()
            .filter(|r| r.is_delegated_path(path))
            .map(|r| (r.name.clone(), r.terminating))
            .collect()
    } else if let Some(s) = &d.succinct_roles {
        vec![(s.role_for_target(path), false)]
    } else {
        Vec::new()
    }
}

impl DelegatedRole {
    /// Does this delegation cover `path` (by `paths` patterns or
    /// `path_hash_prefixes`)? Neither set means no path is delegated.
    pub fn is_delegated_path(&self, path: &str) -> bool {
        if let Some(patterns) = &self.paths {
            patterns.iter().any(|p| path_matches_pattern(path, p))
        } else if let Some(prefixes) = &self.path_hash_prefixes {
            let h = sha256_hex(path.as_bytes());
            prefixes.iter().any(|p| h.starts_with(p.as_str()))
        } else {
            false
        }
    }
}

impl SuccinctRoles {
    /// Number of hex digits in a bin suffix: ceil(bit_length / 4).
    pub fn suffix_len(&self) -> usize {
        (self.bit_length as usize).div_ceil(4)
    }

    /// Number of bins: 2^bit_length.
    pub fn bin_count(&self) -> u64 {
        1u64 << self.bit_length.min(32)
    }

    /// Bin index of a target: the first `bit_length` bits of sha256(path).
    pub fn bin_for_target(&self, path: &str) -> u64 {
        let d = ring::digest::digest(&ring::digest::SHA256, path.as_bytes());
        let mut first = [0u8; 4];
        for (dst, src) in first.iter_mut().zip(d.as_ref()) {
            *dst = *src;
        }
        let n = u32::from_be_bytes(first) as u64;
        n >> (32 - self.bit_length.clamp(1, 32))
    }

    /// Role name of bin `index`: `{name_prefix}-{index as zero-padded hex}`.
    pub fn bin_name(&self, index: u64) -> String {
        format!(
            "{}-{:0width$x}",
            self.name_prefix,
            index,
            width = self.suffix_len()
        )
    }

    /// Role name responsible for `path`.
    pub fn role_for_target(&self, path: &str) -> String {
        self.bin_name(self.bin_for_target(path))
    }

    /// Is `name` one of the bins (exact prefix, exact suffix width,
    /// lowercase hex, index below the bin count)?
    pub fn is_bin(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix(self.name_prefix.as_str()) else {
            return false;
        };
        let Some(suffix) = rest.strip_prefix('-') else {
            return false;
        };
        if suffix.len() != self.suffix_len()
            || !suffix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return false;
        }
        u64::from_str_radix(suffix, 16).is_ok_and(|n| n < self.bin_count())
    }
}

/// Spec path pattern match: target and pattern are split on `/`, the
/// number of segments must be equal, and each segment must match with
/// shell-style wildcards (`*` any run of characters within the segment,
/// `?` one character, `[seq]`, `[!seq]`, ranges `a-z`), like python-tuf's
/// per-segment `fnmatch`. `*` therefore never crosses `/`.
pub fn path_matches_pattern(target: &str, pattern: &str) -> bool {
    let t: Vec<&str> = target.split('/').collect();
    let p: Vec<&str> = pattern.split('/').collect();
    t.len() == p.len() && t.iter().zip(&p).all(|(ts, ps)| fnmatch(ts, ps))
}

#[derive(Debug)]
enum Tok {
    Star,
    Any,
    Lit(char),
    Set {
        negate: bool,
        ranges: Vec<(char, char)>,
    },
}

fn tokenize(pat: &str) -> Vec<Tok> {
    let chars: Vec<char> = pat.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        match c {
            '*' => {
                if !matches!(out.last(), Some(Tok::Star)) {
                    out.push(Tok::Star);
                }
            }
            '?' => out.push(Tok::Any),
            '[' => {
                // Find the closing bracket as Python's fnmatch.translate does:
                // a leading '!' and then a leading ']' are part of the set.
                let mut j = i;
                if chars.get(j) == Some(&'!') {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                while chars.get(j).is_some_and(|&c| c != ']') {
                    j += 1;
                }
                if j >= chars.len() {
                    out.push(Tok::Lit('['));
                    continue;
                }
                let body = chars.get(i..j).unwrap_or_default();
                i = j + 1;
                let (negate, body) = match body.split_first() {
                    Some(('!', rest)) => (true, rest),
                    _ => (false, body),
                };
                let mut ranges = Vec::new();
                let mut k = 0;
                while let Some(&lo) = body.get(k) {
                    if body.get(k + 1) == Some(&'-') {
                        if let Some(&hi) = body.get(k + 2) {
                            ranges.push((lo, hi));
                            k += 3;
                            continue;
                        }
                    }
                    ranges.push((lo, lo));
                    k += 1;
                }
                out.push(Tok::Set { negate, ranges });
            }
            c => out.push(Tok::Lit(c)),
        }
    }
    out
}

fn tok_matches(t: &Tok, c: char) -> bool {
    match t {
        Tok::Star => true,
        Tok::Any => true,
        Tok::Lit(l) => *l == c,
        Tok::Set { negate, ranges } => {
            let inside = ranges
                .iter()
                .any(|(lo, hi)| lo <= hi && *lo <= c && c <= *hi);
            inside != *negate
        }
    }
}

/// Shell-style match of one path segment (no `/` special handling needed:
/// segments contain none). Linear-time greedy matching with single
/// backtrack point, so hostile patterns cannot blow up.
pub fn fnmatch(name: &str, pattern: &str) -> bool {
    let toks = tokenize(pattern);
    let name: Vec<char> = name.chars().collect();
    let (mut ti, mut ni) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        match (toks.get(ti), name.get(ni)) {
            (Some(Tok::Star), _) => {
                backtrack = Some((ti, ni));
                ti += 1;
            }
            (Some(t), Some(&c)) if tok_matches(t, c) => {
                ti += 1;
                ni += 1;
            }
            (None, None) => return true,
            _ => match backtrack {
                Some((bt, bn)) if bn < name.len() => {
                    backtrack = Some((bt, bn + 1));
                    ti = bt + 1;
                    ni = bn + 1;
                }
                _ => return false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(path_matches_pattern(
            "registry.npmjs.org/keys.json",
            "registry.npmjs.org/*"
        ));
        assert!(!path_matches_pattern(
            "registry.npmjs.org/a/keys.json",
            "registry.npmjs.org/*"
        ));
        assert!(!path_matches_pattern("a/b", "*"));
        assert!(path_matches_pattern("a/b", "*/*"));
        assert!(path_matches_pattern("foo.tgz", "*.tgz"));
        assert!(!path_matches_pattern("foo.tar", "*.tgz"));
        assert!(path_matches_pattern("file1.txt", "file?.txt"));
        assert!(!path_matches_pattern("file12.txt", "file?.txt"));
        assert!(path_matches_pattern("file1.txt", "file[0-9].txt"));
        assert!(!path_matches_pattern("filea.txt", "file[0-9].txt"));
        assert!(path_matches_pattern("filea.txt", "file[!0-9].txt"));
        assert!(path_matches_pattern("a[b", "a[b"));
        assert!(path_matches_pattern("a]", "a[]]"));
        assert!(path_matches_pattern("", "*"));
        assert!(path_matches_pattern("targets/x/y.txt", "targets/*/*.txt"));
        assert!(!path_matches_pattern("x", "[z-a]"));
    }

    #[test]
    fn hostile_pattern_is_fast() {
        let name = "a".repeat(5000);
        let pat = "*a".repeat(2000) + "b";
        assert!(!fnmatch(&name, &pat));
    }
}
