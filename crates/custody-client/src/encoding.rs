//! Names on the wire and on disk.
//!
//! * Role names become one path component, in URLs and in the metadata
//!   directory, by percent-encoding every byte except the RFC 3986
//!   unreserved characters (`A-Z a-z 0-9 - . _ ~`), exactly like Python's
//!   `urllib.parse.quote(name, safe="")` which python-tuf uses. A role named
//!   `../x` or `a/b` can therefore never leave its directory or URL segment.
//! * Target paths are TUF "path-relative-URL strings": they keep their `/`
//!   separators in the download URL, and only characters that cannot stand
//!   literally in a URL path are escaped. On disk a target is stored under its
//!   fully encoded path (one flat file name, the same every time).

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// Characters that may not appear literally in a URL path (WHATWG path
/// percent-encode set) plus `?` and `#`, which would end the path.
const URL_PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// Encode a string as a single, separator-free path component
/// (custody-tuf's python-compatible `quote(name, "")`).
pub fn encode_component(name: &str) -> String {
    custody_tuf::encode_role_filename(name)
}

/// The metadata file name of a role: `<encoded role>.json`
/// (`root.json`, `targets.json`, `a%2Fb.json`).
pub fn role_file_name(role: &str) -> String {
    custody_tuf::local_metadata_filename(role)
}

/// The remote file name of a role's metadata, `V.<role>.json` with a version
/// (consistent snapshots, and root always) or `<role>.json` without.
pub fn remote_role_file_name(role: &str, version: Option<u64>) -> String {
    custody_tuf::metadata_filename(role, version)
}

/// The local file name a target is stored under in the target directory:
/// its whole path encoded as one component. `None` for the empty path, which
/// names no file. The names `.` and `..` have their dots escaped too.
pub fn target_file_name(target_path: &str) -> Option<String> {
    // custody-tuf escapes "." and ".."; the empty path names no file.
    (!target_path.is_empty()).then(|| custody_tuf::encode_target_filename(target_path))
}

/// Escape a remote target path (from custody-tuf's `target_remote_path`,
/// separators kept) for use as the path part of a URL.
pub fn escape_url_path(remote_path: &str) -> String {
    utf8_percent_encode(remote_path, URL_PATH).to_string()
}

/// Join a base URL (treated as a directory) and an already-escaped relative
/// path. The base keeps its own path: `http://h/repo/metadata` + `1.root.json`
/// is `http://h/repo/metadata/1.root.json`.
pub fn join_url(base: &url::Url, escaped_relative: &str) -> Result<url::Url, url::ParseError> {
    let mut s = base.as_str().to_owned();
    // Drop query and fragment of the base: they would swallow the path.
    if let Some(idx) = s.find(['?', '#']) {
        s.truncate(idx);
    }
    if !s.ends_with('/') {
        s.push('/');
    }
    s.push_str(escaped_relative);
    url::Url::parse(&s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use percent_encoding::percent_decode_str;
    use proptest::prelude::*;

    #[test]
    fn python_quote_examples() {
        assert_eq!(encode_component("targets"), "targets");
        assert_eq!(encode_component("?"), "%3F");
        assert_eq!(encode_component("#"), "%23");
        assert_eq!(encode_component("/delegatedrole"), "%2Fdelegatedrole");
        assert_eq!(encode_component("../delegatedrole"), "..%2Fdelegatedrole");
        assert_eq!(encode_component("a b~c"), "a%20b~c");
        assert_eq!(encode_component("é"), "%C3%A9");
        assert_eq!(
            role_file_name("registry.npmjs.org"),
            "registry.npmjs.org.json"
        );
        assert_eq!(remote_role_file_name("root", Some(2)), "2.root.json");
    }

    #[test]
    fn url_escaping_keeps_separators() {
        assert_eq!(escape_url_path("a/b/ff.c.txt"), "a/b/ff.c.txt");
        assert_eq!(escape_url_path("no artifact?"), "no%20artifact%3F");
        assert_eq!(escape_url_path("x#1"), "x%231");
    }

    #[test]
    fn join_keeps_base_path() {
        let base = url::Url::parse("http://h:1/repo/metadata").unwrap();
        assert_eq!(
            join_url(&base, "1.root.json").unwrap().as_str(),
            "http://h:1/repo/metadata/1.root.json"
        );
        let base = url::Url::parse("http://h:1/repo/metadata/").unwrap();
        assert_eq!(
            join_url(&base, "%3F.json").unwrap().as_str(),
            "http://h:1/repo/metadata/%3F.json"
        );
    }

    proptest! {
        #[test]
        fn component_is_one_safe_segment_and_round_trips(name in any::<String>()) {
            let enc = encode_component(&name);
            prop_assert!(enc.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
            prop_assert!(!enc.contains('/'));
            prop_assert_eq!(percent_decode_str(&enc).decode_utf8().unwrap(), name.as_str());
        }

        #[test]
        fn role_file_name_is_never_a_dot_segment(name in any::<String>()) {
            let f = role_file_name(&name);
            prop_assert!(f.ends_with(".json"));
            prop_assert!(f != "." && f != "..");
            prop_assert!(!f.contains('/') && !f.contains('\\') && !f.contains('\0'));
        }

        #[test]
        fn distinct_roles_get_distinct_files(a in any::<String>(), b in any::<String>()) {
            prop_assume!(a != b);
            prop_assert_ne!(role_file_name(&a), role_file_name(&b));
        }

        #[test]
        fn role_url_stays_in_its_segment(name in any::<String>(), version in proptest::option::of(1u64..1000)) {
            let base = url::Url::parse("http://127.0.0.1:8000/repo/metadata/").unwrap();
            let url = join_url(&base, &remote_role_file_name(&name, version)).unwrap();
            let path = url.path();
            prop_assert!(path.starts_with("/repo/metadata/"));
            let rest = &path["/repo/metadata/".len()..];
            prop_assert!(!rest.contains('/'));
            prop_assert!(url.query().is_none() && url.fragment().is_none());
            let expected = remote_role_file_name(&name, version);
            prop_assert_eq!(rest, expected.as_str());
        }

        #[test]
        fn target_url_round_trips(
            segs in proptest::collection::vec("[^/%]{1,8}", 1..4),
            hash in proptest::option::of("[0-9a-f]{8}"),
        ) {
            prop_assume!(segs.iter().all(|s| s != "." && s != ".."));
            let target = segs.join("/");
            let base = url::Url::parse("http://127.0.0.1:8000/t/").unwrap();
            let remote = match &hash {
                Some(h) => custody_tuf::consistent_target_path(&target, h),
                None => target.clone(),
            };
            let url = join_url(&base, &escape_url_path(&remote)).unwrap();
            prop_assert!(url.query().is_none() && url.fragment().is_none());
            let rel = url.path().strip_prefix("/t/").unwrap().to_owned();
            let decoded = percent_decode_str(&rel).decode_utf8().unwrap().into_owned();
            let expected = match &hash {
                Some(h) => match target.rsplit_once('/') {
                    Some((d, b)) => format!("{d}/{h}.{b}"),
                    None => format!("{h}.{target}"),
                },
                None => target.clone(),
            };
            prop_assert_eq!(decoded, expected);
        }

        #[test]
        fn target_file_name_is_flat(path in any::<String>()) {
            prop_assume!(!path.is_empty());
            let f = target_file_name(&path).unwrap();
            prop_assert!(!f.contains('/'));
            prop_assert!(f != "." && f != "..");
            prop_assert_eq!(percent_decode_str(&f).decode_utf8().unwrap(), path.as_str());
        }
    }
}
