//! Shared helpers for the integration tests: start the real `berth`
//! binary on a free port with a fresh data directory, and talk HTTP/1.1
//! to it over plain sockets.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// A running `berth serve` child process, killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// Address of the registry listener.
    pub addr: SocketAddr,
    /// Address of the admin listener.
    pub admin: SocketAddr,
    /// The data directory (kept across restarts).
    pub data_dir: PathBuf,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    stderr: Option<PathBuf>,
    tls: bool,
    _temp: Option<TempDir>,
}

impl Server {
    /// Starts berth on free ports with a new, empty data directory.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts berth with extra command-line arguments.
    pub fn start_with(extra: &[&str]) -> Server {
        Server::start_full(extra, &[], None)
    }

    /// Starts berth with extra arguments, extra environment variables and,
    /// optionally, its stderr written to a file.
    pub fn start_full(extra: &[&str], env: &[(&str, &str)], stderr: Option<PathBuf>) -> Server {
        Server::launch(extra, env, stderr, false)
    }

    /// Starts berth with TLS on its listener (the config given in `extra`
    /// must name the certificate); readiness is checked on the admin port.
    pub fn start_full_tls(extra: &[&str]) -> Server {
        Server::launch(extra, &[], None, true)
    }

    fn launch(extra: &[&str], env: &[(&str, &str)], stderr: Option<PathBuf>, tls: bool) -> Server {
        let temp = TempDir::new("berth-test");
        let data_dir = temp.path().join("data");
        let mut server = Server {
            child: None,
            addr: free_addr(),
            admin: free_addr(),
            data_dir,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            stderr,
            tls,
            _temp: Some(temp),
        };
        server.spawn();
        server
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends a signal to the running server.
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) with a pid we own; no memory is touched.
            unsafe {
                libc_kill(pid as i32, signal);
            }
        }
    }

    fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command
            .arg("serve")
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--admin-listen")
            .arg(self.admin.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if !self.env.iter().any(|(k, _)| k == "BERTH_LOG") && self.stderr.is_none() {
            command.env("BERTH_LOG", "warn");
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        match &self.stderr {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("stderr file opens");
                command.stderr(file);
            }
            None => {
                command.stderr(Stdio::inherit());
            }
        }
        let child = command.spawn().expect("berth binary starts");
        self.child = Some(child);
        self.fail_fast_if_exited();
        if !self.tls {
            wait_for_port(self.addr, Duration::from_secs(30));
        }
        // Ready means every executor recovered, not just the first to listen.
        wait_for_admin(self.admin, Duration::from_secs(30));
    }

    /// Panics with the exit status if berth exited within its first
    /// moments (a refused config, a port in use).
    fn fail_fast_if_exited(&mut self) {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("berth exited at start: {status}");
            }
        }
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server gracefully (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal(15);
        self.wait_exit()
    }

    /// Waits for the server to exit by itself; its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills and starts the server again on the same data directory.
    ///
    /// NOTE: it comes back on new ports: another test of the same binary
    /// may have been handed the old ones while they were free.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Starts the server again after it stopped (on new ports).
    pub fn start_again(&mut self) {
        self.addr = free_addr();
        self.admin = free_addr();
        self.spawn();
    }

    /// Sends one request and reads its response.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        request(self.addr, method, path, headers, body)
    }

    /// The sum of an admin metric over all its label sets.
    pub fn metric_sum(&self, name: &str) -> f64 {
        let text = request(self.admin, "GET", "/metrics", &[], b"").text();
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// `GET` shorthand.
    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[], b"")
    }

    /// Pushes a blob monolithically (POST + PUT) and returns its digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let start = self.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        assert_eq!(start.status, 202, "POST upload: {}", start.text());
        let location = start.header("location").expect("Location").to_owned();
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self.request(
            "PUT",
            &format!("{location}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(put.status, 201, "PUT upload: {}", put.text());
        digest
    }

    /// Pushes a manifest under `reference` and returns its digest.
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let response = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            body,
        );
        assert_eq!(response.status, 201, "PUT manifest: {}", response.text());
        sha256_digest(body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First header of that name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The OCI error code of an error body.
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

/// Sends one request; a connection failure is an `Err`, not a panic
/// (for load loops that run while the server stops).
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let framed = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    if !framed {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    stream
        .write_all(body)
        .map_err(|e| format!("write body: {e}"))?;
    let mut buf = Vec::new();
    try_read_response(&mut stream, &mut buf, method == "HEAD")
}

/// Sends one request on a new connection and reads the response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    match try_request(addr, method, path, headers, body) {
        Ok(response) => response,
        Err(error) => panic!("{method} {path}: {error}"),
    }
}

/// `data` in the chunked transfer coding, in pieces of `piece_bytes`.
pub fn chunked_body(data: &[u8], piece_bytes: usize) -> Vec<u8> {
    let mut chunked = Vec::new();
    for piece in data.chunks(piece_bytes) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    chunked
}

/// Writes raw bytes on a new connection and returns everything read back
/// until the server closes it (or the timeout passes).
pub fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(timeout)).unwrap();
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response from a stream that carries no other response.
pub fn read_response(stream: &mut impl Read, head_only: bool) -> HttpResponse {
    let mut leftover = Vec::new();
    read_response_buffered(stream, &mut leftover, head_only)
}

/// Reads one response; bytes read past its end stay in `buf` for the
/// next call (pipelined responses).
pub fn read_response_buffered(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    head_only: bool,
) -> HttpResponse {
    match try_read_response(stream, buf, head_only) {
        Ok(response) => response,
        Err(error) => panic!("reading a response: {error}"),
    }
}

/// Reads one response, or says why it could not.
pub fn try_read_response(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    head_only: bool,
) -> Result<HttpResponse, String> {
    let mut chunk = [0u8; 65536];
    let (status, headers, body_start) = loop {
        let mut parsed_headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut parsed_headers);
        let parsed = response
            .parse(buf)
            .map_err(|e| format!("bad response head: {e}"))?;
        if let httparse::Status::Complete(len) = parsed {
            let status = response.code.unwrap_or(0);
            let headers: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            break (status, headers, len);
        }
        let n = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed before a response: {:?}",
                String::from_utf8_lossy(buf)
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    buf.drain(..body_start);
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let body = if head_only || status == 204 || status == 304 || status / 100 == 1 {
        Vec::new()
    } else if let Some(length) = length {
        while buf.len() < length {
            let n = stream
                .read(&mut chunk)
                .map_err(|e| format!("read body: {e}"))?;
            if n == 0 {
                return Err("connection closed mid-body".to_owned());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..length).collect()
    } else {
        loop {
            let n = stream.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        std::mem::take(buf)
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Deterministic pseudo-random bytes (xorshift), for test payloads.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An OCI image manifest for a config and layers.
pub fn image_manifest(config: (&str, usize), layers: &[(&str, usize)]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(d, s)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": d, "size": s
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.0, "size": config.1
        },
        "layers": layers
    }))
    .unwrap()
}

/// A free loopback address, never the same twice in one test binary.
pub fn free_addr() -> SocketAddr {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut handed_out = HANDED_OUT.lock().unwrap();
        if !handed_out.contains(&addr.port()) {
            handed_out.push(addr.port());
            return addr;
        }
    }
}

fn wait_for_port(addr: SocketAddr, timeout: Duration) {
    // NOTE: a bare connect is not enough: until berth listens, a connect
    // to a free loopback port can even meet itself. Wait for a real answer.
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let probe = b"GET /v2/ HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n";
            let mut answer = [0u8; 12];
            if stream.write_all(probe).is_ok()
                && stream.read_exact(&mut answer).is_ok()
                && answer.starts_with(b"HTTP/1.1 200")
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("berth did not answer on {addr} within {timeout:?}");
}

fn wait_for_admin(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(response) = try_request(addr, "GET", "/readyz", &[], b"") {
            if response.status == 200 {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("berth's admin listener did not answer on {addr} within {timeout:?}");
}

/// A temporary directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a new, empty directory under the system's temp dir.
    pub fn new(prefix: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        // NOTE: the target directory is on a real disk; a tmpfs /tmp would
        // refuse the O_DIRECT files berth writes.
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let path = base.join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
