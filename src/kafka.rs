//! librdkafka client configuration, in one place for every client we create.
//!
//! Each function starts from the connection settings (brokers, TLS, SASL),
//! adds what its role needs, and applies the operator's `KAFKA_CONFIG_*`
//! pass-through last, so any property can be overridden without a release.
//! The values chosen here are deliberate; each is commented with why.

use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;

use crate::config::{ConsumerConfig, KafkaConfig};

/// Connection settings shared by every client.
pub fn connection(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers);
    c.set("security.protocol", k.security_protocol.as_str());
    if let Some(m) = k.sasl_mechanism {
        c.set("sasl.mechanism", m.as_str());
    }
    if let Some(u) = &k.sasl_username {
        c.set("sasl.username", u);
    }
    if let Some(p) = &k.sasl_password {
        c.set("sasl.password", p.expose());
    }
    if let Some(p) = &k.ssl_ca_location {
        c.set("ssl.ca.location", p.to_string_lossy());
    }
    if let Some(p) = &k.ssl_certificate_location {
        c.set("ssl.certificate.location", p.to_string_lossy());
    }
    if let Some(p) = &k.ssl_key_location {
        c.set("ssl.key.location", p.to_string_lossy());
    }
    if let Some(p) = &k.ssl_key_password {
        c.set("ssl.key.password", p.expose());
    }
    // Route librdkafka's own log lines through `log` → tracing at warn and
    // above; LOG_LEVEL=debug with a filter such as `rdkafka=debug` shows more.
    c.set_log_level(RDKafkaLogLevel::Warning);
    c
}

fn with_passthrough(mut c: ClientConfig, k: &KafkaConfig) -> ClientConfig {
    for (name, value) in &k.passthrough {
        c.set(name, value);
    }
    // `KAFKA_CONFIG_DEBUG=cgrp,fetch` asks librdkafka for debug logs; they
    // reach the log only with its log level raised (see them with
    // LOG_LEVEL=info,librdkafka=debug).
    if k.passthrough.contains_key("debug") {
        c.set_log_level(RDKafkaLogLevel::Debug);
    }
    c
}

/// An idempotent producer: `acks=all`, retries without duplicates or
/// reordering, so a broker failover never loses or repeats an event.
pub fn producer(k: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut c = connection(k);
    c.set("client.id", client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // JSON compresses ~4x; lz4 costs little CPU and lets the brokers (and
        // the embedded broker's 5 MB per-partition cap) hold 4x more events.
        .set("compression.type", "lz4")
        // Batch for up to 5 ms: throughput at high rates, negligible latency.
        .set("linger.ms", "5")
        // Bounded local queue: when full, `send` reports QueueFull and the
        // caller waits instead of buffering without limit.
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "262144")
        // Keep retrying a broker outage for five minutes before reporting
        // failure (the default, stated).
        .set("message.timeout.ms", "300000")
        .set("statistics.interval.ms", "5000");
    with_passthrough(c, k)
}

/// A consumer-group member of the shared runtime.
pub fn consumer(k: &KafkaConfig, cc: &ConsumerConfig, group: &str, client_id: &str) -> ClientConfig {
    let mut c = connection(k);
    c.set("client.id", client_id)
        .set("group.id", group)
        .set("partition.assignment.strategy", &cc.assignment_strategy)
        .set("session.timeout.ms", cc.session_timeout.as_millis().to_string())
        .set(
            "heartbeat.interval.ms",
            (cc.session_timeout.as_millis() / 5).max(500).to_string(),
        )
        .set("auto.offset.reset", cc.auto_offset_reset.as_str())
        // Offsets are stored by the runtime only once an event's effects are
        // acknowledged; librdkafka then commits the stored offsets (with our
        // replay metadata) on this interval and on revocation.
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", cc.commit_interval.as_millis().to_string())
        // Prefetch at most 16 MB (librdkafka's default is 64 MB): bounds
        // memory under a backlog while keeping the pipeline full.
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.max.bytes", "8388608")
        .set("statistics.interval.ms", "5000")
        .set("enable.partition.eof", "false");
    if let Some(id) = &cc.group_instance_id {
        c.set("group.instance.id", id);
    }
    with_passthrough(c, k)
}

/// A plain (group-less) consumer for tools that read topics directly.
pub fn reader(k: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut c = connection(k);
    c.set("client.id", client_id)
        .set("group.id", format!("{client_id}-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    with_passthrough(c, k)
}

/// An admin client.
pub fn admin(k: &KafkaConfig) -> ClientConfig {
    let mut c = connection(k);
    c.set("client.id", "activity-tracker-admin");
    with_passthrough(c, k)
}
