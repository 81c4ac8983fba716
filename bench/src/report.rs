//! The results of a run: medians, ratios, the text table and the JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::{median, OperationSample, Sample};
use crate::units::format_micros;
use crate::workload::Workload;

/// Medians over a row's repetitions.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    /// Megabytes (10^6) per second.
    pub mb_per_sec: f64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 90th percentile, microseconds.
    pub p90_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile, microseconds.
    pub p999_us: f64,
    /// Slowest, microseconds.
    pub max_us: f64,
    /// Client CPU, in cores.
    pub client_cpu_cores: f64,
}

/// Ratios of a row's medians to the first target's.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Ratios {
    /// Throughput ratio (MB/s, or req/s for metadata workloads); higher is
    /// better.
    pub throughput: f64,
    /// p50 latency ratio; lower is better.
    pub p50: f64,
    /// p99 latency ratio; lower is better.
    pub p99: f64,
}

/// One workload on one target, over all repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Workload label.
    pub workload: String,
    /// Index of the workload in the run.
    pub workload_index: usize,
    /// Target name.
    pub target: String,
    /// Whether throughput is in bytes (else in requests).
    pub bytes_bound: bool,
    /// Why the workload could not be prepared, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_error: Option<String>,
    /// Every repetition.
    pub samples: Vec<Sample>,
    /// Medians over the repetitions.
    pub median: Summary,
    /// Medians relative to the first target's.
    pub ratio_to_first: Ratios,
    /// Failures of all repetitions, by class.
    pub errors: BTreeMap<String, u64>,
    /// Medians per kind of operation, for workloads that mix kinds.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_operation: BTreeMap<String, Summary>,
}

impl Row {
    /// Builds a row and its medians.
    pub fn new(
        workload: &Workload,
        workload_index: usize,
        target: &str,
        samples: Vec<Sample>,
        setup_error: Option<String>,
    ) -> Row {
        let pick = |f: &dyn Fn(&Sample) -> f64| {
            let mut values: Vec<f64> = samples.iter().filter(|s| s.ops > 0).map(f).collect();
            median(&mut values)
        };
        let summary = Summary {
            mb_per_sec: pick(&|s| s.mb_per_sec),
            ops_per_sec: pick(&|s| s.ops_per_sec),
            p50_us: pick(&|s| s.latency_us.p50),
            p90_us: pick(&|s| s.latency_us.p90),
            p99_us: pick(&|s| s.latency_us.p99),
            p999_us: pick(&|s| s.latency_us.p999),
            max_us: pick(&|s| s.latency_us.max),
            client_cpu_cores: pick(&|s| s.client_cpu_cores),
        };

        let mut names: Vec<&String> = samples.iter().flat_map(|s| s.by_operation.keys()).collect();
        names.sort();
        names.dedup();
        let by_operation = names
            .into_iter()
            .map(|name| {
                let per = |f: &dyn Fn(&OperationSample) -> f64| {
                    let mut values: Vec<f64> = samples
                        .iter()
                        .filter_map(|s| s.by_operation.get(name))
                        .map(f)
                        .collect();
                    median(&mut values)
                };
                let summary = Summary {
                    mb_per_sec: per(&|o| o.mb_per_sec),
                    ops_per_sec: per(&|o| o.ops_per_sec),
                    p50_us: per(&|o| o.latency_us.p50),
                    p90_us: per(&|o| o.latency_us.p90),
                    p99_us: per(&|o| o.latency_us.p99),
                    p999_us: per(&|o| o.latency_us.p999),
                    max_us: per(&|o| o.latency_us.max),
                    client_cpu_cores: 0.0,
                };
                (name.clone(), summary)
            })
            .collect();

        let mut errors = BTreeMap::new();
        for sample in &samples {
            for (key, count) in &sample.errors {
                *errors.entry(key.clone()).or_insert(0) += count;
            }
        }

        Row {
            workload: workload.label.clone(),
            workload_index,
            target: target.to_string(),
            bytes_bound: workload.is_bytes_bound(),
            setup_error,
            samples,
            median: summary,
            ratio_to_first: Ratios::default(),
            errors,
            by_operation,
        }
    }

    /// The throughput figure compared across targets.
    pub fn throughput(&self) -> f64 {
        if self.bytes_bound {
            self.median.mb_per_sec
        } else {
            self.median.ops_per_sec
        }
    }

    /// Total failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Fills each row's ratios against the first target's row of its workload.
pub fn fill_ratios(rows: &mut [Row], first_target: &str) {
    let firsts: BTreeMap<usize, (f64, f64, f64)> = rows
        .iter()
        .filter(|r| r.target == first_target)
        .map(|r| {
            (
                r.workload_index,
                (r.throughput(), r.median.p50_us, r.median.p99_us),
            )
        })
        .collect();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    for row in rows.iter_mut() {
        if let Some(&(tp, p50, p99)) = firsts.get(&row.workload_index) {
            row.ratio_to_first = Ratios {
                throughput: ratio(row.throughput(), tp),
                p50: ratio(row.median.p50_us, p50),
                p99: ratio(row.median.p99_us, p99),
            };
        }
    }
}

/// The banner printed above everything when anything failed.
pub fn error_banner(rows: &[Row], ping_errors: &BTreeMap<String, String>) -> Option<String> {
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for row in rows {
        for (key, count) in &row.errors {
            *total.entry(key.clone()).or_insert(0) += count;
        }
    }
    if total.is_empty() && ping_errors.is_empty() {
        return None;
    }

    let mut out = String::new();
    let failed: u64 = total.values().sum();
    let classes: Vec<String> = total.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = writeln!(out, "{}", "!".repeat(78));
    let _ = writeln!(
        out,
        "!! ERRORS: {failed} operations failed ({}); results below are suspect",
        if classes.is_empty() {
            "none ran".into()
        } else {
            classes.join(", ")
        }
    );
    for (target, why) in ping_errors {
        let _ = writeln!(out, "!! target {target} unreachable: {why}");
    }
    // An unreachable target's rows only repeat the line above.
    let reachable = rows.iter().filter(|r| !ping_errors.contains_key(&r.target));
    for row in reachable {
        // One example per failure class and row, with its count.
        let mut examples: BTreeMap<&str, &str> = BTreeMap::new();
        for sample in &row.samples {
            for (key, detail) in &sample.error_examples {
                examples.entry(key).or_insert(detail);
            }
        }
        for (key, detail) in examples {
            let count = row.errors.get(key).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "!! {} on {}: {count} x {key}, e.g. {detail}",
                row.workload, row.target
            );
        }
    }
    let _ = writeln!(out, "{}", "!".repeat(78));
    Some(out)
}

/// Text table with one line per workload and target.
pub fn text_table(rows: &[Row], repeat: usize) -> String {
    let header = [
        "workload", "target", "MB/s", "ops/s", "p50", "p90", "p99", "p99.9", "max", "cpu", "err",
        "vs first",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for row in rows {
        let m = &row.median;
        let r = &row.ratio_to_first;
        lines.push(vec![
            row.workload.clone(),
            row.target.clone(),
            format!("{:.1}", m.mb_per_sec),
            format!("{:.0}", m.ops_per_sec),
            format_micros(m.p50_us),
            format_micros(m.p90_us),
            format_micros(m.p99_us),
            format_micros(m.p999_us),
            format_micros(m.max_us),
            format!("{:.2}", m.client_cpu_cores),
            row.error_count().to_string(),
            format!("x{:.2} tput, x{:.2} p99", r.throughput, r.p99),
        ]);
        for (name, m) in &row.by_operation {
            lines.push(vec![
                format!("  - {name}"),
                String::new(),
                format!("{:.1}", m.mb_per_sec),
                format!("{:.0}", m.ops_per_sec),
                format_micros(m.p50_us),
                format_micros(m.p90_us),
                format_micros(m.p99_us),
                format_micros(m.p999_us),
                format_micros(m.max_us),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
    }

    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        for (c, cell) in line.iter().enumerate() {
            // Names left-aligned, numbers right-aligned.
            if c < 2 {
                let _ = write!(out, "{cell:<w$}  ", w = widths[c]);
            } else {
                let _ = write!(out, "{cell:>w$}  ", w = widths[c]);
            }
        }
        out = out.trim_end().to_string();
        out.push('\n');
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    let _ = writeln!(
        out,
        "medians of {repeat} repetitions; MB = 10^6 bytes; ops/s = workload \
         operations (an upload is 2+ requests); cpu = client cores used; \
         vs first: throughput and p99 against the first target"
    );
    out
}

/// Markdown table, for README files.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | target | MB/s | ops/s | p50 | p99 | p99.9 | max | errors | \
         throughput vs first | p99 vs first |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let m = &row.median;
        let r = &row.ratio_to_first;
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.0} | {} | {} | {} | {} | {} | x{:.2} | x{:.2} |",
            row.workload,
            row.target,
            m.mb_per_sec,
            m.ops_per_sec,
            format_micros(m.p50_us),
            format_micros(m.p99_us),
            format_micros(m.p999_us),
            format_micros(m.max_us),
            row.error_count(),
            r.throughput,
            r.p99,
        );
    }
    out
}

/// The machine the client ran on, as far as it can tell.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads the machine's description from `/proc`.
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_bytes,
            kernel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Tally;
    use crate::workload::Defaults;
    use std::time::Duration;

    fn row(target: &str, mb: u64, p99_micros: u64, errors: u64) -> Row {
        let defaults = Defaults {
            blob_bytes: 1 << 20,
            concurrency: 1,
            repos: 1,
            count: None,
            duration: Duration::from_secs(1),
        };
        let workload = Workload::parse("push", &defaults).unwrap();
        let mut tally = Tally::new();
        tally.success(p99_micros, mb * 1_000_000);
        for _ in 0..errors {
            tally.failure("HTTP 500", "upload put: unexpected status 500");
        }
        let sample = Sample::new(&tally, 1.0, 0.0, 1.0);
        Row::new(&workload, 0, target, vec![sample], None)
    }

    #[test]
    fn ratios_are_to_the_first_target() {
        let mut rows = vec![row("a", 100, 1000, 0), row("b", 50, 4000, 0)];
        fill_ratios(&mut rows, "a");
        assert_eq!(rows[0].ratio_to_first.throughput, 1.0);
        assert_eq!(rows[1].ratio_to_first.throughput, 0.5);
        let p99 = rows[1].ratio_to_first.p99;
        assert!((3.9..4.1).contains(&p99), "{p99}");
    }

    #[test]
    fn banner_only_when_something_failed() {
        let clean = vec![row("a", 100, 1000, 0)];
        assert!(error_banner(&clean, &BTreeMap::new()).is_none());

        let failed = vec![row("a", 100, 1000, 2)];
        let banner = error_banner(&failed, &BTreeMap::new()).unwrap();
        assert!(banner.starts_with("!!!"));
        assert!(banner.contains("2 operations failed (HTTP 500: 2)"));

        let mut gone = BTreeMap::new();
        gone.insert("b".to_string(), "connect: refused".to_string());
        let banner = error_banner(&clean, &gone).unwrap();
        assert!(banner.contains("target b unreachable: connect: refused"));
    }

    #[test]
    fn tables_have_a_line_per_row() {
        let rows = vec![row("a", 100, 1000, 0), row("b", 50, 4000, 1)];
        let text = text_table(&rows, 1);
        assert_eq!(text.lines().count(), 2 + rows.len() + 1);
        let markdown = markdown_table(&rows);
        assert_eq!(markdown.lines().count(), 2 + rows.len());
        assert!(markdown.contains("| push 1MiB x1 | b |"));
    }
}
