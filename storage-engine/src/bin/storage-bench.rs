//! storage-bench: throughput, commit latency and recovery of the segment
//! store, each next to a baseline measured in the same run.
//!
//! ```text
//! storage-bench [--dir PATH] [--write-mib N] [--quick] [write|commit|recovery|reclaim]...
//! ```
//!
//! - `write`: one (and four) streaming uploads against
//!   `fio --direct=1 --rw=write --bs=1M --ioengine=io_uring --end_fsync=1`.
//! - `commit`: durable 1 KiB manifests and tags at concurrency 1, 16 and
//!   256 against raw write+fdatasync and fio with `--fdatasync=1`.
//! - `recovery`: index N blobs, close, reopen in a fresh process, report
//!   the time and the resident memory it took.
//! - `reclaim`: eight interleaved uploads, half committed and half
//!   cancelled; one reclaim pass; the disk space it gave back, how long it
//!   took, and the time to read the live half before and after.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use berth_storage::{
    digest_of, BlobLocation, Digest, DigestAlgorithm, Layout, Shard, ShardOptions,
};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;

const MIB: u64 = 1 << 20;

struct Args {
    dir: PathBuf,
    write_mib: u64,
    quick: bool,
    sections: Vec<String>,
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("load-child") {
        let (Some(dir), Some(n)) = (argv.get(1), argv.get(2).and_then(|n| n.parse().ok())) else {
            eprintln!("usage: storage-bench load-child DIR N");
            std::process::exit(2);
        };
        println!("secs={:.3}", load_index(Path::new(dir), n));
        return;
    }
    if argv.first().map(String::as_str) == Some("recover-child") {
        let Some(dir) = argv.get(1) else {
            eprintln!("usage: storage-bench recover-child DIR");
            std::process::exit(2);
        };
        recover_child(PathBuf::from(dir));
        return;
    }

    let args = match parse_args(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("storage-bench: {e}");
            eprintln!(
                "usage: storage-bench [--dir PATH] [--write-mib N] [--quick] \
                 [write|commit|recovery|reclaim]..."
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
        eprintln!("storage-bench: cannot create {}: {e}", args.dir.display());
        std::process::exit(1);
    }
    println!("storage-bench in {}", args.dir.display());
    let all = args.sections.is_empty();
    let wants = |s: &str| all || args.sections.iter().any(|x| x == s);
    if wants("write") {
        bench_write(&args);
    }
    if wants("commit") {
        bench_commit(&args);
    }
    if wants("recovery") {
        bench_recovery(&args);
    }
    if wants("reclaim") {
        bench_reclaim(&args);
    }
}

fn parse_args(argv: Vec<String>) -> Result<Args, String> {
    let mut args = Args {
        dir: PathBuf::from("./storage-bench-data"),
        write_mib: 2048,
        quick: false,
        sections: Vec::new(),
    };
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => args.dir = PathBuf::from(it.next().ok_or("--dir needs a path")?),
            "--write-mib" => {
                args.write_mib = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--write-mib needs a number")?
            }
            "--quick" => args.quick = true,
            "write" | "commit" | "recovery" | "reclaim" => args.sections.push(a),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.quick {
        args.write_mib = args.write_mib.min(512);
    }
    Ok(args)
}

/// Runs `f` on a fresh executor.
fn on_executor<T, F, Fut>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(f)
        .expect("the bench needs a glommio executor")
        .join()
        .expect("the bench executor panicked")
}

fn fresh_dir(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create bench dir");
    dir
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------- write

fn bench_write(args: &Args) {
    let total = args.write_mib * MIB;
    println!(
        "\n## Sequential blob writes ({} MiB per run, best of 2)",
        args.write_mib
    );

    let fio = best_of(2, || fio_seq_write(&args.dir, total));
    let runs: Vec<(&str, bool, usize)> = vec![
        ("berth, 1 upload, sha256 off", false, 1),
        ("berth, 1 upload, sha256 on", true, 1),
        ("berth, 4 uploads, sha256 off", false, 4),
        ("berth, 4 uploads, sha256 on", true, 4),
    ];
    println!("| writer | MiB/s | vs fio |");
    println!("| --- | ---: | ---: |");
    println!(
        "| sha256 alone, in memory (CPU bound) | {:.0} | - |",
        sha256_speed()
    );
    match fio {
        Some(bw) => println!(
            "| fio --bs=1M --direct=1 io_uring, end_fsync | {:.0} | 1.00 |",
            bw
        ),
        None => println!("| fio (not installed or failed) | - | - |"),
    }
    for (name, hash, streams) in runs {
        let bw = best_of(2, || Some(engine_write(&args.dir, total, hash, streams)));
        let bw = bw.unwrap_or(0.0);
        let ratio = fio.map(|f| format!("{:.2}", bw / f)).unwrap_or("-".into());
        println!("| {name} | {bw:.0} | {ratio} |");
    }

    let fio_read = best_of(2, || fio_seq_read(&args.dir, total));
    let read = best_of(2, || Some(engine_read(&args.dir, total))).unwrap_or(0.0);
    let ratio = fio_read
        .map(|f| format!("{:.2}", read / f))
        .unwrap_or("-".into());
    match fio_read {
        Some(bw) => println!("| fio --rw=read --bs=1M --direct=1 io_uring | {bw:.0} | 1.00 |"),
        None => println!("| fio read (not installed or failed) | - | - |"),
    }
    println!("| berth read_range, one stream, no cache | {read:.0} | {ratio} |");
}

/// MiB/s of this build's sha256 over a 4 MiB buffer, for one second.
fn sha256_speed() -> f64 {
    let buf = pseudo_random(4 * MIB as usize, 3);
    let started = Instant::now();
    let mut n = 0u64;
    let mut hasher = berth_storage::DigestHasher::new(DigestAlgorithm::Sha256);
    while started.elapsed() < Duration::from_secs(1) {
        hasher.update(&buf);
        n += buf.len() as u64;
    }
    let _ = hasher.finish();
    n as f64 / MIB as f64 / started.elapsed().as_secs_f64()
}

/// MiB/s of streaming one committed blob of `total` bytes back with
/// `read_range` (no cache: every chunk comes from the disk).
fn engine_read(base: &Path, total: u64) -> f64 {
    let dir = fresh_dir(base, "read");
    let dir2 = dir.clone();
    let secs = on_executor(move || async move {
        let layout = Layout::open_or_create(&dir2, 1).expect("layout");
        let (shard, _) = Shard::open(&layout, 0, &ShardOptions::default())
            .await
            .expect("open shard");
        let piece = pseudo_random(4 * MIB as usize, 11);
        let mut hasher = berth_storage::DigestHasher::new(DigestAlgorithm::Sha256);
        let id = shard.create_upload("bench").await.expect("create upload");
        let mut app = shard.append_upload(&id).await.expect("append");
        let mut left = total;
        while left > 0 {
            let n = left.min(piece.len() as u64) as usize;
            hasher.update(&piece[..n]);
            app.write(&piece[..n]).await.expect("write");
            left -= n as u64;
        }
        app.finish().await.expect("finish");
        let loc = shard
            .commit_upload(&id, &hasher.finish())
            .await
            .expect("commit");

        let reader = berth_storage::Reader::new(&layout, 0);
        let started = Instant::now();
        let mut read = reader.read_range(&loc, 0, loc.len()).await.expect("read");
        let mut n = 0u64;
        while let Some(chunk) = read.next_chunk().await.expect("chunk") {
            n += chunk.len() as u64;
        }
        assert_eq!(n, total);
        let secs = started.elapsed().as_secs_f64();
        let _ = shard.close().await;
        secs
    });
    let _ = std::fs::remove_dir_all(&dir);
    total as f64 / MIB as f64 / secs
}

/// fio's sequential direct read bandwidth in MiB/s.
fn fio_seq_read(base: &Path, total: u64) -> Option<f64> {
    let file = base.join("fio-read.dat");
    let v = fio_json(&[
        "--name=seqread".into(),
        format!("--filename={}", file.display()),
        "--direct=1".into(),
        "--rw=read".into(),
        "--bs=1M".into(),
        "--ioengine=io_uring".into(),
        format!("--size={total}"),
        "--output-format=json".into(),
    ]);
    let _ = std::fs::remove_file(&file);
    let bw = v?["jobs"][0]["read"]["bw_bytes"].as_f64()?;
    Some(bw / MIB as f64)
}

fn best_of(n: usize, mut f: impl FnMut() -> Option<f64>) -> Option<f64> {
    (0..n)
        .filter_map(|_| f())
        .fold(None, |best, x| Some(best.map_or(x, |b: f64| b.max(x))))
}

/// MiB/s of `streams` concurrent uploads writing `total` bytes together,
/// from create to a durable finish.
fn engine_write(base: &Path, total: u64, hash: bool, streams: usize) -> f64 {
    let dir = fresh_dir(base, "write");
    let dir2 = dir.clone();
    let secs = on_executor(move || async move {
        let layout = Layout::open_or_create(&dir2, 1).expect("layout");
        let opts = ShardOptions {
            hash_while_writing: hash,
            ..ShardOptions::default()
        };
        let (shard, _) = Shard::open(&layout, 0, &opts).await.expect("open shard");
        let shard = Rc::new(shard);
        let piece = Rc::new(pseudo_random(4 * MIB as usize, 7));
        let per_stream = total / streams as u64;

        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let shard = shard.clone();
            let piece = piece.clone();
            tasks.push(glommio::spawn_local(async move {
                let id = shard.create_upload("bench").await.expect("create upload");
                let mut app = shard.append_upload(&id).await.expect("append");
                let mut left = per_stream;
                while left > 0 {
                    let n = left.min(piece.len() as u64) as usize;
                    app.write(&piece[..n]).await.expect("write");
                    left -= n as u64;
                }
                app.finish().await.expect("finish");
                id
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await);
        }
        let secs = started.elapsed().as_secs_f64();
        for id in ids {
            let _ = shard.cancel_upload(&id).await;
        }
        if let Ok(shard) = Rc::try_unwrap(shard) {
            let _ = shard.close().await;
        }
        secs
    });
    let _ = std::fs::remove_dir_all(&dir);
    total as f64 / MIB as f64 / secs
}

fn fio_json(args: &[String]) -> Option<serde_json::Value> {
    let out = Command::new("fio").args(args).output().ok()?;
    if !out.status.success() {
        eprintln!("fio failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text.find('{')?;
    serde_json::from_str(&text[start..]).ok()
}

/// fio's sequential direct write bandwidth in MiB/s.
fn fio_seq_write(base: &Path, total: u64) -> Option<f64> {
    let file = base.join("fio-seq.dat");
    let v = fio_json(&[
        "--name=seq".into(),
        format!("--filename={}", file.display()),
        "--direct=1".into(),
        "--rw=write".into(),
        "--bs=1M".into(),
        "--ioengine=io_uring".into(),
        format!("--size={total}"),
        "--end_fsync=1".into(),
        "--output-format=json".into(),
    ]);
    let _ = std::fs::remove_file(&file);
    let bw = v?["jobs"][0]["write"]["bw_bytes"].as_f64()?;
    Some(bw / MIB as f64)
}

// ---------------------------------------------------------------- commit

fn bench_commit(args: &Args) {
    let secs = if args.quick { 2.0 } else { 5.0 };
    println!("\n## Durable small commits ({secs} s per row)");

    let raw = raw_fdatasync(&args.dir, secs);
    let fio = fio_sync_writes(&args.dir, secs);
    println!("| what | concurrency | commits/s | per sync | p50 µs | p99 µs | p99.9 µs |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    print_row("raw 4 KiB overwrite; latency of fdatasync alone", 1, &raw);
    if let Some((iops, p50, p99, p999)) = fio {
        println!(
            "| fio 4k write --fdatasync=1; sync latency | 1 | {iops:.0} | 1.0 | {p50:.0} | {p99:.0} | \
             {p999:.0} |"
        );
    }
    for kind in [CommitKind::Manifest, CommitKind::Tag] {
        for c in [1usize, 16, 256] {
            let r = engine_commits(&args.dir, kind, c, secs);
            print_row(kind.name(), c, &r);
        }
    }
}

#[derive(Clone, Copy)]
enum CommitKind {
    Manifest,
    Tag,
}

impl CommitKind {
    fn name(self) -> &'static str {
        match self {
            CommitKind::Manifest => "put_content 1 KiB (segment)",
            CommitKind::Tag => "set_tag (metadata log)",
        }
    }
}

struct CommitResult {
    ops: u64,
    syncs: u64,
    secs: f64,
    hist: Histogram<u64>,
}

fn print_row(name: &str, c: usize, r: &CommitResult) {
    let per_sync = r.ops as f64 / r.syncs.max(1) as f64;
    println!(
        "| {name} | {c} | {:.0} | {per_sync:.1} | {} | {} | {} |",
        r.ops as f64 / r.secs,
        r.hist.value_at_quantile(0.5),
        r.hist.value_at_quantile(0.99),
        r.hist.value_at_quantile(0.999)
    );
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn engine_commits(base: &Path, kind: CommitKind, concurrency: usize, secs: f64) -> CommitResult {
    let dir = fresh_dir(base, "commit");
    let dir2 = dir.clone();
    let r = on_executor(move || async move {
        let layout = Layout::open_or_create(&dir2, 1).expect("layout");
        let (shard, _) = Shard::open(&layout, 0, &ShardOptions::default())
            .await
            .expect("open shard");
        let shard = Rc::new(shard);
        let hist = Rc::new(RefCell::new(new_hist()));
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..concurrency {
            let shard = shard.clone();
            let hist = hist.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut ops = 0u64;
                let mut body = pseudo_random(1024, t as u64 + 1);
                let d = digest_of(DigestAlgorithm::Sha256, b"target");
                while Instant::now() < deadline {
                    let begin = Instant::now();
                    match kind {
                        CommitKind::Manifest => {
                            body[..8].copy_from_slice(&ops.to_le_bytes());
                            let digest = digest_of(DigestAlgorithm::Sha256, &body);
                            shard.put_content(&body, &digest).await.expect("put");
                        }
                        CommitKind::Tag => {
                            let tag = format!("t{t}-{ops}");
                            shard.set_tag("bench", &tag, &d).await.expect("tag");
                        }
                    }
                    let us = begin.elapsed().as_micros() as u64;
                    let _ = hist.borrow_mut().record(us.max(1));
                    ops += 1;
                }
                ops
            }));
        }
        let mut ops = 0;
        for t in tasks {
            ops += t.await;
        }
        let secs = started.elapsed().as_secs_f64();
        let stats = shard.stats();
        let syncs = match kind {
            CommitKind::Manifest => stats.segment_syncs,
            CommitKind::Tag => stats.meta_syncs,
        };
        let hist = hist.borrow().clone();
        if let Ok(shard) = Rc::try_unwrap(shard) {
            let _ = shard.close().await;
        }
        CommitResult {
            ops,
            syncs,
            secs,
            hist,
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// 4 KiB direct overwrites, each followed by an fdatasync whose latency
/// alone is recorded, over a 64 MiB file laid out first (as fio does).
fn raw_fdatasync(base: &Path, secs: f64) -> CommitResult {
    let path = base.join("raw-sync.dat");
    let p2 = path.clone();
    let r = on_executor(move || async move {
        let file = glommio::io::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&p2)
            .await
            .expect("open raw file");
        let blocks = 64 * MIB / 4096;
        for i in 0..(64 * MIB / MIB) {
            let buf = file.alloc_dma_buffer(MIB as usize);
            file.write_at(buf, i * MIB).await.expect("lay out");
        }
        file.fdatasync().await.expect("fdatasync");

        let mut hist = new_hist();
        let started = Instant::now();
        let mut ops = 0u64;
        while started.elapsed().as_secs_f64() < secs {
            let mut buf = file.alloc_dma_buffer(4096);
            buf.as_bytes_mut().fill(ops as u8);
            file.write_at(buf, (ops % blocks) * 4096)
                .await
                .expect("write");
            let begin = Instant::now();
            file.fdatasync().await.expect("fdatasync");
            let _ = hist.record((begin.elapsed().as_micros() as u64).max(1));
            ops += 1;
        }
        let _ = file.close().await;
        CommitResult {
            ops,
            syncs: ops,
            secs: started.elapsed().as_secs_f64(),
            hist,
        }
    });
    let _ = std::fs::remove_file(&path);
    r
}

/// fio's synchronous 4k writes: IOPS and sync latency p50/p99/p99.9 in µs.
fn fio_sync_writes(base: &Path, secs: f64) -> Option<(f64, f64, f64, f64)> {
    let file = base.join("fio-sync.dat");
    let v = fio_json(&[
        "--name=sync".into(),
        format!("--filename={}", file.display()),
        "--direct=1".into(),
        "--rw=write".into(),
        "--bs=4k".into(),
        "--ioengine=io_uring".into(),
        "--size=64M".into(),
        "--fdatasync=1".into(),
        "--time_based".into(),
        format!("--runtime={}", secs.ceil() as u64),
        "--output-format=json".into(),
    ]);
    let _ = std::fs::remove_file(&file);
    let job = &v?["jobs"][0];
    let iops = job["write"]["iops"].as_f64()?;
    let pct = &job["sync"]["lat_ns"]["percentile"];
    let at = |q: &str| pct[q].as_f64().map(|ns| ns / 1000.0).unwrap_or(f64::NAN);
    Some((iops, at("50.000000"), at("99.000000"), at("99.900000")))
}

// ---------------------------------------------------------------- recovery

fn bench_recovery(args: &Args) {
    let sizes: &[u64] = if args.quick {
        &[100_000, 1_000_000]
    } else {
        &[1_000_000, 10_000_000]
    };
    println!("\n## Recovery of the blob index");
    println!(
        "| blobs | restart after | recovery s | s per million | RSS growth MiB | \
         RSS bytes/blob | index heap bytes/blob |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for &n in sizes {
        let dir = fresh_dir(&args.dir, "recovery");
        let load = child(&["load-child", &dir.display().to_string(), &n.to_string()]);
        eprintln!("  load-child: {}", load.trim());
        for case in ["kill (log tail replayed)", "clean close (checkpoint)"] {
            let line = child(&["recover-child", &dir.display().to_string()]);
            eprintln!("  recover-child: {}", line.trim());
            let field = |name: &str| -> f64 {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN)
            };
            let secs = field("secs=");
            let rss = field("rss_growth=");
            let heap = field("heap=");
            println!(
                "| {n} | {case} | {secs:.2} | {:.2} | {:.0} | {:.1} | {:.1} |",
                secs / (n as f64 / 1e6),
                rss / MIB as f64,
                rss / n as f64,
                heap / n as f64
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Runs this binary with `args` and returns its standard output.
fn child(args: &[&str]) -> String {
    let exe = std::env::current_exe().expect("current exe");
    Command::new(exe)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default()
}

/// Indexes `n` synthetic blobs through `index_put_batch`; returns seconds.
fn load_index(dir: &Path, n: u64) -> f64 {
    let dir = dir.to_path_buf();
    on_executor(move || async move {
        let layout = Layout::open_or_create(&dir, 1).expect("layout");
        let (shard, _) = Shard::open(&layout, 0, &ShardOptions::default())
            .await
            .expect("open");
        let body = b"{}";
        let d = digest_of(DigestAlgorithm::Sha256, body);
        let loc: BlobLocation = shard.put_content(body, &d).await.expect("put");
        let started = Instant::now();
        let mut batch: Vec<(Digest, BlobLocation)> = Vec::with_capacity(10_000);
        for i in 0..n {
            batch.push((digest_of(DigestAlgorithm::Sha256, &i.to_le_bytes()), loc));
            if batch.len() == 10_000 || i + 1 == n {
                shard.index_put_batch(&batch).await.expect("index batch");
                batch.clear();
            }
        }
        // NOTE: no close: the process ends as if killed after its last
        // acknowledged batch, so the next open replays the log tail.
        let secs = started.elapsed().as_secs_f64();
        std::mem::forget(shard);
        secs
    })
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Opens the shard in `dir` and prints the recovery time and memory.
fn recover_child(dir: PathBuf) {
    let line = on_executor(move || async move {
        let layout = Layout::open_or_create(&dir, 1).expect("layout");
        let before = rss_bytes();
        let started = Instant::now();
        let (shard, report) = Shard::open(&layout, 0, &ShardOptions::default())
            .await
            .expect("open");
        let secs = started.elapsed().as_secs_f64();
        let after = rss_bytes();
        let stats = shard.stats();
        let line = format!(
            "secs={secs:.3} rss_growth={} heap={} entries={} report: {report}",
            after.saturating_sub(before),
            stats.index_heap_bytes,
            stats.index_entries
        );
        let closing = Instant::now();
        shard.close().await.expect("close");
        format!("{line} close_secs={:.3}", closing.elapsed().as_secs_f64())
    });
    println!("{line}");
}

// ---------------------------------------------------------------- reclaim

/// Bytes the file system holds for the files of `dir`.
fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

fn bench_reclaim(args: &Args) {
    let total = args.write_mib * MIB;
    let streams = 8usize;
    println!(
        "\n## Reclaim: {streams} interleaved uploads of {} MiB each, every other one cancelled",
        total / streams as u64 / MIB
    );
    let dir = fresh_dir(&args.dir, "reclaim");
    let dir2 = dir.clone();
    let shard_dir = dir.join("shard-0000");
    let result = on_executor(move || async move {
        let layout = Layout::open_or_create(&dir2, 1).expect("layout");
        let (shard, _) = Shard::open(&layout, 0, &ShardOptions::default())
            .await
            .expect("open shard");
        let shard = Rc::new(shard);
        let piece = Rc::new(pseudo_random(4 * MIB as usize, 11));
        let per_stream = total / streams as u64;
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let shard = shard.clone();
            let piece = piece.clone();
            tasks.push(glommio::spawn_local(async move {
                let id = shard.create_upload("bench").await.expect("create upload");
                let mut app = shard.append_upload(&id).await.expect("append");
                let mut left = per_stream;
                while left > 0 {
                    // Small appends, so that the uploads' chunks interleave.
                    let n = left.min(MIB) as usize;
                    app.write(&piece[..n]).await.expect("write");
                    left -= n as u64;
                    glommio::yield_if_needed().await;
                }
                app.finish().await.expect("finish");
                id
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await);
        }
        let mut live = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if i % 2 == 0 {
                shard.cancel_upload(id).await.expect("cancel");
            } else {
                live.push(*id);
            }
        }
        let mut locations = Vec::new();
        for id in live {
            let digest = upload_digest(per_stream, &piece);
            locations.push(shard.commit_upload(&id, &digest).await.expect("commit"));
        }
        let reader = berth_storage::Reader::new(&layout, 0);
        let read_all = |locations: Vec<BlobLocation>| {
            let reader = reader.clone();
            async move {
                let started = Instant::now();
                for loc in &locations {
                    let mut r = reader.read_range(loc, 0, loc.len()).await.expect("read");
                    while r.next_chunk().await.expect("chunk").is_some() {}
                }
                started.elapsed().as_secs_f64()
            }
        };
        let read_before = read_all(locations.clone()).await;

        glommio::timer::sleep(Duration::from_millis(1100)).await;
        let before = allocated_bytes(&shard_dir);
        let started = Instant::now();
        let report = shard.reclaim().await.expect("reclaim");
        let secs = started.elapsed().as_secs_f64();
        let after = allocated_bytes(&shard_dir);
        let read_after = read_all(locations.clone()).await;
        for loc in &locations {
            assert_eq!(
                reader.verify(loc).await.expect("verify"),
                upload_digest(per_stream, &piece),
                "a live blob changed"
            );
        }
        if let Ok(shard) = Rc::try_unwrap(shard) {
            let _ = shard.close().await;
        }
        (report, secs, before, after, read_before, read_after)
    });
    let (report, secs, before, after, read_before, read_after) = result;
    let live_mib = (total / 2) as f64 / MIB as f64;
    println!("| figure | value |");
    println!("| --- | ---: |");
    println!("| dead records punched | {} |", report.records_punched);
    println!(
        "| dead bytes punched | {:.0} MiB |",
        report.bytes_punched as f64 / MIB as f64
    );
    println!(
        "| disk space given back (st_blocks) | {:.0} MiB ({:.0} -> {:.0} MiB) |",
        before.saturating_sub(after) as f64 / MIB as f64,
        before as f64 / MIB as f64,
        after as f64 / MIB as f64
    );
    println!("| reclaim pass | {:.1} ms |", secs * 1e3);
    println!(
        "| given back per second | {:.1} GiB/s |",
        before.saturating_sub(after) as f64 / (1u64 << 30) as f64 / secs
    );
    println!("| bytes copied (a copying compaction would rewrite {live_mib:.0} MiB) | 0 |");
    println!(
        "| read of the live half, before / after | {:.0} / {:.0} MiB/s |",
        live_mib / read_before,
        live_mib / read_after
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The digest of an upload made of `len` bytes of `piece`, written a MiB
/// at a time as `bench_reclaim` writes it.
fn upload_digest(len: u64, piece: &[u8]) -> Digest {
    let mut h = berth_storage::DigestHasher::new(DigestAlgorithm::Sha256);
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        h.update(&piece[..n]);
        left -= n as u64;
    }
    h.finish()
}
