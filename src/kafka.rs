//! librdkafka client configuration, in one place for every client we create.
//!
//! Each function starts from the connection settings (brokers, TLS, SASL),
//! adds what its role needs, and applies the operator's `KAFKA_CONFIG_*`
//! pass-through last, so any property can be overridden without a release.
//! The values chosen here are deliberate; each is commented with why.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, ClientContext, Statistics};

use crate::config::{ConsumerConfig, GroupProtocol, KafkaConfig};
use crate::shutdown::Shutdown;

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
    // Reconnect to a broker that went away at most 2 s apart (librdkafka's
    // default backs off to 10 s): after an outage the clients are back
    // within seconds of the broker, at the cost of a few more attempts.
    c.set("reconnect.backoff.max.ms", "2000");
    // Route librdkafka's own log lines through `log` → tracing at warn and
    // above; LOG_LEVEL=debug with a filter such as `rdkafka=debug` shows more.
    c.set_log_level(RDKafkaLogLevel::Warning);
    c
}

/// Sets a property a role needs on top of a finished configuration, unless
/// the operator set it with `KAFKA_CONFIG_*` (whose values always win).
pub fn set_unless_passed_through(c: &mut ClientConfig, k: &KafkaConfig, name: &str, value: &str) {
    if !k.passthrough.contains_key(name) {
        c.set(name, value);
    }
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

/// The runtime's producer of alerts and dead letters: the event producer's
/// settings, but batching for 1 ms instead of 5. Alerts are a few per
/// hundred events, so there is little to batch, and every millisecond is
/// detection latency; the offsets of their events also wait for the ack.
pub fn effects_producer(k: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut c = producer(k, client_id);
    set_unless_passed_through(&mut c, k, "linger.ms", "1");
    c
}

/// The classic protocol's heartbeat interval, at most (ms).
const CLASSIC_HEARTBEAT_MS: u128 = 500;

/// A consumer-group member of the shared runtime.
pub fn consumer(k: &KafkaConfig, cc: &ConsumerConfig, group: &str, client_id: &str) -> ClientConfig {
    let mut c = connection(k);
    c.set("client.id", client_id)
        .set("group.id", group)
        .set("group.protocol", cc.group_protocol.as_str())
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
        // When that prefetch is full librdkafka stops fetching for
        // fetch.queue.backoff.ms — 1 s by default, during which a consumer
        // that drains 16 MB in a few tens of ms sits idle. 10 ms keeps the
        // pipeline full: draining a backlog went from 41k to 567k events/s
        // (`activity-tracker bench`).
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.max.bytes", "8388608")
        .set("statistics.interval.ms", "5000")
        .set("enable.partition.eof", "false");
    if cc.group_protocol == GroupProtocol::Classic {
        // Under KIP-848 the broker owns these, and librdkafka refuses a
        // consumer that sets them.
        c.set("partition.assignment.strategy", &cc.assignment_strategy)
            .set("session.timeout.ms", cc.session_timeout.as_millis().to_string())
            // Under the classic protocol a member learns that a rebalance
            // has begun (a replica joined or left) from its next heartbeat,
            // and cooperative-sticky takes two rounds to move a partition,
            // so the interval bounds every rebalance pause: 500 ms at most
            // (librdkafka's default is 3 s; 1 s paused a joining replica's
            // partitions for 1.06–1.11 s on Kafka 4.4), a third of short
            // test sessions. Two heartbeats a second per member is nothing
            // to a group coordinator.
            .set(
                "heartbeat.interval.ms",
                (cc.session_timeout.as_millis() / 3)
                    .min(CLASSIC_HEARTBEAT_MS)
                    .to_string(),
            );
    }
    if let Some(id) = &cc.group_instance_id {
        c.set("group.instance.id", id);
    }
    if let Some(wait) = cc.fetch_wait_max {
        c.set("fetch.wait.max.ms", wait.as_millis().to_string());
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

// ---- Errors that retrying cannot fix -------------------------------------

/// The first client error after which retrying cannot help: the cluster
/// refused our credentials. librdkafka would retry a wrong password forever
/// while the process looks alive and does nothing; instead every
/// long-running command stops (see [`stop_on_fatal_error`]) and `main`
/// prints this and exits 1 — in Kubernetes, a pod in CrashLoopBackOff whose
/// log says why.
static FATAL: OnceLock<String> = OnceLock::new();
static ON_FATAL: Mutex<Vec<Shutdown>> = Mutex::new(Vec::new());
/// Whether any client of this process has been accepted by a broker (seen
/// in its statistics, or a metadata request answered). After that, an authentication error is a failed
/// re-authentication of a long-lived connection — brokers differ there, and
/// librdkafka recovers on a new connection — so it is logged, not fatal.
static ACCEPTED: AtomicBool = AtomicBool::new(false);

/// Every client's statistics callback: notes that a broker accepted us.
pub fn observe(statistics: &Statistics) {
    if !ACCEPTED.load(Ordering::Relaxed)
        && statistics
            .brokers
            .values()
            .any(|b| b.source != "internal" && b.state == "UP")
    {
        ACCEPTED.store(true, Ordering::Relaxed);
    }
}

/// Triggers `shutdown` when a Kafka client of this process meets a fatal
/// error (immediately if one already happened).
pub fn stop_on_fatal_error(shutdown: &Shutdown) {
    if let Ok(mut watchers) = ON_FATAL.lock() {
        watchers.push(shutdown.clone());
    }
    if FATAL.get().is_some() {
        shutdown.trigger();
    }
}

/// The fatal client error of this process, if there was one.
pub fn fatal_error() -> Option<&'static str> {
    FATAL.get().map(String::as_str)
}

/// Why the cluster refused us for good, not for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// SASL credentials or mechanism refused.
    Credentials,
    /// The brokers' TLS certificate failed verification on our side.
    BrokerCertificate,
    /// The brokers refused our TLS handshake (no client certificate where
    /// one is required, or one they do not trust).
    ClientCertificate,
}

impl Refusal {
    /// The one-line error a user reads, naming the settings to check.
    pub fn message(self, reason: &str) -> String {
        match self {
            Refusal::Credentials => format!(
                "Kafka refused authentication: {reason} (check KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, \
                 KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE)"
            ),
            Refusal::BrokerCertificate => format!(
                "Kafka's TLS certificate could not be verified: {reason} (check KAFKA_SSL_CA_LOCATION: the CA \
                 that signed the brokers' certificates)"
            ),
            Refusal::ClientCertificate => format!(
                "Kafka refused our TLS handshake: {reason} (the brokers require a client certificate they trust: \
                 check KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION)"
            ),
        }
    }
}

/// Whether `error` (a global client error, librdkafka's `reason` for it)
/// means the cluster refused us for good rather than for now, and why:
/// refused credentials or mechanism, a broker certificate we cannot verify,
/// a client certificate the brokers refuse — unless a broker has already
/// `accepted` us (then it is a failed re-authentication of a long-lived
/// connection, logged and retried on a new one).
///
/// librdkafka reports every failed SASL handshake as an authentication
/// error, including one whose connection broke on our side mid-handshake
/// ("mechanism handshake failed: Local: Broker transport failure"); that is
/// a network failure like any other and is retried, not fatal. Likewise a
/// TLS error is fatal only when it names a certificate, not a connection
/// that broke during the handshake.
pub fn refusal(error: &KafkaError, reason: &str, accepted: bool) -> Option<Refusal> {
    if accepted {
        return None;
    }
    match error.rdkafka_error_code()? {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed
            if !reason.contains("handshake failed: Local:") =>
        {
            Some(Refusal::Credentials)
        }
        RDKafkaErrorCode::SSL if reason.contains("certificate verify failed") => Some(Refusal::BrokerCertificate),
        // With TLS 1.3 the client's handshake completes before the broker
        // has checked its certificate, so the broker's alert arrives on the
        // first read: librdkafka calls that a transport failure.
        RDKafkaErrorCode::SSL | RDKafkaErrorCode::BrokerTransportFailure
            if [
                "alert certificate required",
                "alert bad certificate",
                "alert unknown ca",
            ]
            .iter()
            .any(|alert| reason.contains(alert)) =>
        {
            Some(Refusal::ClientCertificate)
        }
        _ => None,
    }
}

/// Every client's global-error callback: logs the error as librdkafka's
/// default does, and turns a fatal one into a stop.
pub fn client_error(error: &KafkaError, reason: &str) {
    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
        // librdkafka's own verdict (an idempotent producer that lost its
        // sequence, a fenced member): the client is unusable from now on.
        declare_fatal(format!("Kafka client failed fatally: {reason}"));
        return;
    }
    let Some(refusal) = refusal(error, reason, ACCEPTED.load(Ordering::Relaxed)) else {
        // While the brokers are down librdkafka reports the same error on
        // every reconnect attempt (several per second): log each kind once
        // per ERROR_LOG_INTERVAL, with how many were left out.
        if let Some(suppressed) = error_log_due(error.rdkafka_error_code(), std::time::Instant::now()) {
            if suppressed > 0 {
                tracing::error!("librdkafka: {error}: {reason} ({suppressed} similar errors not logged)");
            } else {
                tracing::error!("librdkafka: {error}: {reason}");
            }
        }
        return;
    };
    declare_fatal(refusal.message(reason));
}

/// Stops this process for good: records `message` (the first one wins),
/// logs it, and triggers every watcher's shutdown; `main` then prints it
/// and exits 1, and `/healthz` fails meanwhile.
pub fn declare_fatal(message: String) {
    if FATAL.set(message).is_ok() {
        tracing::error!("{}", fatal_error().unwrap_or_default());
        if let Ok(watchers) = ON_FATAL.lock() {
            for shutdown in watchers.iter() {
                shutdown.trigger();
            }
        }
    }
}

/// Whether a failed delivery can never succeed however often it is sent
/// again: the topic does not exist (librdkafka has already waited
/// `topic.metadata.propagation.max.ms` for it to appear), we may not write
/// to it, or the idempotent producer was fenced or hit a fatal error. Such
/// a record would hold its partition's commits back for ever while the pod
/// looked healthy; the process stops instead, saying why.
pub fn is_permanent_delivery_error(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                | RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    )
}

/// How often one kind of client error is logged.
const ERROR_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether an error of this code may be logged now, and how many of its kind
/// were suppressed since the last one logged.
fn error_log_due(code: Option<RDKafkaErrorCode>, now: std::time::Instant) -> Option<u64> {
    use crate::telemetry::throttle::LogThrottle;
    static THROTTLES: std::sync::Mutex<Vec<(Option<RDKafkaErrorCode>, LogThrottle)>> =
        std::sync::Mutex::new(Vec::new());
    let Ok(mut throttles) = THROTTLES.lock() else {
        return Some(0);
    };
    let at = match throttles.iter().position(|(c, _)| *c == code) {
        Some(at) => at,
        None => {
            throttles.push((code, LogThrottle::new(1, ERROR_LOG_INTERVAL)));
            throttles.len() - 1
        }
    };
    throttles[at].1.allow_at(now)
}

/// `fetch_metadata` through an unassigned reader ([`reader`]) that gives up
/// as soon as the cluster has refused our credentials (a plain call would
/// wait its whole timeout while librdkafka retries), else after `timeout`.
///
/// A consumer's error callback only runs while the consumer is polled, so
/// while waiting this serves its queue: a refused login is then named as
/// such rather than reported as the transport failure that follows it.
pub fn fetch_metadata<C: ConsumerContext>(
    reader: &rdkafka::consumer::BaseConsumer<C>,
    topic: Option<&str>,
    timeout: std::time::Duration,
) -> rdkafka::error::KafkaResult<rdkafka::metadata::Metadata> {
    use rdkafka::consumer::Consumer;
    // Serves the reader's queue (at least once) for up to `wait` or until a
    // fatal error. Nothing is assigned, so no message can arrive; errors and
    // statistics go to the context.
    let serve = |wait: std::time::Duration| {
        let until = std::time::Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            let _ = reader.poll(left.min(std::time::Duration::from_millis(10)));
            if fatal_error().is_some() || left.is_zero() {
                break;
            }
        }
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match reader
            .client()
            .fetch_metadata(topic, left.min(std::time::Duration::from_millis(500)))
        {
            Err(e) if fatal_error().is_none() && !left.is_zero() && is_timeout(&e) => serve(std::time::Duration::ZERO),
            Err(e) => {
                // A refused login fails the request before the error
                // callback has said why; give it a moment, so the caller
                // (and `main`) can report the real reason.
                serve(std::time::Duration::from_millis(500));
                return Err(e);
            }
            Ok(metadata) => {
                // With SASL no request is answered before the login: the
                // cluster has accepted these credentials.
                ACCEPTED.store(true, Ordering::Relaxed);
                return Ok(metadata);
            }
        }
    }
}

fn is_timeout(e: &KafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::OperationTimedOut)
}

/// Commits `offsets` and waits at most `timeout` for the group
/// coordinator's answer.
///
/// librdkafka's synchronous commit (`CommitMode::Sync`) waits without limit:
/// with the coordinator unreachable — the brokers restarting while a pod is
/// told to stop — it never returns and the pod hangs until it is killed. Here
/// the request goes out on a queue of its own and the wait is bounded; on
/// timeout the commit may still land later (or not), which is what a crash
/// would have left anyway: the next owner re-processes from the last commit
/// it can read.
pub fn commit_within<C: ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    offsets: &rdkafka::TopicPartitionList,
    timeout: std::time::Duration,
) -> rdkafka::error::KafkaResult<()> {
    use rdkafka::bindings as rd;
    use rdkafka::consumer::Consumer;
    use rdkafka::types::RDKafkaRespErr;

    let deadline = std::time::Instant::now() + timeout;
    // SAFETY: `rk` is valid for the life of `consumer`; `offsets` is copied
    // by rd_kafka_commit_queue; the queue is ours and destroyed once, after
    // which librdkafka drops any late answer addressed to it; every event
    // polled from it is destroyed exactly once.
    unsafe {
        let rk = consumer.client().native_ptr();
        let queue = rd::rd_kafka_queue_new(rk);
        let err = rd::rd_kafka_commit_queue(rk, offsets.ptr(), queue, None, std::ptr::null_mut());
        let result = if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            Err(KafkaError::ConsumerCommit(err.into()))
        } else {
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::OperationTimedOut));
                }
                let event = rd::rd_kafka_queue_poll(queue, left.as_millis().clamp(1, i32::MAX as u128) as i32);
                if event.is_null() {
                    continue;
                }
                let is_commit = rd::rd_kafka_event_type(event) == rd::RD_KAFKA_EVENT_OFFSET_COMMIT;
                let err = rd::rd_kafka_event_error(event);
                rd::rd_kafka_event_destroy(event);
                if !is_commit {
                    continue;
                }
                break if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                    Ok(())
                } else {
                    Err(KafkaError::ConsumerCommit(err.into()))
                };
            }
        };
        rd::rd_kafka_queue_destroy(queue);
        result
    }
}

/// The context of clients that need nothing else (admin, readers, the DLQ
/// tool's producer): librdkafka's defaults plus [`client_error`].
#[derive(Clone, Copy, Debug, Default)]
pub struct BaseContext;

impl ClientContext for BaseContext {
    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&error, reason);
    }
}

impl ConsumerContext for BaseContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_client_error_is_logged_once_per_interval() {
        let t0 = std::time::Instant::now();
        let code = Some(RDKafkaErrorCode::NetworkException);
        assert_eq!(error_log_due(code, t0), Some(0));
        assert_eq!(error_log_due(code, t0 + std::time::Duration::from_millis(50)), None);
        assert_eq!(error_log_due(code, t0 + std::time::Duration::from_millis(100)), None);
        assert_eq!(
            error_log_due(Some(RDKafkaErrorCode::UnknownTopic), t0),
            Some(0),
            "another kind is logged"
        );
        assert_eq!(
            error_log_due(code, t0 + ERROR_LOG_INTERVAL),
            Some(2),
            "with the count left out"
        );
    }

    #[test]
    fn only_credentials_refused_from_the_start_are_fatal() {
        let refused = KafkaError::Global(RDKafkaErrorCode::Authentication);
        let wrong_password = "sasl:9092/bootstrap: SASL authentication error: Authentication failed during \
             authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512";
        assert_eq!(refusal(&refused, wrong_password, false), Some(Refusal::Credentials));
        assert_eq!(
            refusal(
                &KafkaError::Global(RDKafkaErrorCode::SaslAuthenticationFailed),
                wrong_password,
                false
            ),
            Some(Refusal::Credentials)
        );
        let wrong_mechanism = "sasl:9092/bootstrap: SASL PLAIN mechanism handshake failed: Broker: Unsupported \
             SASL mechanism: broker's supported mechanisms: SCRAM-SHA-256,SCRAM-SHA-512";
        assert_eq!(refusal(&refused, wrong_mechanism, false), Some(Refusal::Credentials));
        // A failed re-authentication after the cluster accepted us once.
        assert_eq!(refusal(&refused, wrong_password, true), None);
        // The connection broke during the handshake (seen against tansu):
        // librdkafka says "authentication", the cause is the network.
        let broken = "GroupCoordinator: SASL SCRAM-SHA-512 mechanism handshake failed: Local: Broker transport \
             failure: broker's supported mechanisms: (n/a) (after 0ms in state DOWN)";
        assert_eq!(refusal(&refused, broken, false), None);
        for transient in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::Resolve,
            RDKafkaErrorCode::RequestTimedOut,
        ] {
            assert_eq!(
                refusal(&KafkaError::Global(transient), "", false),
                None,
                "{transient:?}"
            );
        }
        // TLS, as librdkafka 2.12 words it against Kafka 4.4.
        let ssl = KafkaError::Global(RDKafkaErrorCode::SSL);
        let unverified = "ssl://127.0.0.1:60129/bootstrap: SSL handshake failed: error:0A000086:SSL \
             routines::certificate verify failed: broker certificate could not be verified";
        assert_eq!(refusal(&ssl, unverified, false), Some(Refusal::BrokerCertificate));
        let no_client_certificate = "ssl://127.0.0.1:4/bootstrap: SSL handshake failed: error:0A00045C:SSL \
             routines::tlsv13 alert certificate required: SSL alert number 116";
        assert_eq!(
            refusal(&ssl, no_client_certificate, false),
            Some(Refusal::ClientCertificate)
        );
        let refused_on_read = "ssl://127.0.0.1:50333/bootstrap: Receive failed: error:0A000412:SSL \
             routines::sslv3 alert bad certificate: SSL alert number 42 (after 2ms in state APIVERSION_QUERY)";
        assert_eq!(
            refusal(
                &KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
                refused_on_read,
                false
            ),
            Some(Refusal::ClientCertificate)
        );
        let broken_tls = "ssl://127.0.0.1:4/bootstrap: SSL handshake failed: Disconnected";
        assert_eq!(refusal(&ssl, broken_tls, false), None);
    }
}
