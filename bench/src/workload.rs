//! Workloads: what one operation does, and what must exist before it runs.
//!
//! A workload is written on the command line as `kind[:key=value,...]`,
//! e.g. `push:size=64MiB,conc=8` or `manifest:op=head-tag`. Keys not given
//! take the run's defaults (`--blob-size`, `--concurrency`, `--repos`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::client::{Failure, PushMode, Registry};
use crate::image::{pull_image, push_image, ImageSpec};
use crate::payload::{splitmix, Blob, Content};
use crate::units::{format_size, parse_duration, parse_size};

/// Run-wide defaults a workload spec may override.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Blob (or layer) size.
    pub blob_bytes: u64,
    /// Operations in flight.
    pub concurrency: usize,
    /// Repositories to spread over.
    pub repos: usize,
    /// Measured operations, instead of a duration.
    pub count: Option<u64>,
    /// Measured time.
    pub duration: Duration,
}

/// Which manifest call the `manifest` workload makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManifestOp {
    /// `GET /v2/<name>/manifests/<digest>`.
    GetDigest,
    /// `HEAD /v2/<name>/manifests/<digest>`.
    HeadDigest,
    /// `GET /v2/<name>/manifests/<tag>`.
    GetTag,
    /// `HEAD /v2/<name>/manifests/<tag>`.
    HeadTag,
    /// `GET /v2/<name>/tags/list`.
    Tags,
    /// `GET /v2/_catalog`.
    Catalog,
    /// Each of the above in turn.
    All,
}

/// What one operation of a workload does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Kind {
    /// Upload one new blob.
    Push {
        /// Upload protocol.
        mode: PushMode,
    },
    /// Download one blob, or one range of it.
    Pull {
        /// Bytes per ranged read; whole blobs when `None`.
        range_bytes: Option<u64>,
    },
    /// One manifest, tags or catalog call.
    Manifest {
        /// Which call.
        op: ManifestOp,
    },
    /// Push a whole image: config, layers, manifest, the way clients do.
    ImagePush {
        /// Layers per image.
        layers: usize,
        /// How many of those layers every image shares (cross-repo mount).
        shared: usize,
    },
    /// Pull a whole image: manifest by tag, then config and layers.
    ImagePull {
        /// Layers per image.
        layers: usize,
    },
    /// Blob reads and writes mixed at a ratio.
    Mixed {
        /// Percentage of operations that read.
        read_percent: u8,
    },
}

/// One workload with every parameter resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    /// The spec as written, used as the row label.
    pub label: String,
    /// What one operation does.
    #[serde(flatten)]
    pub kind: Kind,
    /// Blob or layer size.
    pub blob_bytes: u64,
    /// Operations in flight.
    pub concurrency: usize,
    /// Repositories used.
    pub repos: usize,
    /// Blobs or images created before measuring reads.
    pub objects: usize,
    /// Measured operations, when counting instead of timing.
    pub count: Option<u64>,
    /// Measured time, when not counting.
    #[serde(with = "secs")]
    pub duration: Duration,
}

mod secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Most repositories one workload may use.
pub const MAX_REPOS: usize = 100_000;
/// Most operations in flight for one workload.
pub const MAX_CONCURRENCY: usize = 4_096;
/// Smallest blob: the unique tail that gives each blob its own digest.
pub const MIN_BLOB_BYTES: u64 = crate::payload::TAIL_BYTES;
/// Largest blob; the run holds one buffer of this size in memory.
pub const MAX_BLOB_BYTES: u64 = 4 << 30;
/// Layer size of the images a `manifest` workload looks up, by default.
pub const MANIFEST_LAYER_BYTES: u64 = 4 << 10;
/// Most layers per image.
pub const MAX_LAYERS: usize = 128;

impl Workload {
    /// Parses `kind[:key=value,...]`.
    pub fn parse(spec: &str, defaults: &Defaults) -> Result<Workload, String> {
        let (name, params) = match spec.split_once(':') {
            Some((name, params)) => (name, params),
            None => (spec, ""),
        };

        let mut blob_bytes = defaults.blob_bytes;
        let mut concurrency = defaults.concurrency;
        let mut repos = defaults.repos;
        let mut count = defaults.count;
        let mut duration = defaults.duration;
        let mut objects = None;
        let mut mode = "monolithic".to_string();
        let mut chunk_bytes = 8u64 << 20;
        let mut range_bytes = None;
        let mut op = ManifestOp::All;
        let mut layers = 3usize;
        let mut shared = 0usize;
        let mut read_percent = 80u8;
        let mut size_given = false;

        for pair in params.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{spec}: expected key=value, got {pair:?}"))?;
            let bad = |e: String| format!("{spec}: {key}: {e}");
            match key {
                "size" => {
                    blob_bytes = parse_size(value).map_err(bad)?;
                    size_given = true;
                }
                "conc" | "concurrency" => concurrency = parse_number(value).map_err(bad)?,
                "repos" => repos = parse_number(value).map_err(bad)?,
                "objects" => objects = Some(parse_number(value).map_err(bad)?),
                "count" => count = Some(parse_number(value).map_err(bad)? as u64),
                "duration" => duration = parse_duration(value).map_err(bad)?,
                "mode" => mode = value.to_string(),
                "chunk" => chunk_bytes = parse_size(value).map_err(bad)?,
                "range" => range_bytes = Some(parse_size(value).map_err(bad)?),
                "op" => op = parse_manifest_op(value).map_err(bad)?,
                "layers" => layers = parse_number(value).map_err(bad)?,
                "shared" => shared = parse_number(value).map_err(bad)?,
                "read" => {
                    let percent = parse_number(value).map_err(bad)?;
                    if percent > 100 {
                        return Err(bad("a percentage, 0 to 100".into()));
                    }
                    read_percent = percent as u8;
                }
                _ => return Err(format!("{spec}: unknown key {key:?}")),
            }
        }

        let kind = match name {
            "push" => Kind::Push {
                mode: parse_push_mode(&mode, chunk_bytes).map_err(|e| format!("{spec}: {e}"))?,
            },
            "pull" => Kind::Pull { range_bytes },
            "manifest" => Kind::Manifest { op },
            "image" | "image-push" => Kind::ImagePush { layers, shared },
            "image-pull" => Kind::ImagePull { layers },
            "mixed" => Kind::Mixed { read_percent },
            other => {
                return Err(format!(
                    "unknown workload {other:?}; use push, pull, manifest, \
                     image, image-pull or mixed"
                ))
            }
        };

        if !(MIN_BLOB_BYTES..=MAX_BLOB_BYTES).contains(&blob_bytes) {
            return Err(format!(
                "{spec}: size must be {MIN_BLOB_BYTES} bytes to {}",
                format_size(MAX_BLOB_BYTES)
            ));
        }
        if concurrency == 0 || concurrency > MAX_CONCURRENCY {
            return Err(format!(
                "{spec}: concurrency must be 1 to {MAX_CONCURRENCY}"
            ));
        }
        if repos == 0 || repos > MAX_REPOS {
            return Err(format!("{spec}: repos must be 1 to {MAX_REPOS}"));
        }
        if layers > MAX_LAYERS || shared > layers {
            return Err(format!(
                "{spec}: layers must be at most {MAX_LAYERS}, shared at most layers"
            ));
        }
        if range_bytes.is_some_and(|r| r == 0 || r > blob_bytes) {
            return Err(format!("{spec}: range must be 1 byte to the blob size"));
        }
        if count == Some(0) {
            return Err(format!("{spec}: count must be at least 1"));
        }

        // Manifest calls do not touch layers, so their images get small
        // ones unless told otherwise.
        if matches!(kind, Kind::Manifest { .. }) && !size_given {
            blob_bytes = MANIFEST_LAYER_BYTES;
        }

        // Reads need objects to read; by default about 256 MiB of them.
        let default_objects = ((256u64 << 20) / blob_bytes.max(1)).clamp(4, 256) as usize;
        let objects = match kind {
            Kind::Manifest { .. } | Kind::ImagePull { .. } => objects.unwrap_or(repos),
            _ => objects.unwrap_or(default_objects),
        }
        .clamp(1, MAX_REPOS);

        Ok(Workload {
            label: label(name, &kind, blob_bytes, concurrency),
            kind,
            blob_bytes,
            concurrency,
            repos,
            objects,
            count,
            duration,
        })
    }

    /// Whether throughput is best read as bytes (blobs) or calls (metadata).
    pub fn is_bytes_bound(&self) -> bool {
        !matches!(self.kind, Kind::Manifest { .. })
    }

    /// Blob sizes this workload mints, so their hashing is done up front.
    pub fn sizes(&self) -> Vec<u64> {
        vec![self.blob_bytes]
    }
}

fn label(name: &str, kind: &Kind, size: u64, conc: usize) -> String {
    let size = format_size(size);
    match kind {
        Kind::Push { mode } => {
            let mode = match mode {
                PushMode::Monolithic => String::new(),
                PushMode::Single => " single-post".into(),
                PushMode::Stream => " stream".into(),
                PushMode::Chunked { chunk_bytes } => {
                    format!(" chunked {}", format_size(*chunk_bytes))
                }
            };
            format!("push {size}{mode} x{conc}")
        }
        Kind::Pull { range_bytes: None } => format!("pull {size} x{conc}"),
        Kind::Pull {
            range_bytes: Some(r),
        } => format!("pull {size} range {} x{conc}", format_size(*r)),
        Kind::Manifest { op } => {
            format!("manifest {} x{conc}", manifest_op_name(*op))
        }
        Kind::ImagePush { layers, shared } => {
            format!("image push {layers}x{size} shared {shared} x{conc}")
        }
        Kind::ImagePull { layers } => format!("image pull {layers}x{size} x{conc}"),
        Kind::Mixed { read_percent } => {
            format!("{name} {read_percent}% read {size} x{conc}")
        }
    }
}

/// The name of a manifest call, as written in specs.
fn manifest_op_name(op: ManifestOp) -> &'static str {
    match op {
        ManifestOp::GetDigest => "get-digest",
        ManifestOp::HeadDigest => "head-digest",
        ManifestOp::GetTag => "get-tag",
        ManifestOp::HeadTag => "head-tag",
        ManifestOp::Tags => "tags",
        ManifestOp::Catalog => "catalog",
        ManifestOp::All => "all",
    }
}

fn parse_number(text: &str) -> Result<usize, String> {
    text.parse()
        .map_err(|_| format!("expected a whole number, got {text:?}"))
}

fn parse_manifest_op(text: &str) -> Result<ManifestOp, String> {
    Ok(match text {
        "get-digest" => ManifestOp::GetDigest,
        "head-digest" => ManifestOp::HeadDigest,
        "get-tag" => ManifestOp::GetTag,
        "head-tag" => ManifestOp::HeadTag,
        "tags" => ManifestOp::Tags,
        "catalog" => ManifestOp::Catalog,
        "all" => ManifestOp::All,
        other => {
            return Err(format!(
                "unknown op {other:?}; use get-digest, head-digest, get-tag, \
                 head-tag, tags, catalog or all"
            ))
        }
    })
}

fn parse_push_mode(text: &str, chunk_bytes: u64) -> Result<PushMode, String> {
    Ok(match text {
        "monolithic" => PushMode::Monolithic,
        "single" => PushMode::Single,
        "stream" => PushMode::Stream,
        "chunked" => {
            if chunk_bytes == 0 {
                return Err("chunk must be at least 1 byte".into());
            }
            PushMode::Chunked { chunk_bytes }
        }
        other => {
            return Err(format!(
                "unknown push mode {other:?}; use monolithic, single, chunked or stream"
            ))
        }
    })
}

/// Something a workload stored in a registry, for checking afterwards.
#[derive(Debug, Clone, Serialize)]
pub struct Stored {
    /// `blob`, `mount` or `manifest`.
    pub kind: &'static str,
    /// Repository it went into.
    pub repository: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// The tag a manifest was pushed under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// A blob known to be in a repository.
#[derive(Clone)]
struct Placed {
    repository: String,
    blob: Blob,
}

/// An image known to be in a repository under a tag.
#[derive(Clone)]
struct Tagged {
    repository: String,
    tag: String,
    digest: String,
}

/// What a workload created on one target before measuring.
pub struct Prepared {
    repositories: Vec<String>,
    blobs: Vec<Placed>,
    images: Vec<Tagged>,
    base_repository: String,
    shared_layers: Vec<Blob>,
}

/// State one worker keeps between its operations.
pub struct Worker {
    /// Worker number within the measurement.
    pub id: usize,
    ops: u64,
    rng: u64,
    /// What the last operation stored; read by the runner.
    pub stored: Vec<Stored>,
    /// Kind of the last operation, for workloads that mix kinds; empty
    /// otherwise.
    pub operation: &'static str,
}

impl Worker {
    /// A worker with its own random sequence.
    pub fn new(id: usize, seed: u64) -> Worker {
        let mut rng = seed ^ (id as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
        splitmix(&mut rng);
        Worker {
            id,
            ops: 0,
            rng,
            stored: Vec::new(),
            operation: "",
        }
    }

    fn next_index(&mut self, len: usize) -> usize {
        (splitmix(&mut self.rng) % len.max(1) as u64) as usize
    }
}

/// Names and counters shared by every workload of one run.
pub struct RunContext {
    /// Repository name prefix, unique to the run.
    pub prefix: String,
    /// Random content.
    pub content: Arc<Content>,
    /// Counter for unique tags.
    pub next_tag: AtomicU64,
    /// Compare pulled blob bytes with what was pushed.
    pub verify: bool,
}

impl RunContext {
    fn repository(&self, workload: usize, index: usize) -> String {
        format!("{}-w{workload}/r{index:05}", self.prefix)
    }

    fn tag(&self) -> String {
        format!("t{}", self.next_tag.fetch_add(1, Ordering::Relaxed))
    }
}

/// Creates what a workload needs on a target: blobs to pull, images to
/// look up, layers to share. Runs `parallel` uploads at a time.
pub async fn prepare(
    registry: Arc<Registry>,
    run: Arc<RunContext>,
    workload: &Workload,
    index: usize,
    parallel: usize,
) -> Result<(Prepared, Vec<Stored>), Failure> {
    let repositories: Vec<String> = (0..workload.repos)
        .map(|i| run.repository(index, i))
        .collect();
    let base_repository = format!("{}-w{index}/base", run.prefix);
    let mut stored = Vec::new();

    // Shared layers live in one base repository and are mounted from it.
    let mut shared_layers = Vec::new();
    if let Kind::ImagePush { shared, .. } = workload.kind {
        for _ in 0..shared {
            let blob = run.content.blob(workload.blob_bytes);
            registry
                .push_blob(&base_repository, &blob, PushMode::Monolithic)
                .await?;
            stored.push(stored_blob("blob", &base_repository, &blob));
            shared_layers.push(blob);
        }
    }

    let (blob_count, image_count) = match workload.kind {
        Kind::Pull { .. } | Kind::Mixed { .. } => (workload.objects, 0),
        Kind::Manifest { .. } | Kind::ImagePull { .. } => (0, workload.objects),
        _ => (0, 0),
    };
    let layers = match workload.kind {
        Kind::ImagePull { layers } => layers,
        _ => 1,
    };

    let next = Arc::new(AtomicUsize::new(0));
    let repositories = Arc::new(repositories);
    let mut tasks = Vec::new();
    for _ in 0..parallel.max(1) {
        let registry = registry.clone();
        let run = run.clone();
        let next = next.clone();
        let repositories = repositories.clone();
        let size = workload.blob_bytes;
        tasks.push(tokio::spawn(async move {
            let mut blobs = Vec::new();
            let mut images = Vec::new();
            let mut stored = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= blob_count + image_count {
                    break;
                }
                let repository = &repositories[i % repositories.len()];
                if i < blob_count {
                    let blob = run.content.blob(size);
                    registry
                        .push_blob(repository, &blob, PushMode::Monolithic)
                        .await?;
                    stored.push(stored_blob("blob", repository, &blob));
                    blobs.push(Placed {
                        repository: repository.clone(),
                        blob,
                    });
                } else {
                    let tag = run.tag();
                    let layers: Vec<Blob> = (0..layers).map(|_| run.content.blob(size)).collect();
                    let image = ImageSpec {
                        run_label: &run.prefix,
                        repository,
                        tag: &tag,
                        shared: &[],
                        shared_from: "",
                        own: &layers,
                    };
                    let (digest, _) = push_image(&registry, &image, &mut stored).await?;
                    images.push(Tagged {
                        repository: repository.clone(),
                        tag,
                        digest,
                    });
                }
            }
            Ok::<_, Failure>((blobs, images, stored))
        }));
    }

    let mut blobs = Vec::new();
    let mut images = Vec::new();
    for task in tasks {
        let (b, i, s) = task
            .await
            .map_err(|e| Failure::protocol("prepare", &format!("task failed: {e}")))??;
        blobs.extend(b);
        images.extend(i);
        stored.extend(s);
    }

    let repositories = Arc::try_unwrap(repositories).unwrap_or_else(|a| (*a).clone());
    let prepared = Prepared {
        repositories,
        blobs,
        images,
        base_repository,
        shared_layers,
    };
    Ok((prepared, stored))
}

/// Runs one operation; returns the payload bytes it moved.
pub async fn run_op(
    registry: &Registry,
    run: &RunContext,
    workload: &Workload,
    prepared: &Prepared,
    worker: &mut Worker,
) -> Result<u64, Failure> {
    worker.stored.clear();
    worker.operation = "";
    worker.ops += 1;

    match workload.kind {
        Kind::Push { mode } => {
            let repository = pick(&prepared.repositories, worker, workload.concurrency);
            let blob = run.content.blob(workload.blob_bytes);
            let sent = registry.push_blob(&repository, &blob, mode).await?;
            worker.stored.push(stored_blob("blob", &repository, &blob));
            Ok(sent)
        }
        Kind::Pull { range_bytes } => {
            let index = worker.next_index(prepared.blobs.len());
            let blob = prepared
                .blobs
                .get(index)
                .ok_or_else(|| Failure::protocol("pull", "no blobs prepared"))?;
            let range = range_bytes.map(|len| {
                let room = blob.blob.size().saturating_sub(len) + 1;
                let start = splitmix(&mut worker.rng) % room;
                (start, start + len)
            });
            let expected = run.verify.then_some(&blob.blob);
            registry
                .pull_blob(&blob.repository, &blob.blob.digest, range, expected)
                .await
        }
        Kind::Mixed { read_percent } => {
            let roll = splitmix(&mut worker.rng) % 100;
            if roll < u64::from(read_percent) {
                worker.operation = "read";
                let index = worker.next_index(prepared.blobs.len());
                let blob = prepared
                    .blobs
                    .get(index)
                    .ok_or_else(|| Failure::protocol("mixed", "no blobs prepared"))?;
                let expected = run.verify.then_some(&blob.blob);
                registry
                    .pull_blob(&blob.repository, &blob.blob.digest, None, expected)
                    .await
            } else {
                worker.operation = "write";
                let repository = pick(&prepared.repositories, worker, workload.concurrency);
                let blob = run.content.blob(workload.blob_bytes);
                let sent = registry
                    .push_blob(&repository, &blob, PushMode::Monolithic)
                    .await?;
                worker.stored.push(stored_blob("blob", &repository, &blob));
                Ok(sent)
            }
        }
        Kind::Manifest { op } => manifest_op(registry, prepared, op, worker).await,
        Kind::ImagePush { layers, shared } => {
            let repository = pick(&prepared.repositories, worker, workload.concurrency);
            let tag = run.tag();
            let own: Vec<Blob> = (shared..layers)
                .map(|_| run.content.blob(workload.blob_bytes))
                .collect();
            let mut stored = std::mem::take(&mut worker.stored);
            let image = ImageSpec {
                run_label: &run.prefix,
                repository: &repository,
                tag: &tag,
                shared: &prepared.shared_layers,
                shared_from: &prepared.base_repository,
                own: &own,
            };
            let result = push_image(registry, &image, &mut stored).await;
            worker.stored = stored;
            result.map(|(_, sent)| sent)
        }
        Kind::ImagePull { .. } => {
            let index = worker.next_index(prepared.images.len());
            let image = prepared
                .images
                .get(index)
                .ok_or_else(|| Failure::protocol("image pull", "no images prepared"))?;
            pull_image(registry, &image.repository, &image.tag).await
        }
    }
}

/// Picks a repository for the worker's next write.
///
/// Worker `w` of `n` takes repositories `w`, `w + n`, `w + 2n`, ...: with
/// at least as many repositories as workers (a multiple of them), no two
/// writes go to one repository at the same time, as with clients pushing
/// different images. Fewer repositories than workers make them share.
fn pick(repositories: &[String], worker: &Worker, workers: usize) -> String {
    let len = repositories.len().max(1);
    let step = (worker.ops as usize).wrapping_mul(workers);
    let index = worker.id.wrapping_add(step) % len;
    repositories.get(index).cloned().unwrap_or_default()
}

async fn manifest_op(
    registry: &Registry,
    prepared: &Prepared,
    op: ManifestOp,
    worker: &mut Worker,
) -> Result<u64, Failure> {
    let index = worker.next_index(prepared.images.len());
    let image = prepared
        .images
        .get(index)
        .ok_or_else(|| Failure::protocol("manifest", "no images prepared"))?;

    let op = match op {
        ManifestOp::All => {
            const ALL: [ManifestOp; 6] = [
                ManifestOp::GetDigest,
                ManifestOp::HeadDigest,
                ManifestOp::GetTag,
                ManifestOp::HeadTag,
                ManifestOp::Tags,
                ManifestOp::Catalog,
            ];
            let op = ALL[(worker.ops % ALL.len() as u64) as usize];
            worker.operation = manifest_op_name(op);
            op
        }
        op => op,
    };

    let repo = &image.repository;
    let body = match op {
        ManifestOp::GetDigest => registry.manifest(repo, &image.digest, false).await?,
        ManifestOp::HeadDigest => registry.manifest(repo, &image.digest, true).await?,
        ManifestOp::GetTag => registry.manifest(repo, &image.tag, false).await?,
        ManifestOp::HeadTag => registry.manifest(repo, &image.tag, true).await?,
        ManifestOp::Tags => registry.tags(repo).await?,
        ManifestOp::Catalog | ManifestOp::All => registry.catalog(100).await?,
    };
    Ok(body.len() as u64)
}

/// What pushing `blob` into `repository` stored.
pub(crate) fn stored_blob(kind: &'static str, repository: &str, blob: &Blob) -> Stored {
    Stored {
        kind,
        repository: repository.to_string(),
        digest: blob.digest.clone(),
        size: blob.size(),
        tag: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            blob_bytes: 1 << 20,
            concurrency: 8,
            repos: 4,
            count: None,
            duration: Duration::from_secs(1),
        }
    }

    #[test]
    fn specs_parse_with_overrides() {
        let w = Workload::parse(
            "push:size=64MiB,conc=16,mode=chunked,chunk=4MiB",
            &defaults(),
        )
        .unwrap();
        assert_eq!(w.blob_bytes, 64 << 20);
        assert_eq!(w.concurrency, 16);
        assert_eq!(
            w.kind,
            Kind::Push {
                mode: PushMode::Chunked {
                    chunk_bytes: 4 << 20
                }
            }
        );

        let w = Workload::parse("manifest:op=head-tag", &defaults()).unwrap();
        assert_eq!(
            w.kind,
            Kind::Manifest {
                op: ManifestOp::HeadTag
            }
        );
        assert_eq!(w.objects, 4);
    }

    #[test]
    fn bad_specs_are_refused() {
        for spec in [
            "nope",
            "push:size=huge",
            "push:mode=teleport",
            "pull:range=2MiB",
            "manifest:op=delete",
            "mixed:read=101",
            "push:conc=0",
            "image:layers=2,shared=3",
            "push:size",
            "push:size=8",
            "push:size=5GiB",
        ] {
            assert!(Workload::parse(spec, &defaults()).is_err(), "{spec}");
        }
    }
}
