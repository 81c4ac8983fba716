//! Reading a request body off the connection, piece by piece.

use std::io;
use std::time::Duration;

use super::chunked::{check_trailer_line, parse_chunk_line, ChunkLine};
use super::wire::{flush_timed, write_timed, FillError, ReadBuf, Transport};

/// Largest piece [`Body::chunk`] hands out at once.
pub const MAX_BODY_CHUNK_BYTES: usize = 256 * 1024;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is longer than the caller's limit.
    #[error("request body is larger than the limit")]
    TooLarge,
    /// The body's framing is broken (bad chunk size, missing CRLF, ...).
    #[error("malformed request body: {0}")]
    Malformed(String),
    /// No body bytes arrived within the body read timeout.
    #[error("timed out waiting for the request body")]
    Timeout,
    /// The client closed the connection before the body ended.
    #[error("connection closed before the end of the request body")]
    Closed,
    /// The transport failed.
    #[error("reading the request body: {0}")]
    Io(#[from] io::Error),
}

/// How the request declared its body (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Neither `Content-Length` nor `Transfer-Encoding`: no body.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Where the reader stands in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Every byte of the body has been consumed.
    Done,
    /// Inside a `Content-Length` body.
    Length { remaining: u64 },
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside a chunk's data.
    ChunkData { remaining: u64 },
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    /// Inside the trailer section, `seen` bytes of it read.
    Trailers { seen: usize },
    /// A read failed; the framing can no longer be trusted.
    Failed,
}

/// The body reader's state, kept by the connection while the handler
/// does not hold a [`Body`].
#[derive(Debug, Clone)]
pub(crate) struct BodyState {
    framing: Framing,
    stage: Stage,
    continue_pending: bool,
    read_timeout: Duration,
    write_timeout: Duration,
    max_trailer_bytes: usize,
    received: u64,
}

/// What is left of a body once its handler has returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leftover {
    /// The body was read to its end.
    None,
    /// Part of the body is unread; `Some(n)` when its length is known.
    Unread(Option<u64>),
    /// The framing is broken; the connection must close.
    Broken,
}

impl BodyState {
    /// The state of a fresh body with `framing`.
    pub(crate) fn new(
        framing: Framing,
        expects_continue: bool,
        read_timeout: Duration,
        write_timeout: Duration,
        max_trailer_bytes: usize,
    ) -> Self {
        let stage = match framing {
            Framing::None | Framing::Length(0) => Stage::Done,
            Framing::Length(n) => Stage::Length { remaining: n },
            Framing::Chunked => Stage::ChunkSize,
        };
        BodyState {
            framing,
            stage,
            continue_pending: expects_continue && stage != Stage::Done,
            read_timeout,
            write_timeout,
            max_trailer_bytes,
            received: 0,
        }
    }

    /// What remains unread.
    pub(crate) fn leftover(&self) -> Leftover {
        match self.stage {
            Stage::Done => Leftover::None,
            Stage::Failed => Leftover::Broken,
            Stage::Length { remaining } => Leftover::Unread(Some(remaining)),
            _ => Leftover::Unread(None),
        }
    }

    /// Whether the client still waits for `100 Continue` to send the body.
    pub(crate) fn is_continue_pending(&self) -> bool {
        self.continue_pending
    }

    /// Body bytes handed to the handler.
    pub(crate) fn bytes_received(&self) -> u64 {
        self.received
    }
}

/// The body of a request, read from the connection as the handler asks.
///
/// Nothing is read before the handler asks, so a body of any size passes
/// through a buffer of fixed size. Whatever the handler leaves unread is
/// drained (within `Limits::max_drain_bytes`) or the connection closes.
pub struct Body<'c> {
    io: &'c mut (dyn Transport + 'c),
    buf: &'c mut ReadBuf,
    state: BodyState,
}

impl<'c> Body<'c> {
    /// A body reader over the connection's transport and buffer.
    pub(crate) fn new(
        io: &'c mut (dyn Transport + 'c),
        buf: &'c mut ReadBuf,
        state: BodyState,
    ) -> Self {
        Body { io, buf, state }
    }

    /// Gives the reader's state back to the connection.
    pub(crate) fn into_state(self) -> BodyState {
        self.state
    }

    /// The declared `Content-Length`; `None` for a chunked body, 0 for a
    /// request with no body.
    pub fn content_length(&self) -> Option<u64> {
        match self.state.framing {
            Framing::None => Some(0),
            Framing::Length(n) => Some(n),
            Framing::Chunked => None,
        }
    }

    /// Whether the body uses the chunked transfer coding.
    pub fn is_chunked(&self) -> bool {
        self.state.framing == Framing::Chunked
    }

    /// Whether the request declared no body or an empty one. A chunked
    /// body is never empty by declaration, even if it has no chunks.
    pub fn is_empty(&self) -> bool {
        matches!(self.state.framing, Framing::None | Framing::Length(0))
    }

    /// Whether the request carried `Content-Length` or
    /// `Transfer-Encoding`; a handler that needs a body answers 411 when
    /// it did not.
    pub fn has_length_framing(&self) -> bool {
        self.state.framing != Framing::None
    }

    /// How long one read of the body may wait for bytes.
    pub fn read_timeout(&self) -> Duration {
        self.state.read_timeout
    }

    /// Body bytes handed out so far.
    pub fn bytes_read(&self) -> u64 {
        self.state.received
    }

    /// Next piece of the body (at most [`MAX_BODY_CHUNK_BYTES`]), `None`
    /// at its end.
    ///
    /// Sends `HTTP/1.1 100 Continue` first if the client asked for it.
    /// After an error the body cannot be read further and the connection
    /// closes once the response is written.
    pub async fn chunk(&mut self) -> Result<Option<&[u8]>, BodyError> {
        match self.advance().await {
            Ok(0) => Ok(None),
            Ok(n) => {
                self.state.received += n as u64;
                Ok(Some(self.buf.take(n)))
            }
            Err(error) => {
                self.state.stage = Stage::Failed;
                Err(error)
            }
        }
    }

    /// The whole body, refused with [`BodyError::TooLarge`] past `max`
    /// bytes. A declared length over `max` is refused before reading.
    pub async fn read_to_vec(&mut self, max: usize) -> Result<Vec<u8>, BodyError> {
        let declared = self.content_length();
        if declared.is_some_and(|n| n > max as u64) {
            return Err(BodyError::TooLarge);
        }

        let mut out = Vec::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(piece) = self.chunk().await? {
            if out.len() + piece.len() > max {
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(piece);
        }
        Ok(out)
    }

    /// Reads and discards the rest of the body; false if more than
    /// `max_bytes` remained or the body failed.
    pub(crate) async fn drain(&mut self, max_bytes: u64) -> bool {
        let mut drained: u64 = 0;
        loop {
            match self.chunk().await {
                Ok(None) => return true,
                Ok(Some(piece)) => {
                    drained += piece.len() as u64;
                    if drained > max_bytes {
                        self.state.stage = Stage::Failed;
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Moves the reader forward until body bytes sit at the front of the
    /// buffer, and says how many of them belong to the body (0 at the end).
    async fn advance(&mut self) -> Result<usize, BodyError> {
        if self.state.stage == Stage::Failed {
            return Err(BodyError::Malformed("the body failed earlier".to_owned()));
        }
        self.send_continue().await?;

        loop {
            match self.state.stage {
                Stage::Done => return Ok(0),
                Stage::Failed => {
                    return Err(BodyError::Malformed("the body failed earlier".to_owned()));
                }

                Stage::Length { remaining } => {
                    let n = self.data_ready(remaining).await?;
                    let left = remaining - n as u64;
                    self.state.stage = if left == 0 {
                        Stage::Done
                    } else {
                        Stage::Length { remaining: left }
                    };
                    return Ok(n);
                }

                Stage::ChunkData { remaining } => {
                    let n = self.data_ready(remaining).await?;
                    let left = remaining - n as u64;
                    self.state.stage = if left == 0 {
                        Stage::ChunkEnd
                    } else {
                        Stage::ChunkData { remaining: left }
                    };
                    return Ok(n);
                }

                Stage::ChunkSize => {
                    match parse_chunk_line(self.buf.pending()).map_err(BodyError::Malformed)? {
                        ChunkLine::Size { size, line_bytes } => {
                            self.buf.consume(line_bytes);
                            self.state.stage = if size == 0 {
                                Stage::Trailers { seen: 0 }
                            } else {
                                Stage::ChunkData { remaining: size }
                            };
                        }
                        ChunkLine::Incomplete => self.fill().await?,
                    }
                }

                Stage::ChunkEnd => {
                    let pending = self.buf.pending();
                    if pending.len() < 2 {
                        if pending.first().is_some_and(|&b| b != b'\r') {
                            return Err(missing_crlf());
                        }
                        self.fill().await?;
                        continue;
                    }
                    if &pending[..2] != b"\r\n" {
                        return Err(missing_crlf());
                    }
                    self.buf.consume(2);
                    self.state.stage = Stage::ChunkSize;
                }

                Stage::Trailers { seen } => {
                    self.trailer_line(seen).await?;
                }
            }
        }
    }

    /// Consumes one trailer line, or reads more when none is whole.
    async fn trailer_line(&mut self, seen: usize) -> Result<(), BodyError> {
        let pending = self.buf.pending();
        let Some(newline) = pending.iter().position(|&b| b == b'\n') else {
            if seen + pending.len() > self.state.max_trailer_bytes {
                return Err(trailers_too_large());
            }
            return self.fill().await;
        };

        let line_bytes = newline + 1;
        if seen + line_bytes > self.state.max_trailer_bytes {
            return Err(trailers_too_large());
        }
        check_trailer_line(&pending[..line_bytes]).map_err(BodyError::Malformed)?;
        let is_last = line_bytes == 2;
        self.buf.consume(line_bytes);
        self.state.stage = if is_last {
            Stage::Done
        } else {
            Stage::Trailers {
                seen: seen + line_bytes,
            }
        };
        Ok(())
    }

    /// Waits until data is buffered and returns how much of it is body,
    /// at most `remaining`.
    async fn data_ready(&mut self, remaining: u64) -> Result<usize, BodyError> {
        if self.buf.is_empty() {
            self.fill().await?;
        }
        let available = self.buf.pending().len().min(MAX_BODY_CHUNK_BYTES);
        Ok(available.min(usize::try_from(remaining).unwrap_or(usize::MAX)))
    }

    /// Reads more bytes into the buffer within the body read timeout.
    async fn fill(&mut self) -> Result<(), BodyError> {
        // A ready socket never suspends the read; let other tasks run.
        glommio::yield_if_needed().await;
        let wait = self.state.read_timeout;
        match self.buf.fill(&mut *self.io, wait, 0).await {
            Ok(_) => Ok(()),
            Err(FillError::Closed) => Err(BodyError::Closed),
            Err(FillError::Timeout) => Err(BodyError::Timeout),
            Err(FillError::Io(error)) => Err(BodyError::Io(error)),
            Err(FillError::Full) => Err(BodyError::Malformed(
                "body framing line does not fit the buffer".to_owned(),
            )),
        }
    }

    /// Sends the interim `100 Continue` the client waits for
    /// (RFC 9110 section 10.1.1), once, before the first body read.
    async fn send_continue(&mut self) -> Result<(), BodyError> {
        if !self.state.continue_pending {
            return Ok(());
        }
        self.state.continue_pending = false;
        let wait = self.state.write_timeout;
        write_timed(&mut *self.io, b"HTTP/1.1 100 Continue\r\n\r\n", wait).await?;
        flush_timed(&mut *self.io, wait).await?;
        Ok(())
    }
}

fn missing_crlf() -> BodyError {
    BodyError::Malformed("chunk data is not followed by CRLF".to_owned())
}

fn trailers_too_large() -> BodyError {
    BodyError::Malformed("trailer section is too large".to_owned())
}
