//! Drives one measurement: workers, warm-up, the measured window, progress.
//!
//! Workers run operations back to back until the window closes (a duration
//! or a count of operations). Operations that start during warm-up are run
//! but not recorded; failures are always counted. Each worker keeps its own
//! histogram, merged at the end, so recording takes no lock.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::Registry;
use crate::stats::{process_cpu_seconds, Sample, Tally};
use crate::workload::{run_op, Prepared, RunContext, Stored, Worker, Workload};

/// How one measurement is run.
#[derive(Clone)]
pub struct Plan {
    /// Time run before recording starts.
    pub warmup: Duration,
    /// Stop the measurement once this many operations failed.
    pub max_errors: u64,
    /// Draw a progress line on stderr.
    pub progress: bool,
    /// Text in front of the progress line.
    pub title: String,
    /// Seed for the workers' random choices.
    pub seed: u64,
}

/// Everything the tool stored, with the phase it was stored in.
#[derive(Default)]
pub struct Ledger {
    entries: Mutex<Vec<(String, &'static str, Stored)>>,
}

impl Ledger {
    /// Records what an operation stored on `target` in `phase`.
    pub fn add(&self, target: &str, phase: &'static str, stored: &[Stored]) {
        if stored.is_empty() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            for item in stored {
                entries.push((target.to_string(), phase, item.clone()));
            }
        }
    }

    /// All entries, in the order they were recorded.
    pub fn entries(&self) -> Vec<(String, &'static str, Stored)> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

/// Counters shared by the workers for the progress line and stopping.
struct Shared {
    warm_end: Instant,
    end: Option<Instant>,
    count: Option<u64>,
    claimed: AtomicU64,
    ops: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

/// Runs one measurement of `workload` on `registry`.
pub async fn measure(
    registry: Arc<Registry>,
    run: Arc<RunContext>,
    workload: Arc<Workload>,
    prepared: Arc<Prepared>,
    plan: &Plan,
    ledger: Option<Arc<Ledger>>,
) -> Sample {
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let warm_end = started + plan.warmup;
    let shared = Arc::new(Shared {
        warm_end,
        end: match workload.count {
            Some(_) => None,
            None => Some(warm_end + workload.duration),
        },
        count: workload.count,
        claimed: AtomicU64::new(0),
        ops: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });

    let progress = plan.progress.then(|| {
        let shared = shared.clone();
        let title = plan.title.clone();
        let duration = workload.duration;
        tokio::spawn(async move { draw_progress(&shared, &title, duration).await })
    });

    let mut handles = Vec::with_capacity(workload.concurrency);
    for id in 0..workload.concurrency {
        let worker = Worker::new(id, plan.seed);
        let job = WorkerJob {
            registry: registry.clone(),
            run: run.clone(),
            workload: workload.clone(),
            prepared: prepared.clone(),
            shared: shared.clone(),
            ledger: ledger.clone(),
            max_errors: plan.max_errors,
        };
        handles.push(tokio::spawn(job.run(worker)));
    }

    let mut tally = Tally::new();
    let mut last_end = warm_end;
    for handle in handles {
        match handle.await {
            Ok((worker_tally, worker_end)) => {
                tally.merge(&worker_tally);
                last_end = last_end.max(worker_end);
            }
            Err(e) => tally.failure("panic", &format!("worker failed: {e}")),
        }
    }

    if let Some(progress) = progress {
        progress.abort();
        eprint!("\r\x1b[2K");
    }

    // NOTE: operations slower than warm-up plus window leave it empty; that
    // is no result, not a zero one.
    if tally.ops == 0 && tally.errors.is_empty() {
        tally.failure(
            "empty window",
            "no operation started in the measured window; \
             lengthen --duration or use --count",
        );
    }

    let window = last_end.saturating_duration_since(warm_end).as_secs_f64();
    let wall = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu_before;
    Sample::new(&tally, window, cpu, wall)
}

struct WorkerJob {
    registry: Arc<Registry>,
    run: Arc<RunContext>,
    workload: Arc<Workload>,
    prepared: Arc<Prepared>,
    shared: Arc<Shared>,
    ledger: Option<Arc<Ledger>>,
    max_errors: u64,
}

impl WorkerJob {
    /// Runs operations until the window closes; returns the tally and when
    /// the last measured operation ended.
    async fn run(self, mut worker: Worker) -> (Tally, Instant) {
        let shared = &self.shared;
        let mut tally = Tally::new();
        let mut last_end = shared.warm_end;

        loop {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let start = Instant::now();
            let measured = start >= shared.warm_end;
            if measured {
                if let Some(count) = shared.count {
                    if shared.claimed.fetch_add(1, Ordering::Relaxed) >= count {
                        break;
                    }
                } else if shared.end.is_some_and(|end| start >= end) {
                    break;
                }
            }

            let result = run_op(
                &self.registry,
                &self.run,
                &self.workload,
                &self.prepared,
                &mut worker,
            )
            .await;
            let end = Instant::now();

            if let Some(ledger) = &self.ledger {
                let phase = if measured { "measure" } else { "warmup" };
                ledger.add(&self.registry.name, phase, &worker.stored);
            }

            match result {
                Ok(bytes) if measured => {
                    let micros = end.duration_since(start).as_micros() as u64;
                    if worker.operation.is_empty() {
                        tally.success(micros, bytes);
                    } else {
                        tally.success_of(worker.operation, micros, bytes);
                    }
                    last_end = end;
                    shared.ops.fetch_add(1, Ordering::Relaxed);
                    shared.bytes.fetch_add(bytes, Ordering::Relaxed);
                }
                Ok(_) => tally.warmup_ops += 1,
                Err(failure) => {
                    tally.failure(&failure.key, &failure.detail);
                    let errors = shared.errors.fetch_add(1, Ordering::Relaxed) + 1;
                    if errors >= self.max_errors {
                        shared.stop.store(true, Ordering::Relaxed);
                    }
                    if measured {
                        last_end = end;
                    }
                }
            }
        }

        (tally, last_end)
    }
}

async fn draw_progress(shared: &Shared, title: &str, duration: Duration) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = Instant::now();
        let ops = shared.ops.load(Ordering::Relaxed);
        let bytes = shared.bytes.load(Ordering::Relaxed);
        let errors = shared.errors.load(Ordering::Relaxed);

        let phase = if now < shared.warm_end {
            format!(
                "warm-up {:.0}s",
                shared.warm_end.duration_since(now).as_secs_f64()
            )
        } else {
            let secs = now.duration_since(shared.warm_end).as_secs_f64();
            let rate = if secs > 0.0 {
                bytes as f64 / secs / 1e6
            } else {
                0.0
            };
            let goal = match shared.count {
                Some(count) => format!("{ops}/{count} ops"),
                None => format!("{secs:.1}/{:.1}s, {ops} ops", duration.as_secs_f64()),
            };
            format!("{goal}, {rate:.1} MB/s")
        };
        let errors = if errors > 0 {
            format!(", {errors} errors")
        } else {
            String::new()
        };

        let line = format!(
            "{title}: {phase}{errors} [{:.0}s]",
            started.elapsed().as_secs_f64()
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }
}
