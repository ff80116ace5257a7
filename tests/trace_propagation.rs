//! Trace propagation across Kafka: the producer starts a trace per event and
//! writes its W3C context into the message headers; the fraud consumer's
//! span continues it; the alert's headers carry the consumer span's context.
//! Spans are collected with OpenTelemetry's in-memory exporter.
//!
//! Its own test binary, not a module of `tests/it`: it installs the
//! process-wide tracing subscriber, which the first test of a shared
//! process to log would otherwise have installed already.

#[path = "it/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;
use activity_tracker::commands::{Run, demo::Demo};
use activity_tracker::config::ProducerConfig;
use activity_tracker::consumers::{self, Kind};
use activity_tracker::producer::{self, ProduceOptions};
use activity_tracker::shutdown::Shutdown;
use activity_tracker::telemetry::Telemetry;
use activity_tracker::telemetry::trace::parse_traceparent;
use opentelemetry_sdk::trace::{InMemorySpanExporterBuilder, SdkTracerProvider};

#[test]
fn an_alerts_trace_links_to_the_event_that_caused_it() {
    let exporter = InMemorySpanExporterBuilder::new().build();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let broker = broker(3);
    let bootstrap = broker.bootstrap_servers().to_string();
    // Any endpoint turns tracing on; spans go to the in-memory exporter.
    let config = crate::support::config(
        Demo::PROFILE,
        &bootstrap,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("SIM_START_TIME", "2024-01-15T10:00:00Z"),
            ("SIM_SEED", "5"),
            ("FRAUD_RATE", "0.3"),
            ("EVENTS_PER_SECOND", "20"),
        ],
    );
    assert!(config.log.tracing());
    let _logs = activity_tracker::telemetry::logging::install(&config.log, "tracing-test", Some(provider.clone()));

    let events = 1_500;
    let options = ProduceOptions {
        kafka: config.kafka.clone(),
        topic: ACTIVITIES.into(),
        producer: ProducerConfig {
            max_events: Some(events),
            ..config.producer.clone()
        },
        truth_file: None,
        shutdown_timeout: Duration::from_secs(30),
        progress: false,
        trace: true,
    };
    let telemetry = Telemetry::new();
    producer::run(&options, telemetry.producer(ACTIVITIES), &Shutdown::new()).unwrap();

    let stop = Shutdown::new();
    let fraud = consumers::spawn(
        consumers::fraud_app(&config).quiet(),
        &config,
        Kind::Fraud.group(&config),
        &telemetry,
        stop.clone(),
    )
    .unwrap();
    wait_until("the detector to process every event", Duration::from_secs(60), || {
        fraud
            .shared
            .status
            .read()
            .is_ok_and(|s| s.events_processed >= events && s.partitions.iter().all(|p| p.effects_in_flight == 0))
    });
    stop.trigger();
    fraud.thread.join().unwrap().unwrap();
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();

    // Producer side: every event carries a traceparent.
    let activities = read_all(&bootstrap, ACTIVITIES);
    let mut by_event: BTreeMap<String, (String, String)> = BTreeMap::new();
    for m in &activities {
        let (trace, span) = parse_traceparent(&m.header("traceparent")).expect("every event carries a traceparent");
        by_event.insert(m.json()["event_id"].as_str().unwrap().to_string(), (trace, span));
    }
    assert_eq!(by_event.len() as u64, events);

    let alerts = read_all(&bootstrap, ALERTS);
    assert!(alerts.len() >= 10, "alerts were raised: {}", alerts.len());
    let mut decided_by = 0;
    for alert in &alerts {
        let (alert_trace, alert_parent) =
            parse_traceparent(&alert.header("traceparent")).expect("alerts carry a traceparent");
        let event_id = alert.json()["event_id"].as_str().unwrap().to_string();
        // A PURCHASE_WITHOUT_ACTIVITY verdict is reached while processing the
        // event that moved the watermark past the purchase: its alert
        // continues that event's trace (and names the purchase).
        let (event_trace, producer_span) = if alert.json()["rule"] == "PURCHASE_WITHOUT_ACTIVITY" {
            decided_by += 1;
            by_event
                .values()
                .find(|(trace, _)| *trace == alert_trace)
                .expect("the alert continues the trace of an event")
        } else {
            &by_event[&event_id]
        };
        assert_eq!(&alert_trace, event_trace, "the alert continues the event's trace");

        // The alert's parent is the consumer's span for that event, whose
        // parent is the producer's span.
        let consumer = spans
            .iter()
            .find(|s| s.span_context.span_id().to_string() == alert_parent)
            .expect("the alert's parent span was exported");
        assert_eq!(consumer.name, "process_event");
        assert_eq!(consumer.span_context.trace_id().to_string(), *event_trace);
        assert_eq!(consumer.parent_span_id.to_string(), *producer_span);
        let producer = spans
            .iter()
            .find(|s| s.span_context.span_id().to_string() == *producer_span)
            .expect("the producer's span was exported");
        assert_eq!(producer.name, "produce_event");
    }
    println!(
        "traces: {} events, {} alerts; each alert's traceparent → consumer span → producer span of its event ({decided_by} PURCHASE_WITHOUT_ACTIVITY: of the event that decided it)",
        events,
        alerts.len()
    );
}
