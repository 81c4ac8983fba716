//! `berth check [--repair]`: verify a data directory while berth is
//! stopped.
//!
//! Opening every shard runs recovery, which checks the CRC of every
//! metadata frame and of every record in segments that were still being
//! written, and cuts torn tails. The check then reads every segment file
//! record by record and checks each record's CRC, and walks every
//! repository:
//! each linked blob must be indexed, have the linked size, and read back
//! with its digest (every record's CRC is checked on the way); each
//! manifest must read back with its digest, parse, and find every blob
//! and child manifest it references; each tag must name a manifest.
//!
//! With `--repair`, what cannot be trusted is unlinked so that berth
//! answers "unknown" for it and clients push it again, instead of serving
//! bad bytes.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;

use berth_storage::{check_segments, digest_of, Digest, Layout, Reader, Shard, ShardOptions};
use glommio::{LocalExecutorBuilder, Placement};

use crate::oci::manifest::parse_manifest;
use crate::shards::shard_of_digest;

/// One thing found wrong.
#[derive(Debug)]
struct Problem {
    repository: String,
    digest: String,
    what: String,
    fix: Fix,
}

/// What `--repair` does about a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fix {
    UnlinkBlob,
    UnlinkManifest,
    RemoveTag,
    /// Reported only: nothing safe to do automatically.
    None,
}

/// Runs the check; the exit code is non-zero when anything is wrong.
pub fn run(dir: &Path, repair: bool) -> ExitCode {
    if !dir.exists() {
        eprintln!("berth check: {} does not exist", dir.display());
        return ExitCode::from(2);
    }
    let layout = match Layout::open_or_create(dir, 1) {
        Ok(layout) => layout,
        Err(error) => {
            eprintln!("berth check: {error}");
            return ExitCode::from(2);
        }
    };

    let builder = LocalExecutorBuilder::new(Placement::Unbound).name("berth-check");
    let outcome = builder
        .spawn(move || async move { check(layout, repair).await })
        .map_err(|e| e.to_string())
        .and_then(|handle| handle.join().map_err(|e| e.to_string()));
    match outcome {
        Ok(Ok(0)) => ExitCode::SUCCESS,
        Ok(Ok(_)) => ExitCode::FAILURE,
        Ok(Err(error)) | Err(error) => {
            eprintln!("berth check: {error}");
            ExitCode::from(2)
        }
    }
}

/// Checks everything; returns how many problems were found.
async fn check(layout: Layout, repair: bool) -> Result<usize, String> {
    let mut shards = BTreeMap::new();
    for id in 0..layout.shard_count() {
        let (shard, report) = Shard::open(&layout, id, &ShardOptions::default())
            .await
            .map_err(|e| format!("shard {id}: {e}"))?;
        println!("{report}");
        shards.insert(id, Rc::new(shard));
    }
    let reader = Reader::new(&layout, 64 << 20);

    let mut work = Vec::new();
    for shard in shards.values() {
        for repository in shard.repositories() {
            work.push((shard.clone(), repository));
        }
    }
    let total_items: usize = work
        .iter()
        .map(|(shard, repo)| shard.blob_links(repo).len() + shard.manifests(repo).len())
        .sum();
    let mut progress = Progress::new(total_items);

    let mut problems = Vec::new();
    let records = scan_segments(&layout, &mut problems);
    for (shard, repository) in &work {
        check_blobs(
            &shards,
            &reader,
            shard,
            repository,
            &mut problems,
            &mut progress,
        )
        .await;
        check_manifests(&reader, shard, repository, &mut problems, &mut progress).await;
        check_tags(shard, repository, &mut problems);
    }
    progress.finish();

    for problem in &problems {
        println!(
            "CORRUPT repository={} digest={}: {}",
            problem.repository, problem.digest, problem.what
        );
    }
    println!(
        "checked {records} records, {} repositories, {total_items} blobs and manifests: {} problems",
        work.len(),
        problems.len()
    );

    if repair && !problems.is_empty() {
        repair_all(&shards, &problems).await?;
    }
    Ok(problems.len())
}

async fn check_blobs(
    shards: &BTreeMap<u16, Rc<Shard>>,
    reader: &Reader,
    shard: &Shard,
    repository: &str,
    problems: &mut Vec<Problem>,
    progress: &mut Progress,
) {
    let count = shards.len() as u16;
    for (digest, size) in shard.blob_links(repository) {
        progress.step();
        let mut report = |what: String, fix: Fix| {
            problems.push(Problem {
                repository: repository.to_owned(),
                digest: digest.to_string(),
                what,
                fix,
            })
        };
        let Some(index) = shards.get(&shard_of_digest(&digest, count)) else {
            continue;
        };
        let Some(location) = index.index_get(&digest) else {
            report(
                "linked blob is not in the blob index".to_owned(),
                Fix::UnlinkBlob,
            );
            continue;
        };
        if location.len() != size {
            report(
                format!("linked as {size} bytes, stored as {}", location.len()),
                Fix::UnlinkBlob,
            );
            continue;
        }
        match reader.verify(&location).await {
            Ok(actual) if actual == digest => {}
            Ok(actual) => report(format!("bytes hash to {actual}"), Fix::UnlinkBlob),
            Err(error) => report(format!("unreadable: {error}"), Fix::UnlinkBlob),
        }
    }
}

async fn check_manifests(
    reader: &Reader,
    shard: &Shard,
    repository: &str,
    problems: &mut Vec<Problem>,
    progress: &mut Progress,
) {
    for link in shard.manifests(repository) {
        progress.step();
        let mut report = |what: String, fix: Fix| {
            problems.push(Problem {
                repository: repository.to_owned(),
                digest: link.digest.to_string(),
                what,
                fix,
            })
        };
        let bytes = match reader.read_all(&link.location).await {
            Ok(bytes) => bytes,
            Err(error) => {
                report(format!("manifest unreadable: {error}"), Fix::UnlinkManifest);
                continue;
            }
        };
        let actual = digest_of(link.digest.algorithm(), &bytes);
        if actual != link.digest {
            report(
                format!("manifest bytes hash to {actual}"),
                Fix::UnlinkManifest,
            );
            continue;
        }
        let parsed = match parse_manifest(Some(&link.media_type), &bytes) {
            Ok(parsed) => parsed,
            Err(error) => {
                report(
                    format!("manifest does not parse: {}", error.message),
                    Fix::None,
                );
                continue;
            }
        };
        for blob in parsed.required_blobs() {
            let present = shard.blob_link(repository, &blob).is_some()
                || shard.manifest(repository, &blob).is_some();
            if !present {
                report(
                    format!("references blob {blob}, which is not linked"),
                    Fix::None,
                );
            }
        }
        for child in parsed.required_manifests() {
            let present = shard.manifest(repository, &child).is_some();
            if !present {
                report(
                    format!("references manifest {child}, which is not linked"),
                    Fix::None,
                );
            }
        }
    }
}

fn check_tags(shard: &Shard, repository: &str, problems: &mut Vec<Problem>) {
    for tag in shard.tags(repository).unwrap_or_default() {
        let Some(digest) = shard.tag(repository, &tag) else {
            continue;
        };
        if shard.manifest(repository, &digest).is_none() {
            problems.push(Problem {
                repository: repository.to_owned(),
                digest: digest.to_string(),
                what: format!("tag {tag} names a manifest that is not linked"),
                fix: Fix::RemoveTag,
            });
        }
    }
}

/// Checks every record of every segment file; returns how many were read.
fn scan_segments(layout: &Layout, problems: &mut Vec<Problem>) -> u64 {
    let scan = check_segments(layout);
    for bad in scan.problems {
        problems.push(Problem {
            repository: "-".to_owned(),
            digest: bad.digest.map_or_else(|| "-".to_owned(), |d| d.to_string()),
            what: format!(
                "{} at byte {}: {}",
                bad.path.display(),
                bad.offset,
                bad.what
            ),
            fix: Fix::None,
        });
    }
    scan.records
}

/// Unlinks what cannot be trusted, so that it is never served.
async fn repair_all(shards: &BTreeMap<u16, Rc<Shard>>, problems: &[Problem]) -> Result<(), String> {
    let count = shards.len() as u16;
    let mut repaired = 0;
    for problem in problems {
        let shard = shards
            .get(&crate::shards::shard_of_repository(
                &problem.repository,
                count,
            ))
            .ok_or("repository shard missing")?;
        let Ok(digest) = Digest::parse(&problem.digest) else {
            continue;
        };
        let done = match problem.fix {
            Fix::UnlinkBlob => shard.unlink_blob(&problem.repository, &digest).await,
            Fix::UnlinkManifest => shard.unlink_manifest(&problem.repository, &digest).await,
            Fix::RemoveTag => {
                let mut removed = false;
                for tag in shard.tags(&problem.repository).unwrap_or_default() {
                    if shard.tag(&problem.repository, &tag) == Some(digest) {
                        removed |= shard
                            .remove_tag(&problem.repository, &tag)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                Ok(removed)
            }
            Fix::None => Ok(false),
        };
        if done.map_err(|e| format!("repairing {}: {e}", problem.digest))? {
            repaired += 1;
        }
    }
    println!("repaired {repaired} problems by unlinking what could not be trusted");
    Ok(())
}

/// A one-line progress bar on a terminal; silent otherwise.
struct Progress {
    total: usize,
    done: usize,
    enabled: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Progress {
            total,
            done: 0,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    fn step(&mut self) {
        self.done += 1;
        if !self.enabled || (self.done % 64 != 0 && self.done != self.total) {
            return;
        }
        let width = 40;
        let filled = (self.done * width) / self.total.max(1);
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        let mut err = std::io::stderr();
        let _ = write!(err, "\r[{bar}] {}/{}", self.done, self.total);
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.enabled {
            eprintln!();
        }
    }
}
