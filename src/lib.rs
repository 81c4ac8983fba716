//! berth: an OCI distribution-spec registry server.
//!
//! The library holds the server's modules so that integration tests and
//! the `berth` binary share them.

pub mod admin;
pub mod config;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod oci;
pub mod registry;
pub mod scrub;
pub mod server;
pub mod shards;
