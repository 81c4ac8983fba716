//! Helpers for the end-to-end tests: start registries, run the tool, and
//! check what the tool says it stored against what the registry holds.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// A scratch directory removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Makes a fresh, empty directory under cargo's temp directory for
    /// tests, which lies in the target directory: on a real disk, where
    /// `/tmp` may be tmpfs (no O_DIRECT).
    pub fn new(label: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = base.join(format!(
            "berth-bench-test-{label}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A registry process started by a test, killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    log: PathBuf,
    /// Its files; removed after the process is gone.
    pub scratch: Scratch,
}

impl Server {
    /// Stops the process and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process's output so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The berth binary: `$BERTH_BIN`, or `berth` next to the test executable
/// (`target/<profile>/berth`, built by `cargo test --workspace`).
pub fn berth_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BERTH_BIN") {
        return Some(PathBuf::from(path));
    }
    // The test runs as target/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let berth = profile_dir.join("berth");
    berth.is_file().then_some(berth)
}

/// Starts berth on a free port with a fresh data directory, or says why
/// the test is skipped when the binary has not been built.
pub fn start_berth() -> Option<Server> {
    let Some(binary) = berth_binary() else {
        // CI sets this so a missing build cannot pass as a skip.
        if std::env::var_os("BERTH_BENCH_REQUIRE_BERTH").is_some() {
            panic!("BERTH_BENCH_REQUIRE_BERTH is set but no berth binary was found");
        }
        eprintln!(
            "SKIP: no berth binary next to the test executable; run \
             `cargo test --workspace` (which builds it) or set BERTH_BIN"
        );
        return None;
    };
    let scratch = Scratch::new("berth");
    let port = free_port();
    let data = scratch.path("data");
    let listen = format!("127.0.0.1:{port}");
    // Tests run in parallel, so the admin listener needs its own port too.
    let admin = format!("127.0.0.1:{}", free_port());
    let args = [
        "serve",
        "--listen",
        &listen,
        "--admin-listen",
        &admin,
        "--data-dir",
        data.to_str().unwrap(),
    ];
    Some(spawn(&binary, &args, scratch, port))
}

/// Starts CNCF Distribution (`docker-registry`) with filesystem storage,
/// optionally behind htpasswd basic auth (user `bench`, password
/// `right-password`), or says why the test is skipped when it is not
/// installed.
pub fn start_distribution(with_auth: bool) -> Option<Server> {
    let binary = Path::new("/usr/bin/docker-registry");
    if !binary.is_file() {
        // tests/run-all.sh installs it and sets BERTH_REQUIRE_TOOLS, so
        // the full suite never skips this quietly.
        assert!(
            std::env::var_os("BERTH_REQUIRE_TOOLS").is_none(),
            "/usr/bin/docker-registry is not installed (apt-get install docker-registry)"
        );
        eprintln!("SKIP: /usr/bin/docker-registry is not installed");
        return None;
    }
    let scratch = Scratch::new("dist");
    let port = free_port();
    let mut config = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: 127.0.0.1:{port}\n",
        scratch.path("root").display()
    );
    if with_auth {
        // bcrypt cost 4 keeps the per-request password check cheap.
        let hash = "$2b$04$IgtC/t1Rgl57BuYe1H9Zbe0h.mCPRZvYRZLfNSP3Kna0QUq5vktom";
        std::fs::write(scratch.path("htpasswd"), format!("bench:{hash}\n")).unwrap();
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: bench\n    path: {}\n",
            scratch.path("htpasswd").display()
        ));
    }
    let config_path = scratch.path("config.yml");
    std::fs::write(&config_path, config).unwrap();
    let args = ["serve", config_path.to_str().unwrap()];
    Some(spawn(binary, &args, scratch, port))
}

fn spawn(binary: &Path, args: &[&str], scratch: Scratch, port: u16) -> Server {
    let log = scratch.path("server.log");
    let out = std::fs::File::create(&log).unwrap();
    let err = out.try_clone().unwrap();
    let child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let mut server = Server {
        child: Some(child),
        url: format!("http://127.0.0.1:{port}"),
        log,
        scratch,
    };
    wait_ready(&mut server);
    server
}

/// Waits until `GET /v2/` answers at all (200 or 401).
fn wait_ready(server: &mut Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("{}/v2/", server.url);
    let rt = runtime();
    loop {
        let answered = rt.block_on(async {
            let client = reqwest::Client::new();
            client.get(&url).send().await.map(|r| r.status().as_u16())
        });
        if let Ok(200 | 401) = answered {
            return;
        }
        if let Some(child) = server.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("registry exited with {status}: {}", server.log());
            }
        }
        if Instant::now() > deadline {
            panic!("registry not ready after 30s: {}", server.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A small runtime for the checks' HTTP calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `berth-bench` with `args`; never draws progress.
pub fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth-bench"))
        .args(args)
        .arg("--no-progress")
        .output()
        .unwrap()
}

/// Output as text, for assertions and failure messages.
pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a tiny workload set against `url` and checks that the registry
/// holds what the tool reports: counts and bytes per measured workload,
/// every blob (HEAD with its size), every manifest (GET by digest and by
/// tag), the tags lists and the catalog.
pub fn run_and_verify(url: &str, credentials: &str) {
    let basic = credentials.contains("user=");
    run_and_verify_via(url, credentials, url, basic);
}

/// Like [`run_and_verify`], but the tool talks to `url` and the checks to
/// `check_url` (the registry behind a front that only the tool can pass),
/// with basic credentials when `check_basic`.
pub fn run_and_verify_via(url: &str, credentials: &str, check_url: &str, check_basic: bool) {
    let scratch = Scratch::new("run");
    let json = scratch.path("out.json");
    let ledger = scratch.path("ledger.json");
    let target = format!("reg={url}{credentials}");
    let output = bench(&[
        "run",
        "--target",
        &target,
        "--workload",
        "push:size=100KiB,conc=3",
        "--workload",
        "push:size=300KiB,mode=chunked,chunk=128KiB,conc=2",
        "--workload",
        "push:size=2500KiB,mode=stream,conc=2",
        "--workload",
        "image:layers=2,shared=1,size=8KiB,repos=3,conc=3",
        "--workload",
        "pull:size=64KiB,objects=4,range=1KiB",
        "--workload",
        "manifest:op=all,repos=2",
        "--workload",
        "image-pull:layers=2,size=8KiB,repos=2",
        "--workload",
        "mixed:size=16KiB,objects=3,read=50",
        "--count",
        "7",
        "--repeat",
        "2",
        "--warmup",
        "0",
        "--json",
        json.to_str().unwrap(),
        "--ledger",
        ledger.to_str().unwrap(),
    ]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(!out.contains("ERRORS"), "{out}");

    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let stored: Vec<Value> = serde_json::from_slice(&std::fs::read(&ledger).unwrap()).unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 8, "{out}");

    // Each row: 2 repetitions x 7 operations, all successful.
    for row in results {
        let ops: u64 = sum(row, "ops");
        assert_eq!(ops, 14, "{}: {out}", row["workload"]);
        assert_eq!(row["errors"].as_object().unwrap().len(), 0);
    }

    // Pushes: one blob per operation, the bytes the tool reported.
    for index in [0, 1, 2] {
        let blobs = entries(&stored, index, "measure", "blob");
        let size: u64 = blobs.iter().map(|e| e["size"].as_u64().unwrap()).sum();
        assert_eq!(blobs.len() as u64, sum(&results[index], "ops"));
        assert_eq!(size, sum(&results[index], "bytes"));
    }

    // Images: one manifest per operation.
    let manifests = entries(&stored, 3, "measure", "manifest");
    assert_eq!(manifests.len() as u64, sum(&results[3], "ops"));

    // Mixed: every write stored one blob.
    let writes = entries(&stored, 7, "measure", "blob");
    let reported: u64 = results[7]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["by_operation"]["write"]["ops"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(writes.len() as u64, reported, "{out}");

    verify_registry(check_url, check_basic, &stored);
}

fn sum(row: &Value, field: &str) -> u64 {
    row["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[field].as_u64().unwrap())
        .sum()
}

fn entries<'a>(stored: &'a [Value], workload: usize, phase: &str, kind: &str) -> Vec<&'a Value> {
    let marker = format!("-w{workload}/");
    stored
        .iter()
        .filter(|e| e["phase"] == phase && e["kind"] == kind)
        .filter(|e| e["repository"].as_str().unwrap().contains(&marker))
        .collect()
}

/// Asks the registry for everything in the ledger.
fn verify_registry(url: &str, basic: bool, stored: &[Value]) {
    let rt = runtime();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let auth = |req: reqwest::RequestBuilder| {
            if basic {
                req.basic_auth("bench", Some("right-password"))
            } else {
                req
            }
        };

        let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for entry in stored {
            let repo = entry["repository"].as_str().unwrap();
            let digest = entry["digest"].as_str().unwrap();
            let size = entry["size"].as_u64().unwrap();
            tags.entry(repo.to_string()).or_default();

            if entry["kind"] == "manifest" {
                let by_digest = format!("{url}/v2/{repo}/manifests/{digest}");
                let resp = auth(client.get(&by_digest))
                    .header("Accept", "application/vnd.oci.image.manifest.v1+json")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "{by_digest}");
                let body = resp.bytes().await.unwrap();
                assert_eq!(body.len() as u64, size, "{by_digest}");
                let hash = format!("sha256:{:x}", Sha256::digest(&body));
                assert_eq!(hash, digest, "{by_digest}");

                let tag = entry["tag"].as_str().unwrap();
                let by_tag = format!("{url}/v2/{repo}/manifests/{tag}");
                let resp = auth(client.get(&by_tag))
                    .header("Accept", "application/vnd.oci.image.manifest.v1+json")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "{by_tag}");
                let body = resp.bytes().await.unwrap();
                let hash = format!("sha256:{:x}", Sha256::digest(&body));
                assert_eq!(hash, digest, "{by_tag}");
                tags.entry(repo.to_string())
                    .or_default()
                    .insert(tag.to_string());
            } else {
                let blob = format!("{url}/v2/{repo}/blobs/{digest}");
                let resp = auth(client.head(&blob)).send().await.unwrap();
                assert_eq!(resp.status(), 200, "{blob}");
                let length = resp
                    .headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                assert_eq!(length, Some(size), "{blob}");
            }
        }

        for (repo, want) in &tags {
            if want.is_empty() {
                continue;
            }
            let list = format!("{url}/v2/{repo}/tags/list");
            let resp = auth(client.get(&list)).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{list}");
            let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
            let have: BTreeSet<String> = body["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect();
            assert!(
                want.is_subset(&have),
                "{list}: want {want:?}, have {have:?}"
            );
        }

        let catalog = catalog(&client, url, basic).await;
        for repo in tags.keys() {
            assert!(catalog.contains(repo), "catalog lacks {repo}");
        }
    });
}

/// Every repository in the catalog, following `Link` pages.
async fn catalog(client: &reqwest::Client, url: &str, basic: bool) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut next = Some(format!("{url}/v2/_catalog?n=1000"));
    let mut pages = 0;
    while let Some(page) = next.take() {
        pages += 1;
        assert!(pages < 1000, "catalog pages do not end");
        let mut req = client.get(&page);
        if basic {
            req = req.basic_auth("bench", Some("right-password"));
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{page}");
        next = resp
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once('<'))
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(path, _)| format!("{url}{path}"));
        let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        for name in body["repositories"].as_array().unwrap() {
            names.insert(name.as_str().unwrap().to_string());
        }
    }
    names
}
