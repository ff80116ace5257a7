//! Reliability against the embedded broker: hostile input through both
//! consumers (dead-lettered with the right reason, valid events counted as if
//! the bad ones were absent), and operating the dead-letter topic with the
//! `dlq` command.

use std::collections::BTreeMap;
use std::process::Command as Process;
use std::time::Duration;

use crate::support::*;
use activity_tracker::commands::{Run, demo::Demo};
use activity_tracker::producer::simulator::{Simulator, SimulatorConfig};
use activity_tracker::runtime::RunOutcome;
use serde_json::{Value, json};

const PARTITIONS: i32 = 3;
/// Size of the oversized message: several MB, under the embedded broker's
/// ~5 MB per-partition retention.
const HUGE: usize = 3 * 1024 * 1024;

/// 1,200 simulated events with fraud, 100 ms apart in event time.
fn valid_stream() -> Vec<Outgoing> {
    let mut sim = Simulator::new(&SimulatorConfig {
        seed: 77,
        users: 600,
        fraud_rate: 0.15,
        events_per_second: 10.0,
    });
    sim.warm_up(T0);
    (0..1_200)
        .map(|i| {
            let t = T0 + i * 100;
            let e = sim.next_event(t);
            Outgoing::keyed(&e.user_id, e.to_json(), t)
        })
        .collect()
}

/// Pseudo-random printable bytes (incompressible enough to be big on the wire).
fn noise(len: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

/// One bad message: what it is, the reason it must be refused with, and the
/// message itself.
struct Bad {
    what: &'static str,
    reason: &'static str,
    message: Outgoing,
}

/// Every failure kind, built from a valid event (so only the defect differs).
fn bad_messages(template: &Outgoing) -> Vec<Bad> {
    let base: Value = serde_json::from_slice(template.payload.as_ref().unwrap()).unwrap();
    let user = base["user_id"].as_str().unwrap().to_string();
    let t = template.timestamp_ms;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let keyed = |payload: Vec<u8>| Outgoing::keyed(&user, payload, t);
    let json = serde_json::to_vec(&base).unwrap();
    let mut huge = base.clone();
    huge["padding"] = json!(noise(HUGE));
    let huge = serde_json::to_vec(&huge).unwrap();
    let purchase = |v: &mut Value| {
        v["event_type"] = json!("purchase");
        v["properties"] = json!({"product_id": "prod-1", "price": 10.0, "cart_value": 10.0});
    };
    let b = |what, reason, message| Bad { what, reason, message };
    vec![
        b(
            "truncated JSON",
            "malformed_json",
            keyed(json[..json.len() / 2].to_vec()),
        ),
        b("not JSON", "malformed_json", keyed(b"hello, world".to_vec())),
        b("empty payload", "malformed_json", keyed(Vec::new())),
        b(
            "binary junk",
            "invalid_utf8",
            keyed(vec![0xff, 0xfe, 0x00, 0x9f, 0x80, 0x7b]),
        ),
        b("a JSON array", "not_an_object", keyed(b"[1,2,3]".to_vec())),
        b(
            "no event_type",
            "missing_field",
            keyed(with(&|v| {
                v.as_object_mut().unwrap().remove("event_type");
            })),
        ),
        b(
            "price as a string",
            "wrong_type",
            keyed(with(&|v| {
                purchase(v);
                v["properties"]["price"] = json!("ten");
            })),
        ),
        b(
            "unknown event type",
            "unknown_event_type",
            keyed(with(&|v| v["event_type"] = json!("teleport"))),
        ),
        b(
            "timestamp not a time",
            "invalid_timestamp",
            keyed(with(&|v| v["timestamp"] = json!("yesterday"))),
        ),
        b(
            "timestamp in 2099",
            "timestamp_out_of_range",
            keyed(with(&|v| {
                v["timestamp"] = json!("2099-01-01T00:00:00Z");
            })),
        ),
        b(
            "timestamp a year before its message",
            "timestamp_out_of_range",
            keyed(with(&|v| {
                v["timestamp"] = json!(activity_tracker::eventtime::Rfc3339(t - 365 * 24 * 3600 * 1000).to_string());
            })),
        ),
        b(
            "negative price",
            "invalid_amount",
            keyed(with(&|v| {
                purchase(v);
                v["properties"]["price"] = json!(-5.0);
            })),
        ),
        b(
            "absurd cart value",
            "invalid_amount",
            keyed(with(&|v| {
                purchase(v);
                v["properties"]["cart_value"] = json!(1e12);
            })),
        ),
        b(
            "empty event_id",
            "invalid_field",
            keyed(with(&|v| v["event_id"] = json!(""))),
        ),
        b(
            "no key",
            "missing_key",
            Outgoing {
                key: None,
                payload: Some(json.clone()),
                timestamp_ms: t,
                headers: Vec::new(),
            },
        ),
        b(
            "another user's key",
            "key_mismatch",
            Outgoing::keyed("user-999999", json.clone(), t),
        ),
        b("a 3 MB event", "too_large", keyed(huge)),
    ]
}

/// Starts both consumers, waits until each has seen `n` messages, stops them.
fn run_to(bootstrap: &str, extra: &[(&str, &str)], n: u64) -> (RunOutcome, RunOutcome, String) {
    let running = InProcess::start(&crate::support::config(Demo::PROFILE, bootstrap, extra));
    running.wait_seen(n, Duration::from_secs(90));
    running.stop()
}

/// The business figures of a report: everything but the consumer's own
/// bookkeeping (rejections, partitions, positions).
fn business(mut report: Value) -> Value {
    if let Some(o) = report.as_object_mut() {
        o.retain(|k, _| !matches!(k.as_str(), "consumer" | "rejected" | "events_rejected" | "generated_at"));
    }
    report
}

/// What each alert is: (rule, user, the event it is about). Not the
/// `alert_id`, which also names the record's offset — and hostile messages
/// interleaved with the valid ones move those.
fn alert_ids(bootstrap: &str, topic: &str) -> Vec<(String, String, String)> {
    let mut ids: Vec<(String, String, String)> = read_all(bootstrap, topic)
        .iter()
        .map(|m| {
            let v = m.json();
            let field = |k: &str| v[k].as_str().unwrap().to_string();
            (field("rule"), field("user_id"), field("event_id"))
        })
        .collect();
    ids.sort();
    ids
}

fn at(bootstrap: &str, args: &[&str], extra: &[(&str, &str)]) -> (i32, String) {
    let mut c = Process::new(binary());
    c.args(args)
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("LOG_LEVEL", "WARNING")
        .envs(extra.iter().copied());
    let out = c.output().expect("binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn hostile_input_is_dead_lettered_and_changes_no_valid_result() {
    let broker = kafka(PARTITIONS);
    let bootstrap = broker.bootstrap_servers().to_string();
    let valid = valid_stream();

    // Reference: the valid events alone, on their own topics and groups.
    broker.create_topic("clean-activities", PARTITIONS);
    broker.create_topic("clean-alerts", PARTITIONS);
    produce(&bootstrap, "clean-activities", &valid);
    let (clean_analytics, _, _) = run_to(
        &bootstrap,
        &[
            ("KAFKA_ACTIVITIES_TOPIC", "clean-activities"),
            ("KAFKA_ALERTS_TOPIC", "clean-alerts"),
            ("KAFKA_ANALYTICS_GROUP", "clean-analytics"),
            ("KAFKA_FRAUD_GROUP", "clean-fraud"),
        ],
        valid.len() as u64,
    );

    // The same events with every kind of bad message interleaved.
    let bad = bad_messages(&valid[0]);
    let mut hostile: Vec<Outgoing> = Vec::new();
    let mut bad_iter = bad.iter();
    for (i, m) in valid.iter().enumerate() {
        if i % 70 == 35
            && let Some(b) = bad_iter.next()
        {
            hostile.push(Outgoing {
                key: b.message.key.clone(),
                payload: b.message.payload.clone(),
                timestamp_ms: m.timestamp_ms,
                headers: vec![("test.case".into(), b.what.as_bytes().to_vec())],
            });
        }
        hostile.push(Outgoing {
            key: m.key.clone(),
            payload: m.payload.clone(),
            timestamp_ms: m.timestamp_ms,
            headers: Vec::new(),
        });
    }
    assert!(bad_iter.next().is_none(), "every bad message is in the stream");
    produce(&bootstrap, ACTIVITIES, &hostile);
    let (analytics, fraud, metrics) = run_to(&bootstrap, &[], hostile.len() as u64);

    // Valid events: exactly as if the bad ones were absent.
    assert_eq!(analytics.status.events_processed, valid.len() as u64);
    assert_eq!(fraud.status.events_processed, valid.len() as u64);
    assert_eq!(analytics.status.events_rejected, bad.len() as u64);
    assert_eq!(fraud.status.events_rejected, bad.len() as u64);
    assert_eq!(analytics.final_report["total_events"], json!(valid.len()));
    assert!(analytics.final_report["revenue_total"].as_f64().unwrap() > 0.0);
    assert_eq!(
        business(analytics.final_report.clone()),
        business(clean_analytics.final_report.clone()),
        "analytics figures differ from the clean run"
    );
    let alerts = alert_ids(&bootstrap, ALERTS);
    assert!(!alerts.is_empty());
    assert_eq!(
        alerts,
        alert_ids(&bootstrap, "clean-alerts"),
        "fraud alerts differ from the clean run"
    );

    // Bad events: each in the dead-letter topic once per group, with the
    // right reason, its original key and bytes (cut at 256 KiB), and where
    // it came from.
    let sources: BTreeMap<String, Received> = read_all(&bootstrap, ACTIVITIES)
        .into_iter()
        .filter(|m| m.headers.contains_key("test.case"))
        .map(|m| (m.header("test.case"), m))
        .collect();
    let dead = read_all(&bootstrap, DLQ);
    assert_eq!(dead.len(), 2 * bad.len(), "one copy per consumer group");
    for b in &bad {
        let copies: Vec<&Received> = dead.iter().filter(|d| d.header("test.case") == b.what).collect();
        let source = &sources[b.what];
        let mut groups: Vec<String> = copies.iter().map(|d| d.header("dlq.consumer.group")).collect();
        groups.sort();
        assert_eq!(groups, ["analytics-processors", "fraud-detectors"], "{}", b.what);
        for d in copies {
            assert_eq!(
                d.header("dlq.reason"),
                b.reason,
                "{}: {}",
                b.what,
                d.header("dlq.detail")
            );
            assert!(!d.header("dlq.detail").is_empty());
            assert_eq!(d.header("dlq.source.topic"), ACTIVITIES);
            assert_eq!(d.header("dlq.source.partition"), source.partition.to_string());
            assert_eq!(d.header("dlq.source.offset"), source.offset.to_string());
            assert_eq!(d.header("dlq.source.timestamp"), source_timestamp(&hostile, b.what));
            assert!(d.header("dlq.time").ends_with('Z'));
            assert_eq!(d.key, b.message.key, "{}: original key", b.what);
            let original = b.message.payload.as_deref().unwrap_or_default();
            if original.len() > 256 * 1024 {
                assert_eq!(d.header("dlq.truncated"), "true");
                assert_eq!(d.header("dlq.original.bytes"), original.len().to_string());
                assert_eq!(
                    d.payload,
                    original[..256 * 1024],
                    "{}: a prefix of the original",
                    b.what
                );
            } else {
                assert_eq!(d.payload, original, "{}: original bytes", b.what);
            }
        }
    }
    // Rejections are counted by reason in /metrics.
    let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for b in &bad {
        *by_reason.entry(b.reason).or_default() += 1;
    }
    for (reason, n) in &by_reason {
        let line = format!(
            "activity_events_rejected_total{{consumer=\"fraud\",group=\"fraud-detectors\",reason=\"{reason}\"}} {n}"
        );
        assert!(metrics.contains(&line), "missing {line}");
    }
    // Nothing lost: both groups committed the whole topic.
    let ends = high_watermarks(&bootstrap, ACTIVITIES, PARTITIONS);
    for group in ["analytics-processors", "fraud-detectors"] {
        assert_eq!(
            committed(&bootstrap, group, ACTIVITIES, PARTITIONS),
            ends,
            "{group} committed everything"
        );
    }
    let lost = hostile.len() as u64 - analytics.status.events_processed - analytics.status.events_rejected;
    println!(
        "hostile input: {} valid + {} bad ({} kinds) → valid figures identical to the clean run, {} alerts identical, {} dead letters (2 groups), {lost} lost, every offset committed by both groups, both consumers ran to the end",
        valid.len(),
        bad.len(),
        by_reason.len(),
        alerts.len(),
        dead.len()
    );

    // Operating the dead-letter topic.
    let (code, inspect) = at(&bootstrap, &["dlq", "inspect", "--limit", "3"], &[]);
    assert_eq!(code, 0, "{inspect}");
    assert!(
        inspect.contains(&format!(
            "{} dead letters of {} source messages (0 replayed, {} pending)",
            2 * bad.len(),
            bad.len(),
            bad.len()
        )),
        "{inspect}"
    );
    assert!(inspect.contains("too_large"), "{inspect}");
    let (_, lines) = at(&bootstrap, &["dlq", "inspect", "--json"], &[]);
    assert_eq!(lines.lines().filter(|l| l.starts_with('{')).count(), 2 * bad.len());

    // After a fix: events without a key are keyed by user_id, and a larger
    // MAX_EVENT_BYTES lets the 3 MB event through (replayed from the source
    // topic, since its dead-letter copy was cut). The rest are still invalid
    // and stay.
    let fix = [("MAX_EVENT_BYTES", "4000000")];
    let (code, dry) = at(&bootstrap, &["dlq", "replay", "--rekey", "--dry-run"], &fix);
    assert_eq!(code, 0, "{dry}");
    assert!(dry.contains("would replay 3 events"), "{dry}");
    let before = read_all(&bootstrap, ACTIVITIES).len();
    assert_eq!(before, hostile.len(), "a dry run sends nothing");
    let (code, replay) = at(&bootstrap, &["dlq", "replay", "--rekey"], &fix);
    assert_eq!(code, 0, "{replay}");
    assert!(
        replay.contains(&format!(
            "replayed 3 events; skipped: 0 already replayed, {} duplicate copies, 0 not selected, {} still rejected, 0 unavailable",
            bad.len(),
            bad.len() - 3
        )),
        "{replay}"
    );
    let replayed: Vec<Received> = read_all(&bootstrap, ACTIVITIES)
        .into_iter()
        .filter(|m| m.headers.contains_key("dlq.replayed.from"))
        .collect();
    assert_eq!(replayed.len(), 3);
    for m in &replayed {
        let case = m.header("test.case");
        let original = bad.iter().find(|b| b.what == case).expect("a replayed case");
        assert_eq!(
            m.payload,
            original.message.payload.clone().unwrap(),
            "{case}: the original bytes"
        );
        let user = valid[0].key.clone();
        assert_eq!(m.key, user, "{case}: keyed by user_id");
        assert_eq!(m.header("dlq.replayed.from"), {
            let s = &sources[case.as_str()];
            format!("{ACTIVITIES}/{}/{}", s.partition, s.offset)
        });
    }
    // Running it again changes nothing.
    let (code, again) = at(&bootstrap, &["dlq", "replay", "--rekey"], &fix);
    assert_eq!(code, 0, "{again}");
    assert!(
        again.contains("replayed 0 events; skipped: 6 already replayed"),
        "{again}"
    );
    let (_, inspect) = at(&bootstrap, &["dlq", "inspect", "--limit", "0"], &[]);
    assert!(
        inspect.contains(&format!("(3 replayed, {} pending)", bad.len() - 3)),
        "{inspect}"
    );
    println!(
        "dlq replay: 3 of {} fixed events replayed once; a second run replayed 0",
        bad.len()
    );
}

fn source_timestamp(hostile: &[Outgoing], what: &str) -> String {
    hostile
        .iter()
        .find(|m| m.headers.iter().any(|(k, v)| k == "test.case" && v == what.as_bytes()))
        .map(|m| m.timestamp_ms.to_string())
        .unwrap()
}

/// A dead-letter copy must always be writable, or its partition never
/// commits past it: a message with 200 KB of headers keeps only 64 KiB of
/// them in its copy, and where the alerts producer's size limit (here
/// 150,000 bytes) is below even a bounded copy — a 300 KB event — the copy
/// goes as a reference (the `dlq.*` headers, no payload), which replay
/// resolves from the source topic. Either way the partition moves on.
#[test]
fn a_dead_letter_copy_too_large_to_write_never_holds_its_partition() {
    let broker = broker(1);
    let bootstrap = broker.bootstrap_servers().to_string();
    let valid = valid_stream();
    let user = String::from_utf8(valid[0].key.clone().unwrap()).unwrap();
    let t = valid[0].timestamp_ms;
    let heavy_headers: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("x-trace-{i}"), noise(10_000).into_bytes()))
        .collect();
    let messages = vec![
        Outgoing {
            key: valid[0].key.clone(),
            payload: valid[0].payload.clone(),
            timestamp_ms: t,
            headers: Vec::new(),
        },
        Outgoing {
            key: Some(user.clone().into_bytes()),
            payload: Some(b"{not json".to_vec()),
            timestamp_ms: t + 1,
            headers: heavy_headers,
        },
        Outgoing {
            key: Some(user.clone().into_bytes()),
            payload: Some(noise(300_000).into_bytes()),
            timestamp_ms: t + 2,
            headers: vec![("test.case".into(), b"big".to_vec())],
        },
        Outgoing {
            key: valid[1].key.clone(),
            payload: valid[1].payload.clone(),
            timestamp_ms: t + 3,
            headers: Vec::new(),
        },
    ];
    produce(&bootstrap, ACTIVITIES, &messages);
    let running = InProcess::start(&crate::support::config(
        Demo::PROFILE,
        &bootstrap,
        &[("KAFKA_CONFIG_MESSAGE_MAX_BYTES", "150000")],
    ));
    running.wait_seen(messages.len() as u64, Duration::from_secs(60));
    let ends = high_watermarks(&bootstrap, ACTIVITIES, 1);
    for group in ["analytics-processors", "fraud-detectors"] {
        wait_until(&format!("{group} to commit past both"), Duration::from_secs(60), || {
            running.assert_running();
            committed(&bootstrap, group, ACTIVITIES, 1) == ends
        });
    }
    let (analytics, fraud, _) = running.stop();
    assert_eq!(analytics.status.events_processed, 2);
    assert_eq!(fraud.status.events_rejected, 2);

    let dead = read_all(&bootstrap, DLQ);
    assert_eq!(dead.len(), 4, "two copies per group");
    for d in &dead {
        if d.header("dlq.source.offset") == "2" {
            assert_eq!(d.header("dlq.reason"), "too_large");
            assert!(
                !d.headers.contains_key("test.case"),
                "a reference carries no original header"
            );
            assert_eq!(d.header("dlq.reference"), "true", "sent as a reference");
            assert_eq!(d.header("dlq.truncated"), "true");
            assert_eq!(d.header("dlq.original.bytes"), "300000");
            assert!(d.payload.is_empty());
        } else {
            assert_eq!(d.header("dlq.source.offset"), "1");
            assert_eq!(d.header("dlq.reason"), "malformed_json");
            assert_eq!(d.payload, b"{not json", "the whole payload");
            assert_eq!(d.header("dlq.headers.dropped"), "14", "6 of 20 headers fit in 64 KiB");
            assert!(d.headers.contains_key("x-trace-0") && !d.headers.contains_key("x-trace-6"));
        }
    }
    println!(
        "dlq size: a copy with 200 KB of headers kept 64 KiB of them, a 300 KB event went as a reference copy under a 150 KB limit; both groups committed past them"
    );
}
