//! The rules of the OCI distribution API, as pure logic.
//!
//! Nothing here does I/O or knows HTTP types: the handlers pass in
//! methods, paths, header values and bodies as plain strings and bytes,
//! and turn the results (routes, parsed manifests, [`errors::OciError`]s)
//! into responses.
//!
//! The rules come from the OCI distribution-spec 1.1 (`spec.md`), the
//! OCI image-spec (`manifest.md`, `image-index.md`, `descriptor.md`) and
//! Docker's image manifest v2 schema 2.

pub mod accept;
pub mod content_range;
pub mod digest;
pub mod errors;
pub mod manifest;
pub mod media_type;
pub mod name;
pub mod pagination;
pub mod referrers;
pub mod route;

#[cfg(test)]
mod fuzz_tests;
