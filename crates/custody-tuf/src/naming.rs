//! File and URL naming helpers (consistent snapshots, percent-encoding).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters python's `urllib.parse.quote(s, safe="")` leaves alone:
/// ASCII letters, digits and `_ . - ~`. Everything else, `/` included, is
/// percent-encoded (UTF-8, uppercase hex).
const QUOTE_SAFE_NONE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// Percent-encode a role name for use as a file name / URL path segment,
/// exactly like python-tuf (`quote(name, "")`).
pub fn encode_role_filename(role: &str) -> String {
    utf8_percent_encode(role, QUOTE_SAFE_NONE).to_string()
}

/// Local file name of a target in a flat target directory (python-tuf:
/// `quote(target_path, "")`, so `a/b.txt` → `a%2Fb.txt`). Stricter than
/// python-tuf: the names `.` and `..` (which would alias the directory or
/// its parent) become `%2E` and `%2E%2E`, and the empty name becomes `%00`,
/// so the result is always a plain, non-empty file name inside the directory.
pub fn encode_target_filename(target_path: &str) -> String {
    match target_path {
        "" => "%00".to_owned(),
        "." => "%2E".to_owned(),
        ".." => "%2E%2E".to_owned(),
        _ => utf8_percent_encode(target_path, QUOTE_SAFE_NONE).to_string(),
    }
}

/// Remote metadata file name: `{version}.{role}.json` when `version` is
/// given (consistent snapshots, and always for root), else `{role}.json`.
/// The role name is percent-encoded.
pub fn metadata_filename(role: &str, version: Option<u64>) -> String {
    let r = encode_role_filename(role);
    match version {
        Some(v) => format!("{v}.{r}.json"),
        None => format!("{r}.json"),
    }
}

/// Local metadata file name (`{role}.json`, percent-encoded).
pub fn local_metadata_filename(role: &str) -> String {
    metadata_filename(role, None)
}

/// Consistent-snapshot target path: the hash is prefixed to the base name,
/// the directory is kept: `a/b/c.tgz` + `HASH` → `a/b/HASH.c.tgz`.
pub fn consistent_target_path(target_path: &str, hash_hex: &str) -> String {
    match target_path.rsplit_once('/') {
        Some((dir, base)) => format!("{dir}/{hash_hex}.{base}"),
        None => format!("{hash_hex}.{target_path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_match_python_quote() {
        assert_eq!(
            encode_role_filename("registry.npmjs.org"),
            "registry.npmjs.org"
        );
        assert_eq!(encode_role_filename("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_role_filename("bin-0~_"), "bin-0~_");
        assert_eq!(encode_role_filename("é%"), "%C3%A9%25");
        assert_eq!(encode_role_filename(".."), "..");
        assert_eq!(metadata_filename("role/x", Some(3)), "3.role%2Fx.json");
        assert_eq!(metadata_filename("timestamp", None), "timestamp.json");
    }

    #[test]
    fn consistent_target_names_keep_directory() {
        assert_eq!(consistent_target_path("a/b/c.tgz", "ff"), "a/b/ff.c.tgz");
        assert_eq!(consistent_target_path("c.tgz", "ff"), "ff.c.tgz");
        assert_eq!(encode_target_filename("a/b.txt"), "a%2Fb.txt");
        assert_eq!(encode_target_filename(".."), "%2E%2E");
        assert_eq!(encode_target_filename("."), "%2E");
        assert_eq!(encode_target_filename(""), "%00");
    }
}
