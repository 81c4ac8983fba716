//! Routing and responses of the admin listener.
//!
//! The admin listener (`server.admin_listen`, `127.0.0.1:5001` by
//! default) serves three paths, apart from the registry API:
//!
//! - `/metrics`: the Prometheus text exposition;
//! - `/healthz`: 200 while the process and every executor are alive;
//! - `/readyz`: 200 once recovery is done and the store can write.
//!
//! This module only decides; the HTTP plumbing reads the request, calls
//! [`admin_response`] and writes what it returns. For `HEAD`, write the
//! headers (with the body's length) and no body.

/// The content type of the Prometheus text exposition format 0.0.4.
pub use crate::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;

/// The content type of the health answers and errors.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// The methods every admin path accepts, for an `Allow` header.
pub const ALLOWED_METHODS: &str = "GET, HEAD";

/// Which admin endpoint a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRoute {
    /// `/metrics`.
    Metrics,
    /// `/healthz`.
    Healthz,
    /// `/readyz`.
    Readyz,
    /// Anything else.
    NotFound,
}

/// Maps a request target to its endpoint; a query string is ignored.
pub fn admin_route(path: &str) -> AdminRoute {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    match path {
        "/metrics" => AdminRoute::Metrics,
        "/healthz" => AdminRoute::Healthz,
        "/readyz" => AdminRoute::Readyz,
        _ => AdminRoute::NotFound,
    }
}

/// What the server knows about itself when a health check arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminStatus {
    /// Every executor answered its last liveness check.
    pub alive: bool,
    /// Recovery finished and the store accepts writes.
    pub ready: bool,
}

/// A complete answer for the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// `Allow` header value, on a 405.
    pub allow: Option<&'static str>,
    /// The body; for `HEAD`, only its length is sent.
    pub body: String,
}

/// Answers `method` on `path`.
///
/// `metrics` renders the exposition; it runs only for `/metrics`, so a
/// health check never pays for a scrape.
pub fn admin_response(
    method: &str,
    path: &str,
    status: AdminStatus,
    metrics: impl FnOnce() -> String,
) -> AdminResponse {
    let route = admin_route(path);
    if route == AdminRoute::NotFound {
        return text(404, "not found\n");
    }
    if method != "GET" && method != "HEAD" {
        return AdminResponse {
            allow: Some(ALLOWED_METHODS),
            ..text(405, "method not allowed\n")
        };
    }

    match route {
        AdminRoute::Metrics => AdminResponse {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            allow: None,
            body: metrics(),
        },
        AdminRoute::Healthz if status.alive => text(200, "ok\n"),
        AdminRoute::Healthz => text(503, "an executor is not responding\n"),
        AdminRoute::Readyz if status.ready => text(200, "ready\n"),
        AdminRoute::Readyz => text(503, "not ready\n"),
        AdminRoute::NotFound => text(404, "not found\n"),
    }
}

fn text(status: u16, body: &str) -> AdminResponse {
    AdminResponse {
        status,
        content_type: TEXT_CONTENT_TYPE,
        allow: None,
        body: body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: AdminStatus = AdminStatus {
        alive: true,
        ready: true,
    };
    const RECOVERING: AdminStatus = AdminStatus {
        alive: true,
        ready: false,
    };
    const STALLED: AdminStatus = AdminStatus {
        alive: false,
        ready: true,
    };

    #[test]
    fn paths_map_to_routes() {
        let table = [
            ("/metrics", AdminRoute::Metrics),
            ("/metrics?name[]=x", AdminRoute::Metrics),
            ("/healthz", AdminRoute::Healthz),
            ("/readyz", AdminRoute::Readyz),
            ("/readyz/", AdminRoute::NotFound),
            ("/", AdminRoute::NotFound),
            ("", AdminRoute::NotFound),
            ("/v2/", AdminRoute::NotFound),
            ("/METRICS", AdminRoute::NotFound),
        ];
        for (path, want) in table {
            assert_eq!(admin_route(path), want, "{path:?}");
        }
    }

    #[test]
    fn answers_follow_route_method_and_status() {
        // (method, path, status, code, body starts with)
        let table = [
            ("GET", "/healthz", UP, 200, "ok"),
            ("HEAD", "/healthz", UP, 200, "ok"),
            ("GET", "/healthz", STALLED, 503, "an executor"),
            ("GET", "/healthz", RECOVERING, 200, "ok"),
            ("GET", "/readyz", UP, 200, "ready"),
            ("GET", "/readyz", RECOVERING, 503, "not ready"),
            ("GET", "/metrics", RECOVERING, 200, "# HELP"),
            ("POST", "/metrics", UP, 405, "method"),
            ("DELETE", "/readyz", UP, 405, "method"),
            ("GET", "/nope", UP, 404, "not found"),
            ("POST", "/nope", UP, 404, "not found"),
        ];
        for (method, path, status, code, body) in table {
            let r = admin_response(method, path, status, || "# HELP x y\n".to_owned());
            assert_eq!(r.status, code, "{method} {path}");
            assert!(r.body.starts_with(body), "{method} {path}: {r:?}");
            assert_eq!(r.allow.is_some(), code == 405, "{method} {path}");
        }
    }

    #[test]
    fn metrics_render_only_when_asked() {
        let mut rendered = 0;
        admin_response("GET", "/healthz", UP, || {
            rendered += 1;
            String::new()
        });
        assert_eq!(rendered, 0);

        let r = admin_response("GET", "/metrics", UP, || {
            rendered += 1;
            "berth_ready 1\n".to_owned()
        });
        assert_eq!(rendered, 1);
        assert_eq!(r.content_type, METRICS_CONTENT_TYPE);
        assert_eq!(r.body, "berth_ready 1\n");
    }
}
