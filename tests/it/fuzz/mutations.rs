//! Campaign 2: real simulator events with bytes flipped, cut, inserted and
//! duplicated, and fields replaced by arbitrary JSON values.

use std::sync::atomic::{AtomicU64, Ordering};

use activity_tracker::config::IpPrivacy;
use activity_tracker::event::decode;
use activity_tracker::processor::Mode;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use super::{Pipeline, REFERENCE_MS, decode_checked, limits, run_for, simulator_events};

#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Cut { at: usize, len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Duplicate { at: usize, len: usize },
    Truncate { at: usize },
    SetField { path: Vec<&'static str>, value: Value },
    RemoveField { path: Vec<&'static str> },
}

const FIELDS: &[&[&str]] = &[
    &["event_id"],
    &["timestamp"],
    &["user_id"],
    &["session_id"],
    &["event_type"],
    &["page_url"],
    &["referrer"],
    &["user_agent"],
    &["ip_address"],
    &["properties"],
    &["properties", "price"],
    &["properties", "cart_value"],
    &["properties", "product_id"],
    &["properties", "product_name"],
    &["properties", "category"],
    &["properties", "search_query"],
    &["device"],
    &["device", "type"],
    &["device", "os"],
    &["location"],
    &["location", "country"],
    &["location", "city"],
    &["location", "timezone"],
    &["unknown_field"],
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (-1e7f64..2e6).prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(
            &[
                "page_view",
                "purchase",
                "add_to_cart",
                "refund",
                "",
                "2024-01-15T10:30:45.123Z",
                "2024-01-15T10:30:45+00:00",
                "2024-01-15 10:30:45",
                "9999-12-31T23:59:59.999Z",
                "0000-01-01T00:00:00Z",
                "1970-01-01T00:00:00Z",
                "2024-01-15T10:30:45.123456789-23:59",
                "::1",
                "fe80::1%eth0",
                "256.256.256.256",
                "10.0.0.1",
            ][..]
        )
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<prop::sample::Index>();
    prop_oneof![
        (at.clone(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip {
            at: at.index(usize::MAX),
            bit
        }),
        (at.clone(), 1usize..40).prop_map(|(at, len)| Mutation::Cut {
            at: at.index(usize::MAX),
            len
        }),
        (at.clone(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Mutation::Insert {
            at: at.index(usize::MAX),
            bytes
        }),
        (at.clone(), 1usize..200).prop_map(|(at, len)| Mutation::Duplicate {
            at: at.index(usize::MAX),
            len
        }),
        at.prop_map(|at| Mutation::Truncate {
            at: at.index(usize::MAX)
        }),
        (prop::sample::select(FIELDS), json_value()).prop_map(|(path, value)| Mutation::SetField {
            path: path.to_vec(),
            value
        }),
        prop::sample::select(FIELDS).prop_map(|path| Mutation::RemoveField { path: path.to_vec() }),
    ]
}

fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % len };
    match m {
        Mutation::Flip { at, bit } => {
            if !bytes.is_empty() {
                let i = pos(*at, bytes.len());
                bytes[i] ^= 1 << bit;
            }
        }
        Mutation::Cut { at, len } => {
            let i = pos(*at, bytes.len());
            let end = (i + len).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Insert { at, bytes: extra } => {
            let i = pos(*at, bytes.len() + 1);
            bytes.splice(i..i, extra.iter().copied());
        }
        Mutation::Duplicate { at, len } => {
            let i = pos(*at, bytes.len());
            let end = (i + len).min(bytes.len());
            let copy = bytes[i..end].to_vec();
            bytes.splice(end..end, copy);
        }
        Mutation::Truncate { at } => bytes.truncate(pos(*at, bytes.len() + 1)),
        Mutation::SetField { path, .. } | Mutation::RemoveField { path } if !path.is_empty() => {
            // Only a document that is still an object has fields to edit
            // (an earlier byte mutation may have left a number or an array).
            if let Ok(mut doc) = serde_json::from_slice::<Value>(&bytes)
                && doc.is_object()
            {
                let (last, parents) = path.split_last().expect("non-empty path");
                let mut node = &mut doc;
                for p in parents {
                    if !node[*p].is_object() {
                        node[*p] = json!({});
                    }
                    node = &mut node[*p];
                }
                if let Some(obj) = node.as_object_mut() {
                    match m {
                        Mutation::SetField { value, .. } => {
                            obj.insert(last.to_string(), value.clone());
                        }
                        _ => {
                            obj.remove(*last);
                        }
                    }
                }
                bytes = serde_json::to_vec(&doc).unwrap_or(bytes);
            }
        }
        Mutation::SetField { .. } | Mutation::RemoveField { .. } => {}
    }
    bytes
}

#[test]
fn fuzz_decoder_and_processors_on_mutated_events() {
    let bases = simulator_events(300);
    let still_valid = AtomicU64::new(0);
    let strategy = (
        prop::sample::select((0..bases.len()).collect::<Vec<_>>()),
        prop::collection::vec(mutation(), 1..6),
        prop::sample::select(vec![IpPrivacy::None, IpPrivacy::Truncate]),
    );
    let tried = run_for(2, strategy, |(base, mutations, privacy)| {
        let payload = mutations.iter().fold(bases[base].clone(), apply);
        let key = serde_json::from_slice::<Value>(&bases[base])
            .ok()
            .and_then(|v| v["user_id"].as_str().map(|s| s.as_bytes().to_vec()));
        let Some(event) = decode_checked(&payload, key.as_deref())? else {
            return Ok(());
        };
        still_valid.fetch_add(1, Ordering::Relaxed);
        // What decodes re-encodes to the same event.
        let encoded = event.to_json();
        let again = decode(&encoded, REFERENCE_MS, &limits())
            .map_err(|r| TestCaseError::fail(format!("re-encoded event rejected: {r:?}")))?;
        prop_assert_eq!(&again, &event);
        // And goes through both processors, live and in a rebuild.
        let mut pipeline = Pipeline::new(privacy);
        pipeline.process(&event, Mode::Warmup)?;
        pipeline.process(&event, Mode::Live)?;
        pipeline.report()
    });
    println!(
        "fuzz: mutations: {tried} mutated simulator events, {} still valid (re-encoded identically, processed), 0 panics",
        still_valid.into_inner()
    );
    assert!(tried > 0);
}
