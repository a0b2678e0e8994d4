//! Latency statistics from raw samples. Every sample is kept (8 bytes each: 10 s at 50k req/s
//! is 4 MB), so percentiles are exact rather than bucketed.

use std::time::Duration;

use serde::Serialize;

/// Nearest-rank percentile of ascending `sorted` samples: the smallest sample such that at
/// least `p` percent of all samples are less than or equal to it. `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // Multiply before dividing and shave an epsilon so 95 % of 20 is rank 19, not 20.
    let rank = ((p.clamp(0.0, 100.0) * n as f64) / 100.0 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// Summary of latency samples in nanoseconds, reported in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: usize,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn ms(ns: u64) -> f64 {
    Duration::from_nanos(ns).as_secs_f64() * 1e3
}

impl LatencySummary {
    /// Summarise samples (nanoseconds, any order); `None` when there are none.
    pub fn from_samples(mut samples: Vec<u64>) -> Option<Self> {
        samples.sort_unstable();
        let p = |q| percentile(&samples, q).map(ms);
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Some(LatencySummary {
            count: samples.len(),
            min_ms: ms(*samples.first()?),
            mean_ms: ms((sum / samples.len() as u128) as u64),
            p50_ms: p(50.0)?,
            p95_ms: p(95.0)?,
            p99_ms: p(99.0)?,
            max_ms: ms(*samples.last()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_on_one_to_a_hundred() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(95));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 99.5), Some(100));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, 0.5), Some(1));
        assert_eq!(percentile(&v, 1.0), Some(1));
        assert_eq!(percentile(&v, 1.5), Some(2));
    }

    #[test]
    fn exact_ranks_do_not_round_up_through_float_error() {
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&v, 95.0), Some(19));
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99.9), Some(999));
        assert_eq!(percentile(&v, 99.0), Some(990));
        let v: Vec<u64> = (1..=3).collect();
        assert_eq!(percentile(&v, 50.0), Some(2));
        assert_eq!(percentile(&v, 66.0), Some(2));
        assert_eq!(percentile(&v, 67.0), Some(3));
    }

    #[test]
    fn small_and_empty_inputs() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 0.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[1, 2], 51.0), Some(2));
        assert_eq!(LatencySummary::from_samples(vec![]), None);
    }

    #[test]
    fn summary_sorts_and_converts_to_milliseconds() {
        // 1..=100 ms, shuffled.
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        v.reverse();
        v.swap(3, 70);
        let s = LatencySummary::from_samples(v).unwrap();
        assert_eq!(s.count, 100);
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p95_ms, 95.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert_eq!(s.mean_ms, 50.5);
    }
}
