//! `activity-tracker collect`: the HTTP collector. Websites (through
//! `/v1/tracker.js`) and backends POST events; the collector authenticates
//! them, enriches them (address, device, location, receive time), validates
//! them with the consumers' own decoder and produces them to the activities
//! topic keyed by `user_id`, answering only once the brokers acknowledged.
//!
//! | path | answers |
//! |---|---|
//! | `POST /v1/events` | one event or a JSON array: 202 `{"accepted":n}` after the brokers' ack; 400 with per-event reasons (nothing produced); 401 no/unknown write key; 403 origin not allowed; 408 upload too slow; 413 too large / too many events; 429 rate limited; 503 Kafka unavailable (with `Retry-After`) |
//! | `OPTIONS /v1/events` | CORS preflight for the allowed origins |
//! | `GET /v1/tracker.js` | the browser tracker |
//! | `GET /metrics`, `/healthz`, `/readyz` | as every command; ready while the brokers are reachable |
//!
//! The collector is stateless: any replica can take any request, so it
//! scales horizontally behind a Service. A request is all or nothing as far
//! as validation goes; delivery is at least once (a 503 after a partial
//! enqueue, or a lost response, makes the client resend events that may have
//! arrived; each carries its `event_id`).
//!
//! The handlers and router are in `routes`, who may send (write keys,
//! origins, rate limits) in `admission`, and producing a request's events
//! until the brokers acknowledge them in `delivery`.

pub mod enrich;

mod admission;
mod delivery;
mod routes;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge};
use rdkafka::producer::{Producer, ThreadedProducer};

use crate::config::{CollectConfig, Config};
use crate::event::DecodeLimits;
use crate::privacy::IpRenderer;
use crate::shutdown::Shutdown;
use crate::telemetry::metrics::{LATENCY_BUCKETS, counter_vec, gauge_vec, histogram_vec};
use crate::telemetry::{ProducerMetrics, Telemetry};
use delivery::CollectContext;
use enrich::{DeviceParser, GeoIp, ParsedDevice, Place};
pub use routes::{Answer, RejectedEvent, router};

/// The browser tracker served at `/v1/tracker.js`.
pub const TRACKER_JS: &str = include_str!("tracker.js");

/// Events the local producer queue may hold; a request that would overflow
/// it gets 503 before any of its events is enqueued.
const QUEUE_CAPACITY: usize = 100_000;

/// Distinct user agents whose parsed device is remembered (browsers repeat
/// a few hundred strings; parsing one costs microseconds).
const DEVICE_CACHE: usize = 4096;

/// The collector's own metric families.
#[derive(Clone)]
pub struct CollectorMetrics {
    requests: IntCounterVec,
    request_seconds: prometheus::HistogramVec,
    accepted: IntCounter,
    rejected: IntCounterVec,
    produce_seconds: Histogram,
    kafka_up: IntGauge,
}

impl CollectorMetrics {
    pub fn new(telemetry: &Telemetry) -> CollectorMetrics {
        let r = telemetry.registry();
        let produce_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "activity_collector_produce_seconds",
                "Time from enqueueing a request's events to the brokers' acknowledgement of all of them.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("static metric definition is valid");
        r.register(Box::new(produce_seconds.clone()))
            .expect("metric registered once");
        let kafka_up = gauge_vec(
            r,
            "activity_collector_kafka_up",
            "1 while the collector reaches the brokers and the activities topic, else 0.",
            &[],
        )
        .with_label_values::<&str>(&[]);
        let accepted = counter_vec(
            r,
            "activity_collector_events_accepted_total",
            "Events acknowledged by the brokers and answered with 202.",
            &[],
        )
        .with_label_values::<&str>(&[]);
        CollectorMetrics {
            requests: counter_vec(
                r,
                "activity_collector_requests_total",
                "HTTP requests to the collector's /v1 routes, by route and status code.",
                &["route", "status"],
            ),
            request_seconds: histogram_vec(
                r,
                "activity_collector_request_seconds",
                "Time to answer a /v1 request, body upload and broker acknowledgement included.",
                &["route"],
                LATENCY_BUCKETS,
            ),
            accepted,
            rejected: counter_vec(
                r,
                "activity_collector_events_rejected_total",
                "Events refused, by reason: a decoder code (missing_field…), invalid_batch (valid events of a refused request), too_many_events, rate_limited, kafka_unavailable; a request refused before its body is read (unauthorized, forbidden_origin, too_large, timeout) counts once.",
                &["reason"],
            ),
            produce_seconds,
            kafka_up,
        }
    }
}

/// Everything a request handler reads.
pub struct Collector {
    config: CollectConfig,
    topic: String,
    limits: DecodeLimits,
    producer: ThreadedProducer<CollectContext>,
    producer_metrics: ProducerMetrics,
    write_keys: Vec<Vec<u8>>,
    devices: DeviceParser,
    device_cache: Mutex<std::collections::HashMap<String, ParsedDevice>>,
    geoip: Option<GeoIp>,
    privacy: IpRenderer,
    limiter: Option<governor::DefaultKeyedRateLimiter<IpAddr>>,
    kafka_up: AtomicBool,
    /// Stop requested: /readyz answers 503 (events are still accepted
    /// during COLLECT_SHUTDOWN_DELAY).
    stopping: AtomicBool,
    /// The shutdown delay is over and the port closing: events still
    /// arriving on open connections are refused (the client retries
    /// elsewhere).
    closing: AtomicBool,
    metrics: CollectorMetrics,
    telemetry: Arc<Telemetry>,
    /// OpenTelemetry: a span per request, continued from the caller's
    /// `traceparent`, its context written into every event's headers.
    trace: bool,
}

impl Collector {
    pub fn new(config: &Config, telemetry: Arc<Telemetry>) -> anyhow::Result<Arc<Collector>> {
        let c = config.collect.clone();
        let producer_metrics = telemetry.producer(&config.topics.activities);
        let mut client = crate::kafka::producer(&config.kafka, "activity-tracker-collector");
        // The handler waits for the ack; librdkafka gives up (and reports
        // the failure) at the same deadline, so nothing stays queued for a
        // request that was already answered 503. Batch for 1 ms only: every
        // millisecond is response time.
        // `KAFKA_CONFIG_*` still wins over each of these.
        let kafka = &config.kafka;
        crate::kafka::set_unless_passed_through(
            &mut client,
            kafka,
            "message.timeout.ms",
            &c.ack_timeout.as_millis().to_string(),
        );
        crate::kafka::set_unless_passed_through(
            &mut client,
            kafka,
            "queue.buffering.max.messages",
            &QUEUE_CAPACITY.to_string(),
        );
        crate::kafka::set_unless_passed_through(&mut client, kafka, "linger.ms", "1");
        let producer: ThreadedProducer<CollectContext> = client
            .create_with_context(CollectContext {
                metrics: producer_metrics.clone(),
            })
            .map_err(|e| anyhow::anyhow!("cannot create the Kafka producer: {e}"))?;
        let geoip = match &c.geoip_db {
            Some(path) => {
                let db = GeoIp::open(path).map_err(|e| anyhow::anyhow!("COLLECT_GEOIP_DB={}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), kind = db.kind(), "GeoIP database loaded");
                Some(db)
            }
            None => None,
        };
        let limiter = NonZeroU32::new(c.rate_limit).map(|rate| {
            let burst = NonZeroU32::new(c.rate_burst).unwrap_or(rate);
            governor::RateLimiter::keyed(governor::Quota::per_second(rate).allow_burst(burst))
        });
        Ok(Arc::new(Collector {
            write_keys: c.write_keys.iter().map(|k| k.expose().as_bytes().to_vec()).collect(),
            topic: config.topics.activities.clone(),
            limits: config.limits.clone(),
            producer,
            producer_metrics,
            devices: DeviceParser::default(),
            device_cache: Mutex::new(std::collections::HashMap::new()),
            geoip,
            privacy: IpRenderer::new(config.ip_privacy.clone()),
            limiter,
            kafka_up: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            metrics: CollectorMetrics::new(&telemetry),
            telemetry,
            trace: config.log.tracing(),
            config: c,
        }))
    }

    /// Asks the brokers for the activities topic; records whether they answer.
    fn probe_kafka(&self, timeout: Duration) -> bool {
        let up = match self.producer.client().fetch_metadata(Some(&self.topic), timeout) {
            Ok(m) => m
                .topics()
                .iter()
                .any(|t| t.name() == self.topic && t.error().is_none() && !t.partitions().is_empty()),
            Err(_) => false,
        };
        let was = self.kafka_up.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!(topic = %self.topic, "brokers reachable; accepting events");
            } else {
                tracing::warn!(topic = %self.topic, "brokers or topic unreachable; answering 503");
            }
        }
        self.metrics.kafka_up.set(i64::from(up));
        up
    }

    fn device(&self, ua: &str) -> ParsedDevice {
        // Cached by at most the stored length of a user agent: a client
        // cannot make the cache hold 400 KB headers (and the parse of a real
        // user agent never needs more).
        let ua = crate::event::truncate(ua, enrich::MAX_USER_AGENT_BYTES);
        if let Ok(cache) = self.device_cache.lock()
            && let Some(d) = cache.get(ua)
        {
            return d.clone();
        }
        let parsed = self.devices.parse(ua);
        if let Ok(mut cache) = self.device_cache.lock() {
            if cache.len() >= DEVICE_CACHE {
                cache.clear();
            }
            cache.insert(ua.to_string(), parsed.clone());
        }
        parsed
    }

    fn place(&self, ip: IpAddr, headers: &HeaderMap) -> Option<Place> {
        if let Some(p) = self.geoip.as_ref().and_then(|db| db.lookup(ip)) {
            return Some(p);
        }
        let name = self.config.country_header.as_deref()?;
        let code = headers.get(name)?.to_str().ok()?.trim();
        // Two letters; edges send XX / T1 for unknown / Tor.
        let valid = code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()) && code != "XX";
        valid.then(|| Place {
            country: Some(code.to_ascii_uppercase()),
            city: None,
            timezone: None,
        })
    }
}

/// Serves until `shutdown`; returns the bound address and the task that
/// ends when the server has drained.
pub async fn serve(
    collector: Arc<Collector>,
    addr: SocketAddr,
    shutdown: Shutdown,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on HTTP_ADDR={addr}: {e}"))?;
    let bound = listener.local_addr()?;
    // Probe the brokers at once, then every 2 s: /readyz and the fast 503
    // follow it. Until the first answer the collector is not ready.
    let background = collector.clone();
    let probe_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut cleanups = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = probe_stop.wait() => break,
            }
            let c = background.clone();
            let up = tokio::task::spawn_blocking(move || c.probe_kafka(Duration::from_secs(2))).await;
            if cleanups == 0 && up.is_ok_and(|up| !up) {
                tracing::warn!(topic = %background.topic, "brokers or topic not reachable yet; answering 503 until they are");
            }
            cleanups += 1;
            if cleanups.is_multiple_of(30)
                && let Some(limiter) = &background.limiter
            {
                // Forget clients idle long enough to have a full bucket again.
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    });
    let app = router(collector.clone());
    let header_timeout = collector.config.request_timeout;
    let stopping = collector.clone();
    let server = tokio::spawn(async move {
        let stopped = async move {
            shutdown.wait().await;
            // Not ready any more, but still serving for the shutdown delay:
            // load balancers and Ingress controllers learn of it and stop
            // routing here before the port closes; then the requests in
            // progress finish.
            stopping.stopping.store(true, Ordering::Relaxed);
            tokio::time::sleep(stopping.config.shutdown_delay).await;
            stopping.closing.store(true, Ordering::Relaxed);
        };
        let limits = crate::server::Limits {
            header_timeout,
            max_connections: collector.config.max_connections,
            max_header_bytes: crate::server::MAX_HEADER_BYTES,
        };
        crate::server::serve(listener, app, limits, stopped).await;
    });
    Ok((bound, server))
}

pub async fn run_command(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let telemetry = Telemetry::new();
    let collector = Collector::new(&config, telemetry)?;
    let (bound, server) = serve(collector.clone(), config.http_addr, shutdown.clone()).await?;
    tracing::info!(
        topic = %config.topics.activities,
        keys = config.collect.write_keys.len(),
        origins = ?config.collect.allowed_origins,
        "collector on http://{bound} (POST /v1/events, GET /v1/tracker.js, /metrics /healthz /readyz)"
    );
    shutdown.wait().await;
    // After the shutdown delay (still serving), open requests and then the
    // producer's queue share one budget.
    let deadline = tokio::time::Instant::now() + config.collect.shutdown_delay + config.consumer.shutdown_timeout;
    if tokio::time::timeout_at(deadline, server).await.is_err() {
        tracing::warn!("requests still open at SHUTDOWN_TIMEOUT; stopping anyway");
    }
    let c = collector.clone();
    let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
    let _ = tokio::task::spawn_blocking(move || c.producer.flush(timeout)).await;
    Ok(())
}
