//! A child process writes blobs, manifests and tags on two shards and is
//! killed with SIGKILL at random moments, again and again. After each kill
//! every write the child acknowledged must read back with its digest, and
//! nothing it did not finish may be served half-written.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_storage::{Digest, Layout, ManifestLink, Reader, Shard, ShardOptions};
use common::{bytes, run, sha};

const CHILD_ENV: &str = "BERTH_CRASH_CHILD_DIR";
const SHARDS: u16 = 2;

fn opts() -> ShardOptions {
    ShardOptions {
        segment_bytes: 8 << 20,
        checkpoint_every_bytes: 8 << 10,
        max_segments: None,
        hash_while_writing: true,
    }
}

fn repo_shard(repo: &str) -> usize {
    repo.bytes().map(usize::from).sum::<usize>() % usize::from(SHARDS)
}

fn digest_shard(d: &Digest) -> usize {
    usize::from(d.as_bytes()[0]) % usize::from(SHARDS)
}

/// The child: writes until it is killed. Does nothing in a normal run.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let seed: u64 = std::env::var("BERTH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    run(move || async move {
        let layout = Layout::open_or_create(Path::new(&dir), SHARDS).unwrap();
        let mut shards = Vec::new();
        for s in 0..SHARDS {
            shards.push(Shard::open(&layout, s, &opts()).await.unwrap().0);
        }
        let shards = Rc::new(shards);
        let mut tasks = Vec::new();
        for t in 0..12u64 {
            let shards = shards.clone();
            tasks.push(glommio::spawn_local(async move {
                for n in 0.. {
                    let k = seed * 1_000_000 + t * 10_000 + n;
                    if n % 3 == 2 {
                        write_manifest(&shards, k).await;
                    } else {
                        write_blob(&shards, k, (t % 2) as usize).await;
                    }
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    });
}

async fn write_blob(shards: &[Shard], k: u64, up: usize) {
    let repo = format!("repo{}", k % 7);
    let data = bytes(k, (k as usize * 7919) % 1_200_000);
    let d = sha(&data);
    println!("TRY {d}");
    let shard = &shards[up];
    let id = shard.create_upload(&repo).await.unwrap();
    for part in data.chunks(400_000) {
        let mut app = shard.append_upload(&id).await.unwrap();
        app.write(part).await.unwrap();
        app.finish().await.unwrap();
    }
    let loc = shard.commit_upload(&id, &d).await.unwrap();
    shards[digest_shard(&d)].index_put(&d, loc).await.unwrap();
    shards[repo_shard(&repo)]
        .link_blob(&repo, &d, loc.len())
        .await
        .unwrap();
    println!("ACK BLOB {repo} {d} {}", data.len());
}

async fn write_manifest(shards: &[Shard], k: u64) {
    let repo = format!("repo{}", k % 5);
    let m = format!("{{\"schemaVersion\":2,\"k\":{k}}}").into_bytes();
    let d = sha(&m);
    let tag = format!("t{k}");
    let shard = &shards[repo_shard(&repo)];
    let loc = shard.put_content(&m, &d).await.unwrap();
    let link = ManifestLink {
        digest: d,
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: m.len() as u64,
        location: loc,
        subject: None,
        artifact_type: None,
        annotations_json: None,
    };
    shard.link_manifest(&repo, link).await.unwrap();
    shard.set_tag(&repo, &tag, &d).await.unwrap();
    println!("ACK TAG {repo} {tag} {d}");
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let exe = std::env::current_exe().unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut jitter = 0x2545_f491_4f6c_dd1du64;

    for round in 0..8u64 {
        jitter ^= jitter << 13;
        jitter ^= jitter >> 7;
        jitter ^= jitter << 17;
        let wait = Duration::from_millis(900 + jitter % 2000);

        let mut child = Command::new(&exe)
            .args([
                "crash_child_writer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .env("BERTH_CRASH_SEED", (round + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let started = Instant::now();
        std::thread::sleep(wait);
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();

        let seen = lines.lock().unwrap().clone();
        let acked = seen.iter().filter(|l| l.starts_with("ACK")).count();
        eprintln!(
            "round {round}: killed after {:?}, {acked} acks so far",
            started.elapsed()
        );
        check(&dir, seen);
    }
    let total = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("ACK"))
        .count();
    assert!(total > 20, "the child acknowledged only {total} writes");
}

fn check(dir: &Path, lines: Vec<String>) {
    let dir: PathBuf = dir.to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, SHARDS).unwrap();
        let mut shards = Vec::new();
        for s in 0..SHARDS {
            let (shard, report) = Shard::open(&layout, s, &opts()).await.unwrap();
            eprintln!("  {report}");
            shards.push(shard);
        }
        let reader = Reader::new(&layout, 0);

        for line in &lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["ACK", "BLOB", repo, d, len] => {
                    let d: Digest = d.parse().unwrap();
                    let len: u64 = len.parse().unwrap();
                    let loc = shards[digest_shard(&d)]
                        .index_get(&d)
                        .unwrap_or_else(|| panic!("acknowledged blob {d} lost"));
                    assert_eq!(loc.len(), len);
                    assert_eq!(reader.verify(&loc).await.unwrap(), d);
                    assert_eq!(shards[repo_shard(repo)].blob_link(repo, &d), Some(len));
                }
                ["ACK", "TAG", repo, tag, d] => {
                    let d: Digest = d.parse().unwrap();
                    let shard = &shards[repo_shard(repo)];
                    assert_eq!(shard.tag(repo, tag), Some(d), "acknowledged tag {tag} lost");
                    let link = shard.manifest(repo, &d).unwrap();
                    let m = reader.read_all(&link.location).await.unwrap();
                    assert_eq!(sha(&m), d);
                }
                ["TRY", d] => {
                    // Started, maybe not finished: if visible, it is whole.
                    let d: Digest = d.parse().unwrap();
                    if let Some(loc) = shards[digest_shard(&d)].index_get(&d) {
                        assert_eq!(reader.verify(&loc).await.unwrap(), d);
                    }
                }
                _ => {}
            }
        }
        for shard in shards {
            shard.close().await.unwrap();
        }
    });
}
