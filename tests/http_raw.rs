//! Raw-socket tests against the real binary: literal request bytes in,
//! status line and headers checked, for every limit and malformed input.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{raw, read_response, read_response_buffered, Server};

const WAIT: Duration = Duration::from_secs(10);

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

#[test]
fn oversized_header_gets_431() {
    let server = Server::start();
    let big = "a".repeat(100 * 1024);
    let request = format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let response = raw(server.addr, request.as_bytes(), WAIT);
    assert!(
        status_line(&response).starts_with("HTTP/1.1 431"),
        "{response}"
    );
}

#[test]
fn too_many_headers_gets_431() {
    let server = Server::start();
    let mut request = String::from("GET /v2/ HTTP/1.1\r\nHost: x\r\n");
    for i in 0..500 {
        request.push_str(&format!("X-H{i}: v\r\n"));
    }
    request.push_str("\r\n");
    let response = raw(server.addr, request.as_bytes(), WAIT);
    assert!(
        status_line(&response).starts_with("HTTP/1.1 431"),
        "{response}"
    );
}

#[test]
fn long_uri_gets_414() {
    let server = Server::start();
    let path = format!("/v2/{}/tags/list", "a".repeat(20_000));
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let response = raw(server.addr, request.as_bytes(), WAIT);
    assert!(
        status_line(&response).starts_with("HTTP/1.1 414"),
        "{response}"
    );
}

#[test]
fn malformed_request_line_gets_400_and_close() {
    let server = Server::start();
    let response = raw(server.addr, b"GARBAGE\x01\x02 / HTTP/9.9\r\n\r\n", WAIT);
    assert!(
        status_line(&response).starts_with("HTTP/1.1 400"),
        "{response}"
    );
}

#[test]
fn content_length_and_chunked_together_get_400() {
    let server = Server::start();
    let request = b"POST /v2/x/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let response = raw(server.addr, request, WAIT);
    assert!(
        status_line(&response).starts_with("HTTP/1.1 400"),
        "{response}"
    );
}

#[test]
fn oversized_manifest_gets_413() {
    let server = Server::start();
    let len = 5 * 1024 * 1024;
    let head = format!(
        "PUT /v2/big/manifests/latest HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {len}\r\n\r\n"
    );
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..(len / chunk.len()) {
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
    let response = read_response(&mut stream, false);
    assert_eq!(response.status, 413);
    assert_eq!(response.error_code(), "SIZE_INVALID");
}

#[test]
fn a_client_that_sends_a_whole_oversized_manifest_still_reads_its_413() {
    let server = Server::start();
    let body = vec![b' '; 4 * 1024 * 1024 + 1];
    let headers = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    let response = common::request(
        server.addr,
        "PUT",
        "/v2/big/manifests/latest",
        &headers,
        &body,
    );
    assert_eq!(response.status, 413);
    assert_eq!(response.error_code(), "SIZE_INVALID");
}

#[test]
fn keep_alive_and_pipelined_requests() {
    let server = Server::start();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\nGET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let first = read_response_buffered(&mut stream, &mut buf, false);
    let second = read_response_buffered(&mut stream, &mut buf, false);
    assert_eq!((first.status, second.status), (200, 200));

    stream
        .write_all(b"HEAD /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let third = read_response_buffered(&mut stream, &mut buf, true);
    assert_eq!(third.status, 200);
}

#[test]
fn expect_continue_gets_100_before_body() {
    let server = Server::start();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let digest = common::sha256_digest(b"abc");
    let head = format!(
        "POST /v2/cont/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut buf = [0u8; 25];
    stream.read_exact(&mut buf).unwrap();
    assert!(
        buf.starts_with(b"HTTP/1.1 100"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    stream.write_all(b"abc").unwrap();
    let response = read_response(&mut stream, false);
    assert_eq!(response.status, 201);
}

#[test]
fn slow_header_is_cut_off() {
    let server = Server::start_with(&[
        "--config",
        &write_config("[http]\nheader_read_timeout_secs = 1\n"),
    ]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"GET /v2/ HTTP/1.1\r\nHost:").unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[test]
fn unknown_route_and_method() {
    let server = Server::start();
    let response = raw(
        server.addr,
        b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        WAIT,
    );
    assert!(
        status_line(&response).starts_with("HTTP/1.1 404"),
        "{response}"
    );
    let response = raw(
        server.addr,
        b"POST /v2/x/tags/list HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        WAIT,
    );
    assert!(
        status_line(&response).starts_with("HTTP/1.1 405"),
        "{response}"
    );
}

fn write_config(text: &str) -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let path = dir.join(format!("berth-config-{}-{nanos}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn manifest_without_length_gets_411() {
    let server = Server::start();
    let response = raw(
        server.addr,
        b"PUT /v2/x/manifests/latest HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n",
        WAIT,
    );
    assert!(
        status_line(&response).starts_with("HTTP/1.1 411"),
        "{response}"
    );
}

#[test]
fn upload_body_over_the_limit_gets_413() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let config = dir.join(format!("berth-limit-{}.toml", std::process::id()));
    std::fs::write(&config, "[uploads]\nmax_body_bytes = 1048576\n").unwrap();
    let server = Server::start_with(&["--config", &config.display().to_string()]);
    let data = common::payload(3, 1_500_000);
    let digest = common::sha256_digest(&data);
    let response = server.request(
        "POST",
        &format!("/v2/big/blobs/uploads/?digest={digest}"),
        &[],
        &data,
    );
    assert_eq!(response.status, 413);
    assert_eq!(response.error_code(), "SIZE_INVALID");
    assert_eq!(server.get(&format!("/v2/big/blobs/{digest}")).status, 404);
}

/// Starts berth with `config` as its config file.
fn server_with_config(temp: &common::TempDir, config: &str) -> Server {
    let path = temp.path().join("berth.toml");
    std::fs::write(&path, config).unwrap();
    let path = path.display().to_string();
    Server::start_with(&["--config", &path])
}

/// Sends a manifest PUT head for a body of `len` bytes.
fn manifest_head(stream: &mut TcpStream, len: usize) {
    let head = format!(
        "PUT /v2/slow/manifests/latest HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\
         Content-Length: {len}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
}

#[test]
fn a_manifest_dribbled_past_the_body_timeout_gets_408() {
    let temp = common::TempDir::new("dribble");
    let server = server_with_config(&temp, "[http]\nbody_read_timeout_secs = 2\n");
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    manifest_head(&mut stream, 1000);

    // One byte well within each read's timeout, never the whole body.
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        if stream.write_all(b" ").is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if answer.ends_with(b"}") {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        status_line(&answer).starts_with("HTTP/1.1 408"),
        "after {:?}: {answer}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn manifests_held_past_the_per_core_budget_get_503() {
    let temp = common::TempDir::new("budget");
    let server = server_with_config(&temp, "[server]\nexecutors = 1\n");

    // 64 pushes of almost the largest manifest, each one byte short.
    let almost = 4 * 1024 * 1024 - 1;
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        manifest_head(&mut stream, almost + 1);
        stream.write_all(&vec![b' '; almost]).unwrap();
        held.push(stream);
    }
    // Let the server read what was sent.
    std::thread::sleep(Duration::from_millis(500));

    let small = vec![b' '; 2048];
    let headers = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    let path = "/v2/slow/manifests/latest";
    let busy = common::request(server.addr, "PUT", path, &headers, &small);
    assert_eq!(busy.status, 503, "{}", busy.text());
    assert_eq!(busy.error_code(), "TOOMANYREQUESTS");
    assert_eq!(busy.header("retry-after"), Some("1"));

    // Once those connections go, their bytes are given back.
    drop(held);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let response = common::request(server.addr, "PUT", path, &headers, &small);
        if response.status == 400 {
            assert_eq!(response.error_code(), "MANIFEST_INVALID");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", response.text());
        std::thread::sleep(Duration::from_millis(100));
    }
}
