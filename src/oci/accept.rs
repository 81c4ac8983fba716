//! `Accept` negotiation for manifest GET and HEAD (RFC 9110, section
//! 12.5.1).
//!
//! A registry serves a manifest in the one media type it was pushed
//! with, so negotiation here is a yes or no: does the client accept that
//! type? The handler decides what to answer when it does not.

/// The most media ranges read from all `Accept` values together; the
/// rest are ignored.
pub const MAX_MEDIA_RANGES: usize = 64;

/// Whether a client sending `accept_values` (each an `Accept` header
/// value, possibly a comma-separated list) takes `media_type`.
///
/// No `Accept` at all, or nothing in it that parses, accepts every type.
/// Otherwise the most specific matching range decides (`type/subtype`
/// over `type/*` over `*/*`) and a `q` of 0 refuses. Malformed ranges
/// and ranges with a malformed `q` are skipped.
pub fn accepts(accept_values: &[&str], media_type: &str) -> bool {
    let wanted = media_type.split(';').next().unwrap_or("").trim();
    let Some((kind, _)) = wanted.split_once('/') else {
        return false;
    };

    let ranges = accept_values
        .iter()
        .flat_map(|value| value.split(','))
        .take(MAX_MEDIA_RANGES)
        .filter_map(MediaRange::parse);

    let mut any_range = false;
    let mut best: Option<(u8, u16)> = None;
    for range in ranges {
        any_range = true;

        // Media types compare without case (RFC 9110, section 8.3.1).
        let specificity = if range.kind == "*" {
            1
        } else if !range.kind.eq_ignore_ascii_case(kind) {
            continue;
        } else if range.subtype == "*" {
            2
        } else if range.essence.eq_ignore_ascii_case(wanted) {
            3
        } else {
            continue;
        };

        // Among equally specific ranges the most generous q wins.
        if best.is_none_or(|b| (specificity, range.q_millis) > b) {
            best = Some((specificity, range.q_millis));
        }
    }

    match best {
        Some((_, q_millis)) => q_millis > 0,
        None => !any_range,
    }
}

/// One media range of an `Accept` value, borrowed from the header.
struct MediaRange<'a> {
    /// `type/subtype` as sent; either part may be `*`.
    essence: &'a str,
    /// The part before the slash.
    kind: &'a str,
    /// The part after the slash.
    subtype: &'a str,
    /// The quality weight in thousandths (RFC 9110, section 12.4.2).
    q_millis: u16,
}

impl<'a> MediaRange<'a> {
    fn parse(text: &'a str) -> Option<MediaRange<'a>> {
        let mut parts = text.split(';');
        let essence = parts.next()?.trim();
        let (kind, subtype) = essence.split_once('/')?;
        if !is_token(kind) || !is_token(subtype) || (kind == "*" && subtype != "*") {
            return None;
        }

        let mut q_millis = 1000;
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("q") {
                q_millis = parse_q(value.trim())?;
            }
        }
        Some(MediaRange {
            essence,
            kind,
            subtype,
            q_millis,
        })
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`.
fn parse_q(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }

    let mut millis: u16 = 0;
    for (i, b) in fraction.bytes().enumerate() {
        millis += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match whole {
        "0" => Some(millis),
        "1" if millis == 0 => Some(1000),
        _ => None,
    }
}

/// RFC 9110 `token` characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::media_type::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

    #[test]
    fn accept_values_decide_per_type() {
        let docker_client = format!("{DOCKER_MANIFEST}, {DOCKER_LIST}");
        let cases: Vec<(Vec<&str>, &str, bool)> = vec![
            (vec![], OCI_MANIFEST, true),
            (vec![""], OCI_MANIFEST, true),
            (vec!["*/*"], OCI_MANIFEST, true),
            (vec!["application/*"], OCI_MANIFEST, true),
            (vec!["text/*"], OCI_MANIFEST, false),
            (vec![OCI_MANIFEST], OCI_MANIFEST, true),
            (vec![OCI_INDEX], OCI_MANIFEST, false),
            (vec![&docker_client], DOCKER_LIST, true),
            (vec![&docker_client], OCI_INDEX, false),
            (vec![DOCKER_MANIFEST, OCI_MANIFEST], OCI_MANIFEST, true),
            (
                vec!["APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON"],
                OCI_MANIFEST,
                true,
            ),
            (
                vec!["application/vnd.oci.image.manifest.v1+json; charset=utf-8"],
                OCI_MANIFEST,
                true,
            ),
            (
                vec!["application/vnd.oci.image.manifest.v1+json;q=0"],
                OCI_MANIFEST,
                false,
            ),
            (
                vec!["application/vnd.oci.image.manifest.v1+json;q=0.001"],
                OCI_MANIFEST,
                true,
            ),
            (
                vec!["*/*, application/vnd.oci.image.manifest.v1+json;q=0"],
                OCI_MANIFEST,
                false,
            ),
            (
                vec!["*/*;q=0, application/vnd.oci.image.manifest.v1+json"],
                OCI_MANIFEST,
                true,
            ),
            (
                vec!["application/*;q=0, application/vnd.oci.image.manifest.v1+json"],
                OCI_MANIFEST,
                true,
            ),
            (vec!["application/*;q=0, */*"], OCI_MANIFEST, false),
            (vec!["*/*;q=0.5"], OCI_MANIFEST, true),
            (vec!["*/*;q=0.000"], OCI_MANIFEST, false),
            // Malformed ranges are skipped; if nothing is left, all pass.
            (vec!["garbage"], OCI_MANIFEST, true),
            (vec!["*/json"], OCI_MANIFEST, true),
            (vec!["*/*;q=2"], OCI_MANIFEST, true),
            (vec!["*/*;q=0.5.5"], OCI_MANIFEST, true),
            (vec!["garbage, text/plain"], OCI_MANIFEST, false),
            (vec![",,,"], OCI_MANIFEST, true),
        ];
        for (values, media_type, want) in cases {
            assert_eq!(accepts(&values, media_type), want, "{values:?}");
        }
    }

    #[test]
    fn q_values_follow_rfc_9110() {
        let cases = [
            ("0", Some(0)),
            ("0.5", Some(500)),
            ("0.25", Some(250)),
            ("0.125", Some(125)),
            ("1", Some(1000)),
            ("1.000", Some(1000)),
            ("1.5", None),
            ("0.1234", None),
            ("2", None),
            ("", None),
            ("-0", None),
            ("0.a", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_q(text), want, "{text:?}");
        }
    }
}
