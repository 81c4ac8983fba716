//! Parsing a request head with httparse and deciding its framing
//! (RFC 9112 sections 3, 6 and 9).

use std::net::SocketAddr;

use super::body::Framing;
use super::limits::Limits;
use super::request::{Method, Request};

/// Room for the method, spaces and version around a request target, so
/// that an over-long target is told apart from an over-long head.
const REQUEST_LINE_SLACK_BYTES: usize = 64;

/// A request the server refuses on its own, before any handler runs.
/// The connection is closed after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reject {
    /// The status to answer.
    pub status: u16,
    /// What limit or rule the request broke.
    pub message: String,
}

impl Reject {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Reject {
            status,
            message: message.into(),
        }
    }
}

/// A parsed request head and what the connection must do with it.
#[derive(Debug)]
pub(crate) struct Head {
    /// The request as handlers see it.
    pub request: Request,
    /// How the body is framed.
    pub framing: Framing,
    /// Whether the connection may serve another request afterwards.
    pub keep_alive: bool,
    /// Whether this is HTTP/1.0 (keep-alive must then be announced).
    pub is_http_1_0: bool,
    /// Whether the client waits for `100 Continue` before its body.
    pub expects_continue: bool,
}

/// Outcome of parsing the bytes received so far.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A whole head, and the bytes it used.
    Complete(Box<Head>, usize),
    /// More bytes are needed.
    Partial,
}

/// Parses the head at the start of `bytes`, enforcing `limits`.
pub(crate) fn parse_head(
    bytes: &[u8],
    peer: SocketAddr,
    limits: &Limits,
) -> Result<Parsed, Reject> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut parsed = httparse::Request::new(&mut headers);

    let head_bytes = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            check_partial(bytes, limits)?;
            return Ok(Parsed::Partial);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reject::new(
                431,
                format!("more than {} header fields", limits.max_headers),
            ));
        }
        Err(httparse::Error::Version) => {
            return Err(Reject::new(505, "only HTTP/1.0 and 1.1 are served"));
        }
        Err(error) => {
            return Err(Reject::new(400, format!("malformed request: {error}")));
        }
    };
    if head_bytes > limits.max_header_bytes {
        return Err(header_bytes_reject(limits));
    }

    let target = parsed.path.unwrap_or_default();
    if target.len() > limits.max_uri_bytes {
        return Err(uri_reject(limits));
    }
    let (path, query) = split_target(target)?;
    let method = Method::from_token(parsed.method.unwrap_or_default());
    let is_http_1_0 = parsed.version == Some(0);

    let headers = parsed
        .headers
        .iter()
        .map(|header| {
            let name = header.name.to_ascii_lowercase();
            let value = String::from_utf8_lossy(header.value).into_owned();
            (name, value)
        })
        .collect();
    let request = Request {
        method,
        path,
        query,
        headers,
        peer,
    };

    // NOTE: a missing or repeated `Host` is accepted, although RFC 9112
    // section 3.2 asks for 400: berth serves one authority, never routes
    // by host, and some minimal clients leave it out.
    let framing = framing(&request, is_http_1_0)?;
    let keep_alive = if is_http_1_0 {
        request.has_token("connection", "keep-alive")
    } else {
        !request.has_token("connection", "close")
    };
    let expects_continue = !is_http_1_0
        && request
            .headers_all("expect")
            .any(|value| value.trim().eq_ignore_ascii_case("100-continue"));

    let head = Head {
        request,
        framing,
        keep_alive,
        is_http_1_0,
        expects_continue,
    };
    Ok(Parsed::Complete(Box::new(head), head_bytes))
}

/// The limits a head still arriving has already broken.
fn check_partial(bytes: &[u8], limits: &Limits) -> Result<(), Reject> {
    let line_done = bytes.contains(&b'\n');
    if !line_done && bytes.len() > limits.max_uri_bytes + REQUEST_LINE_SLACK_BYTES {
        return Err(uri_reject(limits));
    }
    if bytes.len() >= limits.max_header_bytes {
        return Err(header_bytes_reject(limits));
    }
    Ok(())
}

/// The 431 for a head past `max_header_bytes`.
pub(crate) fn header_bytes_reject(limits: &Limits) -> Reject {
    Reject::new(
        431,
        format!("request head is over {} bytes", limits.max_header_bytes),
    )
}

fn uri_reject(limits: &Limits) -> Reject {
    Reject::new(
        414,
        format!("request target is over {} bytes", limits.max_uri_bytes),
    )
}

/// Splits a request target into its raw path and query
/// (RFC 9112 section 3.2: origin, absolute and asterisk forms).
fn split_target(target: &str) -> Result<(String, String), Reject> {
    let origin = if target.starts_with('/') || target == "*" {
        target
    } else if let Some(rest) = strip_scheme(target) {
        // Skip the authority; what follows is the path, or a query alone.
        let at = rest.find(['/', '?']).unwrap_or(rest.len());
        let tail = &rest[at..];
        if !tail.starts_with('/') {
            let query = tail.strip_prefix('?').unwrap_or_default();
            return Ok(("/".to_owned(), query.to_owned()));
        }
        tail
    } else {
        return Err(Reject::new(400, "request target is not a path"));
    };

    match origin.split_once('?') {
        Some((path, query)) => Ok((path.to_owned(), query.to_owned())),
        None => Ok((origin.to_owned(), String::new())),
    }
}

fn strip_scheme(target: &str) -> Option<&str> {
    let lower = target.get(..8)?.to_ascii_lowercase();
    if lower.starts_with("http://") {
        Some(&target[7..])
    } else if lower == "https://" {
        Some(&target[8..])
    } else {
        None
    }
}

/// Decides how the body is framed (RFC 9112 section 6.3).
fn framing(request: &Request, is_http_1_0: bool) -> Result<Framing, Reject> {
    let has_te = request.header("transfer-encoding").is_some();
    let has_cl = request.header("content-length").is_some();

    if has_te && has_cl {
        return Err(Reject::new(
            400,
            "both Content-Length and Transfer-Encoding are present",
        ));
    }
    if has_te {
        if is_http_1_0 {
            return Err(Reject::new(
                400,
                "Transfer-Encoding is not allowed in HTTP/1.0",
            ));
        }
        return transfer_coding(request);
    }
    if has_cl {
        return content_length(request).map(Framing::Length);
    }
    Ok(Framing::None)
}

/// Only `chunked` is understood; it must come last, and alone.
fn transfer_coding(request: &Request) -> Result<Framing, Reject> {
    let codings: Vec<&str> = request
        .headers_all("transfer-encoding")
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|coding| !coding.is_empty())
        .collect();

    let Some(last) = codings.last() else {
        return Err(Reject::new(400, "Transfer-Encoding is empty"));
    };
    if !last.eq_ignore_ascii_case("chunked") {
        return Err(Reject::new(
            400,
            "Transfer-Encoding does not end in chunked",
        ));
    }
    // RFC 9112 6.1: chunked is applied at most once; twice is malformed.
    let earlier = &codings[..codings.len() - 1];
    if earlier.iter().any(|c| c.eq_ignore_ascii_case("chunked")) {
        return Err(Reject::new(400, "Transfer-Encoding applies chunked twice"));
    }
    if codings.len() > 1 {
        return Err(Reject::new(
            501,
            "transfer codings other than chunked are not supported",
        ));
    }
    Ok(Framing::Chunked)
}

/// Every `Content-Length` value must be the same run of digits.
fn content_length(request: &Request) -> Result<u64, Reject> {
    let mut length = None;
    let values = request
        .headers_all("content-length")
        .flat_map(|value| value.split(','))
        .map(str::trim);
    for value in values {
        let parsed =
            (!value.is_empty() && value.len() <= 19 && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<u64>().ok())
                .flatten();
        let Some(parsed) = parsed else {
            return Err(Reject::new(400, "Content-Length is not a number"));
        };
        if length.is_some_and(|seen| seen != parsed) {
            return Err(Reject::new(400, "Content-Length values disagree"));
        }
        length = Some(parsed);
    }
    length.ok_or_else(|| Reject::new(400, "Content-Length is empty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    fn parse(text: &str) -> Result<Head, u16> {
        match parse_head(text.as_bytes(), peer(), &Limits::default()) {
            Ok(Parsed::Complete(head, n)) => {
                assert_eq!(n, text.len());
                Ok(*head)
            }
            Ok(Parsed::Partial) => Err(0),
            Err(reject) => Err(reject.status),
        }
    }

    #[test]
    fn targets_split_into_path_and_query() {
        let table = [
            ("/v2/", "/v2/", ""),
            (
                "/v2/a/tags/list?n=1&last=b",
                "/v2/a/tags/list",
                "n=1&last=b",
            ),
            ("/p?", "/p", ""),
            ("http://host:5000/v2/?x", "/v2/", "x"),
            ("HTTPS://host/v2/a", "/v2/a", ""),
            ("http://host", "/", ""),
            ("http://host?q=1", "/", "q=1"),
            ("*", "*", ""),
        ];
        for (target, path, query) in table {
            let got = split_target(target).unwrap();
            assert_eq!(got, (path.to_owned(), query.to_owned()), "{target}");
        }
        assert!(split_target("v2/").is_err());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        // (headers, HTTP/1.0?, expected framing or reject status)
        let table: &[(&str, bool, Result<Framing, u16>)] = &[
            ("", false, Ok(Framing::None)),
            ("Content-Length: 5\r\n", false, Ok(Framing::Length(5))),
            ("Content-Length: 5, 5\r\n", false, Ok(Framing::Length(5))),
            (
                "Content-Length: 5\r\nContent-Length: 5\r\n",
                false,
                Ok(Framing::Length(5)),
            ),
            ("Content-Length: 5, 6\r\n", false, Err(400)),
            (
                "Content-Length: 5\r\nContent-Length: 6\r\n",
                false,
                Err(400),
            ),
            ("Content-Length: +5\r\n", false, Err(400)),
            ("Content-Length: 0x5\r\n", false, Err(400)),
            ("Content-Length: \r\n", false, Err(400)),
            ("Content-Length: 99999999999999999999\r\n", false, Err(400)),
            (
                "Transfer-Encoding: chunked\r\n",
                false,
                Ok(Framing::Chunked),
            ),
            (
                "Transfer-Encoding: Chunked\r\n",
                false,
                Ok(Framing::Chunked),
            ),
            ("Transfer-Encoding: gzip, chunked\r\n", false, Err(501)),
            ("Transfer-Encoding: chunked, gzip\r\n", false, Err(400)),
            ("Transfer-Encoding: chunked, chunked\r\n", false, Err(400)),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                false,
                Err(400),
            ),
            ("Transfer-Encoding: chunked\r\n", true, Err(400)),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                false,
                Err(400),
            ),
        ];
        for (headers, is_1_0, expected) in table {
            let version = if *is_1_0 { "1.0" } else { "1.1" };
            let text = format!("PUT /x HTTP/{version}\r\n{headers}\r\n");
            let got = parse(&text).map(|head| head.framing);
            assert_eq!(&got, expected, "{headers:?}");
        }
    }

    #[test]
    fn keep_alive_and_continue_follow_version_and_headers() {
        let table = [
            ("GET / HTTP/1.1\r\n\r\n", true, false),
            ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false, false),
            (
                "GET / HTTP/1.1\r\nConnection: Foo, Close\r\n\r\n",
                false,
                false,
            ),
            ("GET / HTTP/1.0\r\n\r\n", false, false),
            (
                "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                true,
                false,
            ),
            ("PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", true, true),
            (
                "PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n",
                false,
                false,
            ),
        ];
        for (text, keep_alive, expects_continue) in table {
            let head = parse(text).unwrap();
            assert_eq!(head.keep_alive, keep_alive, "{text:?}");
            assert_eq!(head.expects_continue, expects_continue, "{text:?}");
        }
    }

    #[test]
    fn malformed_heads_are_refused_with_their_status() {
        let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
        let many_headers = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(101));
        let table: Vec<(&str, Result<(), u16>)> = vec![
            ("GET / HTTP/1.1\r\n", Err(0)),
            ("GET / HTTP/2.0\r\n\r\n", Err(505)),
            ("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", Err(400)),
            ("GET  / HTTP/1.1\r\n\r\n", Err(400)),
            ("GET / HTTP/1.1\r\nA: b\r\n\r\n", Ok(())),
            (&long_target, Err(414)),
            (&many_headers, Err(431)),
        ];
        for (text, expected) in table {
            let got = parse(text).map(|_| ());
            assert_eq!(got, expected, "{:?}", &text[..text.len().min(40)]);
        }
    }

    #[test]
    fn partial_head_past_the_limits_is_refused_early() {
        let limits = Limits {
            max_header_bytes: 1024,
            max_uri_bytes: 256,
            ..Limits::default()
        };
        let no_line_end = format!("GET /{}", "a".repeat(400));
        let reject = parse_head(no_line_end.as_bytes(), peer(), &limits);
        assert_eq!(reject.unwrap_err().status, 414);

        let long_head = format!("GET / HTTP/1.1\r\nA: {}", "b".repeat(2000));
        let reject = parse_head(long_head.as_bytes(), peer(), &limits);
        assert_eq!(reject.unwrap_err().status, 431);
    }
}
