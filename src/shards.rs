//! Shards and the messages that carry work between cores.
//!
//! Every executor owns a few shards of the data directory and is the only
//! one that touches them. A request that needs another core's shard sends
//! that core a *job*: a closure that runs on the owning executor, next to
//! the shard, and sends its answer back through a one-shot channel. Cores
//! share no mutable state; the channels are the only way across.
//!
//! Which shard owns what is decided here, by stable hashes that must never
//! change for an existing data directory:
//! - a repository's metadata lives on `shard_of_repository(name)`;
//! - a digest's index entry lives on `shard_of_digest(digest)`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use berth_storage::{Digest, Reader, Shard};
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};

use crate::metrics::CoreMetrics;

/// A unit of work sent to the executor that owns a shard.
pub type Job = Box<dyn FnOnce(Rc<Local>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// Why a job could not run on its shard.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The owning executor's channel is closed (it is shutting down).
    #[error("shard {shard} is unreachable: its executor is shutting down")]
    Unreachable {
        /// The shard that was asked for.
        shard: u16,
    },
}

/// What one executor holds: its shards and its reader.
pub struct Local {
    /// Index of this executor among all executors.
    pub executor: usize,
    /// Shards owned by this executor, by shard number.
    pub shards: BTreeMap<u16, Rc<Shard>>,
    /// Reads blob bytes from any shard's segments, with a per-core cache.
    pub reader: Reader,
    /// This executor's request and storage figures.
    pub metrics: CoreMetrics,
    /// How long this executor took to recover its shards, in seconds.
    pub recovery_secs: f64,
    next_home: Cell<usize>,
}

impl Local {
    /// Builds the executor's state from the shards it opened.
    pub fn new(
        executor: usize,
        shards: BTreeMap<u16, Rc<Shard>>,
        reader: Reader,
        recovery_secs: f64,
    ) -> Self {
        Local {
            executor,
            shards,
            reader,
            metrics: CoreMetrics::new(),
            recovery_secs,
            next_home: Cell::new(0),
        }
    }

    /// The shard a new upload or manifest received here is written into.
    ///
    /// Rotates over the executor's own shards so that their segment logs
    /// fill evenly.
    pub fn home_shard(&self) -> Rc<Shard> {
        let n = self.next_home.get();
        self.next_home.set(n.wrapping_add(1));
        let index = n % self.shards.len();
        let shard = self
            .shards
            .values()
            .nth(index)
            .expect("an executor owns at least one shard");
        shard.clone()
    }

    /// The local shard with this number, if this executor owns it.
    pub fn shard(&self, shard: u16) -> Option<Rc<Shard>> {
        self.shards.get(&shard).cloned()
    }
}

/// Routes jobs to the executor that owns a shard.
pub struct Router {
    local: Rc<Local>,
    senders: Senders<Job>,
    executors: usize,
    shard_count: u16,
}

impl Router {
    /// Builds the router of one executor and starts its receiving tasks.
    pub fn start(
        local: Rc<Local>,
        senders: Senders<Job>,
        mut receivers: Receivers<Job>,
        shard_count: u16,
    ) -> Rc<Router> {
        let executors = senders.nr_consumers();
        for (_, receiver) in receivers.streams() {
            let local = local.clone();
            glommio::spawn_local(async move {
                while let Some(job) = receiver.recv().await {
                    glommio::spawn_local(job(local.clone())).detach();
                }
            })
            .detach();
        }
        Rc::new(Router {
            local,
            senders,
            executors,
            shard_count,
        })
    }

    /// This executor's own state.
    pub fn local(&self) -> &Rc<Local> {
        &self.local
    }

    /// Number of shards in the data directory.
    pub fn shard_count(&self) -> u16 {
        self.shard_count
    }

    /// Number of executors serving the data directory.
    pub fn executors(&self) -> usize {
        self.executors
    }

    /// The executor that owns `shard`.
    pub fn owner(&self, shard: u16) -> usize {
        usize::from(shard) % self.executors
    }

    /// The shard that holds a repository's metadata.
    pub fn repository_shard(&self, repository: &str) -> u16 {
        shard_of_repository(repository, self.shard_count)
    }

    /// The shard that holds a digest's index entry.
    pub fn digest_shard(&self, digest: &Digest) -> u16 {
        shard_of_digest(digest, self.shard_count)
    }

    /// Runs `f` next to `shard`, on its owning executor, and returns what
    /// it returns.
    ///
    /// A shard owned by this executor runs `f` in place without a hop.
    pub async fn on_shard<R, F, Fut>(&self, shard: u16, f: F) -> Result<R, ShardError>
    where
        F: FnOnce(Rc<Shard>, Rc<Local>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        if let Some(local_shard) = self.local.shard(shard) {
            return Ok(f(local_shard, self.local.clone()).await);
        }

        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |local: Rc<Local>| {
            Box::pin(async move {
                // NOTE: the router only sends a job to the executor that
                // owns the shard, so the lookup cannot miss.
                if let Some(owned) = local.shard(shard) {
                    let result = f(owned, local.clone()).await;
                    let _ = reply.send(result);
                }
            })
        });
        let owner = self.owner(shard);
        if self.senders.send_to(owner, job).await.is_err() {
            return Err(ShardError::Unreachable { shard });
        }
        answer.await.map_err(|_| ShardError::Unreachable { shard })
    }

    /// Runs `f` on every executor (this one included) and collects the
    /// answers, in executor order.
    pub async fn on_every_executor<R, F, Fut>(&self, f: F) -> Result<Vec<R>, ShardError>
    where
        F: Fn(Rc<Local>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        let mut answers = Vec::with_capacity(self.executors);
        let mut pending = Vec::with_capacity(self.executors);
        for executor in 0..self.executors {
            if executor == self.local.executor {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            let f = f.clone();
            let job: Job = Box::new(move |local: Rc<Local>| {
                Box::pin(async move {
                    let _ = reply.send(f(local).await);
                })
            });
            if self.senders.send_to(executor, job).await.is_err() {
                return Err(ShardError::Unreachable { shard: 0 });
            }
            pending.push((executor, answer));
        }

        let mine = f(self.local.clone()).await;
        let mut mine = Some(mine);
        let mut pending = pending.into_iter().peekable();
        for executor in 0..self.executors {
            if executor == self.local.executor {
                answers.extend(mine.take());
                continue;
            }
            if let Some((_, answer)) = pending.next() {
                let value = answer
                    .await
                    .map_err(|_| ShardError::Unreachable { shard: 0 })?;
                answers.push(value);
            }
        }
        Ok(answers)
    }
}

/// The shard that holds a repository's metadata.
///
/// IMPORTANT: this hash is part of the on-disk format. Changing it moves
/// repositories to shards that do not hold their metadata.
pub fn shard_of_repository(repository: &str, shard_count: u16) -> u16 {
    let hash = fnv1a(repository.as_bytes());
    (hash % u64::from(shard_count.max(1))) as u16
}

/// The shard that holds a digest's index entry.
///
/// IMPORTANT: part of the on-disk format, like [`shard_of_repository`].
pub fn shard_of_digest(digest: &Digest, shard_count: u16) -> u16 {
    let hash = fnv1a(digest.to_string().as_bytes());
    (hash % u64::from(shard_count.max(1))) as u16
}

/// 64-bit FNV-1a: small, stable across releases and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_shard_is_stable() {
        // These values pin the on-disk sharding: a change here strands data.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(shard_of_repository("library/alpine", 1), 0);
    }

    #[test]
    fn repositories_spread_over_shards() {
        let mut seen = [0u32; 8];
        for i in 0..800 {
            let shard = shard_of_repository(&format!("team/app-{i}"), 8);
            seen[usize::from(shard)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
