//! Parsing and printing of sizes and durations given on the command line.

use std::time::Duration;

/// Parses a byte size: `4096`, `512KiB`, `1MiB`, `2GiB`, `1MB`, `64k`.
///
/// Binary suffixes (`KiB`, `MiB`, `GiB`, and the short `k`, `m`, `g`) are
/// powers of 1024; `KB`, `MB`, `GB` are powers of 1000.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("bad size {text:?}: expected a number and unit"))?;

    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("bad size unit {other:?} in {text:?}")),
    };

    let bytes = number * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > (1u64 << 50) as f64 {
        return Err(format!("size {text:?} out of range"));
    }
    Ok(bytes as u64)
}

/// Parses a duration: `10s`, `500ms`, `2m`, `1.5s`, `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}: expected e.g. 10s"))?;

    let secs = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("bad duration unit {other:?} in {text:?}")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("duration {text:?} out of range (0 to 24h)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Prints a byte size with a binary unit: `64MiB`, `1.5KiB`, `100B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, factor) in UNITS {
        if bytes >= factor {
            let value = bytes as f64 / factor as f64;
            if bytes % factor == 0 {
                return format!("{}{unit}", bytes / factor);
            }
            return format!("{value:.1}{unit}");
        }
    }
    format!("{bytes}B")
}

/// Prints microseconds as a short latency: `850us`, `12.3ms`, `1.20s`.
pub fn format_micros(micros: f64) -> String {
    if micros < 1_000.0 {
        format!("{micros:.0}us")
    } else if micros < 1_000_000.0 {
        format!("{:.2}ms", micros / 1_000.0)
    } else {
        format!("{:.2}s", micros / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        let cases: &[(&str, Result<u64, ()>)] = &[
            ("4096", Ok(4096)),
            ("1MiB", Ok(1 << 20)),
            ("64MiB", Ok(64 << 20)),
            ("512k", Ok(512 << 10)),
            ("1MB", Ok(1_000_000)),
            ("1.5KiB", Ok(1536)),
            ("2 GiB", Ok(2 << 30)),
            ("1XB", Err(())),
            ("MiB", Err(())),
            ("", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input).map_err(|_| ()), *want, "{input}");
        }
    }

    #[test]
    fn durations_parse() {
        let cases: &[(&str, Result<Duration, ()>)] = &[
            ("10s", Ok(Duration::from_secs(10))),
            ("500ms", Ok(Duration::from_millis(500))),
            ("2m", Ok(Duration::from_secs(120))),
            ("0", Ok(Duration::ZERO)),
            ("1.5s", Ok(Duration::from_millis(1500))),
            ("10 parsecs", Err(())),
            ("-1s", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).map_err(|_| ()), *want, "{input}");
        }
    }

    #[test]
    fn sizes_print() {
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(1536), "1.5KiB");
        assert_eq!(format_size(10), "10B");
    }
}
