//! Byte-level plumbing shared by the request and body readers: the
//! transport trait object, the connection's read buffer and timed I/O.

use std::future::Future;
use std::io;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest piece written in one timed write, so that `write_timeout`
/// bounds the wait for progress rather than a whole large body.
const WRITE_PIECE_BYTES: usize = 256 * 1024;

/// A byte stream a connection is served over (plain TCP or TLS).
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin + ?Sized> Transport for T {}

/// Why a read into the buffer produced no bytes.
#[derive(Debug)]
pub(crate) enum FillError {
    /// The peer closed its side.
    Closed,
    /// No bytes arrived in time.
    Timeout,
    /// The buffer is full of unconsumed bytes.
    Full,
    /// The transport failed.
    Io(io::Error),
}

/// The connection's read buffer: bytes `start..end` are received and not
/// yet consumed. Its size is fixed when the connection starts.
pub(crate) struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    /// A buffer of `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> Self {
        ReadBuf {
            data: vec![0; capacity.max(1)],
            start: 0,
            end: 0,
        }
    }

    /// The received, unconsumed bytes.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Whether no unconsumed bytes are held.
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks `n` pending bytes consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Consumes `n` pending bytes and returns them.
    pub(crate) fn take(&mut self, n: usize) -> &[u8] {
        let from = self.start;
        let to = (from + n).min(self.end);
        self.start = to;
        &self.data[from..to]
    }

    /// Reads more bytes from `io`, waiting at most `wait`.
    ///
    /// Pending bytes are moved to the front first when the free tail is
    /// smaller than `min_free`, so a request head always has room.
    pub(crate) async fn fill(
        &mut self,
        io: &mut (dyn Transport + '_),
        wait: Duration,
        min_free: usize,
    ) -> Result<usize, FillError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.data.len() - self.end < min_free.max(1) && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.data.len() {
            return Err(FillError::Full);
        }

        let free = &mut self.data[self.end..];
        match timed(wait, io.read(free)).await {
            None => Err(FillError::Timeout),
            Some(Ok(0)) => Err(FillError::Closed),
            Some(Ok(n)) => {
                self.end += n;
                Ok(n)
            }
            Some(Err(error)) => Err(FillError::Io(error)),
        }
    }
}

/// Runs `future` for at most `wait`; `None` when time ran out first.
pub(crate) async fn timed<T>(wait: Duration, future: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(future.await) }, async {
        glommio::timer::Timer::new(wait).await;
        None
    })
    .await
}

/// Writes all of `bytes`; each write must make progress within `wait`.
pub(crate) async fn write_timed(
    io: &mut (dyn Transport + '_),
    bytes: &[u8],
    wait: Duration,
) -> io::Result<()> {
    for piece in bytes.chunks(WRITE_PIECE_BYTES) {
        match timed(wait, io.write_all(piece)).await {
            Some(result) => result?,
            None => return Err(write_timeout()),
        }
    }
    Ok(())
}

/// Flushes `io` (TLS buffers records), waiting at most `wait`.
pub(crate) async fn flush_timed(io: &mut (dyn Transport + '_), wait: Duration) -> io::Result<()> {
    match timed(wait, io.flush()).await {
        Some(result) => result,
        None => Err(write_timeout()),
    }
}

fn write_timeout() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "write to client timed out")
}
