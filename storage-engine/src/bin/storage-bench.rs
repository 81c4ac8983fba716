//! storage-bench: throughput and latency of the segment store against fio.
//!
//! The measurements are being written; this binary only prints its usage.

fn main() {
    println!("storage-bench: not implemented in this build");
}
