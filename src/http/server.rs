//! Listening sockets and the per-executor accept loop.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Gate;

use super::conn::{serve, ConnectionEvent, Handler};
use super::limits::Limits;

/// Limits shared by an executor's accept loops and replaced whole when
/// the configuration is reloaded.
pub type LiveLimits = Rc<std::cell::RefCell<Rc<Limits>>>;
use super::shutdown::ShutdownSignal;
use super::tls::TlsAcceptorHandle;
use super::wire::timed;

/// Shortest time between two warnings about refused connections.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Pause after an accept error (out of file descriptors, ...) so the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Binds `addr` with `SO_REUSEPORT`, so that every executor binds the
/// same address and the kernel spreads connections across them.
///
/// glommio's `TcpListener::bind` sets `SO_REUSEPORT` itself, with a
/// listen backlog of 1024.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(io::Error::from)
}

/// Accepts connections and serves each on its own task until `shutdown`
/// fires; then stops accepting and waits for the connections to finish
/// their requests in flight (graceful drain).
///
/// At most `limits.max_connections` connections are open at once; one
/// more is closed as soon as it is accepted. A caller that bounds the
/// drain wraps this future in a timeout.
///
/// `limits` may be replaced while the loop runs (a config reload): each
/// new connection takes the limits current when it is accepted.
pub async fn accept_loop<H: Handler + 'static>(
    listener: TcpListener,
    limits: LiveLimits,
    handler: Rc<H>,
    tls: Option<TlsAcceptorHandle>,
    shutdown: ShutdownSignal,
) {
    let open = Rc::new(Cell::new(0usize));
    let gate = Gate::new();
    let mut refusals = Refusals::default();

    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(error)) => {
                tracing::warn!(%error, "accept failed");
                glommio::timer::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };

        let limits = limits.borrow().clone();
        if open.get() >= limits.max_connections {
            drop(stream);
            handler.connection_event(ConnectionEvent::Refused);
            refusals.record(limits.max_connections);
            continue;
        }

        let task = Connection {
            stream,
            limits: limits.clone(),
            handler: handler.clone(),
            tls: tls.clone(),
            shutdown: shutdown.clone(),
            open: OpenGuard::new(open.clone()),
        };
        match gate.spawn(task.run()) {
            Ok(task) => {
                task.detach();
            }
            Err(error) => {
                tracing::warn!(%error, "connection task not started");
            }
        }
    }

    // Closing the socket now sends new connections to the executors
    // still listening instead of leaving them in this one's backlog.
    drop(listener);
    tracing::debug!(open = open.get(), "accept loop stopped, draining");
    if let Err(error) = gate.close().await {
        tracing::warn!(%error, "draining connections failed");
    }
}

/// One accepted connection and what serving it needs.
struct Connection<H> {
    stream: TcpStream,
    limits: Rc<Limits>,
    handler: Rc<H>,
    tls: Option<TlsAcceptorHandle>,
    shutdown: ShutdownSignal,
    open: OpenGuard,
}

impl<H: Handler> Connection<H> {
    async fn run(self) {
        let peer = self
            .stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        if let Err(error) = self.stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        let limits = &*self.limits;
        let handler = &*self.handler;
        let shutdown = Some(&self.shutdown);
        handler.connection_event(ConnectionEvent::Opened);

        match &self.tls {
            None => {
                let mut stream = self.stream;
                serve(&mut stream, peer, limits, handler, shutdown).await;
            }
            Some(tls) => {
                let wait = limits.header_read_timeout;
                let handshake = timed(wait, tls.accept(self.stream)).await;
                match handshake {
                    Some(Ok(mut stream)) => {
                        serve(&mut stream, peer, limits, handler, shutdown).await;
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                    }
                    None => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                }
            }
        }
        handler.connection_event(ConnectionEvent::Closed);
        drop(self.open);
    }
}

/// Counts a connection as open until dropped.
struct OpenGuard {
    open: Rc<Cell<usize>>,
}

impl OpenGuard {
    fn new(open: Rc<Cell<usize>>) -> Self {
        open.set(open.get() + 1);
        OpenGuard { open }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.open.set(self.open.get().saturating_sub(1));
    }
}

/// Connections refused over the limit, logged at most once a second.
#[derive(Default)]
struct Refusals {
    unlogged: u64,
    last_log: Option<Instant>,
}

impl Refusals {
    fn record(&mut self, max_connections: usize) {
        self.unlogged += 1;
        let now = Instant::now();
        let is_due = self
            .last_log
            .is_none_or(|last| now.duration_since(last) >= REFUSAL_LOG_INTERVAL);
        if is_due {
            tracing::warn!(
                max_connections,
                refused = self.unlogged,
                "connections refused: per-core limit reached"
            );
            self.unlogged = 0;
            self.last_log = Some(now);
        }
    }
}
