//! Package version ordering: Debian's (dpkg) and Alpine's (apk). Pure.
//!
//! Both are written from the formats' documentation (deb-version(7) and
//! apk's version.c rules as documented in the Alpine wiki): the comparison
//! decides whether a crypto library meets the minimum of the policy, so a
//! wrong order is a wrong verdict.

use std::cmp::Ordering;

/// Compare two Debian version strings `[epoch:]upstream[-revision]`.
///
/// The epoch is compared numerically (absent = 0); upstream and revision
/// with dpkg's algorithm: alternating non-digit and digit runs, where in
/// the non-digit runs `~` sorts before everything, even the end of the
/// string, letters sort before non-letters, and digit runs compare as
/// numbers. An absent revision compares as `0`.
pub fn dpkg_cmp(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = dpkg_split(a);
    let (eb, ub, rb) = dpkg_split(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua, ub))
        .then_with(|| verrevcmp(ra, rb))
}

fn dpkg_split(v: &str) -> (u64, &str, &str) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            // An epoch too large for u64 saturates: it is still larger than any sane one.
            (e.parse::<u64>().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((up, rev)) => (epoch, up, rev),
        None => (epoch, rest, ""),
    }
}

/// dpkg's character order in non-digit runs (`None` = end of the run).
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // non-digit prefix
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let bc = order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        // digit run, numerically: skip leading zeros, then longer is larger
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let si = i;
        let sj = j;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (da, db) = (&a[si..i], &b[sj..j]);
        let c = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

/// Compare two Alpine package versions `digits(.digits)*[letter](_suffix[digits])*[-rN]`.
///
/// Numeric components compare as numbers (the first) or, after the first,
/// as apk does: a component with a leading zero compares as a decimal
/// fraction (string order). A trailing letter sorts after no letter.
/// Suffixes `_alpha < _beta < _pre < _rc < (none) < _cvs < _svn < _git <
/// _hg < _p`, each with an optional number. The `-rN` release compares last.
/// Anything unparseable falls back to dpkg's order of the remaining text,
/// which keeps the comparison total.
pub fn apk_cmp(a: &str, b: &str) -> Ordering {
    let pa = ApkVersion::parse(a.trim());
    let pb = ApkVersion::parse(b.trim());
    pa.cmp_to(&pb)
}

struct ApkVersion<'a> {
    numbers: Vec<&'a str>,
    letter: Option<u8>,
    suffixes: Vec<(i32, &'a str)>,
    release: &'a str,
    rest: &'a str,
}

fn suffix_rank(s: &str) -> Option<i32> {
    Some(match s {
        "alpha" => -4,
        "beta" => -3,
        "pre" => -2,
        "rc" => -1,
        "cvs" => 1,
        "svn" => 2,
        "git" => 3,
        "hg" => 4,
        "p" => 5,
        _ => return None,
    })
}

impl<'a> ApkVersion<'a> {
    fn parse(v: &'a str) -> Self {
        let (body, release) = match v.rsplit_once("-r") {
            Some((b, r)) if !r.is_empty() && r.bytes().all(|c| c.is_ascii_digit()) => (b, r),
            _ => (v, ""),
        };
        let bytes = body.as_bytes();
        let mut i = 0;
        let mut numbers = Vec::new();
        loop {
            let s = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if s == i {
                break;
            }
            numbers.push(&body[s..i]);
            if i < bytes.len()
                && bytes[i] == b'.'
                && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
            {
                i += 1;
            } else {
                break;
            }
        }
        let mut letter = None;
        if i < bytes.len() && bytes[i].is_ascii_lowercase() {
            letter = Some(bytes[i]);
            i += 1;
        }
        let mut suffixes = Vec::new();
        while i < bytes.len() && bytes[i] == b'_' {
            let s = i + 1;
            let mut k = s;
            while k < bytes.len() && bytes[k].is_ascii_lowercase() {
                k += 1;
            }
            let Some(rank) = suffix_rank(&body[s..k]) else {
                break;
            };
            let ns = k;
            while k < bytes.len() && bytes[k].is_ascii_digit() {
                k += 1;
            }
            suffixes.push((rank, &body[ns..k]));
            i = k;
        }
        ApkVersion {
            numbers,
            letter,
            suffixes,
            release,
            rest: &body[i..],
        }
    }

    fn cmp_to(&self, o: &Self) -> Ordering {
        for k in 0..self.numbers.len().max(o.numbers.len()) {
            let c = match (self.numbers.get(k), o.numbers.get(k)) {
                (Some(a), Some(b)) => {
                    if k > 0 && (a.starts_with('0') || b.starts_with('0')) {
                        a.cmp(b)
                    } else {
                        num_cmp(a, b)
                    }
                }
                (Some(_), None) => Ordering::Greater,
                (None, Some(_)) => Ordering::Less,
                (None, None) => Ordering::Equal,
            };
            if c != Ordering::Equal {
                return c;
            }
        }
        let c = self.letter.cmp(&o.letter);
        if c != Ordering::Equal {
            return c;
        }
        for k in 0..self.suffixes.len().max(o.suffixes.len()) {
            let (ra, na) = self.suffixes.get(k).copied().unwrap_or((0, ""));
            let (rb, nb) = o.suffixes.get(k).copied().unwrap_or((0, ""));
            let c = ra.cmp(&rb).then_with(|| num_cmp(na, nb));
            if c != Ordering::Equal {
                return c;
            }
        }
        num_cmp(self.release, o.release).then_with(|| verrevcmp(self.rest, o.rest))
    }
}

fn num_cmp(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn dpkg_order() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0+", Less),
            ("1:0.1", "9.9", Greater),
            ("0:1.0", "1.0", Equal),
            ("2:3.61", "3.87.1-1", Greater),
            ("1.0-1", "1.0-2", Less),
            ("1.0-1~deb12u1", "1.0-1", Less),
            ("3.0.11-1~deb12u2", "3.0.0", Greater),
            ("3.0.0~alpha1-1", "3.0.0", Less),
            ("1.1.1n-0+deb11u5", "3.0.0", Less),
            ("1.0", "1.0-0", Equal),
            ("001.2", "1.2", Equal),
            ("1.2-3-4", "1.2-3-5", Less),
            ("a", "b", Less),
            ("", "0", Equal),
            ("99999999999999999999999999:1", "1:1", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(dpkg_cmp(a, b), want, "{a} vs {b}");
            assert_eq!(dpkg_cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn apk_order() {
        let cases = [
            ("3.1.4-r5", "3.1.4-r5", Equal),
            ("3.1.4-r5", "3.1.4-r6", Less),
            ("3.1.4-r10", "3.1.4-r9", Greater),
            ("3.1.10", "3.1.9", Greater),
            ("1.1.1w-r1", "3.0.0", Less),
            ("1.0a", "1.0", Greater),
            ("1.0_rc1", "1.0", Less),
            ("1.0_alpha2", "1.0_beta1", Less),
            ("1.0_p1", "1.0", Greater),
            ("1.0.1", "1.0", Greater),
            ("1.02", "1.1", Less),
            ("3.0.0", "3.0.0_rc1", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(apk_cmp(a, b), want, "{a} vs {b}");
            assert_eq!(apk_cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
