//! HTTP calls of the OCI distribution API, with authentication retries.
//!
//! Each call returns how many payload bytes it moved, or a [`Failure`] that
//! names what went wrong in a form that can be counted (a status code,
//! `connect`, `timeout`, ...). Endpoints and status codes follow the OCI
//! distribution-spec 1.1, "Pulling", "Pushing" and "Content discovery".

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION,
    RANGE, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use crate::auth::{parse_challenge, Auth, Challenge, Credential};
use crate::payload::Blob;

/// Media types a client accepts when it fetches a manifest.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// The OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Why one operation failed, in a countable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Short class used to count failures: `HTTP 404`, `connect`, ...
    pub key: String,
    /// A human explanation of one occurrence.
    pub detail: String,
}

impl Failure {
    /// A response with a status the operation did not expect.
    pub fn status(op: &str, status: StatusCode) -> Failure {
        Failure {
            key: format!("HTTP {}", status.as_u16()),
            detail: format!("{op}: unexpected status {status}"),
        }
    }

    /// A response that broke the protocol (a missing header, bad JSON).
    pub fn protocol(op: &str, what: &str) -> Failure {
        Failure {
            key: "protocol".into(),
            detail: format!("{op}: {what}"),
        }
    }

    fn transport(op: &str, error: &reqwest::Error) -> Failure {
        let key = if error.is_connect() {
            "connect"
        } else if error.is_timeout() {
            "timeout"
        } else if error.is_body() || error.is_decode() {
            "body"
        } else {
            "io"
        };
        Failure {
            key: key.into(),
            detail: format!("{op}: {}", error_chain(error)),
        }
    }
}

/// Joins an error with its sources, so "connection refused" is visible.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// How a blob is uploaded (OCI distribution-spec 1.1, "Pushing blobs").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PushMode {
    /// POST to open a session, then one PUT with the bytes.
    Monolithic,
    /// One POST with the digest and the bytes; falls back to a PUT when the
    /// registry answers 202.
    Single,
    /// POST, PATCH chunks with `Content-Range`, PUT to close.
    Chunked {
        /// Bytes per PATCH.
        chunk_bytes: u64,
    },
    /// POST, one PATCH with the whole body and no range, PUT to close.
    Stream,
}

/// One registry to measure: its address, credentials and HTTP client.
pub struct Registry {
    /// Name used in reports.
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:5000`.
    pub base: Url,
    base_text: String,
    auth: Auth,
    http: reqwest::Client,
}

/// Settings for the HTTP client of one target.
#[derive(Clone)]
pub struct ClientConfig {
    /// Accept any TLS certificate.
    pub insecure: bool,
    /// Extra certificate authorities to trust, PEM.
    pub ca_pem: Option<Vec<u8>>,
    /// Idle connections kept per host; set to the largest concurrency.
    pub max_idle_connections: usize,
    /// Limit for one request, from sending to the last body byte.
    pub request_timeout: Duration,
    /// Limit for opening a connection.
    pub connect_timeout: Duration,
}

impl Registry {
    /// Builds the client for one target.
    pub fn new(
        name: String,
        base: Url,
        auth: Auth,
        config: &ClientConfig,
    ) -> Result<Registry, reqwest::Error> {
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = &config.ca_pem {
            for ca in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(ca);
            }
        }
        let http = builder
            .danger_accept_invalid_certs(config.insecure)
            .pool_max_idle_per_host(config.max_idle_connections)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("berth-bench/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base_text = base.as_str().trim_end_matches('/').to_string();
        Ok(Registry {
            name,
            base,
            base_text,
            auth,
            http,
        })
    }

    /// `GET /v2/`: checks that the registry answers and accepts the
    /// credentials.
    pub async fn ping(&self) -> Result<(), Failure> {
        let url = format!("{}/v2/", self.base_text);
        let resp = self.send("ping", "", false, || self.http.get(&url)).await?;
        let resp = expect("ping", resp, &[StatusCode::OK]).await?;
        drain("ping", resp).await?;
        Ok(())
    }

    /// `HEAD /v2/<name>/blobs/<digest>`: whether the repository has it.
    pub async fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool, Failure> {
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base_text);
        let resp = self
            .send("blob head", repository, false, || self.http.head(&url))
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => Err(Failure::status("blob head", status)),
        }
    }

    /// Uploads a blob; returns the bytes sent.
    pub async fn push_blob(
        &self,
        repository: &str,
        blob: &Blob,
        mode: PushMode,
    ) -> Result<u64, Failure> {
        let uploads = format!("{}/v2/{repository}/blobs/uploads/", self.base_text);

        if mode == PushMode::Single {
            let url = with_query(&uploads, &[("digest", &blob.digest)])?;
            let resp = self
                .send("blob post", repository, true, || {
                    self.http
                        .post(url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .body(reqwest::Body::wrap(blob.body()))
                })
                .await?;
            if resp.status() == StatusCode::CREATED {
                drain("blob post", resp).await?;
                return Ok(blob.size());
            }
            let resp = expect("blob post", resp, &[StatusCode::ACCEPTED]).await?;
            let location = self.location("blob post", &resp)?;
            drain("blob post", resp).await?;
            return self.put_blob(repository, location, blob, true).await;
        }

        let location = self.start_upload(repository, &uploads).await?;
        match mode {
            PushMode::Monolithic | PushMode::Single => {
                self.put_blob(repository, location, blob, true).await
            }
            PushMode::Stream => {
                let next = self.patch_streamed(repository, location, blob).await?;
                self.put_blob(repository, next, blob, false).await
            }
            PushMode::Chunked { chunk_bytes } => {
                let size = blob.size();
                let step = chunk_bytes.max(1);
                let mut location = location;
                let mut start = 0;
                while start < size {
                    let end = (start + step).min(size);
                    location = self.patch(repository, location, blob, start, end).await?;
                    start = end;
                }
                self.put_blob(repository, location, blob, false).await
            }
        }
    }

    /// Mounts a blob from another repository, or uploads it when the
    /// registry declines; returns the bytes sent (0 for a mount).
    pub async fn mount_blob(
        &self,
        repository: &str,
        from: &str,
        blob: &Blob,
    ) -> Result<(u64, bool), Failure> {
        let uploads = format!("{}/v2/{repository}/blobs/uploads/", self.base_text);
        let url = with_query(&uploads, &[("mount", &blob.digest), ("from", from)])?;
        let resp = self
            .send("blob mount", repository, true, || {
                self.http.post(url.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;

        if resp.status() == StatusCode::CREATED {
            drain("blob mount", resp).await?;
            return Ok((0, true));
        }
        let resp = expect("blob mount", resp, &[StatusCode::ACCEPTED]).await?;
        let location = self.location("blob mount", &resp)?;
        drain("blob mount", resp).await?;
        let sent = self.put_blob(repository, location, blob, true).await?;
        Ok((sent, false))
    }

    /// `GET /v2/<name>/blobs/<digest>`, whole or one range; returns the
    /// bytes received.
    ///
    /// With `expected`, every byte received is compared with the blob that
    /// was pushed, so a registry that serves wrong bytes fails instead of
    /// looking fast.
    pub async fn pull_blob(
        &self,
        repository: &str,
        digest: &str,
        range: Option<(u64, u64)>,
        expected: Option<&Blob>,
    ) -> Result<u64, Failure> {
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base_text);
        let resp = self
            .send("blob get", repository, false, || {
                let req = self.http.get(&url);
                match range {
                    Some((start, end)) => req.header(RANGE, format!("bytes={start}-{}", end - 1)),
                    None => req,
                }
            })
            .await?;

        let want = match range {
            Some(_) => StatusCode::PARTIAL_CONTENT,
            None => StatusCode::OK,
        };
        let mut resp = expect("blob get", resp, &[want]).await?;

        let start = range.map_or(0, |(start, _)| start);
        let mut received = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Failure::transport("blob get", &e))?
        {
            if let Some(blob) = expected {
                if !blob.matches(start + received, &chunk) {
                    return Err(Failure {
                        key: "wrong content".into(),
                        detail: format!(
                            "blob get {digest}: bytes from {} differ from those pushed",
                            start + received
                        ),
                    });
                }
            }
            received += chunk.len() as u64;
        }

        let wanted = match (range, expected) {
            (Some((start, end)), _) => Some(end - start),
            (None, Some(blob)) => Some(blob.size()),
            (None, None) => None,
        };
        if let Some(wanted) = wanted {
            if received != wanted {
                return Err(Failure::protocol(
                    "blob get",
                    &format!("{digest}: got {received} bytes, expected {wanted}"),
                ));
            }
        }
        Ok(received)
    }

    /// `PUT /v2/<name>/manifests/<reference>`.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        manifest: Bytes,
    ) -> Result<u64, Failure> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base_text);
        let size = manifest.len() as u64;
        let resp = self
            .send("manifest put", repository, true, || {
                self.http
                    .put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(manifest.clone())
            })
            .await?;
        let resp = expect("manifest put", resp, &[StatusCode::CREATED]).await?;
        drain("manifest put", resp).await?;
        Ok(size)
    }

    /// `GET` or `HEAD /v2/<name>/manifests/<reference>`; returns the body
    /// (empty for HEAD).
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
        head: bool,
    ) -> Result<Bytes, Failure> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base_text);
        let method = if head { Method::HEAD } else { Method::GET };
        let op = if head {
            "manifest head"
        } else {
            "manifest get"
        };
        let resp = self
            .send(op, repository, false, || {
                self.http
                    .request(method.clone(), &url)
                    .header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        let resp = expect(op, resp, &[StatusCode::OK]).await?;
        resp.bytes().await.map_err(|e| Failure::transport(op, &e))
    }

    /// `GET /v2/<name>/tags/list`; returns the body.
    pub async fn tags(&self, repository: &str) -> Result<Bytes, Failure> {
        let url = format!("{}/v2/{repository}/tags/list", self.base_text);
        let resp = self
            .send("tags list", repository, false, || self.http.get(&url))
            .await?;
        let resp = expect("tags list", resp, &[StatusCode::OK]).await?;
        resp.bytes()
            .await
            .map_err(|e| Failure::transport("tags list", &e))
    }

    /// `GET /v2/_catalog?n=<page>`; returns the body of the first page.
    pub async fn catalog(&self, page: u32) -> Result<Bytes, Failure> {
        let url = format!("{}/v2/_catalog?n={page}", self.base_text);
        let resp = self
            .send("catalog", "", false, || self.http.get(&url))
            .await?;
        let resp = expect("catalog", resp, &[StatusCode::OK]).await?;
        resp.bytes()
            .await
            .map_err(|e| Failure::transport("catalog", &e))
    }

    async fn start_upload(&self, repository: &str, uploads: &str) -> Result<Url, Failure> {
        let resp = self
            .send("upload start", repository, true, || {
                self.http.post(uploads).header(CONTENT_LENGTH, 0)
            })
            .await?;
        let resp = expect("upload start", resp, &[StatusCode::ACCEPTED]).await?;
        let location = self.location("upload start", &resp)?;
        drain("upload start", resp).await?;
        Ok(location)
    }

    /// PATCH bytes `start..end` with their `Content-Range`.
    async fn patch(
        &self,
        repository: &str,
        location: Url,
        blob: &Blob,
        start: u64,
        end: u64,
    ) -> Result<Url, Failure> {
        let resp = self
            .send("upload patch", repository, true, || {
                self.http
                    .patch(location.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{start}-{}", end - 1))
                    .body(reqwest::Body::wrap(blob.range(start, end)))
            })
            .await?;
        let resp = expect("upload patch", resp, &[StatusCode::ACCEPTED]).await?;
        let next = self.location("upload patch", &resp)?;
        drain("upload patch", resp).await?;
        Ok(next)
    }

    /// PATCH the whole blob with no range and no length, chunked.
    async fn patch_streamed(
        &self,
        repository: &str,
        location: Url,
        blob: &Blob,
    ) -> Result<Url, Failure> {
        let resp = self
            .send("upload patch", repository, true, || {
                self.http
                    .patch(location.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(reqwest::Body::wrap(blob.streamed_body()))
            })
            .await?;
        let resp = expect("upload patch", resp, &[StatusCode::ACCEPTED]).await?;
        let next = self.location("upload patch", &resp)?;
        drain("upload patch", resp).await?;
        Ok(next)
    }

    async fn put_blob(
        &self,
        repository: &str,
        location: Url,
        blob: &Blob,
        with_body: bool,
    ) -> Result<u64, Failure> {
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", &blob.digest);
        let resp = self
            .send("upload put", repository, true, || {
                let req = self
                    .http
                    .put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream");
                if with_body {
                    req.body(reqwest::Body::wrap(blob.body()))
                } else {
                    req.header(CONTENT_LENGTH, 0)
                }
            })
            .await?;
        let resp = expect("upload put", resp, &[StatusCode::CREATED]).await?;
        drain("upload put", resp).await?;
        Ok(blob.size())
    }

    fn location(&self, op: &str, resp: &Response) -> Result<Url, Failure> {
        let value = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Failure::protocol(op, "no Location header"))?;
        self.base
            .join(value)
            .map_err(|_| Failure::protocol(op, "bad Location header"))
    }

    /// Sends a request, answering an authentication challenge once.
    ///
    /// `build` makes a fresh request each time, so a retry sends the body
    /// again (bodies are shared slices, so this copies nothing).
    async fn send<F>(
        &self,
        op: &str,
        repository: &str,
        write: bool,
        build: F,
    ) -> Result<Response, Failure>
    where
        F: Fn() -> RequestBuilder,
    {
        let mut credential = self.auth.credential(repository, write);

        for attempt in 0..2 {
            let req = with_credential(build(), credential.as_ref());
            let resp = req.send().await.map_err(|e| Failure::transport(op, &e))?;
            if resp.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(resp);
            }

            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            drain(op, resp).await?;

            credential = match challenge {
                Some(Challenge::Basic) => {
                    let basic = self.auth.basic().ok_or_else(|| Failure {
                        key: "HTTP 401".into(),
                        detail: format!("{op}: registry wants credentials"),
                    })?;
                    self.auth.use_basic();
                    Some(basic)
                }
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }) => {
                    let sent = match &credential {
                        Some(Credential::Bearer(t)) => Some(t.as_str()),
                        _ => None,
                    };
                    let token = self
                        .token(op, &realm, service, scope, repository, write, sent)
                        .await?;
                    Some(Credential::Bearer(token))
                }
                None => {
                    return Err(Failure::status(op, StatusCode::UNAUTHORIZED));
                }
            };
        }

        Err(Failure::status(op, StatusCode::UNAUTHORIZED))
    }

    /// Fetches a token from the realm (Docker token authentication spec),
    /// unless the cache holds one for the scope that was not just refused.
    #[allow(clippy::too_many_arguments)]
    async fn token(
        &self,
        op: &str,
        realm: &str,
        service: Option<String>,
        scope: Option<String>,
        repository: &str,
        write: bool,
        refused: Option<&str>,
    ) -> Result<String, Failure> {
        let scope_key = scope.clone().unwrap_or_default();
        if let Some(cached) = self.auth.token_for_scope(&scope_key) {
            if Some(cached.as_str()) != refused {
                return Ok(cached);
            }
        }

        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = &service {
            query.push(("service", service));
        }
        if let Some(scope) = &scope {
            query.push(("scope", scope));
        }
        let url = with_query(realm, &query)?;

        let mut req = self.http.get(url);
        if let Some(Credential::Basic(user, password)) = self.auth.basic() {
            req = req.basic_auth(user, Some(password));
        }
        let resp = req.send().await.map_err(|e| Failure::transport(op, &e))?;
        if resp.status() != StatusCode::OK {
            return Err(Failure {
                key: format!("token HTTP {}", resp.status().as_u16()),
                detail: format!("{op}: token endpoint {realm} said {}", resp.status()),
            });
        }

        let body = resp.bytes().await.map_err(|e| Failure::transport(op, &e))?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|_| Failure::protocol(op, "token endpoint sent bad JSON"))?;
        let value = answer
            .token
            .or(answer.access_token)
            .ok_or_else(|| Failure::protocol(op, "token endpoint sent no token"))?;

        let expires = answer.expires_in.map(Duration::from_secs);
        self.auth
            .store_token(&scope_key, repository, write, value.clone(), expires);
        Ok(value)
    }
}

/// The token endpoint's JSON answer.
#[derive(serde::Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

fn with_credential(req: RequestBuilder, credential: Option<&Credential>) -> RequestBuilder {
    match credential {
        Some(Credential::Basic(user, password)) => req.basic_auth(user, Some(password)),
        Some(Credential::Bearer(token)) => {
            match HeaderValue::from_str(&format!("Bearer {token}")) {
                Ok(value) => req.header(AUTHORIZATION, value),
                Err(_) => req,
            }
        }
        None => req,
    }
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> Result<Url, Failure> {
    let mut url =
        Url::parse(base).map_err(|_| Failure::protocol("url", &format!("bad URL {base}")))?;
    if !pairs.is_empty() {
        let mut query = url.query_pairs_mut();
        for (key, value) in pairs {
            query.append_pair(key, value);
        }
    }
    Ok(url)
}

/// Most bytes of an unexpected response's body kept for the report.
const ERROR_BODY_BYTES: usize = 300;

/// Passes the response on when its status is allowed; otherwise fails with
/// the status and the start of the body (the registry's error code).
async fn expect(op: &str, mut resp: Response, allowed: &[StatusCode]) -> Result<Response, Failure> {
    if allowed.contains(&resp.status()) {
        return Ok(resp);
    }

    let mut failure = Failure::status(op, resp.status());
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY_BYTES);
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if !text.is_empty() {
        failure.detail.push_str(": ");
        failure.detail.push_str(text);
    }
    Err(failure)
}

/// Reads a response body to its end without keeping it; returns its length.
async fn drain(op: &str, mut resp: Response) -> Result<u64, Failure> {
    let mut received = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| Failure::transport(op, &e))? {
        received += chunk.len() as u64;
    }
    Ok(received)
}
