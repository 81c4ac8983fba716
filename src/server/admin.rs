//! The admin listener: `/metrics`, `/healthz` and `/readyz`.

use std::rc::Rc;
use std::time::Duration;

use crate::admin::{admin_response, AdminStatus};
use crate::http::{Body, Handler, Request, Response};
use crate::metrics::{render, MetricsSnapshot, StorageFigures};
use crate::shards::Router;

/// How long a health check waits for every executor to answer.
const HEALTH_WAIT: Duration = Duration::from_secs(2);

/// Serves the admin endpoints of the whole process from one executor,
/// asking every executor for its figures.
pub struct AdminHandler {
    router: Rc<Router>,
}

impl AdminHandler {
    /// A handler that gathers figures through `router`.
    pub fn new(router: Rc<Router>) -> Self {
        AdminHandler { router }
    }
}

/// What one executor reports for a scrape or a health check.
struct ExecutorFigures {
    metrics: MetricsSnapshot,
    storage: Vec<StorageFigures>,
    writable: bool,
    recovery_secs: f64,
}

impl Handler for AdminHandler {
    async fn handle(&self, req: &Request, _body: &mut Body<'_>) -> Response {
        let gather = async {
            self.router
                .on_every_executor(|local| async move {
                    let storage = local
                        .shards
                        .values()
                        .map(|shard| {
                            let stats = shard.stats();
                            StorageFigures {
                                shard: u32::from(stats.shard),
                                segments: stats.segments.len() as u64,
                                bytes: stats.segments.iter().map(|s| s.written_bytes).sum(),
                                live_bytes: stats.segments.iter().map(|s| s.live_bytes).sum(),
                                index_entries: stats.index_entries as u64,
                                reclaimed_bytes: stats.reclaimed_bytes,
                                segments_deleted: stats.segments_deleted,
                            }
                        })
                        .collect();
                    ExecutorFigures {
                        metrics: local.metrics.snapshot(),
                        storage,
                        writable: local.shards.values().all(|s| !s.is_poisoned()),
                        recovery_secs: local.recovery_secs,
                    }
                })
                .await
                .ok()
        };
        let give_up = async {
            glommio::timer::sleep(HEALTH_WAIT).await;
            None
        };
        let gathered = futures_lite::future::or(gather, give_up).await;

        let status = AdminStatus {
            alive: gathered.is_some(),
            ready: gathered
                .as_ref()
                .is_some_and(|all| all.iter().all(|f| f.writable)),
        };
        let answer = admin_response(req.method.as_str(), &req.path, status, || {
            let Some(all) = &gathered else {
                return String::new();
            };
            let mut merged = MetricsSnapshot::default();
            let mut storage = Vec::new();
            let mut recovery_secs: f64 = 0.0;
            for figures in all {
                merged.merge(&figures.metrics);
                storage.extend_from_slice(&figures.storage);
                recovery_secs = recovery_secs.max(figures.recovery_secs);
            }
            storage.sort_by_key(|f| f.shard);
            render(&merged, &storage, recovery_secs, status.ready)
        });

        let mut response = Response::new(answer.status)
            .header("Content-Type", answer.content_type)
            .bytes(answer.body.into_bytes());
        if let Some(allow) = answer.allow {
            response = response.header("Allow", allow);
        }
        response
    }
}
