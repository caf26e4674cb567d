//! The incident timeline over a long log: a log of ≥ 1,000,000 events built
//! by applying real commands as three nodes would propose them
//! (`tests/common/history.rs`: turns, model calls, recalls, confirmations,
//! takeovers, dead letters, replays of replays, node facts and alerts),
//! then pages of 1,000 events read at random places: by seq cursor, by time
//! window, and through each kind of filter.
//!
//! Before criterion's runs, every query shape runs 1,000 times at random
//! places and its p50/p99/max are printed; the bench fails if a p99 is over
//! `P99_BOUND_MS` (the goal: ≤ 50 ms).
//!
//! Run: cargo bench --bench timeline_query

#[path = "../tests/common/history.rs"]
#[allow(dead_code)]
mod history;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use history::{History, Mix, Rng};
use std::time::{Duration, Instant};
use warden_actors::store::{Store, TimelineQuery};

const EVENTS: u64 = 1_000_000;
const PAGE: usize = 1_000;
const P99_BOUND_MS: f64 = 50.0;
const MIX: Mix = Mix { dead_one_in: 4, takeover_one_in: 5, confirm_one_in: 4, replays: 2, node_event_one_in: 4 };

struct Log {
    _dir: tempfile::TempDir,
    store: Store,
    /// (seq, ts) every 1,000 events, to pick windows from.
    marks: Vec<(u64, u64)>,
    last_seq: u64,
}

fn build() -> Log {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut h = History::create(&dir.path().join("timeline.redb"), 42, 1_700_000_000_000);
    h.keep_records = false;
    while h.events() < EVENTS {
        for _ in 0..500 {
            h.turn(MIX);
        }
        h.commit();
    }
    let last_seq = h.events();
    eprintln!("built a log of {last_seq} events in {:.1} s", started.elapsed().as_secs_f64());
    let store = h.store.clone();
    let mut marks = Vec::new();
    let mut seq = 1;
    while seq <= last_seq {
        marks.push((seq, store.event(seq).unwrap().unwrap().ts));
        seq += 1_000;
    }
    Log { _dir: dir, store, marks, last_seq }
}

/// A query shape: builds the query for a random place in the log.
type Shape = (&'static str, fn(&Log, &mut Rng) -> TimelineQuery);

fn at(log: &Log, rng: &mut Rng) -> (u64, u64, u64) {
    let i = rng.below(log.marks.len() as u64 - 2) as usize;
    (log.marks[i].0, log.marks[i].1, log.marks[i + 1].1)
}

fn page(q: TimelineQuery) -> TimelineQuery {
    TimelineQuery { limit: Some(PAGE), ..q }
}

const SHAPES: &[Shape] = &[
    ("cursor_1000", |l, r| page(TimelineQuery { after_seq: Some(at(l, r).0), ..Default::default() })),
    ("window_1000", |l, r| {
        let (_, from, to) = at(l, r);
        page(TimelineQuery { from_ms: Some(from), to_ms: Some(to), ..Default::default() })
    }),
    ("filter_capability", |l, r| {
        page(TimelineQuery { after_seq: Some(at(l, r).0), capability: Some("flaky.api".into()), ..Default::default() })
    }),
    ("filter_kind_prefix", |l, r| {
        page(TimelineQuery { after_seq: Some(at(l, r).0), kind: Some("dlq.".into()), ..Default::default() })
    }),
    ("filter_node_and_kind", |l, r| {
        let q = TimelineQuery {
            after_seq: Some(at(l, r).0),
            node: Some("n2".into()),
            kind: Some("action.attempt".into()),
            ..Default::default()
        };
        page(q)
    }),
    ("filter_severity", |l, r| {
        page(TimelineQuery { after_seq: Some(at(l, r).0), severity: Some("page".into()), ..Default::default() })
    }),
    ("filter_session", |l, r| {
        let session = format!("sess_{}", r.below(97));
        page(TimelineQuery { after_seq: Some(at(l, r).0), session_id: Some(session), ..Default::default() })
    }),
    ("filter_action", |l, r| {
        let action = format!("act_{}", 1 + r.below(l.last_seq / 20));
        page(TimelineQuery { action_id: Some(action), ..Default::default() })
    }),
];

fn percentiles(log: &Log) {
    let mut failed = Vec::new();
    for (name, shape) in SHAPES {
        let mut rng = Rng::new(7);
        let mut times: Vec<Duration> = Vec::new();
        let mut returned = 0;
        for _ in 0..1_000 {
            let q = shape(log, &mut rng);
            let t = Instant::now();
            returned += black_box(log.store.timeline_page(&q).unwrap()).events.len();
            times.push(t.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let p99 = ms(times[times.len() * 99 / 100]);
        eprintln!(
            "timeline_query/{name:<22} p50 {:>7.2} ms  p99 {p99:>7.2} ms  max {:>7.2} ms  ({} events/query)",
            ms(times[times.len() / 2]),
            ms(*times.last().unwrap()),
            returned / times.len(),
        );
        if p99 > P99_BOUND_MS {
            failed.push(format!("{name}: p99 {p99:.2} ms"));
        }
    }
    // Incident windows: the window's incident events and their causes.
    let mut rng = Rng::new(9);
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..200 {
        let (_, from, _) = at(log, &mut rng);
        let q =
            TimelineQuery { from_ms: Some(from), to_ms: Some(from + 60_000), limit: Some(PAGE), ..Default::default() };
        let t = Instant::now();
        black_box(log.store.incidents(&q).unwrap());
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "timeline_query/incidents_1min        p50 {:>7.2} ms  p99 {:>7.2} ms",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() * 99 / 100].as_secs_f64() * 1e3
    );
    assert!(failed.is_empty(), "over the {P99_BOUND_MS} ms p99 bound: {failed:?}");
}

fn timeline_query(c: &mut Criterion) {
    let log = build();
    assert!(log.last_seq >= EVENTS);
    percentiles(&log);
    let mut group = c.benchmark_group("timeline_query");
    group.sample_size(30);
    for (name, shape) in SHAPES {
        let mut rng = Rng::new(3);
        group.bench_function(*name, |b| {
            b.iter(|| black_box(log.store.timeline_page(&shape(&log, &mut rng)).unwrap()));
        });
    }
    group.finish();
}

criterion_group!(benches, timeline_query);
criterion_main!(benches);
