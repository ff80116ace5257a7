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

pub mod enrich;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge};
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde_json::{Value, json};

use crate::config::{CollectConfig, Config};
use crate::event::{DecodeLimits, decode};
use crate::privacy::IpRenderer;
use crate::shutdown::Shutdown;
use crate::telemetry::metrics::{LATENCY_BUCKETS, counter_vec, gauge_vec, histogram_vec};
use crate::telemetry::{ProducerMetrics, Telemetry};
use enrich::{DeviceParser, GeoIp, ParsedDevice, Place, RequestContext};

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

/// One request's events in flight: the delivery callback counts them down
/// and wakes the handler when the last one is acknowledged or failed.
struct Pending {
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

struct CollectContext {
    metrics: ProducerMetrics,
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

/// A refused request: status, the reason counted per event, a message.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    fn retry(mut self, seconds: u64) -> Refusal {
        self.retry_after = Some(seconds.max(1));
        self
    }
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

    /// The origin of a browser request if it is allowed; `Err` if the request
    /// has an Origin header that is not on the list.
    fn origin<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h HeaderValue>, Refusal> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(None);
        };
        let allowed = match &self.config.allowed_origins {
            None => true,
            Some(list) => origin.to_str().is_ok_and(|o| {
                let o = o.trim_end_matches('/');
                list.iter().any(|a| a.eq_ignore_ascii_case(o))
            }),
        };
        if allowed {
            Ok(Some(origin))
        } else {
            Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!(
                    "origin {} is not in COLLECT_ALLOWED_ORIGINS",
                    origin.to_str().unwrap_or("(not text)")
                ),
            ))
        }
    }

    fn authorize(&self, headers: &HeaderMap, query: Option<&str>) -> Result<(), Refusal> {
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| std::borrow::Cow::Borrowed(key))
            .or_else(|| {
                headers
                    .get("x-write-key")
                    .and_then(|v| v.to_str().ok())
                    .map(std::borrow::Cow::Borrowed)
            });
        // The browser tracker sends `encodeURIComponent(key)`: a base64 key's
        // `+`, `/` and `=` arrive percent-encoded.
        let from_query = query.and_then(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == "key")
                .and_then(|(_, v)| percent_decode(v))
        });
        let key = from_header.or(from_query);
        let Some(key) = key.as_deref().map(str::trim).filter(|k| !k.is_empty()) else {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a write key is required: Authorization: Bearer KEY, X-Write-Key: KEY or ?key=KEY",
            ));
        };
        // Compare against every key in constant time per key, so the answer
        // time does not tell how much of a guess was right.
        let mut matched = false;
        for k in &self.write_keys {
            matched |= constant_time_eq(k, key.as_bytes());
        }
        if matched {
            Ok(())
        } else {
            Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown write key",
            ))
        }
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

    fn rate_limit(&self, ip: IpAddr, events: usize) -> Result<(), Refusal> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let n = NonZeroU32::new(u32::try_from(events).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let wait = |events: f64| (events / f64::from(self.config.rate_limit)).ceil() as u64;
        match limiter.check_key_n(&rate_key(ip), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than COLLECT_RATE_LIMIT={} events/s from {ip}",
                    self.config.rate_limit
                ),
            )
            .retry(wait(n.get() as f64))),
            Err(_) => Err(Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "{events} events in one request exceed COLLECT_RATE_BURST={}",
                    self.config.rate_burst
                ),
            )
            .retry(wait(self.config.rate_burst as f64))),
        }
    }
}

/// Whom a rate limit counts: an IPv4 address, or an IPv6 client's /64 (the
/// network one subscriber gets; privacy extensions rotate the rest).
fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

/// Decodes `%XX` escapes (a `+` stays a `+`: keys have no spaces, and
/// `encodeURIComponent` never writes a bare one); `None` if malformed.
fn percent_decode(text: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !text.contains('%') {
        return Some(std::borrow::Cow::Borrowed(text));
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(std::borrow::Cow::Owned)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The router: the /v1 routes plus /metrics, /healthz and /readyz.
pub fn router(collector: Arc<Collector>) -> Router {
    Router::new()
        .route("/v1/events", axum::routing::post(post_events).options(preflight))
        .route("/v1/tracker.js", get(tracker_js))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(collector)
}

/// CORS headers for a browser request, so the page can read the answer
/// (and `Retry-After`). A refused origin gets them too: its events were
/// refused by the server whatever the headers say, and a 403 the tracker can
/// read stops its retries where an unreadable one looks like a network error.
fn cors(response: &mut Response, origin: Option<&HeaderValue>) {
    if let Some(origin) = origin {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

impl Collector {
    fn refuse(&self, refusal: Refusal, events: u64) -> Response {
        if events > 0 {
            self.metrics
                .rejected
                .with_label_values(&[refusal.reason])
                .inc_by(events);
        }
        let mut response = json_response(
            refusal.status,
            json!({"accepted": 0, "error": refusal.reason, "message": refusal.message}),
        );
        if let Some(seconds) = refusal.retry_after
            && let Ok(v) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }

    fn observe(&self, route: &str, status: StatusCode, started: Instant) {
        self.metrics.requests.with_label_values(&[route, status.as_str()]).inc();
        self.metrics
            .request_seconds
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
    }
}

async fn post_events(
    State(collector): State<Arc<Collector>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let headers = request.headers().clone();
    let origin = collector.origin(&headers);
    let browser_origin = headers.get(header::ORIGIN).cloned();
    let deadline = collector.config.request_timeout;
    let mut response =
        match tokio::time::timeout(deadline, handle_events(&collector, peer, origin.map(|_| ()), request)).await {
            Ok(r) => r,
            Err(_) => collector.refuse(
                Refusal::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    format!("the request took longer than COLLECT_REQUEST_TIMEOUT={deadline:?}"),
                ),
                1,
            ),
        };
    cors(&mut response, browser_origin.as_ref());
    collector.observe("events", response.status(), started);
    response
}

async fn handle_events(
    collector: &Collector,
    peer: SocketAddr,
    origin: Result<(), Refusal>,
    request: Request,
) -> Response {
    let c = collector;
    let received_ms = crate::eventtime::now_ms();
    // Refused before the body is read: the request counts as one event.
    if let Err(refusal) = origin {
        return c.refuse(refusal, 1);
    }
    let (parts, body) = request.into_parts();
    if let Err(refusal) = c.authorize(&parts.headers, parts.uri.query()) {
        return c.refuse(refusal, 1);
    }
    if c.closing.load(Ordering::Relaxed) {
        return c.refuse(
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "kafka_unavailable",
                "the collector is stopping",
            )
            .retry(1),
            1,
        );
    }
    let body = match read_body(body, c.config.max_body_bytes, &parts.headers).await {
        Ok(b) => b,
        Err(refusal) => return c.refuse(refusal, 1),
    };
    let values = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items,
        Ok(Value::Object(one)) => vec![Value::Object(one)],
        Ok(_) => {
            return c.refuse(
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "not_an_object",
                    "the body must be an event object or an array of them",
                ),
                1,
            );
        }
        Err(e) => {
            return c.refuse(
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("the body is not JSON: {e}"),
                ),
                1,
            );
        }
    };
    let n = values.len();
    if n > c.config.max_batch {
        return c.refuse(
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_events",
                format!("{n} events in one request; COLLECT_MAX_BATCH is {}", c.config.max_batch),
            ),
            n as u64,
        );
    }
    if n == 0 {
        return json_response(StatusCode::ACCEPTED, json!({"accepted": 0}));
    }
    let ip = enrich::client_ip(peer, &parts.headers, c.config.trusted_proxies);
    if let Err(refusal) = c.rate_limit(ip, n) {
        return c.refuse(refusal, n as u64);
    }

    // Enrich, serialise, and judge each event with the consumers' decoder.
    let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let device = user_agent.map(|ua| c.device(ua));
    let place = c.place(ip, &parts.headers);
    let ctx = RequestContext {
        received_ms,
        client_ip: ip,
        user_agent,
        device: device.as_ref(),
        place: place.as_ref(),
        privacy: &c.privacy,
    };
    let mut records: Vec<(String, Vec<u8>)> = Vec::with_capacity(n);
    let mut rejected = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        let Value::Object(mut event) = value else {
            rejected
                .push(json!({"index": index, "reason": "not_an_object", "detail": "each event must be a JSON object"}));
            continue;
        };
        enrich::enrich(&mut event, &ctx);
        let payload = serde_json::to_vec(&event).unwrap_or_default();
        match decode(&payload, received_ms, &c.limits) {
            Ok(e) => {
                let key = e.user_id.into_owned();
                records.push((key, payload));
            }
            Err(r) => rejected.push(json!({"index": index, "reason": r.reason.code(), "detail": r.detail})),
        }
    }
    if !rejected.is_empty() {
        for r in &rejected {
            let reason = r["reason"].as_str().unwrap_or("invalid");
            c.metrics.rejected.with_label_values(&[reason]).inc();
        }
        let refused_valid = (n - rejected.len()) as u64;
        if refused_valid > 0 {
            c.metrics
                .rejected
                .with_label_values(&["invalid_batch"])
                .inc_by(refused_valid);
        }
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"accepted": 0, "error": "invalid_events", "message": format!("{} of {n} events are invalid; nothing was accepted", rejected.len()), "rejected": rejected}),
        );
    }
    let span = c.trace.then(|| {
        let span = tracing::info_span!(
            "collect_events",
            otel.kind = "server",
            http.request.method = "POST",
            url.path = "/v1/events",
            messaging.system = "kafka",
            messaging.destination.name = %c.topic,
            events = n,
        );
        let caller = parts.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
        let _ =
            tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(&span, crate::telemetry::trace::extract(caller));
        span
    });
    let trace_headers = span.as_ref().map(crate::telemetry::trace::inject).unwrap_or_default();
    match produce(c, records, received_ms, &trace_headers).await {
        Ok(()) => {
            c.metrics.accepted.inc_by(n as u64);
            json_response(StatusCode::ACCEPTED, json!({"accepted": n}))
        }
        Err(refusal) => c.refuse(refusal, n as u64),
    }
}

/// Reads the body up to `max` bytes (413 beyond, told early by
/// Content-Length when the client sends one).
async fn read_body(body: Body, max: usize, headers: &HeaderMap) -> Result<Bytes, Refusal> {
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than COLLECT_MAX_BODY_BYTES={max}"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, max).await.map_err(|_| too_large())
}

/// Enqueues every record and waits for the brokers' verdict on all of them.
async fn produce(
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

async fn preflight(State(c): State<Arc<Collector>>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let response = match c.origin(&headers) {
        Ok(Some(origin)) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("content-type, authorization, x-write-key"),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            r
        }
        Ok(None) => (StatusCode::BAD_REQUEST, "a preflight request needs an Origin header\n").into_response(),
        Err(refusal) => c.refuse(refusal, 0),
    };
    c.observe("preflight", response.status(), started);
    response
}

/// The tracker gzip-compressed once (about a third of its size): browsers
/// all accept gzip, and the script is fetched on every first page view.
fn tracker_js_gzip() -> &'static [u8] {
    static GZIP: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    GZIP.get_or_init(|| {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing into a Vec cannot fail.
        let _ = encoder.write_all(TRACKER_JS.as_bytes());
        encoder.finish().unwrap_or_default()
    })
}

async fn tracker_js(State(c): State<Arc<Collector>>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().split(';').next() == Some("gzip")));
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::VARY, "Accept-Encoding"),
        ],
        if gzip {
            Body::from(tracker_js_gzip())
        } else {
            Body::from(TRACKER_JS)
        },
    )
        .into_response();
    if gzip {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    c.observe("tracker", response.status(), started);
    response
}

async fn metrics(State(c): State<Arc<Collector>>) -> Response {
    c.producer_metrics.queue.set(i64::from(c.producer.in_flight_count()));
    crate::http::metrics_response(c.telemetry.clone()).await
}

async fn readyz(State(c): State<Arc<Collector>>) -> Response {
    if c.stopping.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response()
    } else if !c.kafka_up.load(Ordering::Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("brokers or topic {} unreachable\n", c.topic),
        )
            .into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_the_query_are_percent_decoded() {
        assert_eq!(percent_decode("abc").as_deref(), Some("abc"));
        assert_eq!(percent_decode("a%2Bb%2Fc%3D%3D").as_deref(), Some("a+b/c=="));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"), "a bare + is a +");
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }

    #[test]
    fn ipv6_clients_are_rate_limited_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb:cccc:dddd:eeee".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(rate_key(a), rate_key(b));
        assert_ne!(rate_key(a), rate_key(other));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(rate_key(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(rate_key(mapped), v4);
    }
}
