//! `berth serve`: executors, shards, listeners, signals and systemd.
//!
//! The main thread opens the data directory, starts one glommio executor
//! per core and then only watches: it waits for every executor to finish
//! recovery (then tells systemd READY=1), feeds the watchdog while every
//! executor is alive, and turns signals into actions: SIGHUP reloads what
//! can change live, SIGTERM and SIGINT drain and stop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_storage::{Layout, Reader, Shard, ShardOptions};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement, Shares};
use nix::sys::signal::{SigSet, Signal};

use crate::config::{Config, Overrides};
use crate::http::{self, Limits};
use crate::logging;
use crate::notify;
use crate::registry::{Registry, RegistrySettings};
use crate::shards::{Job, Local, Router};

mod admin;
mod observe;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be opened or created.
    #[error("opening data directory {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        source: berth_storage::StorageError,
    },
    /// An executor failed while starting (recovery, binding, …).
    #[error("executor {executor} failed to start: {reason}")]
    Executor {
        /// The executor's index.
        executor: usize,
        /// What failed.
        reason: String,
    },
    /// A listen address is taken or cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("loading TLS certificate: {0}")]
    Tls(String),
    /// The logger could not be set up.
    #[error("setting up logs: {0}")]
    Logging(String),
    /// A thread could not be started.
    #[error("starting threads: {0}")]
    Spawn(String),
}

/// How long a start waits for a listen address to come free before it
/// reports the address as in use.
///
/// A berth killed with SIGKILL keeps accepting connections on its ports
/// for some milliseconds after it has been reaped, while the kernel tears
/// down its io_uring instances; a restart at once must wait that out. A
/// live server holds the port past this and is still refused.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Pause between two tries at a port that is still taken.
const PORT_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// State the main thread shares with executors: flags and heartbeats,
/// never on a request's path.
struct Control {
    /// Set once to ask every executor to stop accepting and drain.
    shutdown: AtomicBool,
    /// Executors that finished draining their connections.
    drained: std::sync::atomic::AtomicUsize,
    /// Bumped by SIGHUP; executors pick up new HTTP limits when it moves.
    reload_generation: AtomicU64,
    /// Last heartbeat of each executor, in milliseconds since the epoch.
    heartbeats: Vec<AtomicU64>,
    /// Live-reloadable settings, replaced whole on SIGHUP.
    live: std::sync::Mutex<LiveSettings>,
}

/// Settings that SIGHUP can change without a restart.
#[derive(Clone)]
struct LiveSettings {
    limits: Limits,
}

/// Runs the registry until SIGTERM or SIGINT.
///
/// `config` already has `overrides` applied; a SIGHUP applies them again
/// to the file it re-reads.
pub fn serve(
    config: Config,
    config_path: Option<PathBuf>,
    overrides: Overrides,
) -> Result<(), ServeError> {
    // BERTH_LOG overrides the configured level, for a one-off debug run.
    let level = std::env::var("BERTH_LOG").unwrap_or_else(|_| config.log.level.clone());
    let log =
        logging::init(&level, config.log.format).map_err(|e| ServeError::Logging(e.to_string()))?;
    let started = Instant::now();

    // IMPORTANT: block the signals before any thread starts, so that every
    // executor inherits the mask and only the main thread receives them.
    let signals = handled_signals();
    let _ = signals.thread_block();

    // NOTE: every executor binds with SO_REUSEPORT, which would quietly
    // share a port with another server that did the same. A plain bind
    // would also trip over the dying connections of a crashed berth, so
    // ask the port instead: if something keeps answering, it is taken.
    for addr in config
        .server
        .listen
        .iter()
        .chain([&config.server.admin_listen])
    {
        if port_stays_taken(*addr, PORT_RELEASE_WAIT) {
            return Err(ServeError::Bind {
                addr: *addr,
                source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
            });
        }
    }

    // Certificates are read once here so that a bad file stops the start
    // with its path; each executor then keeps its own handle to reload.
    let tls = match config.tls.files() {
        Some((cert, key)) => {
            Some(http::tls::server_config(cert, key).map_err(|e| ServeError::Tls(e.to_string()))?)
        }
        None => None,
    };

    let executors_wanted = config.executor_count();
    let shards_if_new = config.storage.shards_for_new_dir(executors_wanted);
    let layout = Layout::open_or_create(&config.storage.data_dir, shards_if_new as u16).map_err(
        |source| ServeError::DataDir {
            dir: config.storage.data_dir.clone(),
            source,
        },
    )?;
    // An executor owns at least one shard.
    let executors = executors_wanted.clamp(1, usize::from(layout.shard_count()));
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %config.storage.data_dir.display(),
        shards = layout.shard_count(),
        executors,
        "starting berth"
    );
    let _ = notify::status("recovering");

    let control = Arc::new(Control {
        shutdown: AtomicBool::new(false),
        drained: std::sync::atomic::AtomicUsize::new(0),
        reload_generation: AtomicU64::new(0),
        heartbeats: (0..executors)
            .map(|_| AtomicU64::new(now_millis()))
            .collect(),
        live: std::sync::Mutex::new(LiveSettings {
            limits: limits_of(&config),
        }),
    });

    let mesh = MeshBuilder::<Job, _>::full(executors, 256);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, ServeError>>();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut threads = Vec::with_capacity(executors);
    for index in 0..executors {
        let pinned = executors <= cpus;
        let context = || ExecutorContext {
            config: config.clone(),
            layout: layout.clone(),
            mesh: mesh.clone(),
            control: control.clone(),
            ready: ready_tx.clone(),
            executors,
            tls: tls.clone(),
        };
        let spawn = |placement: Placement, context: ExecutorContext| {
            LocalExecutorBuilder::new(placement)
                .name(&format!("berth-{index}"))
                .spawn(move || run_executor(context))
        };
        let first = if pinned {
            spawn(Placement::Fixed(index), context())
        } else {
            spawn(Placement::Unbound, context())
        };
        // NOTE: a CPU set narrowed by the service manager or a container
        // can refuse a pin; an unpinned executor still serves.
        let handle = match first {
            Ok(handle) => handle,
            Err(error) if pinned => {
                tracing::warn!(executor = index, error = %error, "cannot pin executor; running it unpinned");
                spawn(Placement::Unbound, context())
                    .map_err(|e| ServeError::Spawn(e.to_string()))?
            }
            Err(error) => return Err(ServeError::Spawn(error.to_string())),
        };
        threads.push(handle);
    }
    drop(ready_tx);

    // While recovery runs, keep telling systemd that start-up is making
    // progress, so a large data directory is not killed by the start timeout.
    let mut ready = 0;
    while ready < executors {
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(_)) => ready += 1,
            Ok(Err(error)) => {
                control.shutdown.store(true, Ordering::SeqCst);
                return Err(error);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = notify::extend_timeout(Duration::from_secs(30));
                let _ = notify::status(&format!(
                    "recovering: {ready} of {executors} executors ready"
                ));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(ServeError::Executor {
                    executor: 0,
                    reason: "an executor exited during start".to_owned(),
                })
            }
        }
    }
    let took = started.elapsed();
    tracing::info!(
        listen = ?config.server.listen,
        admin = %config.server.admin_listen,
        startup_ms = took.as_millis() as u64,
        "ready"
    );
    let _ = notify::ready();
    let _ = notify::status(&format!("serving on {:?}", config.server.listen));

    let source = ConfigSource {
        path: config_path,
        overrides,
    };
    watch_signals(&signals, &control, &log, &source, &config);

    let _ = notify::stopping();
    let _ = notify::status("draining");
    tracing::info!("draining connections");
    for handle in threads {
        let _ = handle.join();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Everything an executor thread needs to start.
struct ExecutorContext {
    config: Config,
    layout: Layout,
    mesh: MeshBuilder<Job, glommio::channels::channel_mesh::Full>,
    control: Arc<Control>,
    ready: mpsc::Sender<Result<usize, ServeError>>,
    executors: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
}

async fn run_executor(context: ExecutorContext) {
    let ExecutorContext {
        config,
        layout,
        mesh,
        control,
        ready,
        executors,
        tls,
    } = context;

    let (senders, receivers) = match mesh.join().await {
        Ok(pair) => pair,
        Err(error) => {
            let _ = ready.send(Err(ServeError::Executor {
                executor: 0,
                reason: format!("could not join the channel mesh: {error}"),
            }));
            return;
        }
    };
    let index = senders.peer_id();

    let options = ShardOptions {
        segment_bytes: config.storage.segment_bytes,
        checkpoint_every_bytes: config.storage.checkpoint_every_bytes,
        max_segments: config.storage.max_segments(),
        ..ShardOptions::default()
    };
    let recovery_started = Instant::now();
    let mut shards = BTreeMap::new();
    for shard_id in (0..layout.shard_count()).filter(|s| usize::from(*s) % executors == index) {
        match Shard::open(&layout, shard_id, &options).await {
            Ok((shard, report)) => {
                tracing::info!(shard = shard_id, executor = index, report = %report, "shard recovered");
                shards.insert(shard_id, Rc::new(shard));
            }
            Err(error) => {
                tracing::error!(shard = shard_id, error = %error, "shard recovery failed");
                let _ = ready.send(Err(ServeError::Executor {
                    executor: index,
                    reason: format!("shard {shard_id}: {error}"),
                }));
                return;
            }
        }
    }

    let reader = Reader::new(&layout, config.storage.cache_bytes);
    let recovery_secs = recovery_started.elapsed().as_secs_f64();
    let local = Rc::new(Local::new(index, shards, reader, recovery_secs));
    let router = Router::start(local.clone(), senders, receivers, layout.shard_count());

    let settings = RegistrySettings {
        max_manifest_bytes: config.http.max_manifest_bytes,
        max_upload_bytes: config.uploads.max_body_bytes,
        upload_expiry: config.uploads.expiry(),
    };
    let observer = Rc::new(observe::Observer::new(local.clone(), config.log.access_log));
    let registry = Rc::new(Registry::new(router.clone(), settings).with_observer(observer));

    let limits: http::LiveLimits = Rc::new(std::cell::RefCell::new(Rc::new(limits_of(&config))));
    let tls_handle = match (&tls, config.tls.files()) {
        (Some(server_config), Some((cert, key))) => Some(
            http::TlsAcceptorHandle::load(cert, key)
                .unwrap_or_else(|_| http::TlsAcceptorHandle::from_config(server_config.clone())),
        ),
        _ => None,
    };
    let shutdown = http::ShutdownSignal::new();
    let mut loops = Vec::new();
    for addr in &config.server.listen {
        let listener = match bind_listener(*addr).await {
            Ok(listener) => listener,
            Err(error) => {
                let _ = ready.send(Err(ServeError::Executor {
                    executor: index,
                    reason: format!("binding {addr}: {error}"),
                }));
                return;
            }
        };
        loops.push(glommio::spawn_local(http::accept_loop(
            listener,
            limits.clone(),
            registry.clone(),
            tls_handle.clone(),
            shutdown.clone(),
        )));
    }

    if index == 0 {
        let admin_handler = Rc::new(admin::AdminHandler::new(router.clone()));
        match bind_listener(config.server.admin_listen).await {
            Ok(listener) => {
                loops.push(glommio::spawn_local(http::accept_loop(
                    listener,
                    limits.clone(),
                    admin_handler,
                    None,
                    shutdown.clone(),
                )));
            }
            Err(error) => {
                let _ = ready.send(Err(ServeError::Executor {
                    executor: index,
                    reason: format!("binding admin {}: {error}", config.server.admin_listen),
                }));
                return;
            }
        }
    }

    spawn_background(local.clone(), &config);
    let _ = ready.send(Ok(index));

    // Heartbeat for the watchdog, the stop flag and reloads, checked
    // together, off every request's path.
    let heartbeat = &control.heartbeats[index];
    let mut generation = control.reload_generation.load(Ordering::SeqCst);
    loop {
        heartbeat.store(now_millis(), Ordering::Relaxed);
        for took in berth_storage::take_sync_durations() {
            local.metrics.fdatasync(took);
        }
        if control.shutdown.load(Ordering::Relaxed) {
            break;
        }
        let now = control.reload_generation.load(Ordering::SeqCst);
        if now != generation {
            generation = now;
            if let Ok(live) = control.live.lock() {
                *limits.borrow_mut() = Rc::new(live.limits.clone());
            }
            if let Some(handle) = &tls_handle {
                if let Err(error) = handle.reload() {
                    tracing::error!(executor = index, error = %error, "TLS certificate reload failed; keeping the old one");
                }
            }
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }

    shutdown.trigger();
    let drain = config.drain_timeout();
    let drained = glommio::timer::timeout(drain, async {
        for task in loops {
            task.await;
        }
        Ok(())
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            executor = index,
            "drain timeout passed; closing remaining connections"
        );
    }

    // IMPORTANT: a request draining on another core may still send jobs
    // to this core's shards, so keep answering them until every executor
    // has drained; only then may this executor's tasks go away.
    control.drained.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + drain + Duration::from_secs(5);
    while control.drained.load(Ordering::SeqCst) < executors && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts the executor's background work in a low-share task queue, so
/// that it cannot starve requests.
fn spawn_background(local: Rc<Local>, config: &Config) {
    let queue = glommio::executor().create_task_queue(
        Shares::Static(100),
        glommio::Latency::NotImportant,
        "background",
    );
    let expiry = config.uploads.expiry();
    let interval = config.uploads.sweep_interval();
    let expire = {
        let local = local.clone();
        async move {
            loop {
                glommio::timer::sleep(interval).await;
                crate::registry::expire_uploads(local.clone(), expiry).await;
            }
        }
    };
    let reclaim_interval = config.storage.reclaim_interval();
    let reclaim = async move {
        loop {
            glommio::timer::sleep(reclaim_interval).await;
            reclaim_dead_space(&local).await;
        }
    };
    let started = [
        glommio::spawn_local_into(expire, queue).map(|task| drop(task.detach())),
        glommio::spawn_local_into(reclaim, queue).map(|task| drop(task.detach())),
    ];
    for error in started.into_iter().filter_map(Result::err) {
        tracing::error!(error = %error, "cannot start background work");
    }
}

/// One reclaim pass over the executor's shards: dead records are punched
/// out of their segment files, segments with nothing live are deleted.
async fn reclaim_dead_space(local: &Local) {
    for shard in local.shards.values() {
        match shard.reclaim().await {
            Ok(report) if report.bytes_punched + report.bytes_deleted > 0 => {
                tracing::info!(
                    shard = shard.id(),
                    punched_bytes = report.bytes_punched,
                    segments_deleted = report.segments_deleted,
                    deleted_bytes = report.bytes_deleted,
                    "reclaimed dead space"
                );
            }
            Ok(_) => {}
            // A poisoned shard refuses writes until restarted; it was
            // reported when it failed.
            Err(berth_storage::StorageError::Poisoned { .. }) => {}
            Err(error) => {
                tracing::warn!(shard = shard.id(), error = %error, "reclaiming dead space failed");
            }
        }
    }
}

/// Where a reload reads its config from: the file, with the command
/// line's settings over it.
struct ConfigSource {
    path: Option<PathBuf>,
    overrides: Overrides,
}

/// Waits for signals on the main thread and acts on them; returns when
/// the server must stop.
fn watch_signals(
    signals: &SigSet,
    control: &Control,
    log: &logging::LogHandle,
    source: &ConfigSource,
    config: &Config,
) {
    let watchdog = notify::watchdog_interval();
    let mut last_ping = Instant::now();
    let mut running = config.clone();
    loop {
        if let Some(interval) = watchdog {
            if last_ping.elapsed() >= interval / 2 && executors_alive(control, interval) {
                let _ = notify::watchdog();
                last_ping = Instant::now();
            }
        }

        match wait_signal(signals, Duration::from_millis(250)) {
            Some(Signal::SIGTERM) | Some(Signal::SIGINT) => {
                tracing::info!("stop requested");
                control.shutdown.store(true, Ordering::SeqCst);
                return;
            }
            Some(Signal::SIGHUP) => reload(control, log, source, &mut running),
            _ => {}
        }
    }
}

/// SIGHUP: reads the config file again and applies what can change live.
/// `running` becomes what runs after it, for the next reload's diff.
fn reload(
    control: &Control,
    log: &logging::LogHandle,
    source: &ConfigSource,
    running: &mut Config,
) {
    let _ = notify::reloading();
    let Some(path) = &source.path else {
        tracing::info!("reload requested; no config file to read");
        let _ = notify::ready();
        return;
    };

    // The running config has the command line's settings in it; the
    // re-read file must too, or every overridden key reads as changed.
    let reloaded = Config::load(path).and_then(|new| source.overrides.applied_to(new));
    match reloaded {
        Ok(new) => {
            let diff = running.reloadable_diff(&new);
            if let Err(error) = log.set_level(&new.log.level) {
                tracing::warn!(error = %error, "log level not changed");
            }
            if let Ok(mut live) = control.live.lock() {
                live.limits = limits_of(&new);
            }
            control.reload_generation.fetch_add(1, Ordering::SeqCst);
            *running = running.with_live_keys_of(&new);
            tracing::info!(live = ?diff.live, needs_restart = ?diff.restart, "config reloaded");
        }
        Err(error) => tracing::error!(error = %error, "reload refused: config is invalid"),
    }
    let _ = notify::ready();
}

fn executors_alive(control: &Control, interval: Duration) -> bool {
    let now = now_millis();
    let limit = interval.as_millis() as u64;
    control
        .heartbeats
        .iter()
        .all(|beat| now.saturating_sub(beat.load(Ordering::Relaxed)) < limit)
}

fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set
}

/// Waits up to `timeout` for one of `signals`.
fn wait_signal(signals: &SigSet, timeout: Duration) -> Option<Signal> {
    let spec = nix::sys::time::TimeSpec::from_duration(timeout);
    // SAFETY: sigtimedwait(2) reads the set and writes nothing we pass
    // except the optional info pointer, which is null.
    let number =
        unsafe { nix::libc::sigtimedwait(signals.as_ref(), std::ptr::null_mut(), spec.as_ref()) };
    if number <= 0 {
        return None;
    }
    Signal::try_from(number).ok()
}

/// The HTTP limits the config asks for.
fn limits_of(config: &Config) -> Limits {
    Limits {
        max_header_bytes: config.http.max_header_bytes,
        max_headers: config.http.max_headers,
        max_uri_bytes: config.http.max_uri_bytes,
        header_read_timeout: config.http.header_read_timeout(),
        body_read_timeout: config.http.body_read_timeout(),
        idle_timeout: config.http.idle_timeout(),
        write_timeout: config.http.write_timeout(),
        max_connections: config.http.max_connections_per_core,
        ..Limits::default()
    }
}

/// Binds `addr` for this executor, trying again for a short while when
/// it is still in use (see [`PORT_RELEASE_WAIT`]).
async fn bind_listener(addr: std::net::SocketAddr) -> std::io::Result<glommio::net::TcpListener> {
    let deadline = Instant::now() + PORT_RELEASE_WAIT;
    loop {
        match http::bind_reuseport(addr) {
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
            {
                glommio::timer::sleep(PORT_RETRY_PAUSE).await;
            }
            bound => return bound,
        }
    }
}

/// Whether something accepts connections on `addr` for all of `wait`;
/// false as soon as one probe finds the port free.
fn port_stays_taken(addr: std::net::SocketAddr, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while port_answers(addr) {
        if Instant::now() >= deadline {
            return true;
        }
        std::thread::sleep(PORT_RETRY_PAUSE);
    }
    false
}

/// Whether a server already accepts connections on `addr`.
fn port_answers(addr: std::net::SocketAddr) -> bool {
    let mut target = addr;
    if target.ip().is_unspecified() {
        let loopback: std::net::IpAddr = match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        target.set_ip(loopback);
    }
    match std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)) {
        // NOTE: a connect to a free port in the ephemeral range can pick
        // that very port as its source and meet itself; that is no server.
        Ok(stream) => stream.local_addr().ok() != stream.peer_addr().ok(),
        Err(_) => false,
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
