//! OCI distribution API types and rules (being written).
