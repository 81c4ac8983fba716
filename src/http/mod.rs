//! HTTP/1.1 written by hand on `httparse` (RFC 9112).
//!
//! One connection is one task on one executor. The driver reads a
//! request head into a buffer of fixed size, hands the [`Handler`] a
//! [`Body`] that reads the rest on demand, and writes the [`Response`],
//! pulling a streamed body piece by piece. Memory per connection is the
//! read buffer (`max_header_bytes` plus [`BODY_READ_BYTES`]) and one
//! response piece, whatever the sizes of the bodies.
//!
//! Every limit lives in [`Limits`]. A request the driver refuses gets a
//! distribution-spec JSON error and the connection is closed, since its
//! framing can no longer be trusted.

mod body;
mod chunked;
mod conn;
mod date;
mod head;
mod limits;
pub mod range;
mod request;
mod response;
mod server;
mod shutdown;
pub mod tls;
mod wire;

#[cfg(test)]
mod split_tests;
#[cfg(test)]
mod tests;

pub use body::{Body, BodyError, MAX_BODY_CHUNK_BYTES};
pub use conn::{serve_connection, Answer, ConnectionEvent, Handler, BODY_READ_BYTES};
pub use limits::Limits;
pub use request::{Method, Request};
pub use response::{reason_phrase, Response, ResponseBody};
pub use server::{accept_loop, bind_reuseport, LiveLimits};
/// Short name of [`ShutdownSignal`].
pub use shutdown::ShutdownSignal as Shutdown;
pub use shutdown::{ShutdownSignal, Wait};
pub use tls::TlsAcceptorHandle;
