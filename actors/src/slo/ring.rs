//! One capability's recent attempts on this node: a ring of fixed time slots.
//!
//! Two tiers, so that every window the detectors read exists without keeping
//! a latency histogram per slot for days:
//! - fine slots (`slot`, default 10 s, `fine_slots` kept, default 1 h): each
//!   holds the slot's latency histogram (sparse: only the buckets that were
//!   hit) and its attempt and error counts. Percentile windows (1m, 5m, 1h)
//!   merge these.
//! - coarse slots (`coarse_slot`, default 5 min, kept for the longest burn
//!   window, 3 d of a 30 d period): attempt and error counts only. Burn
//!   windows longer than the fine ring (6h, 3d) sum these.
//!
//! The open slot records into a live HDR histogram; when time moves past it,
//! it is sealed into its sparse buckets. A sealed bucket is kept as its
//! highest equivalent value, which the histogram maps back to the same
//! bucket, so a merge is exact at the histogram's precision.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Significant digits of every latency histogram: buckets ≤ 1/128 wide
/// relative to their value, so a percentile is within 1 % of the exact one.
pub const SIGFIG: u8 = 2;
/// Highest latency recorded as itself (1 h); slower attempts count as this.
pub const MAX_LATENCY_MS: u64 = 3_600_000;

/// A latency histogram of the shared shape (1 ms .. `MAX_LATENCY_MS`, `SIGFIG`).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MS, SIGFIG).expect("constant bounds are valid")
}

/// The non-empty buckets of a histogram: `(highest equivalent value, count)`.
/// What sealed slots keep and what nodes send each other (MessagePack, like
/// every cluster payload). Not hdrhistogram's V2 serializer: it needs the
/// crate's `serialization` feature (flate2, nom, base64), and these pairs
/// carry the same buckets, merged exactly by `add_to`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buckets(pub Vec<(u32, u32)>);

impl Buckets {
    pub fn of(h: &Histogram<u64>) -> Self {
        Self(
            h.iter_recorded()
                .map(|v| {
                    let value = v.value_iterated_to().min(u64::from(u32::MAX)) as u32;
                    (value, v.count_at_value().min(u64::from(u32::MAX)) as u32)
                })
                .collect(),
        )
    }

    /// Adds these buckets' counts into `into` (same shape: see `histogram`).
    pub fn add_to(&self, into: &mut Histogram<u64>) {
        for &(value, count) in &self.0 {
            into.saturating_record_n(u64::from(value), u64::from(count));
        }
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<(u32, u32)>()
    }
}

/// Attempts and errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub count: u64,
    pub errors: u64,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.count += other.count;
        self.errors += other.errors;
    }

    /// Errors over attempts; 0 with no attempt.
    pub fn error_ratio(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.errors as f64 / self.count as f64
        }
    }
}

/// Sizes of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingShape {
    pub slot_ms: u64,
    pub fine_slots: usize,
    pub coarse_slot_ms: u64,
    pub coarse_slots: usize,
}

struct FineSlot {
    index: u64,
    counts: Counts,
    buckets: Buckets,
}

/// The ring of one capability.
pub struct Ring {
    shape: RingShape,
    /// Index (time / slot_ms) of the open slot, and what it holds so far.
    open_index: u64,
    open: Histogram<u64>,
    open_counts: Counts,
    /// Sealed fine slots, oldest first; empty slots are not stored.
    fine: VecDeque<FineSlot>,
    /// Coarse slots `(index, counts)`, oldest first, the newest still filling.
    coarse: VecDeque<(u64, Counts)>,
}

/// One window's merged view.
pub struct WindowStats {
    pub counts: Counts,
    pub latency: Histogram<u64>,
}

impl WindowStats {
    pub fn empty() -> Self {
        Self { counts: Counts::default(), latency: histogram() }
    }

    /// The latency at `q` (0..1) in ms, `None` with no attempt.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(q))
    }
}

impl Ring {
    pub fn new(shape: RingShape, now_ms: u64) -> Self {
        assert!(shape.slot_ms > 0 && shape.coarse_slot_ms >= shape.slot_ms, "slot sizes: {shape:?}");
        Self {
            shape,
            open_index: now_ms / shape.slot_ms,
            open: histogram(),
            open_counts: Counts::default(),
            fine: VecDeque::new(),
            coarse: VecDeque::new(),
        }
    }

    /// Records one attempt that ended at `at_ms`. An attempt older than the
    /// open slot joins the open slot (reports are never rewritten).
    pub fn record(&mut self, at_ms: u64, latency_ms: u64, ok: bool) {
        self.roll(at_ms);
        self.open.saturating_record(latency_ms.min(MAX_LATENCY_MS));
        self.open_counts.count += 1;
        self.open_counts.errors += u64::from(!ok);
        let coarse_index = at_ms.max(self.open_index * self.shape.slot_ms) / self.shape.coarse_slot_ms;
        match self.coarse.back_mut() {
            Some((index, counts)) if *index >= coarse_index => {
                counts.count += 1;
                counts.errors += u64::from(!ok);
            }
            _ => self.coarse.push_back((coarse_index, Counts { count: 1, errors: u64::from(!ok) })),
        }
        while self.coarse.len() > self.shape.coarse_slots {
            self.coarse.pop_front();
        }
    }

    /// Seals the open slot if `now_ms` is past it, and drops what fell out of the ring.
    pub fn roll(&mut self, now_ms: u64) {
        let index = now_ms / self.shape.slot_ms;
        if index <= self.open_index {
            return;
        }
        if self.open_counts.count > 0 {
            let buckets = Buckets::of(&self.open);
            self.fine.push_back(FineSlot { index: self.open_index, counts: self.open_counts, buckets });
            self.open.reset();
            self.open_counts = Counts::default();
        }
        self.open_index = index;
        let oldest_kept = index.saturating_sub(self.shape.fine_slots as u64);
        while self.fine.front().is_some_and(|s| s.index < oldest_kept) {
            self.fine.pop_front();
        }
        let oldest_coarse = (now_ms / self.shape.coarse_slot_ms).saturating_sub(self.shape.coarse_slots as u64);
        while self.coarse.front().is_some_and(|(i, _)| *i < oldest_coarse) {
            self.coarse.pop_front();
        }
    }

    /// The fine slots of the last `window_ms` up to `now_ms` (the open slot
    /// included) merged: counts and latencies. A window longer than the fine
    /// ring covers the ring.
    pub fn window(&self, now_ms: u64, window_ms: u64) -> WindowStats {
        let mut out = WindowStats::empty();
        self.window_into(now_ms, window_ms, &mut out);
        out
    }

    /// `window`, adding into `out` (several nodes' or capabilities' windows merge this way).
    pub fn window_into(&self, now_ms: u64, window_ms: u64, out: &mut WindowStats) {
        let first = self.first_fine_index(now_ms, window_ms);
        for slot in self.fine.iter().rev().take_while(|s| s.index >= first) {
            out.counts.add(slot.counts);
            slot.buckets.add_to(&mut out.latency);
        }
        if self.open_index >= first && self.open_counts.count > 0 {
            out.counts.add(self.open_counts);
            out.latency.add(&self.open).expect("histograms of one shape add");
        }
    }

    /// Attempts and errors over the last `window_ms`: the fine slots when the
    /// window fits in them, otherwise the coarse ones.
    pub fn counts(&self, now_ms: u64, window_ms: u64) -> Counts {
        let fine_span = self.shape.slot_ms * self.shape.fine_slots as u64;
        let mut out = Counts::default();
        if window_ms <= fine_span {
            let first = self.first_fine_index(now_ms, window_ms);
            for slot in self.fine.iter().rev().take_while(|s| s.index >= first) {
                out.add(slot.counts);
            }
            if self.open_index >= first {
                out.add(self.open_counts);
            }
        } else {
            let slots = window_ms.div_ceil(self.shape.coarse_slot_ms);
            let first = (now_ms / self.shape.coarse_slot_ms + 1).saturating_sub(slots);
            for (_, counts) in self.coarse.iter().rev().take_while(|(i, _)| *i >= first) {
                out.add(*counts);
            }
        }
        out
    }

    /// The first fine slot index a window of `window_ms` ending at `now_ms` covers.
    fn first_fine_index(&self, now_ms: u64, window_ms: u64) -> u64 {
        let slots = window_ms.div_ceil(self.shape.slot_ms).max(1);
        (now_ms / self.shape.slot_ms + 1).saturating_sub(slots)
    }

    /// Bytes this ring holds: sealed buckets, slot records, the open histogram.
    pub fn memory_bytes(&self) -> usize {
        let sealed: usize = self.fine.iter().map(|s| s.buckets.heap_bytes()).sum();
        let slots = self.fine.capacity() * std::mem::size_of::<FineSlot>();
        let coarse = self.coarse.capacity() * std::mem::size_of::<(u64, Counts)>();
        let open = self.open.distinct_values() * std::mem::size_of::<u64>();
        sealed + slots + coarse + open + std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: RingShape = RingShape { slot_ms: 10_000, fine_slots: 360, coarse_slot_ms: 300_000, coarse_slots: 864 };

    fn exact(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn window_percentiles_are_within_one_percent_of_the_sorted_samples() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut ring = Ring::new(SHAPE, 0);
        let mut five_minutes = Vec::new();
        let mut hour = Vec::new();
        for i in 0..72_000u64 {
            let at = i * 50; // 20 per second for an hour
            let latency = 20 + (rng.f64().powi(3) * 4_000.0) as u64;
            ring.record(at, latency, true);
            hour.push(latency);
            if at >= 3_600_000 - 300_000 {
                five_minutes.push(latency);
            }
        }
        let now = 3_599_999;
        for (window, samples) in [(300_000, &mut five_minutes), (3_600_000, &mut hour)] {
            samples.sort_unstable();
            let w = ring.window(now, window);
            assert_eq!(w.counts.count, samples.len() as u64, "window {window}");
            for q in [0.5, 0.95, 0.99] {
                let got = w.quantile_ms(q).unwrap() as f64;
                let want = exact(samples, q) as f64;
                assert!((got - want).abs() / want <= 0.01, "window {window} q{q}: {got} vs exact {want}");
            }
        }
    }

    #[test]
    fn slots_leave_the_ring_after_it_is_full_and_coarse_counts_outlive_them() {
        let mut ring = Ring::new(SHAPE, 0);
        ring.record(1_000, 100, false);
        ring.record(2_000, 100, true);
        let later = 2 * 3_600_000;
        ring.roll(later);
        assert_eq!(ring.window(later, 3_600_000).counts, Counts::default(), "fine slots are gone after an hour");
        assert_eq!(ring.counts(later, 6 * 3_600_000), Counts { count: 2, errors: 1 }, "the 6h window still sees them");
        ring.roll(4 * 24 * 3_600_000);
        assert_eq!(ring.counts(4 * 24 * 3_600_000, 3 * 24 * 3_600_000), Counts::default());
    }

    #[test]
    fn buckets_merge_exactly() {
        let mut a = histogram();
        for v in [1u64, 7, 99, 1_234, 56_789, 1_000_000] {
            a.record(v).unwrap();
        }
        let mut b = histogram();
        Buckets::of(&a).add_to(&mut b);
        assert_eq!(a, b);
    }
}
