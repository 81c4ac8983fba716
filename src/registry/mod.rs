//! The OCI distribution API on top of the shards.
//!
//! [`Registry`] is the HTTP handler of one executor. It parses the route,
//! sends the work to the shards that own the repository, the digest or the
//! upload, and turns the answers into responses. Every error leaves through
//! [`errors::into_response`], the one place that maps failures to an HTTP
//! status and an OCI error code.

mod blobs;
mod budget;
mod errors;
mod listing;
mod manifests;
mod uploads;

use std::rc::Rc;
use std::time::Duration;

use std::future::Future;

use berth_storage::Shard;

use crate::http::{Body, Handler, Method, Request, Response};
use crate::oci::errors::OciError;
use crate::oci::route::{route, Route};
use crate::shards::{Local, Router};

pub use errors::into_response;
pub use uploads::expire_uploads;

/// The settings the API handlers need.
#[derive(Clone, Debug)]
pub struct RegistrySettings {
    /// Largest manifest body accepted, in bytes.
    pub max_manifest_bytes: usize,
    /// Largest body one upload request may carry; 0 means no limit.
    pub max_upload_bytes: u64,
    /// An upload untouched for this long is cancelled and its space freed.
    pub upload_expiry: Duration,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            max_manifest_bytes: 4 << 20,
            max_upload_bytes: 0,
            upload_expiry: Duration::from_secs(24 * 3600),
        }
    }
}

/// The OCI distribution API handler of one executor.
pub struct Registry {
    router: Rc<Router>,
    settings: RegistrySettings,
    buffered: budget::BufferBudget,
    observer: Option<Rc<dyn RequestObserver>>,
}

/// Told about every request once it has been answered.
///
/// The server plugs its access log and metrics in here.
pub trait RequestObserver {
    /// Called when a connection opens, closes or is refused.
    fn connection(&self, event: crate::http::ConnectionEvent);

    /// Called once per request, after its response was written, with
    /// the route's label and the repository it named, if any.
    fn observe(
        &self,
        request: &Request,
        route: &'static str,
        repository: Option<&str>,
        answer: &crate::http::Answer,
    );
}

impl Registry {
    /// Builds the handler of one executor.
    pub fn new(router: Rc<Router>, settings: RegistrySettings) -> Self {
        let buffered = budget::BufferBudget::new(
            settings
                .max_manifest_bytes
                .saturating_mul(budget::BUFFERED_MANIFESTS_PER_CORE),
        );
        Registry {
            router,
            settings,
            buffered,
            observer: None,
        }
    }

    /// Sets the hook told about every answered request.
    pub fn with_observer(mut self, observer: Rc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The router this handler sends work through.
    pub fn router(&self) -> &Rc<Router> {
        &self.router
    }

    /// The handler's settings.
    pub fn settings(&self) -> &RegistrySettings {
        &self.settings
    }

    /// This executor's budget for bodies held whole (manifests).
    pub(crate) fn buffered(&self) -> &budget::BufferBudget {
        &self.buffered
    }

    /// Reads from `shard` on its owning core; only the hop can fail.
    pub(crate) async fn read_on<R, F, Fut>(&self, shard: u16, f: F) -> Result<R, OciError>
    where
        F: FnOnce(Rc<Shard>, Rc<Local>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        self.router.on_shard(shard, f).await.map_err(errors::shard)
    }

    /// Runs a storage operation on `shard` on its owning core; a failed
    /// hop and a storage error both become the client's error.
    pub(crate) async fn write_on<R, F, Fut>(&self, shard: u16, f: F) -> Result<R, OciError>
    where
        F: FnOnce(Rc<Shard>, Rc<Local>) -> Fut + Send + 'static,
        Fut: Future<Output = berth_storage::Result<R>> + 'static,
        R: Send + 'static,
    {
        self.read_on(shard, f).await?.map_err(errors::storage)
    }

    async fn dispatch(
        &self,
        route: Route,
        req: &Request,
        body: &mut Body<'_>,
    ) -> Result<Response, OciError> {
        let head = matches!(req.method, Method::Head);
        match (route, &req.method) {
            (Route::Base, Method::Get | Method::Head) => Ok(base_response()),

            (Route::Blob { name, digest }, Method::Get | Method::Head) => {
                blobs::get(self, &name, digest, req, head).await
            }
            (Route::Blob { name, digest }, Method::Delete) => {
                blobs::delete(self, &name, digest).await
            }

            (Route::UploadStart { name }, Method::Post) => {
                uploads::start(self, &name, req, body).await
            }
            (Route::Upload { name, id }, Method::Patch) => {
                uploads::patch(self, &name, &id, req, body).await
            }
            (Route::Upload { name, id }, Method::Put) => {
                uploads::put(self, &name, &id, req, body).await
            }
            (Route::Upload { name, id }, Method::Get) => uploads::status(self, &name, &id).await,
            (Route::Upload { name, id }, Method::Delete) => uploads::cancel(self, &name, &id).await,

            (Route::Manifest { name, reference }, Method::Get | Method::Head) => {
                manifests::get(self, &name, &reference, req, head).await
            }
            (Route::Manifest { name, reference }, Method::Put) => {
                manifests::put(self, &name, &reference, req, body).await
            }
            (Route::Manifest { name, reference }, Method::Delete) => {
                manifests::delete(self, &name, &reference).await
            }

            (Route::TagsList { name }, Method::Get | Method::Head) => {
                listing::tags(self, &name, req).await
            }
            (Route::Catalog, Method::Get | Method::Head) => listing::catalog(self, req).await,
            (Route::Referrers { name, digest }, Method::Get | Method::Head) => {
                listing::referrers(self, &name, digest, req).await
            }

            (route, method) => Err(OciError::method_not_allowed_for(
                method.as_str(),
                route.allowed_methods(),
            )),
        }
    }
}

impl Handler for Registry {
    fn connection_event(&self, event: crate::http::ConnectionEvent) {
        if let Some(observer) = &self.observer {
            observer.connection(event);
        }
    }

    async fn handle(&self, req: &Request, body: &mut Body<'_>) -> Response {
        let response = match route(req.method.as_str(), &req.path, &req.query) {
            Ok(route) => match self.dispatch(route, req, body).await {
                Ok(response) => response,
                Err(error) => into_response(error),
            },
            Err(error) => into_response(error),
        };
        response.header("Docker-Distribution-API-Version", "registry/2.0")
    }

    fn answered(&self, req: &Request, answer: &crate::http::Answer) {
        let Some(observer) = &self.observer else {
            return;
        };
        let method = req.method.as_str();
        match route(method, &req.path, &req.query) {
            Ok(route) => observer.observe(req, route_label(&route), route.name(), answer),
            // A bad query (a malformed `digest`) still names a repository.
            Err(_) => {
                let path_only = route(method, &req.path, "").ok();
                let repository = path_only.as_ref().and_then(Route::name);
                observer.observe(req, "unknown", repository, answer);
            }
        }
    }
}

/// The reply to `GET /v2/`: the API is here and speaks registry/2.0.
fn base_response() -> Response {
    Response::new(200)
        .header("Content-Type", "application/json")
        .bytes(b"{}".to_vec())
}

/// A short, stable label of a route for logs and metrics.
fn route_label(route: &Route) -> &'static str {
    match route {
        Route::Base => "base",
        Route::Catalog => "catalog",
        Route::TagsList { .. } => "tags",
        Route::Manifest { .. } => "manifest",
        Route::Blob { .. } => "blob",
        Route::UploadStart { .. } => "upload_start",
        Route::Upload { .. } => "upload",
        Route::Referrers { .. } => "referrers",
    }
}
