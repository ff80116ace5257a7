//! The collector's routes: `POST /v1/events` from the first header to the
//! answer, the CORS preflight, the tracker script, `/metrics` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rdkafka::producer::Producer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::admission::Refusal;
use super::delivery::produce;
use super::enrich::{self, RequestContext};
use super::{Collector, TRACKER_JS};
use crate::event::decode;
/// The router: the /v1 routes plus /metrics, /healthz and /readyz.
pub fn router(collector: Arc<Collector>) -> Router {
    Router::new()
        .route("/v1/events", axum::routing::post(post_events).options(preflight))
        .route("/v1/tracker.js", get(tracker_js))
        .route("/metrics", get(metrics))
        .with_state(collector.clone())
        .merge(crate::http::probes(collector))
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

/// The collector's answer to `POST /v1/events`, the contract clients and
/// the tracker read: how many events were accepted (all or none), and when
/// none, why.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub accepted: usize,
    /// A code: `invalid_events`, `rate_limited`, `too_large`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// With `invalid_events`: each event that failed, by its index in the
    /// batch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedEvent>,
}

/// One invalid event of a refused batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RejectedEvent {
    pub detail: String,
    pub index: usize,
    /// A dead-letter reason code (`missing_field`, ...) or `not_an_object`.
    pub reason: String,
}

impl Answer {
    fn accepted(n: usize) -> Answer {
        Answer {
            accepted: n,
            ..Answer::default()
        }
    }

    fn into_response(self, status: StatusCode) -> Response {
        let body = serde_json::to_string(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{body}\n"),
        )
            .into_response()
    }
}

impl Collector {
    fn refuse(&self, refusal: Refusal, events: u64) -> Response {
        if events > 0 {
            self.metrics
                .rejected
                .with_label_values(&[refusal.reason])
                .inc_by(events);
        }
        let mut response = Answer {
            error: Some(refusal.reason.to_string()),
            message: Some(refusal.message),
            ..Answer::default()
        }
        .into_response(refusal.status);
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
        return Answer::accepted(0).into_response(StatusCode::ACCEPTED);
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
            rejected.push(RejectedEvent {
                index,
                reason: "not_an_object".into(),
                detail: "each event must be a JSON object".into(),
            });
            continue;
        };
        enrich::enrich(&mut event, &ctx);
        let payload = serde_json::to_vec(&event).unwrap_or_default();
        match decode(&payload, received_ms, &c.limits) {
            Ok(e) => {
                let key = e.user_id.into_owned();
                records.push((key, payload));
            }
            Err(r) => rejected.push(RejectedEvent {
                index,
                reason: r.reason.code().into(),
                detail: r.detail,
            }),
        }
    }
    if !rejected.is_empty() {
        for r in &rejected {
            c.metrics.rejected.with_label_values(&[r.reason.as_str()]).inc();
        }
        let refused_valid = (n - rejected.len()) as u64;
        if refused_valid > 0 {
            c.metrics
                .rejected
                .with_label_values(&["invalid_batch"])
                .inc_by(refused_valid);
        }
        return Answer {
            accepted: 0,
            error: Some("invalid_events".into()),
            message: Some(format!(
                "{} of {n} events are invalid; nothing was accepted",
                rejected.len()
            )),
            rejected,
        }
        .into_response(StatusCode::BAD_REQUEST);
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
            Answer::accepted(n).into_response(StatusCode::ACCEPTED)
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

impl crate::http::Health for Collector {
    /// The collector has no loop of its own to stall: alive while it serves.
    fn alive(&self) -> Result<(), String> {
        Ok(())
    }

    fn ready(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Relaxed) {
            Err("stopping".into())
        } else if !self.kafka_up.load(Ordering::Relaxed) {
            Err(format!("brokers or topic {} unreachable", self.topic))
        } else {
            Ok(())
        }
    }
}
