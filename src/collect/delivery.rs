//! Producing a request's events: the producer's delivery callback counts
//! them down, and the handler waits until the brokers acknowledged (or
//! failed) every one of them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::admission::Refusal;
use super::{Collector, QUEUE_CAPACITY};
use crate::telemetry::ProducerMetrics;
/// One request's events in flight: the delivery callback counts them down
/// and wakes the handler when the last one is acknowledged or failed.
pub(super) struct Pending {
    remaining: AtomicUsize,
    failure: Mutex<Option<String>>,
    done: tokio::sync::Notify,
}

impl Pending {
    fn new(n: usize) -> Arc<Pending> {
        Arc::new(Pending {
            remaining: AtomicUsize::new(n),
            failure: Mutex::new(None),
            done: tokio::sync::Notify::new(),
        })
    }

    fn fail(&self, why: String) {
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(why);
        }
    }

    fn finish(&self, n: usize) {
        if n > 0 && self.remaining.fetch_sub(n, Ordering::AcqRel) == n {
            // A stored permit: the handler may not be waiting yet.
            self.done.notify_one();
        }
    }
}

pub(super) struct CollectContext {
    pub(super) metrics: ProducerMetrics,
}

impl ClientContext for CollectContext {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::client_error(&error, reason);
    }
}

impl ProducerContext for CollectContext {
    type DeliveryOpaque = Arc<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Arc<Pending>) {
        match result {
            Ok(_) => self.metrics.delivered.inc(),
            Err((e, _)) => {
                self.metrics.failed.inc();
                pending.fail(e.to_string());
            }
        }
        pending.finish(1);
    }
}

/// Enqueues every record and waits for the brokers' verdict on all of them.
pub(super) async fn produce(
    c: &Collector,
    records: Vec<(String, Vec<u8>)>,
    timestamp_ms: i64,
    trace_headers: &[(String, Vec<u8>)],
) -> Result<(), Refusal> {
    let unavailable = |why: String| Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "kafka_unavailable", why).retry(5);
    if !c.kafka_up.load(Ordering::Relaxed) {
        return Err(unavailable(format!(
            "Kafka is unreachable (or topic {} is missing); retry later",
            c.topic
        )));
    }
    let n = records.len();
    if c.producer.in_flight_count().max(0) as usize + n > QUEUE_CAPACITY {
        return Err(unavailable("the producer queue is full; retry later".into()));
    }
    let started = Instant::now();
    let pending = Pending::new(n);
    for (i, (key, payload)) in records.iter().enumerate() {
        let mut record = BaseRecord::with_opaque_to(&c.topic, pending.clone())
            .key(key.as_bytes())
            .payload(payload.as_slice())
            .timestamp(timestamp_ms);
        if !trace_headers.is_empty() {
            record = record.headers(crate::telemetry::trace::kafka_headers(trace_headers));
        }
        match c.producer.send(record) {
            Ok(()) => c.producer_metrics.sent.inc(),
            Err((e, _)) => {
                // Those already enqueued still go; the client's retry may
                // repeat them (at least once).
                pending.fail(format!("cannot enqueue: {e}"));
                pending.finish(n - i);
                break;
            }
        }
    }
    let wait = c.config.ack_timeout + Duration::from_secs(1);
    if tokio::time::timeout(wait, pending.done.notified()).await.is_err() {
        return Err(unavailable(format!(
            "no acknowledgement from the brokers within {:?}",
            c.config.ack_timeout
        )));
    }
    c.metrics.produce_seconds.observe(started.elapsed().as_secs_f64());
    let failure = pending.failure.lock().ok().and_then(|mut f| f.take());
    match failure {
        None => Ok(()),
        Some(why) => {
            tracing::warn!(error = %why, events = n, "events not acknowledged; answered 503");
            Err(unavailable(format!("the brokers did not accept the events: {why}")))
        }
    }
}
