//! Medians, percentiles, and how sure a median is.

pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// The nearest-rank percentile: the smallest value with at least `p`% of
/// the values at or below it. NaN-free input only.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    assert!(!values.is_empty(), "percentile of nothing");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A median with its spread and a confidence interval for it.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: f64,
    /// The interquartile range: the middle half of the values.
    pub quartiles: (f64, f64),
    /// An interval that holds the true median with probability at least
    /// `confidence`, whatever the values' distribution.
    pub interval: (f64, f64),
    pub confidence: f64,
    pub count: usize,
}

/// The confidence `summarize` aims for.
pub const CONFIDENCE: f64 = 0.95;

/// Summarizes repeated measurements (ratios of paired runs, for instance).
///
/// The interval is the order-statistic one: the k-th smallest to the k-th
/// largest value, with k the largest for which the chance that the true
/// median lies outside is at most 5%. Each value falls below the true
/// median with probability one half, so the number below it is binomial,
/// and that chance is 2 * P(Binomial(n, 1/2) < k). No assumption about the
/// noise's shape, which on a shared machine is anything but normal. With
/// fewer than 6 values even the whole range is less sure than 95%; then
/// the whole range is given, with its lower confidence.
pub fn summarize(values: &[f64]) -> Summary {
    assert!(!values.is_empty(), "a summary of nothing");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let mut k = 1;
    while k < n.div_ceil(2) && 2.0 * binomial_below(n, k + 1) <= 1.0 - CONFIDENCE {
        k += 1;
    }
    Summary {
        median: median(&sorted),
        quartiles: (percentile(&sorted, 25.0), percentile(&sorted, 75.0)),
        interval: (sorted[k - 1], sorted[n - k]),
        confidence: 1.0 - 2.0 * binomial_below(n, k),
        count: n,
    }
}

/// P(Binomial(n, 1/2) < k).
fn binomial_below(n: usize, k: usize) -> f64 {
    let mut term = 0.5f64.powi(n as i32); // P(X = 0)
    let mut sum = 0.0;
    for i in 0..k.min(n + 1) {
        sum += term;
        term *= (n - i) as f64 / (i + 1) as f64;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_narrows_as_values_are_added() {
        let seven: Vec<f64> = (1..=7).map(f64::from).collect();
        let s = summarize(&seven);
        // 2/128 outside: the whole range, 98.4%.
        assert_eq!(s.interval, (1.0, 7.0));
        assert!((s.confidence - (1.0 - 2.0 / 128.0)).abs() < 1e-12);
        let many: Vec<f64> = (1..=41).map(f64::from).collect();
        let s = summarize(&many);
        assert_eq!(s.median, 21.0);
        assert!(s.confidence >= CONFIDENCE);
        assert!(s.interval.0 > 1.0 && s.interval.1 < 41.0);
        assert_eq!(s.interval.0 + s.interval.1, 42.0);
    }
}
