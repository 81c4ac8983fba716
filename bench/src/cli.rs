//! Command line and the order of a run.
//!
//! For every workload: prepare it on each target in turn, then measure
//! `--repeat` times, alternating the targets (A B A B ...), so slow drifts
//! of the machine (page cache, thermal, other load) hit every target alike.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::auth::Auth;
use crate::client::{ClientConfig, Failure, Registry};
use crate::payload::Content;
use crate::report::{self, Machine, Row};
use crate::runner::{measure, Ledger, Plan};
use crate::stats::Sample;
use crate::svg;
use crate::target::TargetSpec;
use crate::units::{parse_duration, parse_size};
use crate::workload::{prepare, Defaults, Prepared, RunContext, Workload};

/// Load generator for OCI registries.
#[derive(Parser, Debug)]
#[command(name = "berth-bench", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Measure workloads on one or more registries.
    Run(RunArgs),
}

/// Arguments of `berth-bench run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Registry to measure: URL, NAME=URL, and settings
    /// `,user=U,password=P|password-env=VAR,token=T|token-env=VAR,insecure,ca=PEM`.
    /// Repeat for a side-by-side comparison; ratios are to the first.
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,

    /// Workload `kind[:key=value,...]`; kinds: push, pull, manifest,
    /// image, image-pull, mixed. Keys: size, conc, repos, objects, count,
    /// duration, mode (monolithic|single|chunked|stream), chunk, range,
    /// op (get-digest|head-digest|get-tag|head-tag|tags|catalog|all),
    /// layers, shared, read. Repeat for several.
    #[arg(long = "workload", default_value = "push")]
    pub workloads: Vec<String>,

    /// Default blob or layer size (e.g. 1MiB, 64MiB).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub blob_size: u64,

    /// Default operations in flight (connections in use).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,

    /// Default number of repositories each workload spreads over.
    #[arg(long, default_value_t = 16)]
    pub repos: usize,

    /// Measure this many operations instead of a duration.
    #[arg(long)]
    pub count: Option<u64>,

    /// Length of each measurement.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Unrecorded run before each measurement.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Measurements per workload and target; the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,

    /// Client worker threads (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Seed of the run's random content (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Accept any TLS certificate on every target.
    #[arg(long)]
    pub insecure: bool,

    /// Limit for one request.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Stop a measurement after this many failed operations.
    #[arg(long, default_value_t = 100)]
    pub max_errors: u64,

    /// Write all results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Draw throughput and latency per target as SVG.
    #[arg(long)]
    pub svg: Option<PathBuf>,

    /// Write the table as Markdown.
    #[arg(long)]
    pub markdown: Option<PathBuf>,

    /// Write every blob and manifest the run stored, as JSON, for checking.
    #[arg(long)]
    pub ledger: Option<PathBuf>,

    /// Never draw the progress line.
    #[arg(long)]
    pub no_progress: bool,

    /// Do not compare pulled blob bytes with those pushed (saves the
    /// client a memory comparison per byte).
    #[arg(long)]
    pub no_verify: bool,
}

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: some operation failed.
pub const EXIT_ERRORS: u8 = 1;
/// Exit status: bad arguments or output files.
pub const EXIT_USAGE: u8 = 2;

/// Most repetitions.
const MAX_REPEAT: usize = 1_000;
/// Most client threads.
const MAX_THREADS: usize = 1_024;

/// The JSON document `--json` writes.
#[derive(Serialize)]
struct JsonReport<'a> {
    tool: &'static str,
    version: &'static str,
    started_unix_secs: u64,
    seed: u64,
    machine: Machine,
    command_line: Vec<String>,
    targets: Vec<JsonTarget>,
    workloads: &'a [Workload],
    warmup_secs: f64,
    repeat: usize,
    client_threads: usize,
    unreachable_targets: &'a BTreeMap<String, String>,
    error_count: u64,
    results: &'a [Row],
}

#[derive(Serialize)]
struct JsonTarget {
    name: String,
    url: String,
    authenticated: bool,
}

/// Why a run could not start; each is a usage error (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A `--target` did not parse.
    #[error("{0}")]
    Target(String),
    /// Two targets have one name.
    #[error("two targets are named {0:?}; name them NAME=URL")]
    DuplicateName(String),
    /// A `--workload` did not parse.
    #[error("{0}")]
    Workload(String),
    /// A number out of its range.
    #[error("{flag} must be 1 to {max}")]
    OutOfRange {
        /// The flag.
        flag: &'static str,
        /// Its largest value.
        max: usize,
    },
    /// A target's CA file could not be read.
    #[error("target {target}: cannot read {path}: {source}")]
    CaFile {
        /// Target name.
        target: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client of a target could not be built (e.g. a bad CA).
    #[error("target {target}: cannot build the HTTP client: {source}")]
    Client {
        /// Target name.
        target: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The async runtime did not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs `berth-bench run`; returns the exit status.
pub fn run(args: RunArgs) -> u8 {
    match Setup::new(&args) {
        Ok(setup) => setup.execute(&args),
        Err(error) => {
            eprintln!("berth-bench: {error}");
            EXIT_USAGE
        }
    }
}

/// Everything resolved from the arguments before any request is sent.
struct Setup {
    specs: Vec<TargetSpec>,
    workloads: Vec<Workload>,
    threads: usize,
    seed: u64,
}

impl Setup {
    fn new(args: &RunArgs) -> Result<Setup, SetupError> {
        let specs = args
            .targets
            .iter()
            .map(|t| TargetSpec::parse(t, |var| std::env::var(var).ok()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SetupError::Target)?;
        let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(SetupError::DuplicateName(pair[0].to_string()));
        }

        let defaults = Defaults {
            blob_bytes: args.blob_size,
            concurrency: args.concurrency,
            repos: args.repos,
            count: args.count,
            duration: args.duration,
        };
        let workloads = args
            .workloads
            .iter()
            .map(|w| Workload::parse(w, &defaults))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SetupError::Workload)?;

        if args.repeat == 0 || args.repeat > MAX_REPEAT {
            return Err(SetupError::OutOfRange {
                flag: "--repeat",
                max: MAX_REPEAT,
            });
        }
        let threads = args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        if threads == 0 || threads > MAX_THREADS {
            return Err(SetupError::OutOfRange {
                flag: "--threads",
                max: MAX_THREADS,
            });
        }

        let seed = args.seed.unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ u64::from(std::process::id()).rotate_left(32)
        });

        Ok(Setup {
            specs,
            workloads,
            threads,
            seed,
        })
    }

    fn execute(self, args: &RunArgs) -> u8 {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .enable_all()
            .build();
        let runtime = match runtime {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("berth-bench: {}", SetupError::Runtime(e));
                return EXIT_USAGE;
            }
        };
        runtime.block_on(self.run_all(args))
    }

    async fn run_all(self, args: &RunArgs) -> u8 {
        let started_unix_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let progress = !args.no_progress && std::io::stderr().is_terminal();

        // Hash every blob size once, before anything is timed.
        let sizes: Vec<u64> = self.workloads.iter().flat_map(|w| w.sizes()).collect();
        let run = Arc::new(RunContext {
            prefix: format!("bench-{:08x}", self.seed as u32),
            content: Arc::new(Content::new(self.seed, &sizes)),
            next_tag: AtomicU64::new(0),
            verify: !args.no_verify,
        });

        let registries = match self.registries(args) {
            Ok(registries) => registries,
            Err(error) => {
                eprintln!("berth-bench: {error}");
                return EXIT_USAGE;
            }
        };

        // A target that does not answer /v2/ is reported, not measured.
        let mut unreachable = BTreeMap::new();
        for registry in &registries {
            if let Err(failure) = registry.ping().await {
                unreachable.insert(registry.name.clone(), failure);
            }
        }

        let ledger = args.ledger.as_ref().map(|_| Arc::new(Ledger::default()));
        let mut rows: Vec<Row> = Vec::new();
        for (index, workload) in self.workloads.iter().enumerate() {
            let round = Round {
                args,
                run: &run,
                registries: &registries,
                unreachable: &unreachable,
                ledger: &ledger,
                progress,
                seed: self.seed,
            };
            rows.extend(round.workload(index, workload).await);
        }
        if progress {
            eprint!("\r\x1b[2K");
        }

        let first = registries
            .first()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        report::fill_ratios(&mut rows, &first);

        let unreachable: BTreeMap<String, String> = unreachable
            .into_iter()
            .map(|(name, f)| (name, format!("{}: {}", f.key, f.detail)))
            .collect();
        let outputs = Outputs {
            started_unix_secs,
            rows: &rows,
            unreachable: &unreachable,
            ledger: ledger.as_deref(),
        };
        self.report(args, &outputs)
    }

    /// One HTTP client per target.
    fn registries(&self, args: &RunArgs) -> Result<Vec<Arc<Registry>>, SetupError> {
        let max_conc = self
            .workloads
            .iter()
            .map(|w| w.concurrency)
            .max()
            .unwrap_or(1);

        let mut registries = Vec::new();
        for spec in &self.specs {
            let ca_pem = match &spec.ca_file {
                Some(path) => Some(std::fs::read(path).map_err(|source| SetupError::CaFile {
                    target: spec.name.clone(),
                    path: path.clone(),
                    source,
                })?),
                None => None,
            };
            let config = ClientConfig {
                insecure: args.insecure || spec.insecure,
                ca_pem,
                max_idle_connections: max_conc.max(16),
                request_timeout: args.timeout,
                connect_timeout: Duration::from_secs(10),
            };
            let auth = Auth::new(spec.user.clone(), spec.password.clone(), spec.token.clone());
            let registry = Registry::new(spec.name.clone(), spec.url.clone(), auth, &config)
                .map_err(|source| SetupError::Client {
                    target: spec.name.clone(),
                    source,
                })?;
            registries.push(Arc::new(registry));
        }
        Ok(registries)
    }

    /// Prints the banner and the table, writes the files; returns the exit
    /// status.
    fn report(&self, args: &RunArgs, outputs: &Outputs<'_>) -> u8 {
        let rows = outputs.rows;

        // Errors go at the very top, so a failed run is never read as fast.
        let mut status = EXIT_OK;
        if let Some(banner) = report::error_banner(rows, outputs.unreachable) {
            print!("{banner}");
            status = EXIT_ERRORS;
        }
        println!(
            "berth-bench {}: seed {:#x}, {} client threads, warm-up {:.1}s",
            env!("CARGO_PKG_VERSION"),
            self.seed,
            self.threads,
            args.warmup.as_secs_f64()
        );
        print!("{}", report::text_table(rows, args.repeat));

        if let Some(path) = &args.json {
            let doc = JsonReport {
                tool: "berth-bench",
                version: env!("CARGO_PKG_VERSION"),
                started_unix_secs: outputs.started_unix_secs,
                seed: self.seed,
                machine: Machine::probe(),
                command_line: std::env::args().map(|a| redact(&a)).collect(),
                targets: self
                    .specs
                    .iter()
                    .map(|s| JsonTarget {
                        name: s.name.clone(),
                        url: without_password(&s.url),
                        authenticated: s.user.is_some() || s.token.is_some(),
                    })
                    .collect(),
                workloads: &self.workloads,
                warmup_secs: args.warmup.as_secs_f64(),
                repeat: args.repeat,
                client_threads: self.threads,
                unreachable_targets: outputs.unreachable,
                error_count: rows.iter().map(Row::error_count).sum(),
                results: rows,
            };
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            status = status.max(write_file(path, &text));
        }
        if let Some(path) = &args.svg {
            let names: Vec<String> = self.specs.iter().map(|s| s.name.clone()).collect();
            let title = format!(
                "berth-bench: medians of {} runs, {} client threads",
                args.repeat, self.threads
            );
            status = status.max(write_file(path, &svg::chart(rows, &names, &title)));
        }
        if let Some(path) = &args.markdown {
            status = status.max(write_file(path, &report::markdown_table(rows)));
        }
        if let (Some(path), Some(ledger)) = (&args.ledger, outputs.ledger) {
            let entries: Vec<serde_json::Value> = ledger
                .entries()
                .into_iter()
                .map(|(target, phase, stored)| {
                    serde_json::json!({
                        "target": target,
                        "phase": phase,
                        "kind": stored.kind,
                        "repository": stored.repository,
                        "digest": stored.digest,
                        "size": stored.size,
                        "tag": stored.tag,
                    })
                })
                .collect();
            let text = serde_json::to_string_pretty(&entries).unwrap_or_default();
            status = status.max(write_file(path, &text));
        }

        status
    }
}

/// What the report is made of.
struct Outputs<'a> {
    started_unix_secs: u64,
    rows: &'a [Row],
    unreachable: &'a BTreeMap<String, String>,
    ledger: Option<&'a Ledger>,
}

/// What every workload of a run shares.
struct Round<'a> {
    args: &'a RunArgs,
    run: &'a Arc<RunContext>,
    registries: &'a [Arc<Registry>],
    unreachable: &'a BTreeMap<String, Failure>,
    ledger: &'a Option<Arc<Ledger>>,
    progress: bool,
    seed: u64,
}

impl Round<'_> {
    /// Prepares one workload on every target, then measures it
    /// `--repeat` times, alternating the targets; returns a row per target.
    async fn workload(&self, index: usize, workload: &Workload) -> Vec<Row> {
        let workload = Arc::new(workload.clone());

        let mut prepared = Vec::new();
        for registry in self.registries {
            prepared.push(self.prepare(index, &workload, registry).await);
        }

        let repeat = self.args.repeat;
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); self.registries.len()];
        for repetition in 0..repeat {
            for (t, registry) in self.registries.iter().enumerate() {
                let Ok(ready) = &prepared[t] else { continue };
                // NOTE: the same seed for every target, so each sees the
                // same sequence of random choices.
                let plan = Plan {
                    warmup: self.args.warmup,
                    max_errors: self.args.max_errors.max(1),
                    progress: self.progress,
                    title: format!(
                        "{} on {} ({}/{repeat})",
                        workload.label,
                        registry.name,
                        repetition + 1
                    ),
                    seed: self.seed ^ (repetition as u64) << 40,
                };
                let sample = measure(
                    registry.clone(),
                    self.run.clone(),
                    workload.clone(),
                    ready.clone(),
                    &plan,
                    self.ledger.clone(),
                )
                .await;
                samples[t].push(sample);
            }
        }

        let mut rows = Vec::new();
        for ((registry, mut these), ready) in self.registries.iter().zip(samples).zip(prepared) {
            let setup_error = match ready {
                Ok(_) => None,
                Err(failure) => {
                    these.push(Sample::failed(&failure.key, &failure.detail));
                    Some(failure.detail)
                }
            };
            rows.push(Row::new(
                &workload,
                index,
                &registry.name,
                these,
                setup_error,
            ));
        }
        rows
    }

    async fn prepare(
        &self,
        index: usize,
        workload: &Workload,
        registry: &Arc<Registry>,
    ) -> Result<Arc<Prepared>, Failure> {
        if let Some(failure) = self.unreachable.get(&registry.name) {
            return Err(failure.clone());
        }
        if self.progress {
            eprint!(
                "\r\x1b[2K{} on {}: preparing",
                workload.label, registry.name
            );
        }

        let parallel = workload.concurrency.min(16);
        let (ready, stored) = prepare(
            registry.clone(),
            self.run.clone(),
            workload,
            index,
            parallel,
        )
        .await?;
        if let Some(ledger) = self.ledger {
            ledger.add(&registry.name, "setup", &stored);
        }
        Ok(Arc::new(ready))
    }
}

/// Masks the password of `scheme://user:password@host` inside `text`.
fn mask_userinfo(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_string();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return text.to_string();
    };
    let Some(colon) = rest[..at].find(':') else {
        return text.to_string();
    };
    let start = scheme_end + 3 + colon + 1;
    let end = scheme_end + 3 + at;
    format!("{}***{}", &text[..start], &text[end..])
}

/// A URL as text, with any password in it masked.
fn without_password(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}

/// Hides passwords and tokens given in `--target` settings.
fn redact(arg: &str) -> String {
    arg.split(',')
        .map(|part| match part.split_once('=') {
            Some((key @ ("password" | "token"), _)) => format!("{key}=***"),
            _ => mask_userinfo(part),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn write_file(path: &PathBuf, text: &str) -> u8 {
    match std::fs::write(path, text) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("berth-bench: cannot write {}: {e}", path.display());
            EXIT_USAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_from_the_command_line() {
        assert_eq!(
            redact("a=http://x,user=me,password=hunter2,token=t"),
            "a=http://x,user=me,password=***,token=***"
        );
        assert_eq!(redact("push:size=1MiB"), "push:size=1MiB");
        assert_eq!(
            redact("a=https://me:secret@r.example:5000/x"),
            "a=https://me:***@r.example:5000/x"
        );
        assert_eq!(redact("a=https://r.example/@x"), "a=https://r.example/@x");
        let url = reqwest::Url::parse("http://me:secret@r.example/").unwrap();
        assert_eq!(without_password(&url), "http://me:***@r.example/");
    }
}
