//! Traces: OpenTelemetry through `tracing`, with the W3C trace context
//! carried in Kafka message headers.
//!
//! The path of one event is one trace: the producer's `produce_event` span
//! writes `traceparent` (and `tracestate`) into the message headers; the
//! consumer's `process_event` span continues that trace; an alert published
//! because of the event carries the consumer span's context in its own
//! headers. An alert's trace therefore links to the event that caused it,
//! across three processes and two topics.
//!
//! Tracing is opt-in (`OTEL_EXPORTER_OTLP_ENDPOINT`): a span per event costs
//! about a microsecond, which matters at a million events per second. With
//! tracing off, no span is created and no header written; a `traceparent`
//! that arrives on an event (from a client that traces) is still passed
//! through to the alert it causes.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header names.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Builds the OTLP/HTTP exporter (to `traces_url`, the full URL spans are
/// posted to) and tracer provider. The SDK reads the standard `OTEL_*`
/// variables (headers, timeouts, sampler) itself.
pub fn provider(traces_url: &str, service: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces_url)
        .build()
        .map_err(|e| format!("cannot set up the OTLP exporter for {traces_url}: {e}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        )
        .build())
}

/// The `tracing` layer that turns spans into OpenTelemetry spans.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("activity-tracker"))
}

/// The W3C headers carrying `span`'s context (empty when the span is not
/// recorded).
pub fn inject(span: &tracing::Span) -> Vec<(String, Vec<u8>)> {
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
}

/// Kafka message headers carrying these W3C headers (from [`inject`]).
pub fn kafka_headers(pairs: &[(String, Vec<u8>)]) -> rdkafka::message::OwnedHeaders {
    pairs
        .iter()
        .fold(rdkafka::message::OwnedHeaders::new(), |headers, (k, v)| {
            headers.insert(rdkafka::message::Header { key: k, value: Some(v) })
        })
}

/// The trace context carried by message headers (an empty context if none).
pub fn extract<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> opentelemetry::Context {
    let carrier: HashMap<String, String> = headers
        .filter(|(k, _)| k.eq_ignore_ascii_case(TRACEPARENT) || k.eq_ignore_ascii_case(TRACESTATE))
        .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), std::str::from_utf8(v).ok()?.to_string())))
        .collect();
    TraceContextPropagator::new().extract(&carrier)
}

/// The W3C headers of a message, to pass through unchanged.
pub fn passthrough<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<(String, Vec<u8>)> {
    headers
        .filter(|(k, _)| k.eq_ignore_ascii_case(TRACEPARENT) || k.eq_ignore_ascii_case(TRACESTATE))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_vec()))
        .collect()
}

/// Trace and parent-span ids of a `traceparent` value
/// (`00-<trace id>-<span id>-<flags>`).
pub fn parse_traceparent(value: &str) -> Option<(String, String)> {
    let mut parts = value.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(version, 2) && hex(trace, 32) && hex(span, 16) && hex(flags, 2)).then(|| (trace.to_string(), span.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    #[test]
    fn headers_round_trip_a_context() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let headers = [("traceparent", value.as_bytes()), ("other", b"x".as_slice())];
        let cx = extract(headers.iter().copied());
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled());
        assert_eq!(
            passthrough(headers.iter().copied()),
            vec![("traceparent".to_string(), value.as_bytes().to_vec())]
        );
        assert_eq!(
            parse_traceparent(value),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736".into(), "00f067aa0ba902b7".into()))
        );
        assert_eq!(parse_traceparent("garbage"), None);
        assert!(!extract(std::iter::empty()).has_active_span());
    }
}
