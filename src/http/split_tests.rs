//! The driver and body reader fed through a transport that hands bytes
//! over in random small reads: every read boundary must give the same
//! answers as one large read, and random bytes must never panic a
//! parser.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::LocalExecutorBuilder;

use super::chunked::parse_chunk_line;
use super::head::parse_head;
use super::range::parse_range;
use super::*;

/// A small deterministic generator (xorshift64*), so failures replay.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Bytes drawn mostly from those that matter to HTTP framing.
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"\r\n\r\n :;,=-0123456789abcdefABCDEF\
            GETPOSTHTTP/1.1 chunked Content-Length Transfer-Encoding\t\x00\x7f\xff";
        (0..len)
            .map(|_| {
                if self.below(8) == 0 {
                    self.next() as u8
                } else {
                    ALPHABET[self.below(ALPHABET.len() as u64) as usize]
                }
            })
            .collect()
    }
}

/// Input served in reads of random small sizes; output collected.
struct Trickle {
    input: Vec<u8>,
    at: usize,
    noise: Noise,
    max_read: u64,
    output: Rc<RefCell<Vec<u8>>>,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let max_read = self.max_read;
        let want = 1 + self.noise.below(max_read) as usize;
        let n = want.min(buf.len()).min(self.input.len() - self.at);
        let at = self.at;
        buf[..n].copy_from_slice(&self.input[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output.borrow_mut().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Answers with the body it read and what the request looked like.
struct Echo;

impl Handler for Echo {
    async fn handle(&self, req: &Request, body: &mut Body<'_>) -> Response {
        let mut seen = Vec::new();
        let result = loop {
            match body.chunk().await {
                Ok(Some(piece)) => seen.extend_from_slice(piece),
                Ok(None) => break "ok".to_owned(),
                Err(error) => break error.to_string(),
            }
        };
        let mut text = format!("{} {} {}\n", req.method, req.path, result);
        text.push_str(&String::from_utf8_lossy(&seen));
        Response::new(200).bytes(text)
    }
}

/// Serves `input` through reads of at most `max_read` bytes and returns
/// what was written, without `Date` lines.
async fn serve_split(input: &[u8], seed: u64, max_read: u64) -> String {
    let output = Rc::new(RefCell::new(Vec::new()));
    let stream = Trickle {
        input: input.to_vec(),
        at: 0,
        noise: Noise(seed | 1),
        max_read,
        output: output.clone(),
    };
    let limits = Limits {
        max_header_bytes: 2048,
        max_drain_bytes: 1024,
        ..Limits::default()
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 9));
    serve_connection(stream, peer, &limits, &Echo).await;

    let written = output.borrow().clone();
    String::from_utf8_lossy(&written)
        .split_inclusive("\r\n")
        .filter(|line| !line.starts_with("Date: "))
        .collect()
}

/// Runs `test` on a fresh glommio executor (the driver's timers need one).
fn on_executor(test: impl std::future::Future<Output = ()>) {
    let executor = LocalExecutorBuilder::default().make().unwrap();
    executor.run(test);
}

/// A chunked encoding of `data` with random chunk sizes, extensions and
/// trailers.
fn chunked(data: &[u8], noise: &mut Noise) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = (1 + noise.below(40) as usize).min(data.len() - at);
        out.extend_from_slice(format!("{n:x}").as_bytes());
        if noise.below(3) == 0 {
            out.extend_from_slice(b";ext=\"v\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&data[at..at + n]);
        out.extend_from_slice(b"\r\n");
        at += n;
    }
    out.extend_from_slice(b"0\r\n");
    if noise.below(2) == 0 {
        out.extend_from_slice(b"X-Trailer: t\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn read_boundaries_do_not_change_the_answers() {
    on_executor(read_boundaries());
}

async fn read_boundaries() {
    let mut noise = Noise(0x5eed);
    for round in 0..40 {
        let mut input = Vec::new();
        for i in 0..4 {
            let len = noise.below(300) as usize;
            let data = noise.bytes(len);
            match noise.below(3) {
                0 => input
                    .extend_from_slice(format!("GET /r{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()),
                1 => {
                    let head = format!(
                        "PUT /r{i} HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                        data.len()
                    );
                    input.extend_from_slice(head.as_bytes());
                    input.extend_from_slice(&data);
                }
                _ => {
                    input.extend_from_slice(
                        format!("POST /r{i} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                            .as_bytes(),
                    );
                    input.extend_from_slice(&chunked(&data, &mut noise));
                }
            }
        }

        let whole = serve_split(&input, 1, u64::MAX).await;
        assert_eq!(
            whole.matches("HTTP/1.1 200 OK").count(),
            4,
            "round {round}: {whole}"
        );
        assert_eq!(whole.matches(" ok\n").count(), 4, "round {round}: {whole}");
        for max_read in [1, 2, 3, 7, 64] {
            let split = serve_split(&input, round * 31 + max_read, max_read).await;
            assert_eq!(split, whole, "round {round}, reads of at most {max_read}");
        }
    }
}

#[test]
fn random_bytes_on_the_wire_never_panic() {
    on_executor(random_wire_bytes());
}

async fn random_wire_bytes() {
    let mut noise = Noise(0xf00d);
    for round in 0..300 {
        let mut input = b"POST / HTTP/1.1\r\n".to_vec();
        if round % 2 == 0 {
            input.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        }
        let len = noise.below(400) as usize;
        input.extend_from_slice(&noise.bytes(len));
        let _ = serve_split(&input, round, 1 + round % 9).await;
    }
}

#[test]
fn random_bytes_never_panic_the_parsers() {
    let mut noise = Noise(0xbeef);
    let limits = Limits::default();
    let peer = SocketAddr::from(([127, 0, 0, 1], 9));
    for _ in 0..20_000 {
        let len = noise.below(200) as usize;
        let bytes = noise.bytes(len);
        let _ = parse_head(&bytes, peer, &limits);
        let _ = parse_chunk_line(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_range(Some(&text), noise.below(1000));
        let mut range = b"bytes=".to_vec();
        range.extend_from_slice(&bytes[..len.min(12)]);
        let _ = parse_range(Some(&String::from_utf8_lossy(&range)), 100);
    }
}
