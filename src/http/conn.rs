//! The connection driver: reads request heads, runs the handler, writes
//! responses, and decides after each one whether the connection goes on.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};

use super::body::{Body, BodyState, Leftover};
use super::date;
use super::head::{header_bytes_reject, parse_head, Head, Parsed, Reject};
use super::limits::Limits;
use super::request::{Method, Request};
use super::response::{is_bodiless_status, write_head, HeadOptions};
use super::response::{Response, ResponseBody};
use super::shutdown::ShutdownSignal;
use super::wire::Transport;
use super::wire::{flush_timed, timed, write_timed, FillError, ReadBuf};

/// Bytes read per body read beyond the head limit; the read buffer of a
/// connection is `max_header_bytes` plus this.
pub const BODY_READ_BYTES: usize = 128 * 1024;

/// A body this small is written in the same write as its head.
const COALESCE_BYTES: usize = 64 * 1024;

/// The write buffer an idle connection keeps; a larger one, grown for a
/// big coalesced body, is given back after its response.
const KEEP_OUT_BYTES: usize = 8 * 1024;

/// After answering a request whose input was not read to its end, the
/// server reads and discards at most this much while the client sees the
/// answer, so that closing does not reset the connection under it. It
/// covers a refused manifest a little over its 4 MiB limit.
const LINGER_BYTES: usize = 8 * 1024 * 1024;

/// Longest wait while discarding input before a close (see
/// `LINGER_BYTES`).
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Serves requests; one value per executor, used through `&self`.
///
/// The handler reads as much of the body as it needs; the driver drains
/// or closes for the rest.
// NOTE: `async fn` in a public trait leaves the future's `Send`-ness
// open; executors are single-threaded, so no `Send` bound is wanted.
#[allow(async_fn_in_trait)]
pub trait Handler {
    /// Answers one request.
    async fn handle(&self, req: &Request, body: &mut Body<'_>) -> Response;

    /// Told when the accept loop opens, closes or refuses a connection
    /// (for metrics); does nothing unless a handler wants it.
    fn connection_event(&self, event: ConnectionEvent) {
        let _ = event;
    }

    /// Told once the response to `req` has been written, or its writing
    /// failed (for the access log and metrics); does nothing unless a
    /// handler wants it.
    fn answered(&self, req: &Request, answer: &Answer) {
        let _ = (req, answer);
    }
}

/// How one request went, as told to [`Handler::answered`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The status sent.
    pub status: u16,
    /// Request body bytes the handler read (decoded, for a chunked body).
    pub bytes_in: u64,
    /// Response body bytes written to the connection (none for `HEAD`).
    pub bytes_out: u64,
    /// From the complete request head to the last byte of the response.
    pub took: Duration,
}

/// What happened to a connection, as told to [`Handler::connection_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// Accepted and being served.
    Opened,
    /// Served and closed.
    Closed,
    /// Closed at once: the per-core connection limit was reached.
    Refused,
}

/// Serves one connection until it closes: keep-alive, pipelining, limits.
///
/// Runs on a glommio executor: its timeouts are glommio timers.
pub async fn serve_connection<S, H>(mut stream: S, peer: SocketAddr, limits: &Limits, handler: &H)
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    serve(&mut stream, peer, limits, handler, None).await;
}

/// [`serve_connection`] that also stops between requests once
/// `shutdown` fires.
pub(crate) async fn serve<H: Handler>(
    io: &mut (dyn Transport + '_),
    peer: SocketAddr,
    limits: &Limits,
    handler: &H,
    shutdown: Option<&ShutdownSignal>,
) {
    let mut buf = ReadBuf::new(limits.max_header_bytes + BODY_READ_BYTES);
    let mut out = Vec::new();
    let mut is_first = true;

    loop {
        // IMPORTANT: reads and writes that find the socket ready never
        // suspend, so a client that keeps it ready (pipelining, fast
        // uploads) would hold the executor without these yields.
        glommio::yield_if_needed().await;

        let head = match read_head(io, &mut buf, peer, limits, is_first, shutdown).await {
            HeadRead::Head(head) => head,
            HeadRead::Close => {
                let _ = timed(limits.write_timeout, io.close()).await;
                return;
            }
            HeadRead::Reject(reject) => {
                tracing::debug!(
                    peer = %peer,
                    status = reject.status,
                    reason = %reject.message,
                    "request refused"
                );
                let response = reject_response(&reject);
                let mut written = Written::default();
                let _ = write_response(
                    io,
                    &mut out,
                    response,
                    &Framed::close(),
                    limits,
                    &mut written,
                )
                .await;
                linger_close(io, &mut buf, limits).await;
                return;
            }
        };
        is_first = false;
        let started = Instant::now();

        let Head {
            request,
            framing,
            keep_alive,
            is_http_1_0,
            expects_continue,
        } = *head;
        let state = BodyState::new(
            framing,
            expects_continue,
            limits.body_read_timeout,
            limits.write_timeout,
            limits.max_header_bytes,
        );
        let mut body = Body::new(&mut *io, &mut buf, state);
        let response = handler.handle(&request, &mut body).await;
        let state = body.into_state();

        // Decide before writing whether the connection can go on, since
        // the head must say so.
        let asked_close = response
            .header_value("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"));
        let mut close =
            !keep_alive || asked_close || shutdown.is_some_and(ShutdownSignal::is_triggered);
        let mut unclean = false;
        let mut drain = false;
        match state.leftover() {
            Leftover::None => {}
            Leftover::Broken => {
                close = true;
                unclean = true;
            }
            Leftover::Unread(remaining) => {
                let too_long = remaining.is_some_and(|n| n > limits.max_drain_bytes);
                if state.is_continue_pending() || too_long || close {
                    close = true;
                    unclean = true;
                } else {
                    drain = true;
                }
            }
        }

        let framed = Framed {
            close,
            keep_alive_1_0: is_http_1_0 && !close,
            is_head: request.method == Method::Head,
        };
        let mut written = Written::default();
        let outcome = write_response(io, &mut out, response, &framed, limits, &mut written).await;
        handler.answered(
            &request,
            &Answer {
                status: written.status,
                bytes_in: state.bytes_received(),
                bytes_out: written.body_bytes,
                took: started.elapsed(),
            },
        );
        if outcome.is_err() {
            return;
        }
        if out.capacity() > KEEP_OUT_BYTES {
            out = Vec::new();
        }

        if drain {
            let mut body = Body::new(&mut *io, &mut buf, state);
            if !body.drain(limits.max_drain_bytes).await {
                linger_close(io, &mut buf, limits).await;
                return;
            }
        }
        if close {
            if unclean || !buf.is_empty() {
                linger_close(io, &mut buf, limits).await;
            } else {
                let _ = timed(limits.write_timeout, io.close()).await;
            }
            return;
        }
    }
}

/// What waiting for a request head produced.
enum HeadRead {
    Head(Box<Head>),
    /// Close quietly: the peer left, or no request began in time.
    Close,
    /// Answer with an error and close.
    Reject(Reject),
}

/// Reads the next request head.
///
/// Waits for its first byte up to the idle timeout (the header timeout
/// for a connection's first request), then for the whole head up to the
/// header timeout.
async fn read_head(
    io: &mut (dyn Transport + '_),
    buf: &mut ReadBuf,
    peer: SocketAddr,
    limits: &Limits,
    is_first: bool,
    shutdown: Option<&ShutdownSignal>,
) -> HeadRead {
    let min_free = limits.max_header_bytes;
    let started = Instant::now();

    if buf.is_empty() {
        let wait = if is_first {
            limits.header_read_timeout
        } else {
            limits.idle_timeout
        };
        let stop = async {
            match shutdown {
                Some(signal) => signal.wait().await,
                None => futures_lite::future::pending().await,
            }
            Err(FillError::Closed)
        };
        let first = futures_lite::future::or(buf.fill(io, wait, min_free), stop);
        if first.await.is_err() {
            return HeadRead::Close;
        }
    }

    // A first request's head is timed from accept, a later one's from
    // its first byte.
    let deadline = if is_first {
        started + limits.header_read_timeout
    } else {
        Instant::now() + limits.header_read_timeout
    };
    loop {
        match parse_head(buf.pending(), peer, limits) {
            Ok(Parsed::Complete(head, used)) => {
                buf.consume(used);
                return HeadRead::Head(head);
            }
            Ok(Parsed::Partial) => {}
            Err(reject) => return HeadRead::Reject(reject),
        }

        let left = deadline.saturating_duration_since(Instant::now());
        match buf.fill(io, left, min_free).await {
            Ok(_) => {}
            Err(FillError::Timeout) => {
                return HeadRead::Reject(Reject {
                    status: 408,
                    message: format!(
                        "request head did not arrive within {} ms",
                        limits.header_read_timeout.as_millis()
                    ),
                });
            }
            Err(FillError::Full) => {
                return HeadRead::Reject(header_bytes_reject(limits));
            }
            Err(FillError::Closed | FillError::Io(_)) => return HeadRead::Close,
        }
    }
}

/// How a response is framed on the wire.
struct Framed {
    close: bool,
    keep_alive_1_0: bool,
    is_head: bool,
}

impl Framed {
    fn close() -> Self {
        Framed {
            close: true,
            keep_alive_1_0: false,
            is_head: false,
        }
    }
}

/// The JSON error the driver answers a refused request with.
fn reject_response(reject: &Reject) -> Response {
    let code = if reject.status == 413 {
        "SIZE_INVALID"
    } else {
        "UNSUPPORTED"
    };
    Response::oci_error(reject.status, code, &reject.message)
}

/// The connection cannot carry another response.
struct Broken;

/// What [`write_response`] put on the wire.
#[derive(Default)]
struct Written {
    /// The status line's code.
    status: u16,
    /// Body bytes written.
    body_bytes: u64,
}

/// Writes `response`; a streamed body is pulled piece by piece.
async fn write_response(
    io: &mut (dyn Transport + '_),
    out: &mut Vec<u8>,
    response: Response,
    framed: &Framed,
    limits: &Limits,
    written: &mut Written,
) -> Result<(), Broken> {
    let mut response = response;
    if !(200..=599).contains(&response.status) {
        tracing::warn!(status = response.status, "handler status replaced by 500");
        response.status = 500;
    }
    written.status = response.status;
    let bodiless = is_bodiless_status(response.status);
    let len = response.body.len();
    out.clear();
    date::with_now(|now| {
        let options = HeadOptions {
            content_length: (!bodiless).then_some(len),
            close: framed.close,
            keep_alive_1_0: framed.keep_alive_1_0,
            date: now,
        };
        write_head(out, &response, &options);
    });

    let wait = limits.write_timeout;
    if framed.is_head || bodiless {
        return send(io, out, wait).await;
    }
    match response.body {
        ResponseBody::Empty => send(io, out, wait).await,
        ResponseBody::Bytes(bytes) => {
            if bytes.len() <= COALESCE_BYTES {
                out.extend_from_slice(&bytes);
                send(io, out, wait).await?;
            } else {
                write_timed(io, out, wait).await.map_err(|_| Broken)?;
                send(io, &bytes, wait).await?;
            }
            written.body_bytes = bytes.len() as u64;
            Ok(())
        }
        ResponseBody::Stream { len, mut chunks } => {
            write_stream(io, out, len, chunks.as_mut(), wait, &mut written.body_bytes).await
        }
    }
}

/// Writes the head in `out` and then `len` bytes pulled from `chunks`;
/// a small first piece shares the head's write. `sent` counts the body
/// bytes written.
async fn write_stream(
    io: &mut (dyn Transport + '_),
    out: &mut Vec<u8>,
    len: u64,
    mut chunks: std::pin::Pin<&mut StreamOfChunks>,
    wait: Duration,
    sent: &mut u64,
) -> Result<(), Broken> {
    let mut is_head_sent = false;

    while *sent < len {
        glommio::yield_if_needed().await;
        let Some(item) = chunks.next().await else {
            break;
        };
        let piece = item.map_err(|error| {
            tracing::warn!(%error, sent, len, "response stream failed");
            Broken
        })?;
        let room = usize::try_from(len - *sent).unwrap_or(usize::MAX);
        let is_overrun = piece.len() > room;
        let piece = &piece[..piece.len().min(room)];

        if !is_head_sent && piece.len() <= COALESCE_BYTES {
            out.extend_from_slice(piece);
            write_timed(io, out, wait).await.map_err(|_| Broken)?;
        } else {
            if !is_head_sent {
                write_timed(io, out, wait).await.map_err(|_| Broken)?;
            }
            write_timed(io, piece, wait).await.map_err(|_| Broken)?;
        }
        is_head_sent = true;
        *sent += piece.len() as u64;

        if is_overrun {
            tracing::warn!(len, "response stream ran past its length");
            return Err(Broken);
        }
    }

    if !is_head_sent {
        write_timed(io, out, wait).await.map_err(|_| Broken)?;
    }
    if *sent != len {
        tracing::warn!(sent = *sent, len, "response stream ended early");
        return Err(Broken);
    }
    flush_timed(io, wait).await.map_err(|_| Broken)
}

/// The stream type of [`ResponseBody::Stream`].
type StreamOfChunks = dyn futures_lite::Stream<Item = std::io::Result<Vec<u8>>>;

/// Writes `bytes` and flushes.
async fn send(io: &mut (dyn Transport + '_), bytes: &[u8], wait: Duration) -> Result<(), Broken> {
    write_timed(io, bytes, wait).await.map_err(|_| Broken)?;
    flush_timed(io, wait).await.map_err(|_| Broken)
}

/// Closes the sending side, then reads and discards what the client
/// still sends for a short while, so that unread input does not turn the
/// close into a reset that destroys the response in flight.
async fn linger_close(io: &mut (dyn Transport + '_), buf: &mut ReadBuf, limits: &Limits) {
    if timed(limits.write_timeout, io.close()).await.is_none() {
        return;
    }
    buf.consume(buf.pending().len());

    let deadline = Instant::now() + LINGER_TIME;
    let mut discarded = 0;
    let mut scratch = [0u8; 4096];
    while discarded < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        match timed(left, io.read(&mut scratch)).await {
            Some(Ok(n)) if n > 0 => discarded += n,
            _ => return,
        }
    }
}
