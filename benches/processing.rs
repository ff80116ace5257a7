//! Micro-benchmarks of the pure hot path, one core, no broker:
//! decode, analytics, fraud, all three back to back (what a consumer of each
//! kind does per message), and the producer's generation + serialisation.
//!
//! Inputs are a realistic stream from the simulator (fixed seed, 10 % fraud
//! actors, 100,000 events), processed in batches of 10,000 into a state that
//! persists across iterations, as a long-running consumer's would. Each pass
//! over the stream shifts its timestamps forward by the stream's span, so
//! event time keeps moving and the windows evict as they do live.
//!
//! `cargo bench --bench processing` (add `-- --quick` for a short run).

use std::hint::black_box;

use activity_tracker::analytics::AnalyticsProcessor;
use activity_tracker::config::{AnalyticsConfig, FraudConfig, IpPrivacy};
use activity_tracker::event::{DecodeLimits, Event, decode};
use activity_tracker::fraud::{FraudDetector, FraudRules};
use activity_tracker::privacy::IpRenderer;
use activity_tracker::processor::{Mode, Processor};
use activity_tracker::producer::simulator::{Simulator, SimulatorConfig};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const STREAM: usize = 100_000;
const BATCH: usize = 10_000;
const RATE: f64 = 10_000.0;
/// 2024-01-15T10:00:00Z.
const T0: i64 = 1_705_312_800_000;

fn simulator() -> Simulator {
    Simulator::new(&SimulatorConfig {
        seed: 42,
        users: 100_000,
        fraud_rate: 0.1,
        events_per_second: RATE,
    })
}

/// The stream as the consumers receive it: (Kafka timestamp, JSON payload).
fn stream() -> Vec<(i64, Vec<u8>)> {
    let mut sim = simulator();
    (0..STREAM)
        .map(|i| {
            let t = T0 + (i as f64 * 1000.0 / RATE) as i64;
            (t, sim.next_event(t).to_json())
        })
        .collect()
}

const SPAN_MS: i64 = (STREAM as f64 * 1000.0 / RATE) as i64;

/// Walks the stream in batches, shifting time forward on every pass.
struct Cursor {
    next: usize,
    shift_ms: i64,
}

impl Cursor {
    fn new() -> Cursor {
        Cursor { next: 0, shift_ms: 0 }
    }

    /// The next batch's range and the time shift to apply to it.
    fn advance(&mut self) -> (std::ops::Range<usize>, i64) {
        if self.next + BATCH > STREAM {
            self.next = 0;
            self.shift_ms += SPAN_MS;
        }
        let range = self.next..self.next + BATCH;
        self.next += BATCH;
        (range, self.shift_ms)
    }
}

fn analytics() -> AnalyticsProcessor {
    AnalyticsProcessor::new(AnalyticsConfig::default())
}

fn fraud() -> FraudDetector {
    FraudDetector::new(
        FraudRules::from_config(&FraudConfig::default()),
        IpRenderer::new(IpPrivacy::None),
    )
}

fn limits() -> DecodeLimits {
    DecodeLimits {
        // The stream is replayed with shifted time; judge it by its own.
        max_age_ms: i64::MAX,
        max_future_skew_ms: i64::MAX,
        ..DecodeLimits::default()
    }
}

/// Decodes the cursor's next batch, moving event time forward by the
/// cursor's shift, and hands each event to `f`.
fn decode_batch(stream: &[(i64, Vec<u8>)], cursor: &mut Cursor, limits: &DecodeLimits, mut f: impl FnMut(&Event<'_>)) {
    let (range, shift) = cursor.advance();
    for (t, payload) in &stream[range] {
        if let Ok(mut e) = decode(payload, *t, limits) {
            e.timestamp_ms += shift;
            f(&e);
        }
    }
}

fn benches(c: &mut Criterion) {
    let stream = stream();
    let decoded: Vec<Event<'static>> = stream
        .iter()
        .map(|(t, p)| {
            decode(p, *t, &limits())
                .expect("simulator events are valid")
                .into_owned()
        })
        .collect();
    let mut group = c.benchmark_group("per_event");
    group.throughput(Throughput::Elements(BATCH as u64));

    group.bench_function("decode", |b| {
        let mut cursor = Cursor::new();
        let limits = limits();
        b.iter(|| {
            let (range, _) = cursor.advance();
            for (t, payload) in &stream[range] {
                black_box(decode(black_box(payload), *t, &limits).is_ok());
            }
        })
    });

    // The processors alone, on events decoded beforehand (copying and
    // time-shifting the batch is setup, outside the measurement).
    fn processor_only<P: Processor>(b: &mut criterion::Bencher<'_>, mut processor: P, decoded: &[Event<'static>]) {
        let mut state = processor.new_state();
        let mut out = Vec::new();
        let mut cursor = Cursor::new();
        b.iter_batched(
            || {
                let (range, shift) = cursor.advance();
                let mut batch = decoded[range].to_vec();
                for e in &mut batch {
                    e.timestamp_ms += shift;
                }
                batch
            },
            |batch| {
                for e in &batch {
                    processor.process(&mut state, e, Mode::Live, &mut out);
                    out.clear();
                }
                batch
            },
            BatchSize::LargeInput,
        )
    }
    group.bench_function("analytics_process", |b| processor_only(b, analytics(), &decoded));
    group.bench_function("fraud_process", |b| processor_only(b, fraud(), &decoded));

    // What a consumer does per message: decode, then its processor. The
    // shift is applied to the decoded event (the payload is immutable).
    fn decode_and<P: Processor>(b: &mut criterion::Bencher<'_>, mut processor: P, stream: &[(i64, Vec<u8>)]) {
        let mut state = processor.new_state();
        let mut out = Vec::new();
        let mut cursor = Cursor::new();
        let limits = limits();
        b.iter(|| {
            decode_batch(stream, &mut cursor, &limits, |e| {
                processor.process(&mut state, e, Mode::Live, &mut out);
                out.clear();
            })
        })
    }
    group.bench_function("decode_analytics", |b| decode_and(b, analytics(), &stream));
    group.bench_function("decode_fraud", |b| decode_and(b, fraud(), &stream));

    // Both processors back to back on one thread, one decode.
    group.bench_function("decode_analytics_fraud", |b| {
        let mut a = analytics();
        let mut f = fraud();
        let mut sa = a.new_state();
        let mut sf = f.new_state();
        let (mut none, mut alerts) = (Vec::new(), Vec::new());
        let mut cursor = Cursor::new();
        let limits = limits();
        b.iter(|| {
            decode_batch(&stream, &mut cursor, &limits, |e| {
                a.process(&mut sa, e, Mode::Live, &mut none);
                f.process(&mut sf, e, Mode::Live, &mut alerts);
                alerts.clear();
            })
        })
    });

    // The producer's per-event work before the Kafka client: generate the
    // next event and serialise it into a reused buffer.
    group.bench_function("produce_generate_serialize", |b| {
        let mut sim = simulator();
        let mut buf = Vec::with_capacity(1024);
        let mut t = T0;
        b.iter(|| {
            for _ in 0..BATCH {
                t += 1;
                buf.clear();
                sim.next_event(t).write_json(&mut buf);
                black_box(buf.len());
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = processing;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = benches
}
criterion_main!(processing);
