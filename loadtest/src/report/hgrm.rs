//! The HdrHistogram percentile distribution text (`.hgrm`), exactly as Java's
//! `AbstractHistogram.outputPercentileDistribution(out, ticksPerHalfDistance, scalingRatio)` prints
//! it, so HdrHistogram's plotter and the tools built around it read our files unchanged:
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!        0.512 0.000000000000          1           1.00
//!        ...
//!        1.000 1.000000000000       1000
//! #[Mean    =        0.500, StdDeviation   =        0.289]
//! #[Max     =        1.000, Total count    =         1000]
//! #[Buckets =           32, SubBuckets     =         2048]
//! ```
//!
//! Rows come from [`percentile_steps`], Java's `PercentileIterator` in Java's arithmetic; values
//! are divided by the scaling ratio and printed with as many decimals as the histogram has
//! significant digits. Java's `Formatter` rounds the shortest
//! decimal representation of a double half-up (`0.125` → `0.13` at two places, where C's printf
//! gives `0.12`); [`java_fixed`] does the same so every digit matches.

use anyhow::{bail, Context};
use hdrhistogram::Histogram;

/// Appends the percentile distribution of `histogram` to `out`, values divided by `scale`
/// (1e6 turns nanoseconds into milliseconds).
pub fn write_percentiles(
    histogram: &Histogram<u64>,
    scale: f64,
    ticks_per_half_distance: u32,
    out: &mut String,
) {
    let digits = usize::from(histogram.sigfig());
    out.push_str(&format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    ));
    for step in percentile_steps(histogram, ticks_per_half_distance) {
        let value = java_fixed(step.value as f64 / scale, digits);
        let fraction = step.percentile / 100.0;
        if step.percentile != 100.0 {
            out.push_str(&format!(
                "{value:>12} {:>2} {:>10} {:>14}\n",
                java_fixed(fraction, 12),
                step.total_count,
                java_fixed(1.0 / (1.0 - fraction), 2)
            ));
        } else {
            out.push_str(&format!(
                "{value:>12} {:>2} {:>10}\n",
                java_fixed(fraction, 12),
                step.total_count
            ));
        }
    }
    let (mean, std_deviation) = mean_and_std_deviation(histogram);
    let max = if histogram.is_empty() {
        0.0
    } else {
        histogram.max() as f64 / scale
    };
    out.push_str(&format!(
        "#[Mean    = {:>12}, StdDeviation   = {:>12}]\n",
        java_fixed(mean / scale, digits),
        java_fixed(std_deviation / scale, digits)
    ));
    out.push_str(&format!(
        "#[Max     = {:>12}, Total count    = {:>12}]\n",
        java_fixed(max, digits),
        histogram.len()
    ));
    out.push_str(&format!(
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]\n",
        histogram.buckets(),
        sub_bucket_count(histogram.sigfig())
    ));
}

/// One step of Java's `PercentileIterator`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PercentileStep {
    /// Highest value equivalent to the bucket reached.
    pub value: u64,
    /// The percentile level iterated to, in percent.
    pub percentile: f64,
    /// Samples at or below the bucket.
    pub total_count: u64,
}

/// The steps of Java's `PercentileIterator(histogram, ticksPerHalfDistance)`, in its arithmetic:
/// levels are percentages advanced by `100 / ticks` (the Rust crate's `iter_quantiles` works in
/// fractions, and its sums round differently, e.g. to 0.7000000000000001 where Java reaches 70.0,
/// which moves rows). Each recorded bucket yields a step for every level it reaches, except that
/// the bucket holding the last sample yields one, followed by the final step at 100%.
pub(crate) fn percentile_steps(
    histogram: &Histogram<u64>,
    ticks_per_half_distance: u32,
) -> Vec<PercentileStep> {
    let total = histogram.len();
    let mut steps = Vec::new();
    if total == 0 {
        return steps;
    }
    let mut level = 0.0f64;
    let mut running = 0u64;
    for bucket in histogram.iter_recorded() {
        running += bucket.count_since_last_iteration();
        let value = bucket.value_iterated_to();
        let current = 100.0 * running as f64 / total as f64;
        while current >= level {
            steps.push(PercentileStep {
                value,
                percentile: level,
                total_count: running,
            });
            let halvings = ((100.0 / (100.0 - level)).ln() / 2f64.ln()) as i64;
            let ticks = i64::from(ticks_per_half_distance)
                .saturating_mul(2f64.powi((halvings + 1) as i32) as i64);
            level += 100.0 / ticks as f64;
            if running >= total {
                steps.push(PercentileStep {
                    value,
                    percentile: 100.0,
                    total_count: running,
                });
                return steps;
            }
        }
    }
    steps
}

/// Java's `getMean()` and `getStdDeviation()`: sums over the recorded buckets' median equivalent
/// values, divided once at the end.
fn mean_and_std_deviation(histogram: &Histogram<u64>) -> (f64, f64) {
    let total = histogram.len();
    if total == 0 {
        return (0.0, 0.0);
    }
    let buckets = || {
        histogram.iter_recorded().map(|b| {
            (
                histogram.median_equivalent(b.value_iterated_to()) as f64,
                b.count_at_value() as f64,
            )
        })
    };
    let mean = buckets().map(|(value, count)| value * count).sum::<f64>() / total as f64;
    let squares: f64 = buckets()
        .map(|(value, count)| (value - mean) * (value - mean) * count)
        .sum();
    (mean, (squares / total as f64).sqrt())
}

/// Java's `subBucketCount`: the power of two at or above `2 × 10^digits`.
fn sub_bucket_count(significant_digits: u8) -> u64 {
    (2 * 10u64.pow(significant_digits.into())).next_power_of_two()
}

/// `value` with `decimals` places, as Java's `String.format("%.Nf")` prints it: the shortest
/// decimal that round-trips, rounded half-up.
pub(crate) fn java_fixed(value: f64, decimals: usize) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits: "d.ddde-x".
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    // value = digits × 10^shift, as an integer count of units in the last kept decimal place.
    let shift = exponent - (digits.len() as i64 - 1) + decimals as i64;
    if shift >= 0 {
        digits.extend(std::iter::repeat_n(0, shift as usize));
    } else {
        let drop = (-shift) as usize;
        let round_up = drop <= digits.len() && digits[digits.len() - drop] >= 5;
        digits.truncate(digits.len().saturating_sub(drop));
        if round_up {
            let mut at = digits.len();
            loop {
                if at == 0 {
                    digits.insert(0, 1);
                    break;
                }
                at -= 1;
                if digits[at] == 9 {
                    digits[at] = 0;
                } else {
                    digits[at] += 1;
                    break;
                }
            }
        }
    }
    while digits.len() <= decimals {
        digits.insert(0, 0);
    }
    let point = digits.len() - decimals;
    let mut text = String::with_capacity(digits.len() + 2);
    if value.is_sign_negative() && digits.iter().any(|&d| d != 0) {
        text.push('-');
    }
    for (n, digit) in digits.iter().enumerate() {
        if n == point {
            text.push('.');
        }
        text.push(char::from(b'0' + digit));
    }
    text
}

/// One row of a percentile distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PercentileRow {
    /// Value (scaled).
    pub value: f64,
    /// Percentile as a fraction (0 to 1).
    pub percentile: f64,
    /// Samples at or below the value.
    pub total_count: u64,
    /// `1/(1-percentile)`; `None` on the last row.
    pub inverse: Option<f64>,
}

/// A parsed `.hgrm` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Percentiles {
    /// The rows, in order.
    pub rows: Vec<PercentileRow>,
    /// Footer: mean.
    pub mean: f64,
    /// Footer: standard deviation.
    pub std_deviation: f64,
    /// Footer: maximum.
    pub max: f64,
    /// Footer: total count.
    pub total_count: u64,
    /// Footer: bucket count.
    pub buckets: u64,
    /// Footer: sub-bucket count.
    pub sub_buckets: u64,
}

/// Parses the percentile distribution format (ours or Java's).
pub fn parse_percentiles(text: &str) -> anyhow::Result<Percentiles> {
    let mut lines = text.lines();
    let header = lines.next().context("empty file")?;
    let columns: Vec<&str> = header.split_whitespace().collect();
    if columns != ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"] {
        bail!("not a percentile distribution header: {header:?}");
    }
    let mut parsed = Percentiles {
        rows: Vec::new(),
        mean: f64::NAN,
        std_deviation: f64::NAN,
        max: f64::NAN,
        total_count: 0,
        buckets: 0,
        sub_buckets: 0,
    };
    let mut footer_lines = 0;
    for (number, line) in lines.enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let context = || format!("line {}: {line:?}", number + 2);
        if let Some(footer) = line.strip_prefix("#[").and_then(|l| l.strip_suffix(']')) {
            let pairs: Vec<(&str, &str)> = footer
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect();
            for (key, value) in pairs {
                match key {
                    "Mean" => parsed.mean = value.parse().with_context(context)?,
                    "StdDeviation" => parsed.std_deviation = value.parse().with_context(context)?,
                    "Max" => parsed.max = value.parse().with_context(context)?,
                    "Total count" => parsed.total_count = value.parse().with_context(context)?,
                    "Buckets" => parsed.buckets = value.parse().with_context(context)?,
                    "SubBuckets" => parsed.sub_buckets = value.parse().with_context(context)?,
                    _ => bail!("unknown footer field {key:?} ({})", context()),
                }
            }
            footer_lines += 1;
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !(3..=4).contains(&fields.len()) {
            bail!("expected 3 or 4 columns ({})", context());
        }
        parsed.rows.push(PercentileRow {
            value: fields[0].parse().with_context(context)?,
            percentile: fields[1].parse().with_context(context)?,
            total_count: fields[2].parse().with_context(context)?,
            inverse: fields
                .get(3)
                .map(|f| f.parse())
                .transpose()
                .with_context(context)?,
        });
    }
    if footer_lines != 3 {
        bail!("expected the 3 footer lines, found {footer_lines}");
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn java_rounding() {
        assert_eq!(java_fixed(0.125, 2), "0.13");
        assert_eq!(java_fixed(0.15, 1), "0.2");
        assert_eq!(java_fixed(0.0625, 3), "0.063");
        assert_eq!(java_fixed(1.0, 3), "1.000");
        assert_eq!(java_fixed(0.0, 12), "0.000000000000");
        assert_eq!(java_fixed(9.9996, 3), "10.000");
        assert_eq!(java_fixed(123_456.789, 2), "123456.79");
        assert_eq!(java_fixed(1e-7, 3), "0.000");
        assert_eq!(java_fixed(0.0005, 3), "0.001");
        assert_eq!(java_fixed(0.0004999, 3), "0.000");
        assert_eq!(java_fixed(1e21, 1), "1000000000000000000000.0");
        assert_eq!(java_fixed(-2.5, 0), "-3");
        assert_eq!(java_fixed(0.990625, 12), "0.990625000000");
        assert_eq!(java_fixed(f64::INFINITY, 2), "Infinity");
    }

    #[test]
    fn matches_the_java_layout() {
        // Values 1..=10 ms recorded in ns.
        let mut histogram = new_histogram();
        for ms in 1..=10u64 {
            histogram.record(ms * 1_000_000).unwrap();
        }
        let mut text = String::new();
        write_percentiles(&histogram, 1e6, 5, &mut text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "       1.000 0.000000000000          1           1.00"
        );
        assert_eq!(
            lines[3],
            "       1.000 0.100000000000          1           1.11"
        );
        let last_row = lines[lines.len() - 4];
        assert_eq!(last_row, "      10.002 1.000000000000         10");
        assert_eq!(
            lines[lines.len() - 3],
            "#[Mean    =        5.500, StdDeviation   =        2.872]"
        );
        assert_eq!(
            lines[lines.len() - 2],
            "#[Max     =       10.002, Total count    =           10]"
        );
        assert_eq!(
            lines[lines.len() - 1],
            "#[Buckets =           32, SubBuckets     =         2048]"
        );
    }

    #[test]
    fn parses_back() {
        let mut histogram = new_histogram();
        for n in 1..=10_000u64 {
            histogram.record(n * 997).unwrap();
        }
        let mut text = String::new();
        write_percentiles(&histogram, 1e6, 5, &mut text);
        let parsed = parse_percentiles(&text).unwrap();
        assert_eq!(parsed.total_count, 10_000);
        assert_eq!(parsed.sub_buckets, 2048);
        assert_eq!(parsed.buckets, u64::from(histogram.buckets()));
        let last = parsed.rows.last().unwrap();
        assert_eq!(
            (last.percentile, last.total_count, last.inverse),
            (1.0, 10_000, None)
        );
        assert!((parsed.max - histogram.max() as f64 / 1e6).abs() < 0.001);
        assert!(parsed
            .rows
            .windows(2)
            .all(|w| w[0].percentile <= w[1].percentile && w[0].value <= w[1].value));
        let median = parsed
            .rows
            .iter()
            .find(|row| row.percentile >= 0.5)
            .unwrap();
        assert!((median.value - histogram.value_at_quantile(0.5) as f64 / 1e6).abs() < 0.001);
        assert!(parse_percentiles("Value Percentile\n").is_err());
    }

    #[test]
    fn empty_histogram_has_header_and_footer() {
        let mut text = String::new();
        write_percentiles(&new_histogram(), 1e6, 5, &mut text);
        let parsed = parse_percentiles(&text).unwrap();
        assert!(parsed.rows.is_empty());
        assert_eq!(parsed.total_count, 0);
    }
}
