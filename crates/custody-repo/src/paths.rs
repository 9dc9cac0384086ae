//! Target path rules: a target path names a file inside the repository's
//! target tree, so it must never be able to step outside it.

use crate::error::RepoError;

/// Check a TUF target path for authoring: relative, `/`-separated, no empty,
/// `.` or `..` segment, no backslash or NUL, at most 4096 bytes.
/// Returns the path unchanged when it is acceptable.
pub fn validate_target_path(path: &str) -> Result<&str, RepoError> {
    let bad = |rule: &str| RepoError::BadTargetPath {
        path: path.to_owned(),
        rule: rule.to_owned(),
    };
    if path.is_empty() {
        return Err(bad("must not be empty"));
    }
    if path.len() > 4096 {
        return Err(bad("longer than 4096 bytes"));
    }
    if path.starts_with('/') {
        return Err(bad(
            "absolute paths are not allowed: a target path is relative to the repository's targets directory",
        ));
    }
    if path.contains('\\') {
        return Err(bad("backslash is not allowed (use '/' as the separator)"));
    }
    if path.contains('\0') {
        return Err(bad("NUL byte is not allowed"));
    }
    for seg in path.split('/') {
        match seg {
            "" => return Err(bad("empty path segment ('//' or a trailing '/')")),
            "." => return Err(bad("'.' segment is not allowed")),
            ".." => return Err(bad(
                "'..' segment is not allowed: it would escape the repository's targets directory",
            )),
            _ => {}
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_escapes() {
        for p in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "./a",
            "a//b",
            "a/",
            "a\\..\\b",
            "a\0b",
        ] {
            assert!(validate_target_path(p).is_err(), "{p:?} accepted");
        }
        for p in ["a", "a/b/c.tar.gz", "..a", "a..", "a/.hidden", "é/ü"] {
            assert!(validate_target_path(p).is_ok(), "{p:?} rejected");
        }
    }

    proptest::proptest! {
        #[test]
        fn accepted_paths_never_escape(p in "[a-z./\\\\]{0,20}") {
            if validate_target_path(&p).is_ok() {
                let joined = std::path::Path::new("/base").join(&p);
                let mut depth: i32 = 0;
                for c in joined.strip_prefix("/base").unwrap().components() {
                    match c {
                        std::path::Component::Normal(_) => depth += 1,
                        _ => panic!("{p:?} has component {c:?}"),
                    }
                }
                proptest::prop_assert!(depth >= 1);
            }
        }
    }
}
