//! berth: an OCI distribution-spec registry server.
//!
//! The library holds the server's modules so that integration tests and
//! the `berth` binary share them.
