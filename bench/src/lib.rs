//! berth-bench: a load generator for any OCI distribution registry.
//!
//! It speaks only HTTP, so it measures berth, CNCF Distribution, zot,
//! Harbor or anything else that implements the OCI distribution-spec, and
//! compares several of them in one run by alternating between them.

pub mod auth;
pub mod cli;
pub mod client;
pub mod image;
pub mod payload;
pub mod report;
pub mod runner;
pub mod stats;
pub mod svg;
pub mod target;
pub mod units;
pub mod workload;
