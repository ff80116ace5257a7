//! The event simulator and the `produce` command.
//!
//! [`simulator`] generates realistic traffic; this module sends it to the
//! activities topic, keyed by `user_id`, with an idempotent `acks=all`
//! producer. The message timestamp is the event's own timestamp, so brokers
//! index events by event time.
//!
//! Rate control is a schedule, not a sleep per event: event *n* is due at
//! `start + n / EVENTS_PER_SECOND`, and the loop sends whatever is due, then
//! sleeps until the next one. That holds the long-run rate exactly from
//! 10/s to hundreds of thousands per second. If the producer falls more than
//! a second behind (the broker pushed back), the schedule restarts from now
//! instead of bursting to catch up.

pub mod catalog;
pub mod simulator;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Statistics};

use crate::config::{Config, KafkaConfig, ProducerConfig};
use crate::eventtime::now_ms;
use crate::shutdown::Shutdown;
use crate::telemetry::ProducerMetrics;
use simulator::{Simulator, SimulatorConfig};

/// At or below this rate a progress line is printed every 10 events (as
/// the seed did); above it, once a second.
const PER_EVENT_PROGRESS_MAX_RATE: f64 = 100.0;

/// Everything `produce` needs.
#[derive(Clone, Debug)]
pub struct ProduceOptions {
    pub kafka: KafkaConfig,
    pub topic: String,
    pub producer: ProducerConfig,
    pub truth_file: Option<PathBuf>,
    pub shutdown_timeout: Duration,
    /// Print progress lines (the demo and the CLI do; benchmarks do not).
    pub progress: bool,
    /// Start a trace per event and write its W3C context into the headers.
    pub trace: bool,
}

/// The final statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProduceStats {
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub fraud_actors: u64,
    pub elapsed: Duration,
}

impl ProduceStats {
    /// Events handed to the client with no delivery report by the end
    /// (still queued when the shutdown timeout ran out).
    pub fn unacknowledged(&self) -> u64 {
        self.sent.saturating_sub(self.delivered + self.failed)
    }

    pub fn render(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "\n📊 PRODUCER FINAL STATISTICS\n==========================================\n  Events sent       : {}\n  Delivered         : {}\n  Failed            : {}\n  Not acknowledged  : {}\n  Fraud actors      : {}\n  Duration          : {:.1} s\n  Average rate      : {:.1} events/sec\n",
            self.sent,
            self.delivered,
            self.failed,
            self.unacknowledged(),
            self.fraud_actors,
            secs,
            self.sent as f64 / secs
        )
    }
}

/// Counts delivery reports (and prints them with VERBOSE=true).
struct DeliveryReports {
    delivered: AtomicU64,
    failed: AtomicU64,
    queued: std::sync::atomic::AtomicI64,
    verbose: bool,
    metrics: ProducerMetrics,
}

impl ClientContext for DeliveryReports {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::client_error(&error, reason);
    }
    fn stats(&self, statistics: Statistics) {
        crate::kafka::observe(&statistics);
        self.queued.store(statistics.msg_cnt as i64, Ordering::Relaxed);
        self.metrics.queue.set(statistics.msg_cnt as i64);
    }
}

impl ProducerContext for DeliveryReports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                self.metrics.delivered.inc();
                if self.verbose {
                    println!(
                        "✅ Delivered to {} [partition={}] @ offset {}",
                        message.topic(),
                        message.partition(),
                        message.offset()
                    );
                }
            }
            Err((e, message)) => {
                let failed = self.failed.fetch_add(1, Ordering::Relaxed);
                self.metrics.failed.inc();
                if failed < 10 || failed.is_power_of_two() {
                    tracing::error!(error = %e, partition = message.partition(), failed = failed + 1, "❌ delivery failed");
                }
            }
        }
    }
}

/// Generates and sends events until MAX_EVENTS or `shutdown`; blocking.
pub fn run(options: &ProduceOptions, metrics: ProducerMetrics, shutdown: &Shutdown) -> anyhow::Result<ProduceStats> {
    let p = &options.producer;
    let reports = DeliveryReports {
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        queued: std::sync::atomic::AtomicI64::new(0),
        verbose: p.verbose,
        metrics: metrics.clone(),
    };
    let producer: ThreadedProducer<DeliveryReports> =
        crate::kafka::producer(&options.kafka, "activity-tracker-producer")
            .create_with_context(reports)
            .context("cannot create the Kafka producer")?;
    metrics.rate.set(p.events_per_second);
    let seed = p.seed.unwrap_or_else(rand::random);
    let mut sim = Simulator::new(&SimulatorConfig {
        seed,
        users: p.users,
        fraud_rate: p.fraud_rate,
        events_per_second: p.events_per_second,
    });
    sim.warm_up(p.start_time_ms.unwrap_or_else(now_ms));
    let mut truth = match &options.truth_file {
        Some(path) => {
            Some(BufWriter::new(File::create(path).with_context(|| {
                format!("cannot create the truth file {}", path.display())
            })?))
        }
        None => None,
    };
    tracing::info!(
        topic = %options.topic,
        rate = p.events_per_second,
        seed,
        fraud_rate = p.fraud_rate,
        simulated_start = p.start_time_ms.map(crate::eventtime::format_rfc3339_ms).unwrap_or_else(|| "now".into()),
        "producing events"
    );

    let rate = p.events_per_second;
    let throttled = rate > 0.0 && p.start_time_ms.is_none();
    let per_event_progress = rate > 0.0 && rate <= PER_EVENT_PROGRESS_MAX_RATE;
    let started = Instant::now();
    let mut schedule_start = started;
    let mut scheduled = 0u64;
    let mut sent = 0u64;
    let mut actors = 0u64;
    let mut last_progress = Instant::now();
    let mut buf = Vec::with_capacity(1024);
    let max = p.max_events.unwrap_or(u64::MAX);

    while sent < max && !shutdown.is_triggered() {
        if throttled {
            let due = (schedule_start.elapsed().as_secs_f64() * rate) as u64 + 1;
            if scheduled >= due {
                let next_at = Duration::from_secs_f64(scheduled as f64 / rate);
                let wait = next_at.saturating_sub(schedule_start.elapsed());
                shutdown.sleep(wait);
                continue;
            }
            if due - scheduled > (rate as u64).max(1) {
                // More than a second behind: restart the schedule.
                schedule_start = Instant::now();
                scheduled = 0;
            }
            scheduled += 1;
        }
        let timestamp = match p.start_time_ms {
            Some(start) => start + (sent as f64 * 1000.0 / rate) as i64,
            None => now_ms(),
        };
        let event = sim.next_event(timestamp);
        buf.clear();
        event.write_json(&mut buf);
        let key = event.user_id.to_string();
        let mut record = BaseRecord::to(&options.topic)
            .key(key.as_str())
            .payload(&buf)
            .timestamp(timestamp);
        let span = options.trace.then(|| {
            tracing::info_span!(
                "produce_event",
                otel.kind = "producer",
                messaging.system = "kafka",
                messaging.destination.name = %options.topic,
                event_type = event.event_type.as_str(),
            )
        });
        if let Some(span) = &span {
            record = record.headers(crate::telemetry::trace::kafka_headers(
                &crate::telemetry::trace::inject(span),
            ));
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Backpressure: the local queue is full; let it drain.
                    record = r;
                    producer.poll(Duration::from_millis(10));
                    if shutdown.is_triggered() {
                        break;
                    }
                }
                Err((e, _)) => return Err(e).context("cannot hand an event to the Kafka client"),
            }
        }
        sent += 1;
        metrics.sent.inc();
        for actor in sim.take_new_actors() {
            actors += 1;
            if let Some(out) = truth.as_mut() {
                serde_json::to_writer(&mut *out, &actor).context("cannot write the truth file")?;
                out.write_all(b"\n").context("cannot write the truth file")?;
            }
        }
        if options.progress {
            let due = if per_event_progress {
                sent.is_multiple_of(10)
            } else {
                last_progress.elapsed() >= Duration::from_secs(1)
            };
            if due {
                last_progress = Instant::now();
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                println!(
                    "📊 Events sent: {sent} | Rate: {:.1} events/sec | Active sessions: {}",
                    sent as f64 / secs,
                    sim.active_sessions()
                );
            }
        }
    }

    let flushing = Instant::now();
    if crate::kafka::fatal_error().is_some() {
        // Refused credentials: nothing queued can be delivered; don't wait.
        producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
    } else if let Err(e) = producer.flush(options.shutdown_timeout) {
        tracing::warn!(error = %e, "not every event was acknowledged before the shutdown timeout");
    }
    tracing::debug!(ms = flushing.elapsed().as_millis() as u64, "producer flushed");
    if let Some(mut out) = truth {
        out.flush().context("cannot write the truth file")?;
    }
    let context = producer.context();
    Ok(ProduceStats {
        sent,
        delivered: context.delivered.load(Ordering::Relaxed),
        failed: context.failed.load(Ordering::Relaxed),
        fraud_actors: actors,
        elapsed: started.elapsed(),
    })
}

/// The `produce` command.
pub async fn run_command(config: Config, truth_file: Option<PathBuf>, shutdown: Shutdown) -> anyhow::Result<()> {
    let telemetry = crate::telemetry::Telemetry::new();
    let state = crate::http::HttpState {
        telemetry: telemetry.clone(),
        consumers: Vec::new(),
    };
    crate::http::serve(config.http_addr, state, shutdown.clone()).await?;
    let options = ProduceOptions {
        kafka: config.kafka.clone(),
        topic: config.topics.activities.clone(),
        producer: config.producer.clone(),
        truth_file,
        shutdown_timeout: config.consumer.shutdown_timeout,
        progress: true,
        trace: config.log.tracing(),
    };
    let metrics = telemetry.producer(&options.topic);
    let worker_shutdown = shutdown.clone();
    let stats = tokio::task::spawn_blocking(move || run(&options, metrics, &worker_shutdown)).await??;
    shutdown.trigger();
    print!("{}", stats.render());
    if stats.delivered == 0
        && stats.sent > 0
        && crate::kafka::fatal_error().is_none()
        && crate::topics::exists(&config.kafka, &config.topics.activities) == Some(false)
    {
        anyhow::bail!(
            "topic {} does not exist on {} and the cluster did not create it: create it with `activity-tracker topics create`",
            config.topics.activities,
            config.kafka.bootstrap_servers
        );
    }
    if stats.failed > 0 || stats.unacknowledged() > 0 {
        anyhow::bail!(
            "{} events failed and {} were not acknowledged before SHUTDOWN_TIMEOUT (is the broker at KAFKA_BOOTSTRAP_SERVERS={} reachable?)",
            stats.failed,
            stats.unacknowledged(),
            config.kafka.bootstrap_servers
        );
    }
    Ok(())
}
