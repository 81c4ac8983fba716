//! The limits one HTTP connection is held to.

use std::time::Duration;

/// Every bound the HTTP layer enforces, with the status it answers.
///
/// One value is shared by all connections of an executor. The defaults
/// suit a production registry; tests shrink the timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line, headers, final blank line);
    /// past it the request gets 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request; past it the request gets 431.
    pub max_headers: usize,
    /// Longest request target; past it the request gets 414.
    pub max_uri_bytes: usize,
    /// Time for a whole request head to arrive once it has started (or
    /// from accept, for the first request); past it 408 and close.
    pub header_read_timeout: Duration,
    /// Time one read of a request body may wait for bytes; past it the
    /// connection is closed (slowloris).
    pub body_read_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request; past
    /// it the connection is closed without a response.
    pub idle_timeout: Duration,
    /// Time one write to the client may wait for progress; past it the
    /// connection is closed.
    pub write_timeout: Duration,
    /// Open connections per executor; the accept loop closes any more.
    pub max_connections: usize,
    /// Unread request body the server reads and discards after a
    /// response so that the connection can be kept; a longer rest closes
    /// the connection instead.
    pub max_drain_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_drain_bytes: 1024 * 1024,
        }
    }
}
