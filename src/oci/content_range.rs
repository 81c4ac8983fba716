//! The `Content-Range` of a chunked upload `PATCH`, and the `Range` the
//! registry reports back (distribution-spec, "Pushing a blob in
//! chunks").
//!
//! The spec writes the header as `<start>-<end>`, both inclusive. Some
//! clients send the RFC 9110 form `bytes <start>-<end>/<total>`; berth
//! takes both.

use super::errors::{ErrorCode, OciError};

/// The longest `Content-Range` value read, in bytes.
pub const MAX_CONTENT_RANGE_BYTES: usize = 128;

/// The largest byte offset a range may name: blob sizes are int64 in
/// the image-spec, so `end + 1` never overflows a `u64` for callers.
pub const MAX_OFFSET: u64 = i64::MAX as u64;

/// Reads a `Content-Range` into `(start, end)`, `end` inclusive.
///
/// Accepted: `<start>-<end>`, `bytes <start>-<end>/<total>`,
/// `bytes <start>-<end>/*` and `bytes=<start>-<end>`. A malformed value,
/// `end < start` or an offset past [`MAX_OFFSET`] is a 400
/// `BLOB_UPLOAD_INVALID`.
pub fn parse_content_range(value: &str) -> Result<(u64, u64), OciError> {
    let bad = |reason: &str| {
        OciError::upload_invalid(format!("Content-Range: {reason}"))
            .with_detail(serde_json::json!({ "value": shown(value) }))
    };
    if value.len() > MAX_CONTENT_RANGE_BYTES {
        return Err(bad("too long"));
    }

    let mut text = value.trim();
    if let Some(rest) = strip_prefix_ignore_case(text, "bytes") {
        text = rest.trim_start_matches([' ', '=']);
    }

    // The total after '/' is informative only; it must still be a number
    // or '*'.
    let range = match text.split_once('/') {
        Some((range, total)) => {
            if total != "*" && number(total).is_none() {
                return Err(bad("malformed total"));
            }
            range
        }
        None => text,
    };

    let (start, end) = range
        .split_once('-')
        .ok_or_else(|| bad("expected <start>-<end>"))?;
    let start = number(start).ok_or_else(|| bad("malformed start"))?;
    let end = number(end).ok_or_else(|| bad("malformed end"))?;
    if end < start {
        return Err(bad("end before start"));
    }
    if end > MAX_OFFSET {
        return Err(bad("offset past 2^63-1"));
    }
    Ok((start, end))
}

/// Checks a chunk against the upload's progress.
///
/// `received` is how many bytes the session holds; a chunk must start
/// exactly there, or it is a 416 `BLOB_UPLOAD_INVALID` (spec: chunks
/// arrive in order). When the request has a `Content-Length`, it must
/// equal the range's length, or it is a 400 `SIZE_INVALID`.
pub fn check_chunk(
    range: (u64, u64),
    received: u64,
    content_length: Option<u64>,
) -> Result<(), OciError> {
    let (start, end) = range;
    if start != received {
        return Err(OciError::new(
            ErrorCode::BlobUploadInvalid,
            416,
            format!("chunk starts at {start}, expected {received}"),
        )
        .with_detail(serde_json::json!({ "expected_start": received })));
    }

    // The parser guarantees start <= end <= MAX_OFFSET; saturating
    // keeps a hand-made range from panicking all the same.
    let range_len = end.saturating_sub(start).saturating_add(1);
    match content_length {
        Some(len) if len != range_len => Err(OciError::size_invalid(format!(
            "Content-Length {len} does not match Content-Range length \
             {range_len}"
        ))),
        _ => Ok(()),
    }
}

/// The `Range` header value for an upload holding `received` bytes.
///
/// NOTE: the spec's form `0-<end>` cannot say "nothing yet"; like other
/// registries berth sends `0-0` for an empty session, and clients take
/// the next offset from the session, not from this header alone.
pub fn upload_range(received: u64) -> String {
    format!("0-{}", received.saturating_sub(1))
}

fn number(s: &str) -> Option<u64> {
    // At most 20 digits: u64::MAX has 20, and parse catches the rest.
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn shown(value: &str) -> &str {
    let mut end = value.len().min(MAX_CONTENT_RANGE_BYTES);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_and_rfc_forms_parse() {
        let cases = [
            ("0-0", (0, 0)),
            ("0-1023", (0, 1023)),
            ("1024-2047", (1024, 2047)),
            (" 5-9 ", (5, 9)),
            ("bytes 0-99/100", (0, 99)),
            ("bytes 0-99/*", (0, 99)),
            ("bytes=10-19", (10, 19)),
            ("BYTES 1-2/3", (1, 2)),
            ("0-9223372036854775807", (0, MAX_OFFSET)),
        ];
        for (value, want) in cases {
            assert_eq!(parse_content_range(value), Ok(want), "{value:?}");
        }
    }

    #[test]
    fn malformed_ranges_are_upload_invalid() {
        let long = "1".repeat(200);
        let cases = [
            "",
            "-",
            "5",
            "5-",
            "-5",
            "a-b",
            "+1-2",
            "1 -2",
            "9-5",
            "0-18446744073709551616",
            "0-18446744073709551615",
            "0-9223372036854775808",
            "0-1-2",
            "bytes 0-99/x",
            "bytes 0-99/",
            "bytes",
            "0x1-0x2",
            "١-٢",
            long.as_str(),
        ];
        for value in cases {
            let err = parse_content_range(value).unwrap_err();
            assert_eq!(err.code, ErrorCode::BlobUploadInvalid, "{value:?}");
            assert_eq!(err.status, 400, "{value:?}");
        }
    }

    #[test]
    fn chunks_must_arrive_in_order_and_match_their_length() {
        assert!(check_chunk((0, 9), 0, Some(10)).is_ok());
        assert!(check_chunk((10, 19), 10, None).is_ok());

        let err = check_chunk((20, 29), 10, Some(10)).unwrap_err();
        assert_eq!((err.code, err.status), (ErrorCode::BlobUploadInvalid, 416));

        let err = check_chunk((0, 9), 0, Some(11)).unwrap_err();
        assert_eq!((err.code, err.status), (ErrorCode::SizeInvalid, 400));

        assert!(check_chunk((0, u64::MAX), 0, None).is_ok());
    }

    #[test]
    fn upload_range_reports_the_last_byte_held() {
        assert_eq!(upload_range(0), "0-0");
        assert_eq!(upload_range(1), "0-0");
        assert_eq!(upload_range(1024), "0-1023");
    }
}
