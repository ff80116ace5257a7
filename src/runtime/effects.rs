//! Effects: the records a consumer publishes because of an event (fraud
//! alerts, dead-letter copies), and their acknowledgements.
//!
//! Each record travels with the (partition, assignment epoch, offset) of the
//! event that caused it. When the broker acknowledges it, the runtime marks
//! one effect of that event done; the event's offset becomes committable only
//! when all of them are. A failed delivery is never dropped: it comes back
//! here and is sent again after a backoff, for as long as it takes (the
//! partition does not commit past it meanwhile, so even a crash loses
//! nothing). A stale acknowledgement — for a partition that moved away and
//! came back — carries an old epoch and is ignored, and a failed record of
//! a partition no longer owned under its epoch is dropped, not retried: the
//! partition's owner publishes it again from the uncommitted event.
//!
//! One failure is not worth retrying: a dead-letter copy the brokers refuse
//! as too large (a topic whose `max.message.bytes` is below the copy's
//! size) would be refused for ever and hold its partition back. It is sent
//! again as a reference copy — the `dlq.*` headers without the payload, the
//! original headers or most of the key — which replay resolves from the
//! source topic, like any truncated copy.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Statistics};

use crate::dead_letter as dlq;

/// Backoff before re-sending a record whose delivery failed.
const RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// A record to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// The dead-letter copy reduced to a reference: the `dlq.*` headers,
    /// marked as truncated, and at most 256 bytes of the key.
    fn reference_copy(&self) -> Record {
        let pairs = self.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
        let headers = match dlq::Headers::decode(pairs) {
            Some(mut why) => {
                why.original_bytes = Some(why.original_bytes.unwrap_or(self.payload.len()));
                why.reference = true;
                why.encode()
            }
            // Not ours to shrink (the runtime writes every dead letter
            // with its headers); keep the contract's headers as they are.
            None => self
                .headers
                .iter()
                .filter(|(k, _)| k.starts_with(dlq::PREFIX))
                .cloned()
                .collect(),
        };
        Record {
            topic: self.topic.clone(),
            key: self.key.as_ref().map(|k| k[..k.len().min(256)].to_vec()),
            payload: Vec::new(),
            headers,
        }
    }
}

/// Whether the brokers (or librdkafka's own size check) refused a record
/// for its size: retrying the same bytes cannot succeed.
fn is_too_large(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
    )
}

/// Why a record is being published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EffectKind {
    Alert,
    DeadLetter(crate::event::RejectReason),
}

/// A record in flight and the event it belongs to.
#[derive(Debug)]
pub struct Pending {
    pub partition: i32,
    pub epoch: u64,
    pub offset: i64,
    /// Event time, for the event → alert-published latency (0 if unknown).
    pub event_time_ms: i64,
    pub kind: EffectKind,
    pub record: Record,
    pub attempts: u32,
}

/// The outcome of one delivery, reported by the producer's thread.
#[derive(Debug)]
pub enum Delivery {
    Acknowledged(Box<Pending>),
    Failed(Box<Pending>, KafkaError),
}

/// Producer context that hands every delivery report back to the runtime.
pub struct DeliveryChannel {
    sender: Mutex<Sender<Delivery>>,
    queue_depth: Arc<std::sync::atomic::AtomicI64>,
    /// Event time → alert acknowledged, observed here, when the broker's
    /// answer arrives (the runtime may be waiting for its next message).
    alert_latency: prometheus::Histogram,
}

impl ClientContext for DeliveryChannel {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::client_error(&error, reason);
    }
    fn stats(&self, statistics: Statistics) {
        crate::kafka::observe(&statistics);
        self.queue_depth
            .store(statistics.msg_cnt as i64, std::sync::atomic::Ordering::Relaxed);
    }
}

impl ProducerContext for DeliveryChannel {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Box<Pending>) {
        let report = match result {
            Ok(_) => {
                if pending.kind == EffectKind::Alert && pending.event_time_ms > 0 {
                    let ms = (crate::eventtime::now_ms() - pending.event_time_ms).max(0);
                    self.alert_latency.observe(ms as f64 / 1000.0);
                }
                Delivery::Acknowledged(pending)
            }
            Err((e, _)) => Delivery::Failed(pending, e.clone()),
        };
        if let Ok(sender) = self.sender.lock() {
            // The receiver lives as long as the runtime; after it is gone
            // nobody waits for the report.
            let _ = sender.send(report);
        }
    }
}

/// The effect producer with its delivery reports and retry queue.
pub struct Effects {
    producer: ThreadedProducer<DeliveryChannel>,
    deliveries: Receiver<Delivery>,
    retries: VecDeque<(Instant, Box<Pending>)>,
    in_flight: usize,
    queue_depth: Arc<std::sync::atomic::AtomicI64>,
}

impl Effects {
    pub fn new(config: &rdkafka::ClientConfig, alert_latency: prometheus::Histogram) -> Result<Effects, KafkaError> {
        let (sender, deliveries) = std::sync::mpsc::channel();
        let queue_depth = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let producer = config.create_with_context(DeliveryChannel {
            sender: Mutex::new(sender),
            queue_depth: queue_depth.clone(),
            alert_latency,
        })?;
        Ok(Effects {
            producer,
            deliveries,
            retries: VecDeque::new(),
            in_flight: 0,
            queue_depth,
        })
    }

    /// Records sent and not yet acknowledged (including those awaiting retry).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Messages in librdkafka's local queue (from its statistics).
    pub fn queue_depth(&self) -> i64 {
        self.queue_depth.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Hands a record to the producer. Waits (bounded by the producer's own
    /// queue draining) while the local queue is full; any other immediate
    /// error puts the record on the retry queue.
    pub fn send(&mut self, pending: Box<Pending>) {
        self.in_flight += 1;
        self.enqueue(pending);
    }

    fn enqueue(&mut self, mut pending: Box<Pending>) {
        loop {
            pending.attempts += 1;
            let mut headers = OwnedHeaders::new_with_capacity(pending.record.headers.len());
            for (k, v) in &pending.record.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_slice()),
                });
            }
            // The record's bytes are copied into librdkafka by `send`; the
            // Pending (with its own copy, for retries) rides as the opaque.
            let topic = pending.record.topic.clone();
            let key = pending.record.key.clone();
            let payload = pending.record.payload.clone();
            let mut record = BaseRecord::with_opaque_to(&topic, pending)
                .payload(&payload)
                .headers(headers);
            if let Some(k) = &key {
                record = record.key(k);
            }
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                    pending = record.delivery_opaque;
                    pending.attempts -= 1;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, record)) => {
                    pending = record.delivery_opaque;
                    if shrink_if_refused_for_size(&mut pending, &e) {
                        continue;
                    }
                    tracing::warn!(error = %e, topic = %pending.record.topic, "cannot enqueue record; will retry");
                    self.retries.push_back((Instant::now() + RETRY_BACKOFF, pending));
                    return;
                }
            }
        }
    }

    /// Forgets the records awaiting a retry that `keep` rejects, and counts
    /// them out of the in-flight total; returns how many. For the records of
    /// partitions this process no longer owns (or owns under a newer
    /// epoch): their events were not committed past, so the partition's
    /// current owner processes them again and publishes the same records
    /// itself — retrying them here would go on for ever, for nobody.
    pub fn drop_retries(&mut self, keep: impl Fn(&Pending) -> bool) -> usize {
        let before = self.retries.len();
        self.retries.retain(|(_, p)| keep(p));
        let dropped = before - self.retries.len();
        self.in_flight = self.in_flight.saturating_sub(dropped);
        dropped
    }

    /// Re-sends records whose backoff has elapsed; returns how many.
    pub fn resend_due(&mut self) -> usize {
        let now = Instant::now();
        let mut resent = 0;
        while self.retries.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, pending)) = self.retries.pop_front() {
                self.enqueue(pending);
                resent += 1;
            }
        }
        resent
    }

    /// The next delivery report, waiting up to `timeout`. Failed deliveries
    /// are queued for retry here and also returned so the caller can count
    /// them.
    pub fn next_delivery(&mut self, timeout: Duration) -> Option<Delivery> {
        let report = if timeout.is_zero() {
            self.deliveries.try_recv().ok()
        } else {
            // Timeout or (after shutdown) a closed channel: nothing to report.
            self.deliveries.recv_timeout(timeout).ok()
        };
        match report {
            Some(Delivery::Acknowledged(p)) => {
                self.in_flight = self.in_flight.saturating_sub(1);
                Some(Delivery::Acknowledged(p))
            }
            Some(Delivery::Failed(mut p, e)) => {
                shrink_if_refused_for_size(&mut p, &e);
                // Keep a copy of the identity for the caller; the record
                // itself goes back on the retry queue.
                let echo = Box::new(Pending {
                    partition: p.partition,
                    epoch: p.epoch,
                    offset: p.offset,
                    event_time_ms: p.event_time_ms,
                    kind: p.kind,
                    record: Record {
                        topic: p.record.topic.clone(),
                        key: None,
                        payload: Vec::new(),
                        headers: Vec::new(),
                    },
                    attempts: p.attempts,
                });
                self.retries.push_back((Instant::now() + RETRY_BACKOFF, p));
                Some(Delivery::Failed(echo, e))
            }
            None => None,
        }
    }

    /// Waits up to `timeout` for every record to be acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}

/// Replaces a dead-letter copy refused for its size by its reference copy;
/// returns whether it did (and so whether sending again can succeed).
fn shrink_if_refused_for_size(pending: &mut Pending, error: &KafkaError) -> bool {
    let shrinkable = matches!(pending.kind, EffectKind::DeadLetter(_))
        && is_too_large(error)
        && !pending
            .record
            .headers
            .iter()
            .any(|(k, v)| k == dlq::REFERENCE && v == b"true");
    if shrinkable {
        tracing::warn!(
            error = %error,
            topic = %pending.record.topic,
            bytes = pending.record.payload.len(),
            "dead-letter copy refused for its size; sending a reference copy without the payload (replay reads the original from the source topic)"
        );
        pending.record = pending.record.reference_copy();
    }
    shrinkable
}
