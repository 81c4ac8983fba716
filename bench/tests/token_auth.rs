//! The Docker token flow end to end: a front that demands bearer tokens
//! with the right scope, a token endpoint that hands them out for the
//! right password, and CNCF Distribution behind (skipped when it is not
//! installed).

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use common::{bench, run_and_verify_via, start_distribution, text};

#[test]
fn token_flow_with_scopes_stores_everything() {
    let Some(server) = start_distribution(false) else {
        return;
    };
    let upstream: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let front = token_front(upstream);
    run_and_verify_via(
        &front,
        ",user=bench,password=right-password",
        &server.url,
        false,
    );
}

#[test]
fn token_flow_with_a_wrong_password_fails() {
    let Some(server) = start_distribution(false) else {
        return;
    };
    let upstream: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let front = token_front(upstream);
    let target = format!("front={front},user=bench,password=nope");
    let output = bench(&["run", "--target", &target, "--count", "2", "--warmup", "0"]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("token HTTP 401"), "{out}");
}

#[test]
fn wrong_bytes_from_a_registry_are_an_error() {
    let Some(server) = start_distribution(false) else {
        return;
    };
    let upstream: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let front = front(upstream, true);
    let target = format!("front={front},user=bench,password=right-password");
    let output = bench(&[
        "run",
        "--target",
        &target,
        "--workload",
        "pull:size=64KiB,objects=2",
        "--count",
        "4",
        "--warmup",
        "0",
        "--repeat",
        "1",
    ]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("wrong content"), "{out}");
}

/// Starts the front; returns its base URL.
fn token_front(upstream: SocketAddr) -> String {
    front(upstream, false)
}

/// Starts the front, optionally flipping a byte of every blob it serves.
fn front(upstream: SocketAddr, corrupt_blobs: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream, addr, upstream, corrupt_blobs));
        }
    });
    format!("http://{addr}")
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();

    let mut headers = Vec::new();
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim().to_string(), value.trim().to_string());
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok()?;
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            // Passed on with a length instead.
            chunked = value.eq_ignore_ascii_case("chunked");
            continue;
        }
        headers.push((name, value));
    }

    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
        headers.push(("Content-Length".into(), body.len().to_string()));
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

fn serve(mut stream: TcpStream, me: SocketAddr, upstream: SocketAddr, corrupt_blobs: bool) {
    let Some(req) = read_request(&stream) else {
        return;
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };

    // The token endpoint: the token is the scope it grants.
    if let Some(query) = req.target.strip_prefix("/token?") {
        // base64("bench:right-password")
        let response = if header("authorization") == Some("Basic YmVuY2g6cmlnaHQtcGFzc3dvcmQ=") {
            let scope = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("scope="))
                .map(percent_decode)
                .unwrap_or_default();
            let body = format!("{{\"token\":\"scope={scope}\",\"expires_in\":300}}");
            reply("200 OK", "", &body)
        } else {
            reply("401 Unauthorized", "", "")
        };
        let _ = stream.write_all(response.as_bytes());
        return;
    }

    let needed = scope_for(&req.method, &req.target);
    let granted = header("authorization")
        .and_then(|v| v.strip_prefix("Bearer scope="))
        .map(str::to_string);
    let allowed = match (&needed, &granted) {
        (None, Some(_)) => true,
        (Some(needed), Some(granted)) => covers(granted, needed),
        _ => false,
    };
    if !allowed {
        let mut challenge =
            format!("WWW-Authenticate: Bearer realm=\"http://{me}/token\",service=\"front\"");
        if let Some(scope) = &needed {
            challenge.push_str(&format!(",scope=\"{scope}\""));
        }
        challenge.push_str("\r\n");
        let _ = stream.write_all(reply("401 Unauthorized", &challenge, "").as_bytes());
        return;
    }

    // Pass the request on, keeping Host so Locations point at the front.
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
    for (name, value) in &req.headers {
        let lower = name.to_ascii_lowercase();
        if lower != "authorization" && lower != "connection" {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    if up.write_all(head.as_bytes()).is_err() || up.write_all(&req.body).is_err() {
        return;
    }
    let mut response = Vec::new();
    let _ = up.read_to_end(&mut response);

    let is_blob_get = req.method == "GET" && req.target.contains("/blobs/sha256:");
    if corrupt_blobs && is_blob_get {
        if let Some(head_end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            if let Some(byte) = response.get_mut(head_end + 4 + 10) {
                *byte ^= 0xff;
            }
        }
    }

    // One request per connection: say so, so the client does not reuse it.
    if let Some(end) = response.windows(2).position(|w| w == b"\r\n") {
        response.splice(end + 2..end + 2, b"Connection: close\r\n".iter().copied());
    }
    let _ = stream.write_all(&response);
}

/// The scope a request needs: pull for reads, pull and push for writes.
fn scope_for(method: &str, target: &str) -> Option<String> {
    let path = target.split('?').next().unwrap_or("");
    let rest = path.strip_prefix("/v2/")?;
    if rest.is_empty() {
        return None;
    }
    if rest.starts_with("_catalog") {
        return Some("registry:catalog:*".into());
    }
    let name_end = ["/blobs/", "/manifests/", "/tags/"]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()?;
    let name = &rest[..name_end];
    let actions = if method == "GET" || method == "HEAD" {
        "pull"
    } else {
        "pull,push"
    };
    Some(format!("repository:{name}:{actions}"))
}

fn covers(granted: &str, needed: &str) -> bool {
    if granted == needed {
        return true;
    }
    // A push token also allows pulls of the same repository.
    needed
        .strip_suffix(":pull")
        .is_some_and(|base| granted == format!("{base}:pull,push"))
}

fn reply(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
