//! Metrics kept per core and merged when `/metrics` is scraped.
//!
//! Each executor owns one [`CoreMetrics`] and records into it with plain
//! integer adds: no atomics, no locks, nothing shared. A scrape asks every
//! executor for a [`MetricsSnapshot`] (a `Send` copy), merges them with
//! [`MetricsSnapshot::merge`], and [`render`]s the result, together with
//! per-shard [`StorageFigures`], in the Prometheus text exposition format
//! 0.0.4.
//!
//! Label values are bounded: routes are `&'static str` names chosen by
//! the router, methods outside the registry's set count as `OTHER`, and
//! statuses are three-digit codes. A client cannot grow the series count.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// Upper bounds, in seconds, of the request latency histogram buckets.
pub const REQUEST_BUCKETS_SECS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Upper bounds, in seconds, of the fdatasync latency histogram buckets.
pub const FDATASYNC_BUCKETS_SECS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How an upload session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UploadOutcome {
    /// The blob was committed.
    Completed,
    /// The client cancelled it (`DELETE`).
    Cancelled,
    /// It sat idle past the expiry and was swept.
    Expired,
    /// It failed: a digest mismatch, a storage error, a broken body.
    Failed,
}

impl UploadOutcome {
    fn label(self) -> &'static str {
        match self {
            UploadOutcome::Completed => "completed",
            UploadOutcome::Cancelled => "cancelled",
            UploadOutcome::Expired => "expired",
            UploadOutcome::Failed => "failed",
        }
    }
}

/// One executor's metrics; keep it in an `Rc` on that executor.
///
/// Every method takes `&self` and is a few integer adds. The type is not
/// `Sync`, so it cannot be shared across cores by mistake.
#[derive(Debug)]
pub struct CoreMetrics {
    figures: RefCell<MetricsSnapshot>,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        CoreMetrics::new()
    }
}

impl CoreMetrics {
    /// Empty metrics for one executor.
    pub fn new() -> CoreMetrics {
        let figures = MetricsSnapshot {
            executors: 1,
            ..MetricsSnapshot::default()
        };
        CoreMetrics {
            figures: RefCell::new(figures),
        }
    }

    /// Records one answered request.
    ///
    /// `route` names the API endpoint (`"blob_get"`, `"manifest_put"`),
    /// never the raw path; `method` is the request method as received.
    pub fn request(
        &self,
        route: &'static str,
        method: &str,
        status: u16,
        duration: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        self.update(|m| {
            let figures = m.route_mut(route);
            figures.count(method_label(method), status, 1);
            figures.duration.record(duration);
            add(&mut figures.bytes_in, bytes_in);
            add(&mut figures.bytes_out, bytes_out);
        });
    }

    /// Records the start of an upload session.
    pub fn upload_started(&self) {
        self.update(|m| {
            add(&mut m.uploads_started, 1);
            m.uploads_in_progress = m.uploads_in_progress.saturating_add(1);
        });
    }

    /// Records the end of an upload session started on this executor.
    pub fn upload_finished(&self, outcome: UploadOutcome) {
        self.update(|m| {
            add(m.uploads_finished.entry(outcome).or_default(), 1);
            m.uploads_in_progress = m.uploads_in_progress.saturating_sub(1);
        });
    }

    /// Records an accepted connection.
    pub fn connection_opened(&self) {
        self.update(|m| {
            add(&mut m.connections_accepted, 1);
            m.connections_open = m.connections_open.saturating_add(1);
        });
    }

    /// Records a closed connection that was opened on this executor.
    pub fn connection_closed(&self) {
        self.update(|m| {
            m.connections_open = m.connections_open.saturating_sub(1);
        });
    }

    /// Records a connection refused because the executor was full.
    pub fn connection_refused(&self) {
        self.update(|m| add(&mut m.connections_refused, 1));
    }

    /// Records one `fdatasync` and how long it took.
    pub fn fdatasync(&self, duration: Duration) {
        self.update(|m| m.fdatasync.record(duration));
    }

    /// A copy of everything recorded so far, to send to the scraper.
    pub fn snapshot(&self) -> MetricsSnapshot {
        match self.figures.try_borrow() {
            Ok(figures) => figures.clone(),
            // Unreachable: no method holds the borrow across a call out.
            Err(_) => MetricsSnapshot::default(),
        }
    }

    fn update(&self, change: impl FnOnce(&mut MetricsSnapshot)) {
        // NOTE: the borrow cannot be held elsewhere (no method calls out
        // while holding it); should that change, a lost sample beats a
        // panic on the request path.
        if let Ok(mut figures) = self.figures.try_borrow_mut() {
            change(&mut figures);
        }
    }
}

/// The metrics of one or more executors, merged; `Send` and `Clone`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsSnapshot {
    executors: u64,
    /// One entry per route seen, in first-seen order; a route list is
    /// short, so a scan beats a map on the request path.
    routes: Vec<RouteFigures>,
    uploads_started: u64,
    uploads_finished: BTreeMap<UploadOutcome, u64>,
    uploads_in_progress: i64,
    connections_accepted: u64,
    connections_open: i64,
    connections_refused: u64,
    fdatasync: Histogram,
}

impl MetricsSnapshot {
    /// Adds `other`'s counts into `self`.
    pub fn merge(&mut self, other: &MetricsSnapshot) {
        add(&mut self.executors, other.executors);
        for theirs in &other.routes {
            let mine = self.route_mut(theirs.route);
            for &(method, status, n) in &theirs.outcomes {
                mine.count(method, status, n);
            }
            mine.duration.merge(&theirs.duration);
            add(&mut mine.bytes_in, theirs.bytes_in);
            add(&mut mine.bytes_out, theirs.bytes_out);
        }

        add(&mut self.uploads_started, other.uploads_started);
        merge_counts(&mut self.uploads_finished, &other.uploads_finished);
        self.uploads_in_progress = self
            .uploads_in_progress
            .saturating_add(other.uploads_in_progress);

        add(&mut self.connections_accepted, other.connections_accepted);
        add(&mut self.connections_refused, other.connections_refused);
        self.connections_open = self.connections_open.saturating_add(other.connections_open);

        self.fdatasync.merge(&other.fdatasync);
    }

    /// Requests counted for `route`, `method` and `status`.
    pub fn requests(&self, route: &str, method: &str, status: u16) -> u64 {
        self.routes
            .iter()
            .filter(|f| f.route == route)
            .flat_map(|f| &f.outcomes)
            .filter(|(m, s, _)| *m == method && *s == status)
            .map(|(_, _, n)| *n)
            .sum()
    }

    /// The figures of `route`, added on first sight.
    fn route_mut(&mut self, route: &'static str) -> &mut RouteFigures {
        // Callers pass the router's constants, so the pointer usually
        // matches; equal text from elsewhere still finds its entry.
        let at = self
            .routes
            .iter()
            .position(|f| std::ptr::eq(f.route, route))
            .or_else(|| self.routes.iter().position(|f| f.route == route));
        let at = match at {
            Some(at) => at,
            None => {
                self.routes.push(RouteFigures::new(route));
                self.routes.len() - 1
            }
        };
        &mut self.routes[at]
    }

    /// The routes sorted by name, for stable output.
    fn sorted_routes(&self) -> Vec<&RouteFigures> {
        let mut routes: Vec<&RouteFigures> = self.routes.iter().collect();
        routes.sort_by_key(|f| f.route);
        routes
    }
}

/// One shard's storage figures, gathered by its owning executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StorageFigures {
    /// The shard's number.
    pub shard: u32,
    /// Segment files, sealed and open.
    pub segments: u64,
    /// Bytes in those segments.
    pub bytes: u64,
    /// Bytes still referenced by the index.
    pub live_bytes: u64,
    /// Entries in the shard's part of the blob index.
    pub index_entries: u64,
    /// Dead bytes given back to the file system since the start.
    pub reclaimed_bytes: u64,
    /// Segments deleted since the start because nothing in them was live.
    pub segments_deleted: u64,
}

/// Renders the Prometheus text exposition (format 0.0.4).
///
/// `recovery_secs` is how long start-up recovery took; `ready` is what
/// `/readyz` answers.
pub fn render(
    merged: &MetricsSnapshot,
    storage: &[StorageFigures],
    recovery_secs: f64,
    ready: bool,
) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let m = merged;

    family(&mut out, "berth_build_info", "gauge", "berth's version.");
    let version = escape(env!("CARGO_PKG_VERSION"));
    line(
        &mut out,
        "berth_build_info",
        &format!("version=\"{version}\""),
        1u64,
    );

    family(
        &mut out,
        "berth_ready",
        "gauge",
        "1 once recovered and writable.",
    );
    line(&mut out, "berth_ready", "", u64::from(ready));

    family(
        &mut out,
        "berth_recovery_duration_seconds",
        "gauge",
        "Time taken by start-up recovery.",
    );
    line(
        &mut out,
        "berth_recovery_duration_seconds",
        "",
        recovery_secs,
    );

    family(
        &mut out,
        "berth_executors",
        "gauge",
        "Executors whose figures are included.",
    );
    line(&mut out, "berth_executors", "", m.executors);

    render_requests(&mut out, m);
    render_connections(&mut out, m);
    render_uploads(&mut out, m);

    family(
        &mut out,
        "berth_fdatasync_duration_seconds",
        "histogram",
        "Latency of fdatasync on segment and metadata files.",
    );
    histogram(
        &mut out,
        "berth_fdatasync_duration_seconds",
        "",
        &m.fdatasync,
    );

    render_storage(&mut out, storage);
    out
}

fn render_requests(out: &mut String, m: &MetricsSnapshot) {
    family(
        out,
        "berth_http_requests_total",
        "counter",
        "HTTP requests answered, by route, method and status.",
    );
    let routes = m.sorted_routes();
    for figures in &routes {
        let mut outcomes = figures.outcomes.clone();
        outcomes.sort_unstable();
        for (method, status, count) in outcomes {
            let labels = format!(
                "route=\"{}\",method=\"{method}\",status=\"{status}\"",
                escape(figures.route),
            );
            line(out, "berth_http_requests_total", &labels, count);
        }
    }

    let name = "berth_http_request_duration_seconds";
    family(
        out,
        name,
        "histogram",
        "Time from a request's first byte to its response's last, by route.",
    );
    for figures in &routes {
        let labels = format!("route=\"{}\"", escape(figures.route));
        histogram(out, name, &labels, &figures.duration);
    }

    type Pick = fn(&RouteFigures) -> u64;
    let bytes: [(&str, &str, Pick); 2] = [
        (
            "berth_http_received_bytes_total",
            "Request body bytes read, by route.",
            |f| f.bytes_in,
        ),
        (
            "berth_http_sent_bytes_total",
            "Response body bytes written, by route.",
            |f| f.bytes_out,
        ),
    ];
    for (name, help, pick) in bytes {
        family(out, name, "counter", help);
        for figures in &routes {
            let labels = format!("route=\"{}\"", escape(figures.route));
            line(out, name, &labels, pick(figures));
        }
    }
}

fn render_connections(out: &mut String, m: &MetricsSnapshot) {
    family(
        out,
        "berth_connections_open",
        "gauge",
        "Client connections open now.",
    );
    line(out, "berth_connections_open", "", m.connections_open);

    family(
        out,
        "berth_connections_accepted_total",
        "counter",
        "Client connections accepted.",
    );
    line(
        out,
        "berth_connections_accepted_total",
        "",
        m.connections_accepted,
    );

    family(
        out,
        "berth_connections_refused_total",
        "counter",
        "Client connections refused at the per-core limit.",
    );
    line(
        out,
        "berth_connections_refused_total",
        "",
        m.connections_refused,
    );
}

fn render_uploads(out: &mut String, m: &MetricsSnapshot) {
    family(
        out,
        "berth_uploads_in_progress",
        "gauge",
        "Blob upload sessions open now.",
    );
    line(out, "berth_uploads_in_progress", "", m.uploads_in_progress);

    family(
        out,
        "berth_uploads_started_total",
        "counter",
        "Blob upload sessions started.",
    );
    line(out, "berth_uploads_started_total", "", m.uploads_started);

    family(
        out,
        "berth_uploads_finished_total",
        "counter",
        "Blob upload sessions ended, by outcome.",
    );
    for (outcome, n) in &m.uploads_finished {
        let labels = format!("outcome=\"{}\"", outcome.label());
        line(out, "berth_uploads_finished_total", &labels, *n);
    }
}

fn render_storage(out: &mut String, storage: &[StorageFigures]) {
    type Pick = fn(&StorageFigures) -> u64;
    let gauges: [(&str, &str, Pick); 4] = [
        ("berth_storage_segments", "Segment files, by shard.", |s| {
            s.segments
        }),
        (
            "berth_storage_bytes",
            "Bytes in segment files, by shard.",
            |s| s.bytes,
        ),
        (
            "berth_storage_live_bytes",
            "Bytes still referenced, by shard.",
            |s| s.live_bytes,
        ),
        (
            "berth_storage_index_entries",
            "Blob index entries, by shard.",
            |s| s.index_entries,
        ),
    ];
    let counters: [(&str, &str, Pick); 2] = [
        (
            "berth_storage_reclaimed_bytes_total",
            "Dead bytes given back to the file system, by shard.",
            |s| s.reclaimed_bytes,
        ),
        (
            "berth_storage_segments_deleted_total",
            "Segments deleted because nothing in them was live, by shard.",
            |s| s.segments_deleted,
        ),
    ];
    let families = gauges
        .iter()
        .map(|g| (g, "gauge"))
        .chain(counters.iter().map(|c| (c, "counter")));
    for ((name, help, pick), kind) in families {
        family(out, name, kind, help);
        for figures in storage {
            let labels = format!("shard=\"{}\"", figures.shard);
            line(out, name, &labels, pick(figures));
        }
    }
}

/// Everything counted for one route.
#[derive(Debug, Clone, PartialEq)]
struct RouteFigures {
    route: &'static str,
    /// Requests by method label and status; a route sees a handful.
    outcomes: Vec<(&'static str, u16, u64)>,
    duration: Histogram,
    bytes_in: u64,
    bytes_out: u64,
}

impl RouteFigures {
    fn new(route: &'static str) -> RouteFigures {
        RouteFigures {
            route,
            outcomes: Vec::new(),
            duration: Histogram::new(REQUEST_BUCKETS_SECS),
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    fn count(&mut self, method: &'static str, status: u16, n: u64) {
        let found = self
            .outcomes
            .iter_mut()
            .find(|(m, s, _)| *s == status && *m == method);
        match found {
            Some((_, _, count)) => add(count, n),
            None => self.outcomes.push((method, status, n)),
        }
    }
}

/// A fixed-bucket latency histogram.
#[derive(Debug, Clone, PartialEq)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket, not cumulative; one more than `bounds`
    /// for the `+Inf` bucket.
    counts: Vec<u64>,
    sum_secs: f64,
    count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(FDATASYNC_BUCKETS_SECS)
    }
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum_secs: 0.0,
            count: 0,
        }
    }

    fn record(&mut self, duration: Duration) {
        let secs = duration.as_secs_f64();
        let bucket = self.bounds.partition_point(|bound| *bound < secs);
        if let Some(n) = self.counts.get_mut(bucket) {
            add(n, 1);
        }
        self.sum_secs += secs;
        add(&mut self.count, 1);
    }

    fn merge(&mut self, other: &Histogram) {
        // Histograms of one family share their bounds; a mismatch would
        // be a programming error, and the sum and count still add up.
        if self.bounds == other.bounds {
            for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
                add(mine, *theirs);
            }
        }
        self.sum_secs += other.sum_secs;
        add(&mut self.count, other.count);
    }
}

/// The method as a bounded label value.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"];
    KNOWN
        .iter()
        .find(|known| **known == method)
        .copied()
        .unwrap_or("OTHER")
}

fn add(counter: &mut u64, n: u64) {
    *counter = counter.saturating_add(n);
}

fn merge_counts<K: Ord + Copy>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (key, n) in from {
        add(into.entry(*key).or_default(), *n);
    }
}

/// Writes a family's HELP and TYPE lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes one sample line; `labels` is empty or `a="x",b="y"`.
fn line(out: &mut String, name: &str, labels: &str, value: impl Value) {
    if labels.is_empty() {
        let _ = write!(out, "{name} ");
    } else {
        let _ = write!(out, "{name}{{{labels}}} ");
    }
    value.write_to(out);
    out.push('\n');
}

/// Writes a histogram's cumulative buckets, sum and count.
fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    let bucket = format!("{name}_bucket");

    let mut cumulative = 0u64;
    for (bound, n) in h.bounds.iter().zip(&h.counts) {
        cumulative = cumulative.saturating_add(*n);
        let le = format!("{labels}{sep}le=\"{bound}\"");
        line(out, &bucket, &le, cumulative);
    }
    line(out, &bucket, &format!("{labels}{sep}le=\"+Inf\""), h.count);
    line(out, &format!("{name}_sum"), labels, h.sum_secs);
    line(out, &format!("{name}_count"), labels, h.count);
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value in the text format.
trait Value {
    fn write_to(&self, out: &mut String);
}

impl Value for u64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for i64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn write_to(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_parse::{Sample, Scrape, Value as Parsed};
    use std::collections::HashSet;

    fn parse(text: &str) -> Vec<Sample> {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        Scrape::parse(lines).unwrap().samples
    }

    fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
        samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    }

    fn scalar(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        match find(samples, name, labels).map(|s| &s.value) {
            Some(Parsed::Counter(v) | Parsed::Gauge(v) | Parsed::Untyped(v)) => *v,
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }

    fn buckets(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        match find(samples, name, labels).map(|s| &s.value) {
            Some(Parsed::Histogram(h)) => h.iter().map(|b| (b.less_than, b.count)).collect(),
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }

    fn storage() -> Vec<StorageFigures> {
        vec![
            StorageFigures {
                shard: 0,
                segments: 3,
                bytes: 768 << 20,
                live_bytes: 500 << 20,
                index_entries: 1200,
                reclaimed_bytes: 7 << 20,
                segments_deleted: 2,
            },
            StorageFigures {
                shard: 1,
                segments: 1,
                bytes: 4096,
                live_bytes: 4096,
                index_entries: 1,
                reclaimed_bytes: 0,
                segments_deleted: 0,
            },
        ]
    }

    #[test]
    fn counters_move_after_recording() {
        let core = CoreMetrics::new();
        let before = parse(&render(&core.snapshot(), &[], 0.0, false));
        let route = [("route", "blob_get")];
        assert!(find(&before, "berth_http_requests_total", &route).is_none());
        assert_eq!(scalar(&before, "berth_ready", &[]), 0.0);

        let ms = Duration::from_millis;
        core.request("blob_get", "GET", 200, ms(3), 0, 1000);
        core.request("blob_get", "GET", 200, ms(40), 0, 24);
        core.request("blob_get", "GET", 404, ms(1), 0, 0);
        core.request("blob_put", "BREW", 405, ms(1), 10, 0);
        core.upload_started();
        core.upload_started();
        core.upload_finished(UploadOutcome::Completed);
        core.connection_opened();
        core.connection_opened();
        core.connection_closed();
        core.connection_refused();
        core.fdatasync(Duration::from_micros(300));

        let text = render(&core.snapshot(), &storage(), 1.5, true);
        let after = parse(&text);
        let ok = [("route", "blob_get"), ("method", "GET"), ("status", "200")];
        assert_eq!(scalar(&after, "berth_http_requests_total", &ok), 2.0);
        let missing = [("route", "blob_get"), ("status", "404")];
        assert_eq!(scalar(&after, "berth_http_requests_total", &missing), 1.0);
        let odd = [("route", "blob_put"), ("method", "OTHER")];
        assert_eq!(scalar(&after, "berth_http_requests_total", &odd), 1.0);

        let sent = scalar(&after, "berth_http_sent_bytes_total", &route);
        assert_eq!(sent, 1024.0);
        let put = [("route", "blob_put")];
        let received = scalar(&after, "berth_http_received_bytes_total", &put);
        assert_eq!(received, 10.0);

        let latency = "berth_http_request_duration_seconds";
        let b = buckets(&after, latency, &route);
        assert_eq!(b.len(), REQUEST_BUCKETS_SECS.len() + 1);
        assert_eq!(b.iter().find(|(le, _)| *le == 0.001).unwrap().1, 1.0);
        assert_eq!(b.iter().find(|(le, _)| *le == 0.005).unwrap().1, 2.0);
        assert_eq!(b.iter().find(|(le, _)| *le == 0.05).unwrap().1, 3.0);
        assert_eq!(b.last().unwrap(), &(f64::INFINITY, 3.0));
        let count = scalar(&after, &format!("{latency}_count"), &route);
        assert_eq!(count, 3.0);
        let sum = scalar(&after, &format!("{latency}_sum"), &route);
        assert!((sum - 0.044).abs() < 1e-9, "{sum}");

        assert_eq!(scalar(&after, "berth_uploads_in_progress", &[]), 1.0);
        assert_eq!(scalar(&after, "berth_uploads_started_total", &[]), 2.0);
        let completed = [("outcome", "completed")];
        let finished = "berth_uploads_finished_total";
        assert_eq!(scalar(&after, finished, &completed), 1.0);
        assert_eq!(scalar(&after, "berth_connections_open", &[]), 1.0);
        assert_eq!(scalar(&after, "berth_connections_accepted_total", &[]), 2.0);
        assert_eq!(scalar(&after, "berth_connections_refused_total", &[]), 1.0);

        let sync = buckets(&after, "berth_fdatasync_duration_seconds", &[]);
        assert_eq!(sync.iter().find(|(le, _)| *le == 0.00025).unwrap().1, 0.0);
        assert_eq!(sync.iter().find(|(le, _)| *le == 0.0005).unwrap().1, 1.0);

        let shard0 = [("shard", "0")];
        assert_eq!(scalar(&after, "berth_storage_segments", &shard0), 3.0);
        let live = scalar(&after, "berth_storage_live_bytes", &shard0);
        assert_eq!(live, (500u64 << 20) as f64);
        let shard1 = [("shard", "1")];
        assert_eq!(scalar(&after, "berth_storage_index_entries", &shard1), 1.0);
        let reclaimed = scalar(&after, "berth_storage_reclaimed_bytes_total", &shard0);
        assert_eq!(reclaimed, (7u64 << 20) as f64);
        let deleted = "berth_storage_segments_deleted_total";
        assert_eq!(scalar(&after, deleted, &shard0), 2.0);
        assert_eq!(scalar(&after, deleted, &shard1), 0.0);

        assert_eq!(scalar(&after, "berth_recovery_duration_seconds", &[]), 1.5);
        assert_eq!(scalar(&after, "berth_ready", &[]), 1.0);
        assert_eq!(scalar(&after, "berth_executors", &[]), 1.0);
    }

    #[test]
    fn snapshots_of_several_cores_merge_by_adding() {
        let cores: Vec<CoreMetrics> = (0..3).map(|_| CoreMetrics::new()).collect();
        for (i, core) in cores.iter().enumerate() {
            for _ in 0..=i {
                let d = Duration::from_millis(2);
                core.request("manifest_get", "GET", 200, d, 0, 100);
            }
            core.connection_opened();
            core.fdatasync(Duration::from_millis(1));
        }
        // A connection opened on one core and counted closed on another
        // still nets out in the merged gauge.
        cores[0].connection_closed();

        let mut merged = MetricsSnapshot::default();
        for core in &cores {
            merged.merge(&core.snapshot());
        }
        assert_eq!(merged.requests("manifest_get", "GET", 200), 6);

        let samples = parse(&render(&merged, &[], 0.0, true));
        let route = [("route", "manifest_get")];
        let sent = scalar(&samples, "berth_http_sent_bytes_total", &route);
        assert_eq!(sent, 600.0);
        assert_eq!(scalar(&samples, "berth_connections_open", &[]), 2.0);
        assert_eq!(scalar(&samples, "berth_executors", &[]), 3.0);
        let name = "berth_fdatasync_duration_seconds_count";
        assert_eq!(scalar(&samples, name, &[]), 3.0);
    }

    #[test]
    fn every_sample_belongs_to_a_declared_family() {
        let core = CoreMetrics::new();
        core.request("catalog", "GET", 200, Duration::ZERO, 0, 0);
        core.upload_finished(UploadOutcome::Expired);
        let text = render(&core.snapshot(), &storage(), 0.25, true);

        let mut declared = HashSet::new();
        let mut helped = HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# HELP ") {
                helped.insert(rest.split(' ').next().unwrap().to_owned());
            } else if let Some(rest) = l.strip_prefix("# TYPE ") {
                let mut words = rest.split(' ');
                let name = words.next().unwrap().to_owned();
                let kind = words.next().unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind));
                assert!(helped.contains(&name), "TYPE before HELP: {name}");
                assert!(declared.insert(name.clone()), "twice: {name}");
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{name}");
                }
            } else {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(name.starts_with("berth_"), "{l}");
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|f| declared.contains(*f))
                    .unwrap_or(name);
                assert!(declared.contains(family), "undeclared: {l}");
                let value = l.rsplit(' ').next().unwrap();
                let ok = value.parse::<f64>().is_ok() || value == "+Inf";
                assert!(ok, "bad value: {l}");
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn snapshots_and_figures_cross_threads() {
        fn sendable<T: Send + Clone + 'static>() {}
        sendable::<MetricsSnapshot>();
        sendable::<StorageFigures>();
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("get"), "OTHER");
        assert_eq!(method_label("PROPFIND"), "OTHER");
    }
}
