//! Failures must surface as errors with a non-zero exit, never as a fast
//! result. These need no registry: a closed port and a small token server.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::thread;

use common::{bench, free_port, text};

#[test]
fn closed_port_is_an_error_with_a_banner() {
    let target = format!("gone=http://127.0.0.1:{}", free_port());
    let output = bench(&["run", "--target", &target, "--count", "2", "--warmup", "0"]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("!!!"), "{out}");
    assert!(stdout.contains("gone unreachable"), "{out}");
}

#[test]
fn wrong_password_at_the_token_endpoint_is_an_error() {
    let url = token_registry();
    let target = format!("mock={url},user=bench,password=wrong");
    let output = bench(&["run", "--target", &target, "--count", "2", "--warmup", "0"]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("token HTTP 401"), "{out}");
}

#[test]
fn right_password_gets_a_token_and_passes_the_ping() {
    let url = token_registry();
    let target = format!("mock={url},user=bench,password=right-password");
    let output = bench(&[
        "run",
        "--target",
        &target,
        "--workload",
        "push:size=1KiB",
        "--count",
        "1",
        "--warmup",
        "0",
    ]);
    let out = text(&output);
    // The mock is no registry, so pushes fail, but the ping (GET /v2/ with
    // a fetched token) must succeed.
    assert!(!out.contains("unreachable"), "{out}");
    assert!(out.contains("HTTP 404"), "{out}");
    assert_eq!(output.status.code(), Some(1), "{out}");
}

#[test]
fn bad_arguments_exit_with_usage_status() {
    for args in [
        &["run", "--target", "ftp://x"][..],
        &["run", "--target", "http://x", "--workload", "teleport"][..],
        &["run", "--target", "http://x", "--blob-size", "lots"][..],
    ] {
        let output = bench(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
    }
}

/// A registry front that only does the Docker token flow: `/v2/...` wants
/// `Bearer good`, `/token` hands it out for `bench:right-password`. Every
/// other call with a good token gets 404.
fn token_registry() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let realm = format!("http://{addr}/token");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let realm = realm.clone();
            thread::spawn(move || answer(stream, &realm));
        }
    });
    format!("http://{addr}")
}

fn answer(mut stream: TcpStream, realm: &str) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorization = String::new();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("authorization:") {
            authorization = line[14..].trim().to_string();
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; content_length];
    let _ = std::io::Read::read_exact(&mut reader, &mut body);

    let path = request_line.split(' ').nth(1).unwrap_or("");
    // base64("bench:right-password")
    let good_basic = "Basic YmVuY2g6cmlnaHQtcGFzc3dvcmQ=";
    let response = if path.starts_with("/token") {
        if authorization == good_basic {
            ok("{\"token\":\"good\",\"expires_in\":300}")
        } else {
            status("401 Unauthorized", "")
        }
    } else if authorization != "Bearer good" {
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"mock\",\
             scope=\"repository:x:pull\"\r\n"
        );
        status("401 Unauthorized", &challenge)
    } else if path == "/v2/" {
        ok("{}")
    } else {
        status("404 Not Found", "")
    };
    let _ = stream.write_all(response.as_bytes());
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn status(line: &str, headers: &str) -> String {
    format!("HTTP/1.1 {line}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n")
}
