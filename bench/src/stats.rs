//! Latency summaries and the ratio arithmetic every table uses.

use serde::Serialize;
use std::time::Duration;

/// Percentiles of a set of latency samples, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    /// Summarizes samples given in microseconds (nearest-rank percentiles).
    pub fn from_micros(mut us: Vec<u64>) -> Self {
        if us.is_empty() {
            return Self::default();
        }
        us.sort_unstable();
        let ms = |v: u64| v as f64 / 1000.0;
        let rank = |p: f64| {
            let i = ((p / 100.0) * us.len() as f64).ceil() as usize;
            us[i.clamp(1, us.len()) - 1]
        };
        let sum: u64 = us.iter().sum();
        Self {
            samples: us.len(),
            p50_ms: ms(rank(50.0)),
            p90_ms: ms(rank(90.0)),
            p99_ms: ms(rank(99.0)),
            max_ms: ms(us[us.len() - 1]),
            mean_ms: sum as f64 / us.len() as f64 / 1000.0,
        }
    }

    /// Summarizes durations.
    pub fn from_durations(d: &[Duration]) -> Self {
        Self::from_micros(d.iter().map(|d| d.as_micros() as u64).collect())
    }
}

/// The median of `values` (the mean of the middle two for an even count;
/// NaN for none).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// `a / b`, or `None` when `b` is zero (no baseline figure).
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// A ratio for a table cell: `1.23×`, or `–`.
pub fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{r:.2}×"),
        None => "–".to_owned(),
    }
}

/// Milliseconds for a table cell.
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let l = Latency::from_micros((1..=100).map(|i| i * 1000).collect());
        assert_eq!(l.samples, 100);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p90_ms, 90.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        let one = Latency::from_micros(vec![1500]);
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (1.5, 1.5, 1.5));
        assert_eq!(Latency::from_micros(Vec::new()).samples, 0);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
