//! berth's configuration: one TOML file, every key optional.
//!
//! With no file at all berth listens on `127.0.0.1:5000`, keeps its data
//! under `./berth-data` and logs plain text at `info`. A file overrides any
//! key. Unknown keys and bad values are refused before anything starts,
//! and the error names the file, the line when known, the dotted key and
//! the reason.
//!
//! Loading is two steps: [`Config::from_toml_str`] parses and checks the
//! types, then [`Config::validate`] checks every value against its limits.
//! [`Config::load`] does both. Validation does no I/O, so
//! `berth check-config` can run on a machine other than the server.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One mebibyte, for sizes written below.
const MIB: u64 = 1024 * 1024;

/// The most listen addresses a server may bind.
pub const MAX_LISTEN_ADDRESSES: usize = 16;

/// The most executors (threads) berth will start.
pub const MAX_EXECUTORS: usize = 1024;

/// The most shards a new data directory may be created with.
pub const MAX_SHARDS: u32 = 4096;

/// The smallest segment size the storage engine accepts.
pub const MIN_SEGMENT_BYTES: u64 = 2 * MIB;

/// Segment sizes must be a multiple of this, for direct I/O.
pub const SEGMENT_ALIGN_BYTES: u64 = 4096;

/// The smallest manifest size limit allowed.
///
/// OCI distribution-spec 1.1, "Pushing Manifests": registries SHOULD
/// accept manifests of at least 4 MiB.
pub const MIN_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// berth's whole configuration, as read from `berth.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen addresses, executors and the admin listener.
    pub server: ServerConfig,
    /// Where and how blobs are stored.
    pub storage: StorageConfig,
    /// HTTP limits and timeouts.
    pub http: HttpConfig,
    /// Upload session lifetime.
    pub uploads: UploadsConfig,
    /// Log level and format.
    pub log: LogConfig,
    /// TLS certificate and key; plain HTTP when both are absent.
    pub tls: TlsConfig,
}

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses the registry API listens on, as `"ip:port"`.
    pub listen: Vec<SocketAddr>,
    /// Number of executor threads; 0 starts one per available core.
    pub executors: usize,
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub admin_listen: SocketAddr,
    /// How long SIGTERM waits for in-flight requests before closing them.
    pub drain_timeout_secs: u64,
}

/// The `[storage]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory holding shards, segments and metadata logs.
    pub data_dir: PathBuf,
    /// Shards for a NEW data directory; 0 picks the executor count
    /// rounded up to a power of two. An existing directory keeps the
    /// number recorded in it and ignores this key.
    pub shards: u32,
    /// Size of one segment file, a multiple of 4096, at least 2 MiB.
    pub segment_bytes: u64,
    /// Bytes of hot content cached in memory by EACH executor; 0 turns
    /// the cache off.
    pub cache_bytes: u64,
    /// A shard writes a metadata checkpoint once its metadata log has
    /// grown this much, which bounds the log replayed at recovery.
    pub checkpoint_every_bytes: u64,
    /// The most segment files one shard may hold; 0 means only the disk
    /// limits it. Past it, writes fail with "no space".
    pub max_segments_per_shard: u32,
    /// How often each shard gives the space of dead records (cancelled
    /// and expired uploads, duplicate copies) back to the file system.
    pub reclaim_interval_secs: u64,
}

/// The `[http]` section: every limit the HTTP server enforces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// Most header fields in one request.
    pub max_headers: usize,
    /// Longest request target in bytes.
    pub max_uri_bytes: usize,
    /// Largest manifest body accepted, at least 4 MiB.
    pub max_manifest_bytes: usize,
    /// Time allowed to receive a whole request head.
    pub header_read_timeout_secs: u64,
    /// Time allowed between two reads of a request body, and for a
    /// manifest body as a whole.
    pub body_read_timeout_secs: u64,
    /// Time a kept-alive connection may sit with no request.
    pub idle_timeout_secs: u64,
    /// Time allowed for one write to the client to make progress.
    pub write_timeout_secs: u64,
    /// Open connections per executor; more are refused.
    pub max_connections_per_core: usize,
}

/// The `[uploads]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadsConfig {
    /// An upload session untouched this long is dropped.
    pub expiry_secs: u64,
    /// How often expired upload sessions are looked for.
    pub sweep_interval_secs: u64,
    /// Largest body of one upload request (a monolithic `PUT` or one
    /// `PATCH` chunk); 0 means no limit beyond the disk.
    pub max_body_bytes: u64,
}

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A level (`"info"`) or a `tracing` filter (`"info,berth=debug"`).
    pub level: String,
    /// Plain text or JSON lines.
    pub format: LogFormat,
    /// Whether to write one access line per request.
    pub access_log: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, for a terminal and for journald.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `[tls]` section: both paths or neither.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM file with the private key.
    pub key: Option<PathBuf>,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Read,
    /// The file is not valid TOML.
    Syntax,
    /// A key berth does not know.
    UnknownKey,
    /// A value of the wrong type, or one that does not parse.
    WrongType,
    /// A well-typed value outside its limits.
    BadValue,
}

/// A refused configuration: the file, the line, the key and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    origin: String,
    line: Option<usize>,
    key: String,
    kind: ConfigErrorKind,
    reason: String,
}

impl ConfigError {
    /// The file (or other origin) the configuration came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The 1-based line of the offending text, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The dotted key (`http.max_headers`); empty for a whole-file error.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What kind of mistake this is.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }

    /// The reason, without origin or key.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    fn bad_value(key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: String::new(),
            line: None,
            key: key.to_owned(),
            kind: ConfigErrorKind::BadValue,
            reason: reason.into(),
        }
    }

    fn with_origin(mut self, origin: &str) -> ConfigError {
        self.origin = origin.to_owned();
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = if self.origin.is_empty() {
            "config"
        } else {
            &self.origin
        };
        write!(f, "{origin}")?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: None,
            key: String::new(),
            kind: ConfigErrorKind::Read,
            reason: format!("cannot read: {e}"),
        })?;
        Config::from_toml_str(&text, &origin)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config = parse(text, origin)?;
        config.validate().map_err(|e| {
            let line = key_line(text, &e.key);
            ConfigError {
                line,
                ..e.with_origin(origin)
            }
        })?;
        Ok(config)
    }

    /// Checks every value against its limits; does no I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.storage.validate()?;
        self.http.validate()?;
        self.uploads.validate()?;
        self.log.validate()?;
        self.tls.validate()
    }

    /// The executor count to start; see [`ServerConfig::executor_count`].
    pub fn executor_count(&self) -> usize {
        self.server.executor_count()
    }

    /// The SIGTERM drain timeout; see [`ServerConfig::drain_timeout`].
    pub fn drain_timeout(&self) -> Duration {
        self.server.drain_timeout()
    }

    /// Lists the keys that differ in `new`, split by whether they can
    /// take effect on SIGHUP or need a restart.
    pub fn reloadable_diff(&self, new: &Config) -> ConfigDiff {
        let old_keys = flatten(self);
        let new_keys = flatten(new);

        let mut diff = ConfigDiff::default();
        let all = old_keys.keys().chain(new_keys.keys());
        let mut seen = std::collections::BTreeSet::new();
        for key in all {
            if !seen.insert(key.clone()) {
                continue;
            }
            if old_keys.get(key) == new_keys.get(key) {
                continue;
            }
            if is_live_key(key) {
                diff.live.push(key.clone());
            } else {
                diff.restart.push(key.clone());
            }
        }
        diff
    }

    /// What runs after a SIGHUP that read `new`: this config with the
    /// keys in [`LIVE_KEYS`] taken from `new`, the others kept until a
    /// restart. The next reload is compared against it.
    pub fn with_live_keys_of(&self, new: &Config) -> Config {
        let mut running = self.clone();
        running.log.level.clone_from(&new.log.level);
        let max_manifest_bytes = running.http.max_manifest_bytes;
        running.http = new.http.clone();
        running.http.max_manifest_bytes = max_manifest_bytes;
        running.tls = new.tls.clone();
        running
    }
}

/// Settings given on the `berth serve` command line. They win over the
/// file, at start and again at every SIGHUP, so a reload compares like
/// with like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen` (repeatable); empty keeps the file's addresses.
    pub listen: Vec<SocketAddr>,
    /// `--admin-listen`.
    pub admin_listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--executors`.
    pub executors: Option<usize>,
}

impl Overrides {
    /// `config` with these settings put over it, validated again: an
    /// address from the command line can clash with one from the file.
    pub fn applied_to(&self, mut config: Config) -> Result<Config, ConfigError> {
        if !self.listen.is_empty() {
            config.server.listen.clone_from(&self.listen);
        }
        if let Some(admin) = self.admin_listen {
            config.server.admin_listen = admin;
        }
        if let Some(dir) = &self.data_dir {
            config.storage.data_dir.clone_from(dir);
        }
        if let Some(executors) = self.executors {
            config.server.executors = executors;
        }
        config.validate()?;
        Ok(config)
    }
}

/// The changed keys between two configurations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Changed keys applied live on SIGHUP: those in [`LIVE_KEYS`] (log
    /// level, connection limits and timeouts, TLS files).
    pub live: Vec<String>,
    /// Changed keys that only a restart applies (all others).
    pub restart: Vec<String>,
}

impl ConfigDiff {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.restart.is_empty()
    }
}

impl ServerConfig {
    /// The executor count to start: `executors`, or one per core.
    pub fn executor_count(&self) -> usize {
        if self.executors != 0 {
            return self.executors;
        }
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_EXECUTORS)
    }

    /// The drain timeout as a `Duration`.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::bad_value(
                "server.listen",
                "at least one address is needed",
            ));
        }
        if self.listen.len() > MAX_LISTEN_ADDRESSES {
            return Err(ConfigError::bad_value(
                "server.listen",
                format!("more than {MAX_LISTEN_ADDRESSES} addresses"),
            ));
        }
        for (i, a) in self.listen.iter().enumerate() {
            if self.listen[..i].iter().any(|b| addresses_clash(a, b)) {
                return Err(ConfigError::bad_value(
                    "server.listen",
                    format!("{a} is listed twice or overlaps another"),
                ));
            }
            if addresses_clash(a, &self.admin_listen) {
                return Err(ConfigError::bad_value(
                    "server.admin_listen",
                    format!("{} clashes with listen address {a}", self.admin_listen),
                ));
            }
        }
        if self.executors > MAX_EXECUTORS {
            return Err(ConfigError::bad_value(
                "server.executors",
                format!("must be at most {MAX_EXECUTORS}"),
            ));
        }
        check_range(
            "server.drain_timeout_secs",
            self.drain_timeout_secs,
            1,
            3600,
        )
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5000))],
            executors: 0,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 5001)),
            drain_timeout_secs: 30,
        }
    }
}

impl StorageConfig {
    /// The shard count for a new data directory run by `executors`.
    pub fn shards_for_new_dir(&self, executors: usize) -> u32 {
        if self.shards != 0 {
            return self.shards;
        }
        let wanted = u32::try_from(executors.max(1)).unwrap_or(MAX_SHARDS);
        wanted
            .checked_next_power_of_two()
            .unwrap_or(MAX_SHARDS)
            .min(MAX_SHARDS)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::bad_value(
                "storage.data_dir",
                "must not be empty",
            ));
        }
        if self.shards > MAX_SHARDS {
            return Err(ConfigError::bad_value(
                "storage.shards",
                format!("must be at most {MAX_SHARDS} (0 picks one)"),
            ));
        }
        check_range(
            "storage.segment_bytes",
            self.segment_bytes,
            MIN_SEGMENT_BYTES,
            16 * 1024 * MIB,
        )?;
        if self.segment_bytes % SEGMENT_ALIGN_BYTES != 0 {
            return Err(ConfigError::bad_value(
                "storage.segment_bytes",
                format!("must be a multiple of {SEGMENT_ALIGN_BYTES}"),
            ));
        }
        check_range(
            "storage.cache_bytes",
            self.cache_bytes,
            0,
            1024 * 1024 * MIB,
        )?;
        check_range(
            "storage.checkpoint_every_bytes",
            self.checkpoint_every_bytes,
            MIB,
            64 * 1024 * MIB,
        )?;
        check_range(
            "storage.reclaim_interval_secs",
            self.reclaim_interval_secs,
            1,
            24 * 3600,
        )
    }

    /// `reclaim_interval_secs` as a `Duration`.
    pub fn reclaim_interval(&self) -> Duration {
        Duration::from_secs(self.reclaim_interval_secs)
    }

    /// `max_segments_per_shard` as the storage engine takes it.
    pub fn max_segments(&self) -> Option<u32> {
        match self.max_segments_per_shard {
            0 => None,
            n => Some(n),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./berth-data"),
            shards: 0,
            segment_bytes: 256 * MIB,
            cache_bytes: 256 * MIB,
            checkpoint_every_bytes: 64 * MIB,
            max_segments_per_shard: 0,
            reclaim_interval_secs: 10,
        }
    }
}

impl HttpConfig {
    /// `header_read_timeout_secs` as a `Duration`.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    /// `body_read_timeout_secs` as a `Duration`.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_secs)
    }

    /// `idle_timeout_secs` as a `Duration`.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// `write_timeout_secs` as a `Duration`.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);

        check_range(
            "http.max_header_bytes",
            as_u64(self.max_header_bytes),
            1024,
            1024 * 1024,
        )?;
        check_range("http.max_headers", as_u64(self.max_headers), 8, 1024)?;
        check_range(
            "http.max_uri_bytes",
            as_u64(self.max_uri_bytes),
            256,
            as_u64(self.max_header_bytes),
        )?;
        check_range(
            "http.max_manifest_bytes",
            as_u64(self.max_manifest_bytes),
            as_u64(MIN_MANIFEST_BYTES),
            64 * MIB,
        )?;

        let day = 24 * 3600;
        check_range(
            "http.header_read_timeout_secs",
            self.header_read_timeout_secs,
            1,
            day,
        )?;
        check_range(
            "http.body_read_timeout_secs",
            self.body_read_timeout_secs,
            1,
            day,
        )?;
        check_range("http.idle_timeout_secs", self.idle_timeout_secs, 1, day)?;
        let write = self.write_timeout_secs;
        check_range("http.write_timeout_secs", write, 1, day)?;

        check_range(
            "http.max_connections_per_core",
            as_u64(self.max_connections_per_core),
            1,
            1_000_000,
        )
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_manifest_bytes: MIN_MANIFEST_BYTES,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 60,
            idle_timeout_secs: 60,
            write_timeout_secs: 60,
            max_connections_per_core: 4096,
        }
    }
}

impl UploadsConfig {
    /// `expiry_secs` as a `Duration`.
    pub fn expiry(&self) -> Duration {
        Duration::from_secs(self.expiry_secs)
    }

    /// `sweep_interval_secs` as a `Duration`.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.sweep_interval_secs)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let thirty_days = 30 * 24 * 3600;
        check_range("uploads.expiry_secs", self.expiry_secs, 1, thirty_days)?;
        check_range(
            "uploads.sweep_interval_secs",
            self.sweep_interval_secs,
            1,
            self.expiry_secs,
        )?;
        let max_body = self.max_body_bytes;
        if max_body != 0 && max_body < MIB {
            return Err(ConfigError::bad_value(
                "uploads.max_body_bytes",
                format!("{max_body} is below 1 MiB (0 means no limit)"),
            ));
        }
        Ok(())
    }
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            expiry_secs: 24 * 3600,
            sweep_interval_secs: 600,
            max_body_bytes: 0,
        }
    }
}

impl LogConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map(|_| ())
            .map_err(|e| {
                let reason = format!("not a level or filter: {e}");
                ConfigError::bad_value("log.level", reason)
            })
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
            access_log: true,
        }
    }
}

impl TlsConfig {
    /// The certificate and key paths, when TLS is on.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(ConfigError::bad_value(
                "tls.key",
                "tls.cert is set but tls.key is not; set both or neither",
            )),
            (None, Some(_)) => Err(ConfigError::bad_value(
                "tls.cert",
                "tls.key is set but tls.cert is not; set both or neither",
            )),
            (Some(cert), Some(key)) => {
                if cert.as_os_str().is_empty() {
                    let e = ConfigError::bad_value("tls.cert", "is empty");
                    return Err(e);
                }
                if key.as_os_str().is_empty() {
                    let e = ConfigError::bad_value("tls.key", "is empty");
                    return Err(e);
                }
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }
}

/// Deserializes `text`, tracking the key path of any error.
fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner();
        let line = inner.span().map(|span| line_of(text, span.start));
        let reason = inner.message().trim().to_owned();

        let unknown = reason.starts_with("unknown field");
        // serde_path_to_error puts an unknown key in the path already;
        // add it only where it is missing.
        let path = if path == "." { String::new() } else { path };
        let key = match (unknown, quoted_name(&reason)) {
            (true, Some(name)) if path.is_empty() => name.to_owned(),
            (true, Some(name)) if !path.ends_with(name) => {
                format!("{path}.{name}")
            }
            _ => path,
        };
        let kind = if unknown {
            ConfigErrorKind::UnknownKey
        } else if key.is_empty() {
            ConfigErrorKind::Syntax
        } else {
            ConfigErrorKind::WrongType
        };
        let reason = match reason.split_once(", ") {
            Some((_, expected)) if unknown => {
                format!("unknown key; {expected}")
            }
            _ if unknown => "unknown key".to_owned(),
            _ => reason,
        };

        ConfigError {
            origin: origin.to_owned(),
            line,
            key,
            kind,
            reason,
        }
    })
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line where `section.name` is set, found by a plain scan.
///
/// NOTE: this finds keys written the usual way (`name = ...` under a
/// `[section]` header); a key set through an inline table or a dotted
/// key gets no line, and the error still names the key.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let (section, name) = key.split_once('.')?;
    let header = format!("[{section}]");
    let mut in_section = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == header;
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if in_section && rest.trim_start().starts_with('=') {
            return Some(i + 1);
        }
    }
    None
}

/// The first name between backquotes in a serde message.
fn quoted_name(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// Refuses `value` outside `min..=max`, naming `key`.
fn check_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min {
        let reason = if min == 1 {
            "must be positive".to_owned()
        } else {
            format!("{value} is below the minimum {min}")
        };
        return Err(ConfigError::bad_value(key, reason));
    }
    if value > max {
        return Err(ConfigError::bad_value(
            key,
            format!("{value} is above the maximum {max}"),
        ));
    }
    Ok(())
}

/// Two listen addresses clash when one bind would refuse the other.
fn addresses_clash(a: &SocketAddr, b: &SocketAddr) -> bool {
    if a.port() != b.port() {
        return false;
    }
    let same_family = a.is_ipv4() == b.is_ipv4();
    let either_wildcard = a.ip().is_unspecified() || b.ip().is_unspecified();
    a.ip() == b.ip() || (same_family && either_wildcard)
}

/// The keys a SIGHUP applies without a restart; every other key needs
/// one. The example `berth.toml` marks these "(live)".
pub const LIVE_KEYS: &[&str] = &[
    "log.level",
    "http.max_header_bytes",
    "http.max_headers",
    "http.max_uri_bytes",
    "http.header_read_timeout_secs",
    "http.body_read_timeout_secs",
    "http.idle_timeout_secs",
    "http.write_timeout_secs",
    "http.max_connections_per_core",
    "tls.cert",
    "tls.key",
];

fn is_live_key(key: &str) -> bool {
    LIVE_KEYS.contains(&key)
}

/// Every leaf key of `config` with its value rendered as TOML text.
fn flatten(config: &Config) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(value) = toml::Value::try_from(config) {
        flatten_into("", &value, &mut out);
    }
    out
}

fn flatten_into(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(table) => {
            for (name, child) in table {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                flatten_into(&key, child, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        Config::from_toml_str(text, "t.toml").unwrap_err()
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::from_toml_str("", "t.toml").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.server.listen[0].to_string(), "127.0.0.1:5000");
        assert_eq!(config.server.admin_listen.to_string(), "127.0.0.1:5001");
        assert_eq!(config.storage.data_dir, PathBuf::from("./berth-data"));
        assert!(config.tls.files().is_none());
        Config::default().validate().unwrap();
    }

    #[test]
    fn keys_override_defaults() {
        let text = "
            [server]
            listen = [\"0.0.0.0:443\", \"[::]:443\"]
            executors = 4
            [http]
            max_headers = 50
            [log]
            format = \"json\"
            [tls]
            cert = \"/etc/berth/cert.pem\"
            key = \"/etc/berth/key.pem\"
        ";
        let config = Config::from_toml_str(text, "t.toml").unwrap();
        assert_eq!(config.server.listen.len(), 2);
        assert_eq!(config.server.executor_count(), 4);
        assert_eq!(config.http.max_headers, 50);
        assert_eq!(config.log.format, LogFormat::Json);
        let (cert, key) = config.tls.files().unwrap();
        assert_eq!(cert, Path::new("/etc/berth/cert.pem"));
        assert_eq!(key, Path::new("/etc/berth/key.pem"));
    }

    #[test]
    fn refusals_name_origin_key_and_reason() {
        // (text, dotted key, kind, words the reason must contain)
        let table: &[(&str, &str, ConfigErrorKind, &str)] = &[
            (
                "[server]\nlisen = []",
                "server.lisen",
                ConfigErrorKind::UnknownKey,
                "unknown",
            ),
            ("[sever]\n", "sever", ConfigErrorKind::UnknownKey, "unknown"),
            (
                "[server]\nexecutors = \"four\"",
                "server.executors",
                ConfigErrorKind::WrongType,
                "invalid type",
            ),
            (
                "[server]\nlisten = [\"localhost\"]",
                "server.listen[0]",
                ConfigErrorKind::WrongType,
                "socket address",
            ),
            (
                "[server]\nlisten = []",
                "server.listen",
                ConfigErrorKind::BadValue,
                "at least one",
            ),
            (
                "[server]\nadmin_listen = \"127.0.0.1:5000\"",
                "server.admin_listen",
                ConfigErrorKind::BadValue,
                "clashes",
            ),
            (
                "[http]\nidle_timeout_secs = 0",
                "http.idle_timeout_secs",
                ConfigErrorKind::BadValue,
                "positive",
            ),
            (
                "[http]\nmax_manifest_bytes = 1024",
                "http.max_manifest_bytes",
                ConfigErrorKind::BadValue,
                "minimum",
            ),
            (
                "[storage]\nsegment_bytes = 1048576",
                "storage.segment_bytes",
                ConfigErrorKind::BadValue,
                "minimum",
            ),
            (
                "[uploads]\nmax_body_bytes = 1000",
                "uploads.max_body_bytes",
                ConfigErrorKind::BadValue,
                "no limit",
            ),
            (
                "[storage]\nsegment_bytes = 4194305",
                "storage.segment_bytes",
                ConfigErrorKind::BadValue,
                "multiple of 4096",
            ),
            (
                "[log]\nformat = \"xml\"",
                "log.format",
                ConfigErrorKind::WrongType,
                "unknown variant",
            ),
            (
                "[log]\nlevel = \"loud=[\"",
                "log.level",
                ConfigErrorKind::BadValue,
                "filter",
            ),
            (
                "[tls]\ncert = \"/c.pem\"",
                "tls.key",
                ConfigErrorKind::BadValue,
                "both or neither",
            ),
            (
                "[http]\nmax_headers = -1",
                "http.max_headers",
                ConfigErrorKind::WrongType,
                "",
            ),
            ("[server\n", "", ConfigErrorKind::Syntax, ""),
        ];
        for (text, key, kind, words) in table {
            let e = err(text);
            assert_eq!(e.key(), *key, "{text:?}: {e}");
            assert_eq!(e.kind(), kind, "{text:?}: {e}");
            assert!(e.reason().contains(words), "{text:?}: {e}");
            let shown = e.to_string();
            assert!(shown.starts_with("t.toml"), "{shown}");
            assert!(shown.contains(key), "{shown}");
        }
    }

    #[test]
    fn parse_errors_carry_the_line() {
        let e = err("# a comment\n[http]\n\nmax_headers = \"many\"\n");
        assert_eq!(e.line(), Some(4), "{e}");
        assert!(e.to_string().starts_with("t.toml:4: http.max_headers: "));
    }

    #[test]
    fn bad_values_carry_the_line_of_their_key() {
        let e = err("[http]\nmax_headers = 100\n[server]\nexecutors = 9999\n");
        assert_eq!(e.line(), Some(4), "{e}");
        assert!(e.to_string().starts_with("t.toml:4: server.executors: "));
    }

    #[test]
    fn missing_file_is_a_read_error_naming_it() {
        let e = Config::load(Path::new("/nonexistent/berth.toml")).unwrap_err();
        assert_eq!(e.kind(), &ConfigErrorKind::Read);
        assert!(e.to_string().contains("/nonexistent/berth.toml"));
    }

    #[test]
    fn auto_shards_round_executors_up_to_a_power_of_two() {
        let storage = StorageConfig::default();
        assert_eq!(storage.shards_for_new_dir(0), 1);
        assert_eq!(storage.shards_for_new_dir(1), 1);
        assert_eq!(storage.shards_for_new_dir(6), 8);
        assert_eq!(storage.shards_for_new_dir(64), 64);
        assert_eq!(storage.shards_for_new_dir(100_000), MAX_SHARDS);

        let fixed = StorageConfig {
            shards: 3,
            ..StorageConfig::default()
        };
        assert_eq!(fixed.shards_for_new_dir(16), 3);
    }

    #[test]
    fn reload_diff_splits_live_and_restart_keys() {
        let old = Config::default();
        let mut new = Config::default();
        new.log.level = "debug".to_owned();
        new.http.max_headers = 64;
        new.server.executors = 2;
        new.tls.cert = Some(PathBuf::from("/c.pem"));

        new.http.max_manifest_bytes = 8 << 20;

        let diff = old.reloadable_diff(&new);
        assert_eq!(diff.live, ["http.max_headers", "log.level", "tls.cert"]);
        assert_eq!(
            diff.restart,
            ["http.max_manifest_bytes", "server.executors"]
        );
        assert!(old.reloadable_diff(&old).is_empty());
    }

    #[test]
    fn reload_diff_leaves_out_what_the_command_line_overrides() {
        let overrides = Overrides {
            listen: vec!["127.0.0.1:6000".parse().unwrap()],
            admin_listen: Some("127.0.0.1:6001".parse().unwrap()),
            data_dir: Some(PathBuf::from("/srv/berth")),
            executors: Some(3),
        };
        let file = "[server]\nlisten = [\"127.0.0.1:7000\"]\nexecutors = 1\n";
        let load = |text: &str| {
            let config = Config::from_toml_str(text, "t.toml").unwrap();
            overrides.applied_to(config).unwrap()
        };
        let running = load(file);
        assert_eq!(running.server.listen, overrides.listen);
        assert_eq!(running.server.admin_listen.port(), 6001);
        assert_eq!(running.storage.data_dir, PathBuf::from("/srv/berth"));
        assert_eq!(running.server.executors, 3);

        assert!(running.reloadable_diff(&load(file)).is_empty());
        let changed = load(&format!("{file}[log]\nlevel = \"debug\"\n"));
        let diff = running.reloadable_diff(&changed);
        assert_eq!(diff.live, ["log.level"]);
        assert!(diff.restart.is_empty(), "{diff:?}");
    }

    #[test]
    fn after_a_reload_only_the_live_keys_have_moved() {
        let old = Config::default();
        let text = "[log]\nlevel = \"debug\"\n\
            [http]\nmax_headers = 50\nmax_manifest_bytes = 8388608\n\
            [uploads]\nexpiry_secs = 600\n";
        let new = Config::from_toml_str(text, "t.toml").unwrap();
        let running = old.with_live_keys_of(&new);

        // Every live key now reads as the new file; every other key as
        // before, so the next reload reports only what really changed.
        let still_differs = running.reloadable_diff(&new);
        assert!(still_differs.live.is_empty(), "{still_differs:?}");
        assert_eq!(
            still_differs.restart,
            ["http.max_manifest_bytes", "uploads.expiry_secs"]
        );
        let moved = old.reloadable_diff(&running);
        assert_eq!(moved.live, ["http.max_headers", "log.level"]);
        assert!(moved.restart.is_empty(), "{moved:?}");
    }

    #[test]
    fn overrides_that_clash_with_the_file_are_refused() {
        let overrides = Overrides {
            admin_listen: Some("127.0.0.1:5000".parse().unwrap()),
            ..Overrides::default()
        };
        let error = overrides.applied_to(Config::default()).unwrap_err();
        assert_eq!(error.key(), "server.admin_listen");
    }

    #[test]
    fn example_file_marks_exactly_the_live_keys() {
        let text = include_str!("../systemd/berth.toml");

        let mut section = "";
        let mut block = String::new();
        let mut after_key = false;
        let mut marked = std::collections::BTreeSet::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.trim_matches(['[', ']']);
                block.clear();
                continue;
            }
            let bare = line.strip_prefix("# ").unwrap_or(line);
            let is_key = bare
                .split_once(" = ")
                .is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            if is_key {
                let (name, _) = bare.split_once(" = ").unwrap();
                if block.contains("(live)") {
                    marked.insert(format!("{section}.{name}"));
                }
                after_key = true;
            } else if line.is_empty() {
                block.clear();
            } else {
                if after_key {
                    block.clear();
                }
                block.push_str(line);
                after_key = false;
            }
        }

        let live: std::collections::BTreeSet<String> =
            LIVE_KEYS.iter().map(|k| k.to_string()).collect();
        assert_eq!(marked, live);
    }

    #[test]
    fn example_file_parses_to_the_defaults() {
        let text = include_str!("../systemd/berth.toml");
        let config = Config::from_toml_str(text, "systemd/berth.toml").unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn example_file_mentions_every_key() {
        let text = include_str!("../systemd/berth.toml");

        // Every leaf of a configuration with the optional keys set.
        let mut full = Config::default();
        full.tls.cert = Some(PathBuf::from("c"));
        full.tls.key = Some(PathBuf::from("k"));
        let keys = flatten(&full);
        assert!(keys.len() > 20);

        for key in keys.keys() {
            let (section, name) = key.split_once('.').unwrap();
            let header = format!("[{section}]");
            let at = text
                .find(&header)
                .unwrap_or_else(|| panic!("no {header} in the example"));
            let rest = &text[at..];
            let end = rest[1..].find("\n[").map_or(rest.len(), |i| i + 1);
            let body = &rest[..end];
            let set = format!("\n{name} = ");
            let commented = format!("\n# {name} = ");
            assert!(
                body.contains(&set) || body.contains(&commented),
                "the example does not mention {key}"
            );
        }
    }
}
