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
