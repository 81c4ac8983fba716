//! Log output through `tracing`: plain text or JSON on stderr.
//!
//! Plain text suits a terminal and journald alike: colours only when
//! stderr is a terminal, and no timestamp under systemd (journald stamps
//! every line itself). JSON writes one object per line, for a log
//! shipper.
//!
//! The level is a `tracing` filter (`"info"`, `"info,berth::http=debug"`)
//! held behind a reload handle, so SIGHUP can change it live through
//! [`LogHandle::set_level`].
//!
//! Access lines go to the target [`ACCESS_TARGET`] through [`access`],
//! one per request; a filter such as `"info,berth::access=off"` silences
//! them without touching the rest.

use std::fmt;
use std::io::IsTerminal;
use std::time::Duration;

use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

pub use crate::config::LogFormat;

/// The `tracing` target of access lines.
pub const ACCESS_TARGET: &str = "berth::access";

/// Why logging could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The level is neither a level name nor a `tracing` filter.
    #[error("log level {level:?} is not a level or filter: {reason}")]
    BadLevel {
        /// The text given.
        level: String,
        /// What the filter parser said.
        reason: String,
    },
    /// A global subscriber was already installed.
    #[error("logging was already initialised")]
    AlreadyInitialised,
    /// The subscriber behind the handle is gone.
    #[error("cannot change the log level: {0}")]
    Reload(String),
}

/// Changes the live log level; cheap to clone and `Send`.
#[derive(Clone)]
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
}

impl fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogHandle").finish_non_exhaustive()
    }
}

impl LogHandle {
    /// Replaces the level filter; takes effect for every thread at once.
    pub fn set_level(&self, level: &str) -> Result<(), LogError> {
        let filter = parse_level(level)?;
        self.filter
            .reload(filter)
            .map_err(|e| LogError::Reload(e.to_string()))
    }
}

/// Installs the global subscriber writing to stderr.
///
/// Call once, early in `main`, before any executor starts.
pub fn init(level: &str, format: LogFormat) -> Result<LogHandle, LogError> {
    let stderr_is_terminal = std::io::stderr().is_terminal();
    let options = TextOptions {
        ansi: stderr_is_terminal,
        // journald stamps every line itself.
        timestamps: !stderr_is_journal(),
    };

    let (dispatch, handle) = dispatch(level, format, options, std::io::stderr)?;
    tracing::dispatcher::set_global_default(dispatch).map_err(|_| LogError::AlreadyInitialised)?;
    Ok(handle)
}

/// How plain-text lines look; JSON ignores these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextOptions {
    /// Colour codes in the output.
    pub ansi: bool,
    /// A timestamp at the head of each line.
    pub timestamps: bool,
}

/// Builds a subscriber writing to `writer` without installing it.
///
/// [`init`] uses it with stderr; tests use it with a buffer and
/// `tracing::dispatcher::with_default`.
pub fn dispatch<W>(
    level: &str,
    format: LogFormat,
    options: TextOptions,
    writer: W,
) -> Result<(Dispatch, LogHandle), LogError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (filter, handle) = reload::Layer::new(parse_level(level)?);

    let output = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text if options.timestamps => tracing_subscriber::fmt::layer()
            .with_ansi(options.ansi)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(options.ansi)
            .without_time()
            .with_writer(writer)
            .boxed(),
    };

    let subscriber = Registry::default().with(filter).with(output);
    let handle = LogHandle { filter: handle };
    Ok((Dispatch::new(subscriber), handle))
}

/// Writes one access line at `info` under [`ACCESS_TARGET`].
///
/// `path` is logged without its query string, which may carry tokens.
/// An empty `repository` (a path that names none, such as `/v2/`) is
/// logged as `-`. `peer` is the client address, as a `SocketAddr` or
/// text; `request_id` the id sent back to the client.
// NOTE: nine plain arguments rather than a struct, so that the one call
// site reads like the line it writes.
#[allow(clippy::too_many_arguments)]
pub fn access(
    method: &str,
    path: &str,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration: Duration,
    repository: &str,
    peer: &dyn fmt::Display,
    request_id: &str,
) {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let repository = if repository.is_empty() {
        "-"
    } else {
        repository
    };
    let duration_ms = duration.as_secs_f64() * 1000.0;
    tracing::info!(
        target: ACCESS_TARGET,
        method,
        path,
        status,
        bytes_in,
        bytes_out,
        duration_ms,
        repository,
        peer = %peer,
        request_id,
        "request"
    );
}

/// True when stderr is the journal stream systemd connected.
///
/// systemd sets `JOURNAL_STREAM=<device>:<inode>` for a service whose
/// stderr goes to journald; a child whose stderr was redirected keeps
/// the variable, so the pair is compared with stderr itself.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;

    let stream = std::env::var("JOURNAL_STREAM").ok();
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(stderr) => names_stream(stream.as_deref(), stderr.dev(), stderr.ino()),
        Err(_) => false,
    }
}

/// Whether a `JOURNAL_STREAM` value names the file `device`:`inode`.
fn names_stream(stream: Option<&str>, device: u64, inode: u64) -> bool {
    let Some((d, i)) = stream.and_then(|s| s.split_once(':')) else {
        return false;
    };
    d.parse() == Ok(device) && i.parse() == Ok(inode)
}

fn parse_level(level: &str) -> Result<EnvFilter, LogError> {
    EnvFilter::try_new(level).map_err(|e| LogError::BadLevel {
        level: level.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    /// A writer that keeps everything in memory.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    const PLAIN: TextOptions = TextOptions {
        ansi: false,
        timestamps: false,
    };

    fn log_one_access() {
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        access(
            "PUT",
            "/v2/library/alpine/blobs/uploads/abc?digest=sha256:00",
            201,
            1234,
            0,
            Duration::from_micros(2500),
            "library/alpine",
            &peer,
            "r-42",
        );
    }

    #[test]
    fn access_line_in_json_has_every_field() {
        let buffer = Buffer::default();
        let (dispatch, _handle) = dispatch("info", LogFormat::Json, PLAIN, buffer.clone()).unwrap();
        tracing::dispatcher::with_default(&dispatch, log_one_access);

        let text = buffer.text();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["target"], ACCESS_TARGET);
        assert_eq!(line["level"], "INFO");
        let fields = &line["fields"];
        assert_eq!(fields["method"], "PUT");
        let path = "/v2/library/alpine/blobs/uploads/abc";
        assert_eq!(fields["path"], path);
        assert_eq!(fields["status"], 201);
        assert_eq!(fields["bytes_in"], 1234);
        assert_eq!(fields["bytes_out"], 0);
        assert_eq!(fields["duration_ms"], 2.5);
        assert_eq!(fields["repository"], "library/alpine");
        assert_eq!(fields["peer"], "192.0.2.7:40000");
        assert_eq!(fields["request_id"], "r-42");
    }

    #[test]
    fn access_line_in_text_has_no_colour_codes() {
        let buffer = Buffer::default();
        let (dispatch, _handle) = dispatch("info", LogFormat::Text, PLAIN, buffer.clone()).unwrap();
        tracing::dispatcher::with_default(&dispatch, log_one_access);

        let text = buffer.text();
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.starts_with(" INFO berth::access: request"), "{text}");
        assert!(text.contains("status=201"), "{text}");
        assert!(text.contains("repository=\"library/alpine\""), "{text}");
        assert!(!text.contains("digest="), "{text}");
    }

    #[test]
    fn set_level_changes_what_is_written() {
        let buffer = Buffer::default();
        let (dispatch, handle) = dispatch("warn", LogFormat::Text, PLAIN, buffer.clone()).unwrap();

        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!("hidden at warn");
            handle.set_level("debug").unwrap();
            tracing::debug!("shown at debug");
            handle.set_level("berth=error,info").unwrap();
            tracing::info!(target: "other", "shown by the default");
            tracing::info!(target: "berth::http", "hidden for berth");
        });

        let text = buffer.text();
        assert!(!text.contains("hidden"), "{text}");
        assert!(text.contains("shown at debug"), "{text}");
        assert!(text.contains("shown by the default"), "{text}");
    }

    #[test]
    fn journal_stream_must_name_stderr_itself() {
        let table = [
            (None, false),
            (Some("8:1234"), true),
            (Some("8:1235"), false),
            (Some("9:1234"), false),
            (Some("8"), false),
            (Some("x:y"), false),
            (Some(""), false),
        ];
        for (stream, want) in table {
            assert_eq!(names_stream(stream, 8, 1234), want, "{stream:?}");
        }
    }

    #[test]
    fn bad_level_is_refused_and_keeps_the_old_one() {
        assert!(matches!(
            dispatch("loud=[", LogFormat::Text, PLAIN, Buffer::default()),
            Err(LogError::BadLevel { .. })
        ));

        let buffer = Buffer::default();
        let (dispatch, handle) = dispatch("info", LogFormat::Text, PLAIN, buffer.clone()).unwrap();
        assert!(handle.set_level("loud=[").is_err());
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!("still at info");
        });
        assert!(buffer.text().contains("still at info"));
    }
}
