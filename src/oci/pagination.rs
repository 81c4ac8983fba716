//! `n` and `last` pagination for the tags list and the catalog
//! (distribution-spec, "Listing Tags" and the `_catalog` extension).
//!
//! The spec allows case-insensitive or "ASCIIbetical" order; berth uses
//! byte order (Rust's `str` ordering), so the list a handler passes in
//! must be sorted that way, as a `BTreeMap` or `sort()` gives it. A page
//! holds the entries after `last`, at most `n` of them; when more
//! remain, the response carries a
//! `Link: <…?n=<n>&last=<final entry>>; rel="next"` header.

use super::errors::OciError;

/// Cuts one page out of a sorted list.
///
/// Returns the page and whether entries remain after it. `n` of `None`
/// means every remaining entry; `n` of 0 is an empty page with nothing
/// said to remain (a `Link` would only ask for another empty page).
pub fn paginate(sorted: &[String], n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
    let start = match last {
        Some(last) => sorted.partition_point(|s| s.as_str() <= last),
        None => 0,
    };
    let rest = &sorted[start..];

    let take = match n {
        Some(0) => return (Vec::new(), false),
        Some(n) => n.min(rest.len()),
        None => rest.len(),
    };
    (rest[..take].to_vec(), take < rest.len())
}

/// Reads the `n` query parameter.
///
/// Absent is `None`. A value that is not a decimal number is a 400
/// `UNSUPPORTED` (the spec defines no code for it). A value above
/// `max_n` is lowered to `max_n`: the spec lets a registry return fewer
/// entries than asked, and the `Link` header leads to the rest.
pub fn parse_n(raw: Option<&str>, max_n: usize) -> Result<Option<usize>, OciError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(
            OciError::unsupported("n must be a non-negative decimal number")
                .with_detail(serde_json::json!({ "n": raw.get(..32).unwrap_or(raw) })),
        );
    }

    // Digits only, so the parse fails only on overflow: that is "huge".
    let n = raw.parse::<usize>().unwrap_or(usize::MAX);
    Ok(Some(n.min(max_n)))
}

/// The `Link` header value pointing at the next page.
///
/// `base_path` is the endpoint's path (`/v2/<name>/tags/list` or
/// `/v2/_catalog`); `last_item` is the final entry of the current page.
pub fn link_header(base_path: &str, n: usize, last_item: &str) -> String {
    format!(
        "<{base_path}?n={n}&last={}>; rel=\"next\"",
        encode_query_value(last_item)
    )
}

/// Percent-encodes all but RFC 3986 unreserved characters and `/`.
fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        let keep = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/');
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::errors::ErrorCode;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// `n`, `last`, the expected page and whether more remain.
    type PageCase<'a> = (Option<usize>, Option<&'a str>, Vec<&'a str>, bool);

    #[test]
    fn pages_follow_last_and_n() {
        let tags = list(&["a", "b", "c", "d"]);
        let cases: Vec<PageCase> = vec![
            (None, None, vec!["a", "b", "c", "d"], false),
            (Some(2), None, vec!["a", "b"], true),
            (Some(2), Some("b"), vec!["c", "d"], false),
            (Some(3), Some("b"), vec!["c", "d"], false),
            (Some(1), Some("b"), vec!["c"], true),
            (Some(4), None, vec!["a", "b", "c", "d"], false),
            (Some(5), None, vec!["a", "b", "c", "d"], false),
            (Some(0), None, vec![], false),
            (Some(0), Some("a"), vec![], false),
            (None, Some("d"), vec![], false),
            (None, Some("z"), vec![], false),
            // `last` need not be in the list.
            (None, Some("bb"), vec!["c", "d"], false),
            (None, Some(""), vec!["a", "b", "c", "d"], false),
            (Some(usize::MAX), Some("a"), vec!["b", "c", "d"], false),
        ];
        for (n, last, want, more) in cases {
            let got = paginate(&tags, n, last);
            assert_eq!(got, (list(&want), more), "n={n:?} last={last:?}");
        }
        assert_eq!(paginate(&[], Some(3), None), (vec![], false));
    }

    #[test]
    fn lexical_order_is_byte_order() {
        let tags = list(&["A", "Z", "_", "a", "v1.10", "v1.9"]);
        let (page, more) = paginate(&tags, Some(2), Some("Z"));
        assert_eq!(page, list(&["_", "a"]));
        assert!(more);
    }

    #[test]
    fn n_parses_and_is_capped() {
        let cases = [
            (None, Ok(None)),
            (Some("0"), Ok(Some(0))),
            (Some("10"), Ok(Some(10))),
            (Some("1000"), Ok(Some(100))),
            (Some("99999999999999999999999"), Ok(Some(100))),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_n(raw, 100), want, "{raw:?}");
        }

        for raw in ["", "-1", "+1", "1.5", "ten", " 1", "1e3"] {
            let err = parse_n(Some(raw), 100).unwrap_err();
            assert_eq!((err.code, err.status), (ErrorCode::Unsupported, 400));
        }
    }

    #[test]
    fn link_header_points_at_the_next_page() {
        let cases = [
            (
                "/v2/a/tags/list",
                2,
                "b",
                r#"</v2/a/tags/list?n=2&last=b>; rel="next""#,
            ),
            (
                "/v2/_catalog",
                1,
                "a/b",
                r#"</v2/_catalog?n=1&last=a/b>; rel="next""#,
            ),
            (
                "/v2/a/tags/list",
                5,
                "v1.0_x-y",
                r#"</v2/a/tags/list?n=5&last=v1.0_x-y>; rel="next""#,
            ),
            (
                "/v2/a/tags/list",
                5,
                "a&b c",
                r#"</v2/a/tags/list?n=5&last=a%26b%20c>; rel="next""#,
            ),
        ];
        for (base, n, last, want) in cases {
            assert_eq!(link_header(base, n, last), want);
        }
    }
}
