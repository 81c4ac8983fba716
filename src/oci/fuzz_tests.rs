//! Seeded random inputs for every parser entry point of the module: none
//! may panic, whatever arrives.
//!
//! A fixed-seed xorshift keeps runs repeatable without a fuzzing crate;
//! inputs are spliced from tokens that matter to each parser, so the
//! loops reach deep branches rather than failing on the first byte.

use super::accept::accepts;
use super::content_range::{check_chunk, parse_content_range};
use super::digest::parse_digest;
use super::name::{validate_repository, validate_tag};
use super::pagination::{link_header, paginate, parse_n};
use super::referrers::referrers_tag;
use super::route::{query_params, route};

/// A small xorshift PRNG.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`; `n` must not be 0.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Up to `max_tokens` tokens glued together.
    pub(crate) fn splice(&mut self, tokens: &[&str], max_tokens: usize) -> String {
        let count = self.below(max_tokens + 1);
        (0..count)
            .map(|_| tokens[self.below(tokens.len())])
            .collect()
    }
}

const ROUNDS: usize = 20_000;

#[test]
fn routing_never_panics() {
    let tokens = [
        "/",
        "/v2",
        "/v2/",
        "a",
        "b.c",
        "blobs",
        "uploads",
        "manifests",
        "tags",
        "list",
        "referrers",
        "_catalog",
        "sha256:",
        "%2F",
        "%",
        "%ff",
        "%e2%82",
        "é",
        "..",
        "-",
        "__",
        ":",
        "?",
        "#",
        " ",
        "\0",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ];
    let methods = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", ""];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);

    for _ in 0..ROUNDS {
        let path = rng.splice(&tokens, 12);
        let query = rng.splice(&["digest=", "&", "=", "sha256:", "%3A", "+"], 6);
        let method = methods[rng.below(methods.len())];

        let _ = route(method, &path, &query);
        let _ = query_params(&query);
    }
}

#[test]
fn name_tag_and_digest_checks_never_panic() {
    let tokens = [
        "a", "Z", "0", ".", "_", "__", "-", "--", "/", ":", "sha256", "sha512", "+", "=", "é",
        "\u{fffd}", "ab", "ff",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    for _ in 0..ROUNDS {
        let text = rng.splice(&tokens, 80);
        let _ = validate_repository(&text);
        let _ = validate_tag(&text);
        let _ = parse_digest(&text);
        let _ = referrers_tag(&text);
    }
}

#[test]
fn header_parsers_never_panic() {
    let tokens = [
        "bytes",
        " ",
        "=",
        "-",
        "/",
        "*",
        "0",
        "9",
        "18446744073709551615",
        "99999999999999999999999",
        ",",
        ";",
        "q=",
        "0.5",
        "1",
        "*/*",
        "application/",
        "json",
        "é",
        "\t",
    ];
    let mut rng = Rng(0xdead_beef_cafe_f00d);

    for _ in 0..ROUNDS {
        let value = rng.splice(&tokens, 16);
        if let Ok(range) = parse_content_range(&value) {
            let _ = check_chunk(range, rng.next(), Some(rng.next()));
        }
        let _ = accepts(&[&value, &value], "application/json");
        let _ = parse_n(Some(&value), 1000);
    }
}

#[test]
fn pagination_never_panics() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let tokens = ["a", "b", "c", "A", "_", "é"];

    for _ in 0..2_000 {
        let mut list: Vec<String> = (0..rng.below(20)).map(|_| rng.splice(&tokens, 3)).collect();
        list.sort();
        let last = rng.splice(&tokens, 3);
        let n = [
            None,
            Some(0),
            Some(1),
            Some(rng.below(30)),
            Some(usize::MAX),
        ][rng.below(5)];

        let (page, _) = paginate(&list, n, Some(&last));
        if let Some(end) = page.last() {
            let _ = link_header("/v2/a/tags/list", n.unwrap_or(0), end);
        }
    }
}
