//! The HTTP collector against the embedded broker: what it accepts arrives in
//! Kafka enriched and valid for the consumers; everything it refuses gets the
//! right status and leaves the topic untouched.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;
use activity_tracker::collect::{Collector, serve};
use activity_tracker::commands::{Run, analytics::Analytics, collect::Collect};
use activity_tracker::shutdown::Shutdown;
use activity_tracker::telemetry::Telemetry;

const KEY: &str = "test-write-key-1";
const ORIGIN: &str = "https://shop.example.com";

struct Running {
    addr: SocketAddr,
    shutdown: Shutdown,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

fn start(bootstrap: &str, extra: &[(&str, &str)]) -> Running {
    let mut settings = vec![
        ("COLLECT_WRITE_KEYS", "test-write-key-1,test-write-key-2"),
        ("COLLECT_ALLOWED_ORIGINS", ORIGIN),
        ("COLLECT_ACK_TIMEOUT", "3s"),
    ];
    settings.extend_from_slice(extra);
    let config = config(Collect::PROFILE, bootstrap, &settings);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let shutdown = Shutdown::new();
    let addr = runtime.block_on(async {
        let collector = Collector::new(&config, Telemetry::new()).expect("collector starts");
        serve(collector, config.http_addr, shutdown.clone())
            .await
            .expect("listens")
            .0
    });
    Running {
        addr,
        shutdown,
        runtime: Some(runtime),
    }
}

fn event(user: &str, kind: &str) -> serde_json::Value {
    serde_json::json!({
        "user_id": user,
        "event_type": kind,
        "session_id": "s-1",
        "page_url": "https://shop.example.com/p/1",
        "timestamp": activity_tracker::eventtime::format_rfc3339_ms(activity_tracker::eventtime::now_ms()),
        "properties": {"product_id": "p-1", "price": 19.5},
    })
}

fn post(addr: SocketAddr, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    http_send(addr, "POST", "/v1/events", headers, body)
}

fn in_topic(bootstrap: &str) -> i64 {
    high_watermarks(bootstrap, ACTIVITIES, 3).values().sum()
}

fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (_, text) = http_get(addr, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[test]
fn refused_requests_get_the_right_status_and_nothing_reaches_kafka() {
    let broker = broker(3);
    let bootstrap = broker.bootstrap_servers().to_string();
    let c = start(
        &bootstrap,
        &[
            ("COLLECT_RATE_LIMIT", "5"),
            ("COLLECT_RATE_BURST", "15"),
            ("COLLECT_MAX_BODY_BYTES", "4096"),
            ("COLLECT_MAX_BATCH", "20"),
        ],
    );
    wait_until("the collector to reach the broker", Duration::from_secs(30), || {
        http_get(c.addr, "/readyz").0 == 200
    });
    let auth = ("Authorization", "Bearer test-write-key-1");
    let one = event("u-1", "page_view").to_string();
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("no key", vec![], one.clone().into_bytes(), 401, "unauthorized"),
        (
            "wrong key",
            vec![("Authorization", "Bearer not-a-key-at-all")],
            one.clone().into_bytes(),
            401,
            "unauthorized",
        ),
        (
            "wrong key in the query",
            vec![],
            one.clone().into_bytes(),
            401,
            "unauthorized",
        ),
        ("oversized body", vec![auth], vec![b' '; 5000], 413, "too_large"),
        (
            "malformed JSON",
            vec![auth],
            b"{\"user_id\": \"u-1\", ".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "origin not on the list",
            vec![auth, ("Origin", "https://evil.example.net")],
            one.clone().into_bytes(),
            403,
            "forbidden_origin",
        ),
        (
            "too many events",
            vec![auth],
            serde_json::to_vec(&vec![serde_json::json!({}); 21]).unwrap(),
            413,
            "too_many_events",
        ),
        ("a scalar", vec![auth], b"42".to_vec(), 400, "not_an_object"),
    ];
    for (what, headers, body, status, error) in &cases {
        let path = if *what == "wrong key in the query" {
            "/v1/events?key=guess-guess"
        } else {
            "/v1/events"
        };
        let r = http_send(c.addr, "POST", path, headers, body);
        assert_eq!(r.status, *status, "{what}: {r:?}");
        assert_eq!(r.json()["error"], *error, "{what}: {r:?}");
        assert_eq!(r.json()["accepted"], 0, "{what}");
        if *status == 403 {
            // Readable by the refused page, so its tracker stops retrying.
            assert_eq!(
                r.header("access-control-allow-origin"),
                Some("https://evil.example.net")
            );
        }
    }

    // One invalid event refuses the whole request, with a reason per event.
    let mut missing_user = event("u-1", "click");
    missing_user.as_object_mut().unwrap().remove("user_id");
    let batch = serde_json::json!([
        event("u-1", "page_view"),
        missing_user,
        event("u-1", "teleport"),
        {"user_id": "u-1", "event_type": "purchase", "properties": {"price": -3}},
        "not an object",
    ]);
    let r = post(c.addr, &[auth], batch.to_string().as_bytes());
    assert_eq!(r.status, 400, "{r:?}");
    // The answer's contract, read through the collector's own type.
    let answer: activity_tracker::collect::Answer = serde_json::from_value(r.json()).unwrap();
    assert_eq!((answer.accepted, answer.error.as_deref()), (0, Some("invalid_events")));
    let reasons: Vec<(usize, String)> = answer.rejected.into_iter().map(|x| (x.index, x.reason)).collect();
    assert_eq!(
        reasons,
        vec![
            (1, "missing_field".into()),
            (2, "unknown_event_type".into()),
            (3, "invalid_amount".into()),
            (4, "not_an_object".into())
        ]
    );

    // Rate limit: a burst of 15 (the invalid batch above took 5), then 5
    // events/s from one client.
    let ten: Vec<_> = (0..10).map(|i| event(&format!("r-{i}"), "click")).collect();
    let r = post(
        c.addr,
        &[auth, ("Origin", ORIGIN)],
        serde_json::to_string(&ten).unwrap().as_bytes(),
    );
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    let accepted_so_far = in_topic(&bootstrap);
    assert_eq!(accepted_so_far, 10);
    let r = post(c.addr, &[auth], serde_json::to_string(&ten).unwrap().as_bytes());
    assert_eq!(r.status, 429, "{r:?}");
    assert!(
        r.header("access-control-expose-headers").is_none(),
        "no Origin, no CORS headers"
    );
    assert_eq!(r.json()["error"], "rate_limited");
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");

    // Nothing refused reached the topic.
    assert_eq!(in_topic(&bootstrap), 10, "only the accepted batch is in Kafka");
    assert_eq!(metric(c.addr, "activity_collector_events_accepted_total"), 10.0);
    assert_eq!(
        metric(
            c.addr,
            "activity_collector_events_rejected_total{reason=\"rate_limited\"}"
        ),
        10.0
    );
    assert_eq!(
        metric(
            c.addr,
            "activity_collector_requests_total{route=\"events\",status=\"401\"}"
        ),
        3.0
    );
    // Refused before the body was read: one each.
    for (reason, n) in [("unauthorized", 3.0), ("forbidden_origin", 1.0), ("too_large", 1.0)] {
        let series = format!("activity_collector_events_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(c.addr, &series), n, "{series}");
    }
    // The invalid batch: its four bad events by reason, its valid one as
    // invalid_batch.
    let invalid_batch = "activity_collector_events_rejected_total{reason=\"invalid_batch\"}";
    assert_eq!(metric(c.addr, invalid_batch), 1.0);

    // CORS preflight: allowed origin answered, others refused.
    let ok = http_send(c.addr, "OPTIONS", "/v1/events", &[("Origin", ORIGIN)], b"");
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-origin"), Some(ORIGIN));
    assert!(
        ok.header("access-control-allow-headers")
            .unwrap()
            .contains("x-write-key")
    );
    let bad = http_send(
        c.addr,
        "OPTIONS",
        "/v1/events",
        &[("Origin", "https://evil.example.net")],
        b"",
    );
    assert_eq!(bad.status, 403);
    assert_eq!(bad.header("access-control-allow-origin"), None);
}

#[test]
fn accepted_events_arrive_enriched_and_valid_for_the_consumers() {
    let broker = kafka(3);
    let bootstrap = broker.bootstrap_servers().to_string();
    let geoip = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/geoip-test.mmdb");
    let c = start(
        &bootstrap,
        &[
            ("COLLECT_TRUSTED_PROXIES", "1"),
            ("COLLECT_GEOIP_DB", geoip),
            ("COLLECT_COUNTRY_HEADER", "CF-IPCountry"),
        ],
    );
    wait_until("the collector to reach the broker", Duration::from_secs(30), || {
        http_get(c.addr, "/readyz").0 == 200
    });
    let ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1";
    // The client's clock is an hour fast: it stamps and sends on its clock.
    let now = activity_tracker::eventtime::now_ms();
    let fast = |ms: i64| activity_tracker::eventtime::format_rfc3339_ms(ms + 3_600_000);
    let batch = serde_json::json!([
        {"user_id": "alice", "event_type": "page_view", "timestamp": fast(now - 2_000), "sent_at": fast(now), "ip_address": "6.6.6.6"},
        {"user_id": "alice", "event_type": "add_to_cart", "event_id": "client-chosen-id",
         "properties": {"product_id": "p-9", "price": 12.0, "cart_value": 12.0}},
    ]);
    // Through one trusted proxy from a New Zealand address; the client's own
    // X-Forwarded-For entry (6.6.6.6) is ignored.
    let r = post(
        c.addr,
        &[
            ("X-Write-Key", KEY),
            ("User-Agent", ua),
            ("X-Forwarded-For", "6.6.6.6, 203.0.113.7"),
            ("Content-Type", "text/plain;charset=UTF-8"),
        ],
        batch.to_string().as_bytes(),
    );
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.json()["accepted"], 2);
    // Second request: an address the database does not know, so the trusted
    // country header decides; the write key comes in the query string.
    let r = http_send(
        c.addr,
        "POST",
        "/v1/events?key=test-write-key-2",
        &[("X-Forwarded-For", "192.0.2.44"), ("CF-IPCountry", "br")],
        event("bob", "search").to_string().as_bytes(),
    );
    assert_eq!(r.status, 202, "{r:?}");

    let received = read_all(&bootstrap, ACTIVITIES);
    assert_eq!(received.len(), 3);
    let limits = activity_tracker::config::Config::load(Analytics::PROFILE, &Default::default())
        .unwrap()
        .limits;
    for m in &received {
        let e = activity_tracker::event::decode(&m.payload, m.timestamp_ms.unwrap(), &limits)
            .expect("what the collector sends, the consumers accept");
        assert_eq!(m.key.as_deref(), Some(e.user_id.as_bytes()), "keyed by user_id");
    }
    let by_type = |t: &str| {
        received
            .iter()
            .map(Received::json)
            .find(|e| e["event_type"] == t)
            .unwrap()
    };
    let view = by_type("page_view");
    assert_eq!(view["ip_address"], "203.0.113.7");
    assert_eq!(view["location"]["country"], "NZ");
    assert_eq!(view["location"]["city"], "Auckland");
    assert_eq!(view["location"]["timezone"], "Pacific/Auckland");
    assert_eq!(view["user_agent"], ua);
    assert_eq!(view["device"]["type"], "mobile");
    assert_eq!(view["device"]["os"], "iOS");
    assert_eq!(view["device"]["browser"], "Safari");
    assert_eq!(view["event_id"].as_str().unwrap().len(), 36, "server-made UUID");
    // Clock corrected: 2 s before receipt, not an hour in the future.
    let ts = activity_tracker::eventtime::parse_rfc3339_ms(view["timestamp"].as_str().unwrap()).unwrap();
    let received_at = activity_tracker::eventtime::parse_rfc3339_ms(view["received_at"].as_str().unwrap()).unwrap();
    assert!((received_at - ts - 2_000).abs() < 1_000, "{view}");
    assert_eq!(view["client_timestamp"], fast(now - 2_000));
    let cart = by_type("add_to_cart");
    assert_eq!(cart["event_id"], "client-chosen-id");
    assert_eq!(cart["properties"]["cart_value"], 12.0);
    let search = by_type("search");
    assert_eq!(search["ip_address"], "192.0.2.44");
    assert_eq!(search["location"]["country"], "BR");
    assert_eq!(search["location"]["city"], serde_json::Value::Null);
}

#[test]
fn without_kafka_events_get_503_with_retry_after_and_readiness_fails() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bootstrap = format!("127.0.0.1:{port}");
    let c = start(&bootstrap, &[]);
    let (status, body) = http_get(c.addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(http_get(c.addr, "/healthz").0, 200);
    let r = post(
        c.addr,
        &[("Authorization", "Bearer test-write-key-1")],
        event("u", "click").to_string().as_bytes(),
    );
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["error"], "kafka_unavailable");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    assert_eq!(
        metric(
            c.addr,
            "activity_collector_events_rejected_total{reason=\"kafka_unavailable\"}"
        ),
        1.0
    );
    assert_eq!(metric(c.addr, "activity_collector_kafka_up"), 0.0);
    let js = http_get(c.addr, "/v1/tracker.js");
    assert_eq!(js.0, 200);
    assert!(js.1.contains("sendBeacon"), "the tracker is served");
    // Compressed for browsers: a few KB on the wire.
    let zipped = http_send(c.addr, "GET", "/v1/tracker.js", &[("Accept-Encoding", "gzip, br")], b"");
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    let wire: usize = zipped.header("content-length").unwrap().parse().unwrap();
    assert!(
        wire < 8 * 1024 && wire * 2 < js.1.len(),
        "{wire} bytes gzipped of {}",
        js.1.len()
    );
}

#[test]
fn a_request_continues_the_callers_trace_into_every_event() {
    use activity_tracker::telemetry::trace::parse_traceparent;
    use opentelemetry_sdk::trace::{InMemorySpanExporterBuilder, SdkTracerProvider};
    let exporter = InMemorySpanExporterBuilder::new().build();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let broker = broker(3);
    let bootstrap = broker.bootstrap_servers().to_string();
    // Any endpoint turns tracing on; spans go to the in-memory exporter.
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")];
    let log = config(Collect::PROFILE, &bootstrap, &[("COLLECT_WRITE_KEYS", KEY), otel[0]]).log;
    let _logs = activity_tracker::telemetry::logging::install(&log, "collector-trace-test", Some(provider.clone()));
    let c = start(&bootstrap, &otel);
    wait_until("the collector to reach the broker", Duration::from_secs(30), || {
        http_get(c.addr, "/readyz").0 == 200
    });
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{caller_trace}-{caller_span}-01");
    let batch = serde_json::json!([event("t-1", "click"), event("t-2", "search")]);
    let r = post(
        c.addr,
        &[("X-Write-Key", KEY), ("traceparent", &traceparent)],
        batch.to_string().as_bytes(),
    );
    assert_eq!(r.status, 202, "{r:?}");

    let received = read_all(&bootstrap, ACTIVITIES);
    assert_eq!(received.len(), 2);
    let mut request_span = None;
    for m in &received {
        let (trace, span) = parse_traceparent(&m.header("traceparent")).expect("events carry a traceparent");
        assert_eq!(trace, caller_trace, "the caller's trace continues");
        assert_ne!(span, caller_span, "under the collector's own span");
        assert!(
            request_span.get_or_insert(span.clone()) == &span,
            "one span per request"
        );
    }
    let request_span = request_span.unwrap();
    let mut exported = None;
    wait_until("the request's span to be exported", Duration::from_secs(10), || {
        provider.force_flush().ok();
        exported = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .find(|s| s.span_context.span_id().to_string() == request_span);
        exported.is_some()
    });
    let span = exported.unwrap();
    assert_eq!(span.name, "collect_events");
    assert_eq!(span.parent_span_id.to_string(), caller_span);
}

/// Behind a load balancer or an Ingress controller, endpoints are removed
/// some time after SIGTERM: a collector that closed its port at once would
/// refuse what is still routed to it. During COLLECT_SHUTDOWN_DELAY it
/// answers not ready yet still accepts events, and only then closes.
#[test]
fn after_a_stop_the_collector_keeps_serving_not_ready_for_the_shutdown_delay() {
    let broker = broker(3);
    let bootstrap = broker.bootstrap_servers().to_string();
    let c = start(&bootstrap, &[("COLLECT_SHUTDOWN_DELAY", "4s")]);
    wait_until("the collector to reach the broker", Duration::from_secs(30), || {
        http_get(c.addr, "/readyz").0 == 200
    });
    c.shutdown.trigger();
    // Not ready, still answering (a closed port would answer nothing).
    wait_until("not ready after the stop", Duration::from_secs(10), || {
        http_get(c.addr, "/readyz").0 == 503
    });
    let r = post(
        c.addr,
        &[("X-Write-Key", KEY)],
        event("late-arrival", "page_view").to_string().as_bytes(),
    );
    assert_eq!(
        r.status, 202,
        "an event routed here during the delay is accepted: {r:?}"
    );
    wait_until("the event in Kafka", Duration::from_secs(10), || {
        in_topic(&bootstrap) == 1
    });
    // Then the port closes.
    wait_until("the port closed after the delay", Duration::from_secs(30), || {
        std::net::TcpStream::connect_timeout(&c.addr, Duration::from_millis(200)).is_err()
    });
}
