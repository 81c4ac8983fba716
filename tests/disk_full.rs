//! A full disk, against the real binary: pushes past the space a shard
//! may use get a prompt 507, whichever core the request lands on, keep
//! nothing behind, and lose nothing acknowledged before.
//!
//! The "disk" is the per-shard segment limit (`max_segments_per_shard`),
//! which fails an append exactly as `ENOSPC` does.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{payload, read_response, sha256_digest, Server, TempDir};

/// Two executors, so that a request can land on the core that does not
/// own its upload; 3 segments of 4 MiB per shard.
const SMALL_DISK: &str = "[server]\nexecutors = 2\n\
    [storage]\nsegment_bytes = 4194304\nmax_segments_per_shard = 3\n";

fn small_disk_server(temp: &TempDir) -> Server {
    let config = temp.path().join("berth.toml");
    std::fs::write(&config, SMALL_DISK).unwrap();
    let config_arg = config.display().to_string();
    Server::start_with(&["--config", &config_arg])
}

/// Starts an upload on `stream`'s connection; its URL names the shard
/// of the executor that serves this connection.
fn start_upload_on(stream: &mut TcpStream, repo: &str) -> String {
    let head =
        format!("POST /v2/{repo}/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let response = read_response(stream, false);
    assert_eq!(response.status, 202);
    response.header("location").unwrap().to_owned()
}

/// The shard in an upload URL (`.../uploads/<shard>-<id>`).
fn upload_shard(location: &str) -> String {
    let id = location.rsplit('/').next().unwrap();
    id.split('-').next().unwrap().to_owned()
}

/// Sends a PATCH of `len` bytes on `stream` and returns the status line,
/// or why none came within `wait`.
fn patch_status(stream: &mut TcpStream, location: &str, len: usize, wait: Duration) -> String {
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.set_write_timeout(Some(wait)).unwrap();
    let head = format!("PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();

    // The server may answer and stop reading before the body is all sent.
    let body = payload(len as u64, len);
    for piece in body.chunks(256 * 1024) {
        if stream.write_all(piece).is_err() {
            break;
        }
    }
    let mut answer = [0u8; 64];
    match stream.read(&mut answer) {
        Ok(n) if n > 0 => String::from_utf8_lossy(&answer[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        Ok(_) => "closed without an answer".to_owned(),
        Err(e) => format!("no answer: {e}"),
    }
}

#[test]
fn a_body_streamed_to_another_core_gets_507_when_the_disk_fills() {
    // Whether the disk fills while the sending core waits on a full
    // channel is a matter of timing: try on a few fresh servers.
    for round in 0..6 {
        let temp = TempDir::new("full-cross");
        let server = small_disk_server(&temp);

        // An upload owned by the other executor than the one serving
        // `stream`, so that its body is streamed across cores.
        let mut stream = TcpStream::connect(server.addr).unwrap();
        let here = start_upload_on(&mut stream, "full/here");
        let mut elsewhere = None;
        for _ in 0..200 {
            let mut other = TcpStream::connect(server.addr).unwrap();
            let location = start_upload_on(&mut other, "full/big");
            if upload_shard(&location) != upload_shard(&here) {
                elsewhere = Some(location);
                break;
            }
        }
        let location = elsewhere.expect("no connection reached the other executor");

        let started = Instant::now();
        let status = patch_status(&mut stream, &location, 20 << 20, Duration::from_secs(20));
        assert!(
            status.starts_with("HTTP/1.1 507"),
            "round {round}: {status} after {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn pushes_past_a_full_disk_get_507_and_lose_nothing_acknowledged() {
    let temp = TempDir::new("full");
    let server = small_disk_server(&temp);

    let mut acked = Vec::new();
    for i in 0..4 {
        let data = payload(100 + i, 300_000);
        acked.push((server.push_blob("full/kept", &data), data));
    }

    // A chunked session fills the disk and is cancelled; a monolithic
    // push that fails keeps no session behind.
    let start = server.request("POST", "/v2/full/big/blobs/uploads/", &[], b"");
    assert_eq!(start.status, 202);
    let location = start.header("location").unwrap().to_owned();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let status = patch_status(&mut stream, &location, 20 << 20, Duration::from_secs(20));
    assert!(status.starts_with("HTTP/1.1 507"), "{status}");

    let big = payload(9, 20 << 20);
    let digest = sha256_digest(&big);
    let path = format!("/v2/full/mono/blobs/uploads/?digest={digest}");
    for _ in 0..3 {
        let response = common::try_request(server.addr, "POST", &path, &[], &big);
        if let Ok(response) = response {
            assert_eq!(response.status, 507, "{}", response.text());
        }
    }
    let cancel = server.request("DELETE", &location, &[], b"");
    assert_eq!(cancel.status, 204);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric_sum("berth_uploads_in_progress") != 0.0 {
        assert!(Instant::now() < deadline, "sessions left behind");
        std::thread::sleep(Duration::from_millis(50));
    }

    for (digest, data) in &acked {
        let got = server.get(&format!("/v2/full/kept/blobs/{digest}"));
        assert_eq!(got.status, 200, "acknowledged {digest} lost");
        assert_eq!(&got.body, data);
    }
}

#[test]
fn a_failed_monolithic_push_keeps_no_session() {
    let server = Server::start();
    let data = payload(3, 2 << 20);
    let wrong = sha256_digest(b"something else");
    for _ in 0..5 {
        let path = format!("/v2/mono/wrong/blobs/uploads/?digest={wrong}");
        let response = server.request("POST", &path, &[], &data);
        assert_eq!(response.status, 400);
        assert_eq!(response.error_code(), "DIGEST_INVALID");
        assert!(response.header("location").is_none());
    }
    assert_eq!(server.metric_sum("berth_uploads_in_progress"), 0.0);
    let failed = server.metric_sum("berth_uploads_finished_total{outcome=\"failed\"}");
    assert_eq!(failed, 5.0);
}
