//! Responses as handlers build them, and the bytes of their heads.

use std::fmt;
use std::io;
use std::pin::Pin;

use futures_lite::Stream;

/// A response: status, header fields and body.
///
/// The server adds `Content-Length`, `Date` and `Connection` itself; a
/// handler's own `Content-Length` or `Transfer-Encoding` is dropped.
pub struct Response {
    /// The status code, 200 to 599.
    pub status: u16,
    /// Header fields in the order they are written.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: ResponseBody,
}

/// The body of a [`Response`].
pub enum ResponseBody {
    /// No body (`Content-Length: 0`).
    Empty,
    /// A body held in memory.
    Bytes(Vec<u8>),
    /// Streamed body of exactly `len` bytes (`Content-Length: len`).
    ///
    /// The stream is polled only while the connection can take more
    /// bytes, so memory stays bounded. A stream that fails, ends early
    /// or runs long closes the connection, since the framing is broken.
    Stream {
        /// Bytes the stream yields in all.
        len: u64,
        /// The pieces of the body, in order.
        chunks: Pin<Box<dyn Stream<Item = io::Result<Vec<u8>>>>>,
    },
}

impl ResponseBody {
    /// Length of the body in bytes, as `Content-Length` states it.
    pub fn len(&self) -> u64 {
        match self {
            ResponseBody::Empty => 0,
            ResponseBody::Bytes(bytes) => bytes.len() as u64,
            ResponseBody::Stream { len, .. } => *len,
        }
    }

    /// Whether the body has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseBody::Empty => f.write_str("Empty"),
            ResponseBody::Bytes(bytes) => {
                write!(f, "Bytes({} bytes)", bytes.len())
            }
            ResponseBody::Stream { len, .. } => {
                write!(f, "Stream({len} bytes)")
            }
        }
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &self.body)
            .finish()
    }
}

impl Response {
    /// A response with `status`, no headers and no body.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: ResponseBody::Empty,
        }
    }

    /// Adds a header field.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets an in-memory body.
    pub fn bytes(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = ResponseBody::Bytes(body.into());
        self
    }

    /// Sets a streamed body of exactly `len` bytes.
    pub fn stream(
        mut self,
        len: u64,
        chunks: impl Stream<Item = io::Result<Vec<u8>>> + 'static,
    ) -> Self {
        self.body = ResponseBody::Stream {
            len,
            chunks: Box::pin(chunks),
        };
        self
    }

    /// A response with a JSON body and `Content-Type: application/json`.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_default();
        Response::new(status)
            .header("Content-Type", "application/json")
            .bytes(body)
    }

    /// An error in the distribution-spec shape,
    /// `{"errors":[{"code":..,"message":..,"detail":{}}]}`.
    pub fn oci_error(status: u16, code: &str, message: &str) -> Self {
        let value = serde_json::json!({
            "errors": [{ "code": code, "message": message, "detail": {} }]
        });
        Response::json(status, &value)
    }

    /// The first value of header `name` set on this response.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The reason phrase written after a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// Whether a response with `status` must not carry a body or a
/// `Content-Length` (RFC 9110 8.6 and 15.4.5: 1xx, 204 and 304).
pub(crate) fn is_bodiless_status(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// How the server frames the head it writes.
pub(crate) struct HeadOptions<'a> {
    /// `Content-Length` to state, `None` for statuses without one.
    pub content_length: Option<u64>,
    /// Whether to announce `Connection: close`.
    pub close: bool,
    /// Whether to announce `Connection: keep-alive` (HTTP/1.0 clients).
    pub keep_alive_1_0: bool,
    /// The current `Date` value.
    pub date: &'a str,
}

/// Appends the head of `response` to `out`.
///
/// Header fields whose name or value would break the framing (CR, LF,
/// NUL) are left out rather than written.
pub(crate) fn write_head(out: &mut Vec<u8>, response: &Response, options: &HeadOptions<'_>) {
    let status = if (100..1000).contains(&response.status) {
        response.status
    } else {
        500
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");

    for (name, value) in &response.headers {
        if is_server_owned(name) || !is_safe_field(name, value) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(options.date.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(len) = options.content_length {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, len);
        out.extend_from_slice(b"\r\n");
    }
    if options.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if options.keep_alive_1_0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Header fields the server writes itself.
fn is_server_owned(name: &str) -> bool {
    ["content-length", "transfer-encoding", "connection", "date"]
        .iter()
        .any(|owned| name.eq_ignore_ascii_case(owned))
}

/// A name that is a token and a value without control line breaks.
fn is_safe_field(name: &str, value: &str) -> bool {
    let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    let value_ok = value.bytes().all(|b| b != b'\r' && b != b'\n' && b != 0);
    name_ok && value_ok
}

fn push_decimal(out: &mut Vec<u8>, value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_drops_fields_that_would_break_framing() {
        let response = Response::new(200)
            .header("X-Ok", "yes")
            .header("X-Bad", "a\r\nInjected: 1")
            .header("Content-Length", "99")
            .bytes(b"hi".to_vec());
        let mut out = Vec::new();
        let options = HeadOptions {
            content_length: Some(2),
            close: true,
            keep_alive_1_0: false,
            date: "Thu, 01 Jan 1970 00:00:00 GMT",
        };
        write_head(&mut out, &response, &options);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nX-Ok: yes\r\n\
             Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn oci_error_has_spec_shape() {
        let response = Response::oci_error(413, "SIZE_INVALID", "too big");
        let ResponseBody::Bytes(body) = &response.body else {
            panic!("expected bytes");
        };
        let value: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(value["errors"][0]["code"], "SIZE_INVALID");
        assert_eq!(value["errors"][0]["message"], "too big");
        assert!(value["errors"][0]["detail"].is_object());
        assert_eq!(
            response.header_value("content-type"),
            Some("application/json")
        );
    }
}
