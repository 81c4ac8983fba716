//! Repository names and tags, checked against the distribution-spec's
//! patterns with hand-written matchers (no regex engine on the request
//! path).
//!
//! A name is one or more path components joined by `/`, each matching
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` (distribution-spec, "Pulling
//! manifests"). A tag matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.

use super::errors::{ErrorCode, OciError};

/// The longest repository name accepted, slashes included.
///
/// The spec notes that clients commonly cap `<host>/<name>` at 255
/// characters; berth accepts any name that is itself within that cap.
pub const MAX_NAME_BYTES: usize = 255;

/// The longest tag accepted (the spec's pattern allows 128).
pub const MAX_TAG_BYTES: usize = 128;

/// Checks a repository name; a bad one is `NAME_INVALID`.
pub fn validate_repository(name: &str) -> Result<(), OciError> {
    if name.is_empty() {
        return Err(OciError::name_invalid(name, "empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(OciError::name_invalid(
            &name[..floor_char_boundary(name, MAX_NAME_BYTES)],
            "longer than 255 characters",
        ));
    }

    for component in name.split('/') {
        if let Err(reason) = check_component(component) {
            return Err(OciError::name_invalid(name, reason));
        }
    }
    Ok(())
}

/// Whether `name` is a valid repository name.
pub fn is_valid_repository(name: &str) -> bool {
    validate_repository(name).is_ok()
}

/// Checks a tag; a bad one is `MANIFEST_INVALID` (the spec has no code of
/// its own for tags).
pub fn validate_tag(tag: &str) -> Result<(), OciError> {
    if is_valid_tag(tag) {
        return Ok(());
    }

    let shown = &tag[..floor_char_boundary(tag, MAX_TAG_BYTES + 1)];
    Err(OciError::from_code(
        ErrorCode::ManifestInvalid,
        "invalid tag: it must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}",
    )
    .with_detail(serde_json::json!({ "tag": shown })))
}

/// Whether `tag` matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let Some((&first, rest)) = bytes.split_first() else {
        return false;
    };

    let first_ok = first.is_ascii_alphanumeric() || first == b'_';
    let rest_ok = rest
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    first_ok && rest_ok && bytes.len() <= MAX_TAG_BYTES
}

/// Matches one component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
///
/// Walks the bytes as alternating runs: alphanumerics, then exactly one
/// separator run (`.`, `_`, `__` or any number of `-`), and so on,
/// ending on alphanumerics.
fn check_component(component: &str) -> Result<(), &'static str> {
    let bytes = component.as_bytes();
    if bytes.is_empty() {
        return Err("empty path component");
    }

    let mut i = 0;
    loop {
        let run_start = i;
        while i < bytes.len() && is_lower_alnum(bytes[i]) {
            i += 1;
        }
        if i == run_start {
            return Err("a path component must start and end with [a-z0-9]");
        }
        if i == bytes.len() {
            return Ok(());
        }

        let sep_start = i;
        while i < bytes.len() && matches!(bytes[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let separator = &bytes[sep_start..i];
        if separator.is_empty() {
            return Err("only [a-z0-9._-] are allowed in a path component");
        }
        if !is_separator(separator) {
            return Err("separators are '.', '_', '__' or dashes");
        }
    }
}

fn is_separator(run: &[u8]) -> bool {
    matches!(run, b"." | b"_" | b"__") || run.iter().all(|&b| b == b'-')
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_pattern_names_are_accepted() {
        let long_ok = format!("{}/{}", "a".repeat(127), "b".repeat(127));
        let cases = [
            "a",
            "0",
            "library/ubuntu",
            "a/b/c/d/e/f",
            "my.repo",
            "my_repo",
            "my__repo",
            "my-repo",
            "my---repo",
            "a.b_c__d-e--f",
            "a/blobs/b",
            "x/manifests/y",
            "blobs/uploads",
            "v2",
            long_ok.as_str(),
        ];
        for name in cases {
            assert!(validate_repository(name).is_ok(), "{name:?}");
        }
        assert_eq!(long_ok.len(), 255);
    }

    #[test]
    fn names_off_the_pattern_are_name_invalid() {
        let too_long = "a".repeat(256);
        let cases = [
            "",
            "/",
            "a/",
            "/a",
            "a//b",
            "A",
            "Library/ubuntu",
            "-a",
            "a-",
            ".a",
            "a.",
            "_a",
            "a_",
            "a..b",
            "a___b",
            "a._b",
            "a.-b",
            "a-_b",
            "a b",
            "a:b",
            "a@b",
            "é",
            "a/../b",
            "a/./b",
            "_catalog",
            too_long.as_str(),
        ];
        for name in cases {
            let err = validate_repository(name).unwrap_err();
            assert_eq!(err.code, ErrorCode::NameInvalid, "{name:?}");
            assert_eq!(err.status, 400);
        }
    }

    #[test]
    fn spec_pattern_tags_are_accepted() {
        let longest = "t".repeat(128);
        let cases = [
            "latest",
            "v1.0.0",
            "_private",
            "1",
            "A-b_C.d",
            "sha256-abcd.sig",
            longest.as_str(),
        ];
        for tag in cases {
            assert!(validate_tag(tag).is_ok(), "{tag:?}");
        }
    }

    #[test]
    fn tags_off_the_pattern_are_refused() {
        let too_long = "t".repeat(129);
        let cases = [
            "",
            ".hidden",
            "-dash",
            "a:b",
            "a/b",
            "a b",
            "ü",
            "sha256:abcd",
            too_long.as_str(),
        ];
        for tag in cases {
            let err = validate_tag(tag).unwrap_err();
            assert_eq!(err.code, ErrorCode::ManifestInvalid, "{tag:?}");
        }
    }
}
