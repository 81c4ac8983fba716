//! Results of one measurement: latency histogram, volume, errors, CPU.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms hold, in microseconds (one hour).
const MAX_MICROS: u64 = 3_600_000_000;

/// Latency histogram in microseconds, three significant figures.
pub fn new_histogram() -> Histogram<u64> {
    // NOTE: bounds are constants that hdrhistogram accepts, so the only
    // failure is a bug in them.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant histogram bounds are valid")
}

/// What one worker saw; merged into a [`Sample`].
pub struct Tally {
    /// Latency of successful measured operations, in microseconds.
    pub latency: Histogram<u64>,
    /// Successful measured operations.
    pub ops: u64,
    /// Payload bytes those operations moved.
    pub bytes: u64,
    /// Failed operations by failure class, warm-up included.
    pub errors: BTreeMap<String, u64>,
    /// One explanation per failure class.
    pub examples: BTreeMap<String, String>,
    /// Operations run during warm-up.
    pub warmup_ops: u64,
    /// The same, per kind of operation, for workloads that mix kinds.
    pub by_operation: BTreeMap<&'static str, OperationTally>,
}

/// Successful operations of one kind within a mixed workload.
pub struct OperationTally {
    /// Latency, in microseconds.
    pub latency: Histogram<u64>,
    /// Operations.
    pub ops: u64,
    /// Payload bytes.
    pub bytes: u64,
}

impl OperationTally {
    fn new() -> OperationTally {
        OperationTally {
            latency: new_histogram(),
            ops: 0,
            bytes: 0,
        }
    }
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Tally {
        Tally {
            latency: new_histogram(),
            ops: 0,
            bytes: 0,
            errors: BTreeMap::new(),
            examples: BTreeMap::new(),
            warmup_ops: 0,
            by_operation: BTreeMap::new(),
        }
    }

    /// Records a successful measured operation.
    pub fn success(&mut self, micros: u64, bytes: u64) {
        self.latency.saturating_record(micros.clamp(1, MAX_MICROS));
        self.ops += 1;
        self.bytes += bytes;
    }

    /// Records a successful measured operation of a named kind (`read`,
    /// `write`, `head-tag`, ...), in the totals and in its kind's own.
    pub fn success_of(&mut self, operation: &'static str, micros: u64, bytes: u64) {
        self.success(micros, bytes);
        let entry = self
            .by_operation
            .entry(operation)
            .or_insert_with(OperationTally::new);
        entry.latency.saturating_record(micros.clamp(1, MAX_MICROS));
        entry.ops += 1;
        entry.bytes += bytes;
    }

    /// Records a failure.
    pub fn failure(&mut self, key: &str, detail: &str) {
        *self.errors.entry(key.to_string()).or_insert(0) += 1;
        if !self.examples.contains_key(key) {
            self.examples.insert(key.to_string(), detail.to_string());
        }
    }

    /// Adds another worker's tally to this one.
    pub fn merge(&mut self, other: &Tally) {
        // NOTE: both histograms share bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.warmup_ops += other.warmup_ops;
        for (operation, theirs) in &other.by_operation {
            let ours = self
                .by_operation
                .entry(operation)
                .or_insert_with(OperationTally::new);
            let _ = ours.latency.add(&theirs.latency);
            ours.ops += theirs.ops;
            ours.bytes += theirs.bytes;
        }
        for (key, count) in &other.errors {
            *self.errors.entry(key.clone()).or_insert(0) += count;
        }
        for (key, detail) in &other.examples {
            self.examples
                .entry(key.clone())
                .or_insert_with(|| detail.clone());
        }
    }
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::new()
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// One measurement of one workload on one target.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Successful measured operations.
    pub ops: u64,
    /// Payload bytes moved by them.
    pub bytes: u64,
    /// Length of the measured window, in seconds.
    pub seconds: f64,
    /// Megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Latency of successful operations, microseconds.
    pub latency_us: Percentiles,
    /// Latency at more quantiles, as `[quantile, microseconds]` pairs, to
    /// draw a distribution.
    pub latency_quantiles_us: Vec<(f64, u64)>,
    /// Failures by class, warm-up included.
    pub errors: BTreeMap<String, u64>,
    /// One explanation per failure class.
    pub error_examples: BTreeMap<String, String>,
    /// Operations run during warm-up.
    pub warmup_ops: u64,
    /// CPU seconds this process used during the measurement, all threads.
    pub client_cpu_seconds: f64,
    /// Client CPU in cores: CPU seconds over wall seconds.
    pub client_cpu_cores: f64,
    /// Figures per kind of operation, for workloads that mix kinds.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_operation: BTreeMap<String, OperationSample>,
}

/// Figures of one kind of operation within a mixed workload.
#[derive(Debug, Clone, Serialize)]
pub struct OperationSample {
    /// Successful operations.
    pub ops: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Latency, microseconds.
    pub latency_us: Percentiles,
}

/// Quantiles listed in the JSON for each sample.
const QUANTILES: [f64; 12] = [
    0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0,
];

/// Percentiles of a latency histogram; zeros when it is empty.
fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: h.value_at_quantile(0.50) as f64,
        p90: h.value_at_quantile(0.90) as f64,
        p99: h.value_at_quantile(0.99) as f64,
        p999: h.value_at_quantile(0.999) as f64,
        max: h.max() as f64,
        mean: h.mean(),
    }
}

impl Sample {
    /// Builds a sample from merged tallies.
    pub fn new(tally: &Tally, seconds: f64, cpu_seconds: f64, wall_seconds: f64) -> Sample {
        let per_sec = |n: f64| if seconds > 0.0 { n / seconds } else { 0.0 };
        let latency_us = percentiles(&tally.latency);
        let latency_quantiles_us = if tally.latency.is_empty() {
            Vec::new()
        } else {
            QUANTILES
                .iter()
                .map(|&q| (q, tally.latency.value_at_quantile(q)))
                .collect()
        };
        let by_operation = tally
            .by_operation
            .iter()
            .map(|(name, t)| {
                let sample = OperationSample {
                    ops: t.ops,
                    bytes: t.bytes,
                    mb_per_sec: per_sec(t.bytes as f64) / 1e6,
                    ops_per_sec: per_sec(t.ops as f64),
                    latency_us: percentiles(&t.latency),
                };
                (name.to_string(), sample)
            })
            .collect();
        Sample {
            ops: tally.ops,
            bytes: tally.bytes,
            seconds,
            mb_per_sec: per_sec(tally.bytes as f64) / 1e6,
            ops_per_sec: per_sec(tally.ops as f64),
            latency_us,
            latency_quantiles_us,
            errors: tally.errors.clone(),
            error_examples: tally.examples.clone(),
            warmup_ops: tally.warmup_ops,
            client_cpu_seconds: cpu_seconds,
            client_cpu_cores: if wall_seconds > 0.0 {
                cpu_seconds / wall_seconds
            } else {
                0.0
            },
            by_operation,
        }
    }

    /// A sample for a measurement that could not run.
    pub fn failed(key: &str, detail: &str) -> Sample {
        let mut tally = Tally::new();
        tally.failure(key, detail);
        Sample::new(&tally, 0.0, 0.0, 0.0)
    }

    /// Total failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The median of the values; 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// CPU seconds (user plus system) used by this process so far.
pub fn process_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is
    // given, which points at a zeroed value of that type on our stack.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: the call succeeded, so the value is initialised (and it was
    // zeroed before, which is a valid `rusage` as well).
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn tallies_merge() {
        let mut a = Tally::new();
        a.success(100, 10);
        a.failure("HTTP 500", "x");
        let mut b = Tally::new();
        b.success(300, 30);
        b.failure("HTTP 500", "y");
        a.merge(&b);
        assert_eq!(a.ops, 2);
        assert_eq!(a.bytes, 40);
        assert_eq!(a.errors["HTTP 500"], 2);
        assert_eq!(a.examples["HTTP 500"], "x");
    }

    #[test]
    fn rates_come_from_the_window() {
        let mut t = Tally::new();
        t.success(1000, 2_000_000);
        t.success(1000, 2_000_000);
        let s = Sample::new(&t, 2.0, 1.0, 4.0);
        assert_eq!(s.mb_per_sec, 2.0);
        assert_eq!(s.ops_per_sec, 1.0);
        assert_eq!(s.client_cpu_cores, 0.25);
    }
}
