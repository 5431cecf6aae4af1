//! A histogram of atomics. prometheus-client's own `Histogram` keeps its buckets behind one
//! mutex per series, which every request of a model would take; this one counts with atomic
//! adds, so observing never waits on another thread.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) for a whole LLM call: from a cached answer to a long generation.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];
/// Upper bounds (seconds) for the first streamed chunk.
pub const FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds (seconds) for the gateway's own time: well under a millisecond when healthy.
pub const OVERHEAD_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Clone, Debug)]
pub struct AtomicHistogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    bounds: &'static [f64],
    /// One count per bound, plus the `+Inf` bucket; not cumulative.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        AtomicHistogram(Arc::new(Inner {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    pub fn observe(&self, v: f64) {
        if !v.is_finite() {
            return;
        }
        let inner = &self.0;
        // The first bound that is >= v (`le` semantics); past the last one, `+Inf`.
        let i = inner.bounds.partition_point(|b| *b < v);
        if let Some(c) = inner.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let _ = inner
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    /// (bound, count) per bucket, `+Inf` last, and the total count.
    fn snapshot(&self) -> (Vec<(f64, u64)>, u64) {
        let inner = &self.0;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' sum, so `+Inf` and `_count` always agree in one scrape.
        let count = buckets.iter().map(|(_, n)| n).sum();
        (buckets, count)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (buckets, count) = self.snapshot();
        let sum = f64::from_bits(self.0.sum.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(
            sum,
            count,
            &buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

pub fn request_histogram() -> AtomicHistogram {
    AtomicHistogram::new(REQUEST_BUCKETS)
}

pub fn first_token_histogram() -> AtomicHistogram {
    AtomicHistogram::new(FIRST_TOKEN_BUCKETS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_le_bucket() {
        let h = AtomicHistogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 1.0, 7.0, f64::NAN] {
            h.observe(v);
        }
        let (buckets, count) = h.snapshot();
        assert_eq!(buckets, vec![(0.1, 2), (1.0, 2), (f64::INFINITY, 1)]);
        assert_eq!(count, 5);
        let sum = f64::from_bits(h.0.sum.load(Ordering::Relaxed));
        assert!((sum - 8.65).abs() < 1e-9);
    }
}
