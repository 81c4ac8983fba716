//! berth as a service, against the real binary: sd_notify messages on a
//! socket the test creates, graceful SIGTERM during uploads, SIGHUP
//! changing the log level live, restarts right after a crash, and
//! metrics that move.

mod common;

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{payload, request, sha256_digest, try_request, Server, TempDir};

const SIGHUP: i32 = 1;

/// Collects datagrams until one equals `wanted` or the time runs out.
fn wait_for_message(socket: &UnixDatagram, wanted: &str, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let found = message.lines().any(|line| line == wanted);
            seen.push(message);
            if found {
                return true;
            }
        }
    }
    false
}

#[test]
fn sd_notify_ready_status_and_stopping() {
    let temp = TempDir::new("notify");
    let path = temp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let socket_path = path.display().to_string();
    let mut server = Server::start_full(&[], &[("NOTIFY_SOCKET", &socket_path)], None);
    let mut seen = Vec::new();
    assert!(
        wait_for_message(&socket, "READY=1", &mut seen),
        "no READY=1 in {seen:?}"
    );
    assert!(
        seen.iter().any(|m| m.starts_with("STATUS=")),
        "no STATUS= line in {seen:?}"
    );

    server.signal(15);
    assert!(
        wait_for_message(&socket, "STOPPING=1", &mut seen),
        "no STOPPING=1 in {seen:?}"
    );
    assert_eq!(server.wait_exit(), Some(0));
}

#[test]
fn sigterm_during_uploads_loses_nothing_acknowledged() {
    let mut server = Server::start();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let addr = server.addr;

    let workers: Vec<_> = (0..4u64)
        .map(|worker| {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let seed = worker * 100_000 + n;
                    let data = payload(seed, 50_000 + (seed % 7) as usize * 10_000);
                    let digest = sha256_digest(&data);
                    let path = format!("/v2/drain/w{worker}/blobs/uploads/?digest={digest}");
                    let result = try_request(addr, "POST", &path, &[], &data);
                    match result {
                        Ok(response) if response.status == 201 => {
                            acked
                                .lock()
                                .unwrap()
                                .push((worker, digest, seed, data.len()));
                        }
                        _ => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(700));
    let code = server.stop();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    assert_eq!(code, Some(0), "berth did not exit cleanly on SIGTERM");

    server.start_again();
    let acked = acked.lock().unwrap();
    assert!(!acked.is_empty());
    for (worker, digest, seed, len) in acked.iter() {
        let got = server.get(&format!("/v2/drain/w{worker}/blobs/{digest}"));
        assert_eq!(got.status, 200, "acknowledged {digest} lost after SIGTERM");
        assert_eq!(got.body, payload(*seed, *len));
    }
}

#[test]
fn sighup_changes_the_log_level_live() {
    let temp = TempDir::new("sighup");
    let config = temp.path().join("berth.toml");
    let log = temp.path().join("stderr.log");
    std::fs::write(&config, "[log]\nlevel = \"warn\"\naccess_log = true\n").unwrap();

    let config_arg = config.display().to_string();
    let server = Server::start_full(&["--config", &config_arg], &[], Some(log.clone()));
    server.get("/v2/quiet/tags/list");
    std::thread::sleep(Duration::from_millis(200));
    let before = std::fs::read_to_string(&log).unwrap();
    assert!(
        !before.contains("/v2/quiet/tags/list"),
        "access line at warn: {before}"
    );

    std::fs::write(&config, "[log]\nlevel = \"info\"\naccess_log = true\n").unwrap();
    server.signal(SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        server.get("/v2/loud/tags/list");
        std::thread::sleep(Duration::from_millis(100));
        let after = std::fs::read_to_string(&log).unwrap();
        if after.contains("/v2/loud/tags/list") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no access line after SIGHUP: {after}"
        );
    }
}

/// Waits for the `config reloaded` line of the `nth` reload (from 1) in
/// a server's stderr log and returns it.
fn reload_line(log: &Path, nth: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap();
        let line = text
            .lines()
            .filter(|l| l.contains("config reloaded"))
            .nth(nth - 1);
        if let Some(line) = line {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "reload {nth} not logged:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_keeps_command_line_overrides_out_of_the_diff() {
    let temp = TempDir::new("overrides");
    let config = temp.path().join("berth.toml");
    let log = temp.path().join("stderr.log");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").unwrap();

    // The helper passes --listen, --admin-listen and --data-dir, which
    // differ from the file's defaults for those keys.
    let config_arg = config.display().to_string();
    let server = Server::start_full(&["--config", &config_arg], &[], Some(log.clone()));
    server.signal(SIGHUP);
    let line = reload_line(&log, 1);
    assert!(line.contains("live=[]"), "{line}");
    assert!(line.contains("needs_restart=[]"), "{line}");

    // A key the file does change is still named.
    std::fs::write(
        &config,
        "[log]\nlevel = \"info\"\n[http]\nmax_headers = 64\n",
    )
    .unwrap();
    server.signal(SIGHUP);
    let line = reload_line(&log, 2);
    assert!(line.contains("live=[\"http.max_headers\"]"), "{line}");
    assert!(line.contains("needs_restart=[]"), "{line}");
    assert_eq!(server.get("/v2/").status, 200);
}

#[test]
fn metrics_and_health_on_the_admin_listener() {
    let server = Server::start();
    let health = request(server.admin, "GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200);
    let ready = request(server.admin, "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 200);

    let before = scrape_requests(&server);
    for _ in 0..5 {
        server.get("/v2/");
    }
    server.push_blob("metered", &payload(1, 10_000));
    let after = scrape_requests(&server);
    assert!(
        after >= before + 7.0,
        "requests counter went from {before} to {after}"
    );

    let text = request(server.admin, "GET", "/metrics", &[], b"").text();
    assert!(text.contains("berth_storage_segments"), "{text}");

    // The push synced: its fdatasync latency reaches the histogram.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = request(server.admin, "GET", "/metrics", &[], b"").text();
        let syncs: f64 = text
            .lines()
            .filter(|l| l.starts_with("berth_fdatasync_duration_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if syncs > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no fdatasync recorded:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sum of `berth_http_requests_total` over all its series.
fn scrape_requests(server: &Server) -> f64 {
    let response = request(server.admin, "GET", "/metrics", &[], b"");
    assert_eq!(response.status, 200);
    let lines = response
        .text()
        .lines()
        .map(|l| Ok(l.to_owned()))
        .collect::<Vec<_>>();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("valid exposition");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "berth_http_requests_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn tls_serves_the_api_and_reloads_certificates_on_sighup() {
    let temp = TempDir::new("tls");
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/testdata");
    let cert = temp.path().join("cert.pem");
    let key = temp.path().join("key.pem");
    std::fs::copy(testdata.join("leaf-a.pem"), &cert).unwrap();
    std::fs::copy(testdata.join("leaf-a.key"), &key).unwrap();
    let config = temp.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();

    let config_arg = config.display().to_string();
    let server = Server::start_full_tls(&["--config", &config_arg]);
    let url = format!("https://localhost:{}/v2/", server.addr.port());
    let ca = testdata.join("ca.pem").display().to_string();
    let resolve = format!("localhost:{}:127.0.0.1", server.addr.port());
    let subject = |server: &Server| {
        let _ = server;
        let output = std::process::Command::new("curl")
            .args(["-sS", "-v", "--cacert", &ca, "--resolve", &resolve, &url])
            .output()
            .expect("curl runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(log.contains("ALPN: server accepted http/1.1"), "{log}");
        log.lines()
            .find(|l| l.contains("subject:"))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(subject(&server).contains("localhost a"));

    std::fs::copy(testdata.join("leaf-b.pem"), &cert).unwrap();
    std::fs::copy(testdata.join("leaf-b.key"), &key).unwrap();
    server.signal(SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !subject(&server).contains("localhost b") {
        assert!(Instant::now() < deadline, "certificate not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sighup_changes_http_limits_live() {
    let temp = TempDir::new("limits");
    let config = temp.path().join("berth.toml");
    std::fs::write(&config, "[http]\nmax_header_bytes = 65536\n").unwrap();
    let config_arg = config.display().to_string();
    let server = Server::start_with(&["--config", &config_arg]);

    let big = "x".repeat(20_000);
    let headers = [("X-Big", big.as_str())];
    assert_eq!(
        request(server.addr, "GET", "/v2/", &headers, b"").status,
        200
    );

    std::fs::write(&config, "[http]\nmax_header_bytes = 8192\n").unwrap();
    server.signal(SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = try_request(server.addr, "GET", "/v2/", &headers, b"").map(|r| r.status);
        if status == Ok(431) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "limit not lowered by SIGHUP: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn idle_uploads_expire_and_are_counted() {
    let temp = TempDir::new("expiry");
    let config = temp.path().join("berth.toml");
    std::fs::write(
        &config,
        "[uploads]\nexpiry_secs = 1\nsweep_interval_secs = 1\n",
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let server = Server::start_with(&["--config", &config_arg]);

    let start = server.request("POST", "/v2/idle/blobs/uploads/", &[], b"");
    assert_eq!(start.status, 202);
    let location = start.header("location").unwrap().to_owned();
    let patch = server.request("PATCH", &location, &[], &payload(9, 4096));
    assert_eq!(patch.status, 202);

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = server.get(&location).status;
        if status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "upload never expired ({status})");
        std::thread::sleep(Duration::from_millis(200));
    }
    let metrics = request(server.admin, "GET", "/metrics", &[], b"").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("berth_uploads_finished_total")
                && l.contains("expired")
                && !l.ends_with(" 0")),
        "{metrics}"
    );
}

/// Bytes the file system holds for every segment file of a data directory.
fn segment_disk_bytes(data_dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for shard in std::fs::read_dir(data_dir).unwrap().flatten() {
        let Ok(files) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name();
            if name.to_string_lossy().starts_with("seg-") {
                total += file.metadata().map_or(0, |m| m.blocks() * 512);
            }
        }
    }
    total
}

#[test]
fn expired_uploads_give_their_disk_space_back() {
    let temp = TempDir::new("reclaim");
    let config = temp.path().join("berth.toml");
    std::fs::write(
        &config,
        "[storage]\nsegment_bytes = 8388608\nreclaim_interval_secs = 1\n\
         [uploads]\nexpiry_secs = 2\nsweep_interval_secs = 1\n",
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let mut server = Server::start_with(&["--config", &config_arg]);

    let kept = payload(5, 3 << 20);
    let kept_digest = server.push_blob("reclaim/kept", &kept);

    let start = server.request("POST", "/v2/reclaim/idle/blobs/uploads/", &[], b"");
    assert_eq!(start.status, 202);
    let location = start.header("location").unwrap().to_owned();
    let abandoned = 48 << 20;
    let patch = server.request("PATCH", &location, &[], &payload(6, abandoned));
    assert_eq!(patch.status, 202);
    let full = segment_disk_bytes(&server.data_dir);
    assert!(full >= abandoned as u64, "segments hold {full} bytes");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reclaimed = server.metric_sum("berth_storage_reclaimed_bytes_total");
        if reclaimed >= abandoned as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {reclaimed} bytes reclaimed of an abandoned {abandoned}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(server.get(&location).status, 404);
    assert!(server.metric_sum("berth_storage_segments_deleted_total") >= 3.0);
    let after = segment_disk_bytes(&server.data_dir);
    assert!(
        full - after >= (abandoned as u64) * 9 / 10,
        "disk use {full} -> {after} after reclaiming"
    );

    // What was live is still served, and new pushes land fine.
    let kept_path = format!("/v2/reclaim/kept/blobs/{kept_digest}");
    assert_eq!(server.get(&kept_path).body, kept);
    let more = payload(7, 9 << 20);
    let more_digest = server.push_blob("reclaim/more", &more);
    server.restart();
    assert_eq!(server.get(&kept_path).body, kept);
    let more_path = format!("/v2/reclaim/more/blobs/{more_digest}");
    assert_eq!(server.get(&more_path).body, more);
    assert!(segment_disk_bytes(&server.data_dir) < full);
}

#[test]
fn the_same_blob_pushed_twice_is_stored_once() {
    let server = Server::start();
    let data = payload(77, 2 << 20);
    let live = |server: &Server| -> f64 {
        let text = request(server.admin, "GET", "/metrics", &[], b"").text();
        text.lines()
            .filter(|l| l.starts_with("berth_storage_live_bytes"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let digest = server.push_blob("dedupe/one", &data);
    let after_one = live(&server);
    assert!(after_one >= data.len() as f64, "live bytes {after_one}");

    assert_eq!(server.push_blob("dedupe/two", &data), digest);
    let after_two = live(&server);
    assert!(
        after_two < after_one + (data.len() / 2) as f64,
        "second copy still live: {after_one} -> {after_two}"
    );
    assert_eq!(
        server.get(&format!("/v2/dedupe/one/blobs/{digest}")).body,
        data
    );
    assert_eq!(
        server.get(&format!("/v2/dedupe/two/blobs/{digest}")).body,
        data
    );
}

#[test]
fn access_lines_count_the_bytes_that_crossed_the_wire() {
    let temp = TempDir::new("access");
    let log = temp.path().join("stderr.log");
    let server = Server::start_full(&[], &[], Some(log.clone()));

    // A chunked PATCH is counted by its decoded body, not by a
    // Content-Length it never had.
    let start = server.request("POST", "/v2/wire/blobs/uploads/", &[], b"");
    assert_eq!(start.status, 202);
    let location = start.header("location").unwrap().to_owned();
    let data = payload(7, 300_000);
    let chunked = common::chunked_body(&data, 70_000);
    let patch = server.request(
        "PATCH",
        &location,
        &[("Transfer-Encoding", "chunked")],
        &chunked,
    );
    assert_eq!(patch.status, 202);
    let digest = sha256_digest(&data);
    let put = server.request("PUT", &format!("{location}?digest={digest}"), &[], b"");
    assert_eq!(put.status, 201);

    // A HEAD sends no body, whatever its Content-Length says.
    let blob = format!("/v2/wire/blobs/{digest}");
    assert_eq!(server.request("HEAD", &blob, &[], b"").status, 200);
    assert_eq!(server.get(&blob).body, data);

    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains("berth::access") && l.contains("/v2/wire/"))
            .map(str::to_owned)
            .collect();
        if lines.len() >= 5 {
            break lines;
        }
        assert!(Instant::now() < deadline, "access lines missing:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let find = |method: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("method=\"{method}\"")))
            .unwrap_or_else(|| panic!("no {method} line in {lines:#?}"))
            .clone()
    };
    assert!(find("PATCH").contains("bytes_in=300000"), "{lines:#?}");
    assert!(find("HEAD").contains("bytes_out=0"), "{lines:#?}");
    assert!(find("GET").contains("bytes_out=300000"), "{lines:#?}");
}

/// Starts `berth serve` on exactly these addresses and data directory
/// (the common helper picks new ports on every start) and waits until it
/// is ready; panics with its stderr if it exits first.
fn serve_on(addr: SocketAddr, admin: SocketAddr, data_dir: &Path, stderr: &Path) -> Child {
    let log = std::fs::File::create(stderr).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--admin-listen")
        .arg(admin.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--executors", "2"])
        .env("BERTH_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("berth binary starts");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(stderr).unwrap_or_default();
            panic!("berth exited at start ({status}):\n{log}");
        }
        let ready = try_request(admin, "GET", "/readyz", &[], b"");
        if ready.is_ok_and(|r| r.status == 200) {
            return child;
        }
        assert!(Instant::now() < deadline, "berth never became ready");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn restart_at_once_after_sigkill_takes_the_same_port() {
    let mut server = Server::start();
    let (addr, admin) = (server.addr, server.admin);
    let data_dir = server.data_dir.clone();
    server.kill();
    let temp = TempDir::new("restart");
    let stderr = temp.path().join("stderr.log");

    let mut child = serve_on(addr, admin, &data_dir, &stderr);
    for round in 0..5u64 {
        // Requests in flight give io_uring work to tear down at the kill.
        let data = payload(round, 4096);
        let path = format!("/v2/crash/blobs/uploads/?digest={}", sha256_digest(&data));
        assert_eq!(request(addr, "POST", &path, &[], &data).status, 201);

        child.kill().unwrap();
        child.wait().unwrap();
        child = serve_on(addr, admin, &data_dir, &stderr);
    }

    let data = payload(4, 4096);
    let blob = format!("/v2/crash/blobs/{}", sha256_digest(&data));
    assert_eq!(request(addr, "GET", &blob, &[], b"").body, data);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_second_server_on_a_taken_port_is_refused() {
    let server = Server::start();
    let temp = TempDir::new("second");
    let output = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("serve")
        .arg("--listen")
        .arg(server.addr.to_string())
        .arg("--admin-listen")
        .arg(common::free_addr().to_string())
        .arg("--data-dir")
        .arg(temp.path().join("data"))
        .env("BERTH_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("berth binary runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let refusal = format!("cannot listen on {}: address in use", server.addr);
    assert!(stderr.contains(&refusal), "{stderr}");
    assert_eq!(server.get("/v2/").status, 200);
}
