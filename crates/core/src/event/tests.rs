//! The decoder's specification: the seed's events accepted byte for byte,
//! every reject reason reached and named, and the text helpers.

use std::borrow::Cow;

use super::*;
use crate::eventtime::parse_rfc3339_ms;

#[test]
fn uuids_are_version_4_whatever_the_bytes() {
    let mut s = String::from("old contents");
    for bytes in [[0u8; 16], [0xff; 16], *b"0123456789abcdef"] {
        write_uuid_v4(bytes, &mut s);
        assert_eq!(s.len(), 36, "{s}");
        assert_eq!(&s[14..15], "4", "{s}");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
        assert_eq!(s.matches('-').count(), 4, "{s}");
        assert!(s.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "{s}");
    }
    write_uuid_v4(*b"0123456789abcdef", &mut s);
    assert_eq!(s, "30313233-3435-4637-b839-616263646566");
}

/// The collector's receipt time is read (the fraud rules judge its
/// events by it) and held to the same bounds as the event's timestamp.
#[test]
fn received_at_is_read_and_checked_like_the_timestamp() {
    let limits = DecodeLimits::default();
    let with = |received: &str| SEED_EVENT.replacen('{', &format!("{{\"received_at\": \"{received}\", "), 1);
    let ok = with("2024-01-15T10:30:50.000Z");
    let e = decode(ok.as_bytes(), reference(), &limits).unwrap();
    assert_eq!(e.received_ms, parse_rfc3339_ms("2024-01-15T10:30:50Z"));
    assert_eq!(
        decode(SEED_EVENT.as_bytes(), reference(), &limits).unwrap().received_ms,
        None
    );
    let bad = with("yesterday");
    let r = decode(bad.as_bytes(), reference(), &limits).unwrap_err();
    assert_eq!(r.reason, RejectReason::InvalidTimestamp);
    assert!(r.detail.starts_with("received_at"), "{}", r.detail);
    let far = with("2024-02-15T10:30:50.000Z");
    let r = decode(far.as_bytes(), reference(), &limits).unwrap_err();
    assert_eq!(r.reason, RejectReason::TimestampOutOfRange);
}

#[test]
fn printable_escapes_what_a_terminal_would_obey() {
    assert_eq!(printable("Zürich 🛒 user-1"), "Zürich 🛒 user-1");
    assert!(matches!(printable("plain"), Cow::Borrowed(_)));
    assert_eq!(printable("a\nb"), "a\\u{a}b");
    assert_eq!(
        printable("\u{1b}[2J\u{1b}]0;pwned\u{7}"),
        "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}"
    );
    assert_eq!(printable("x\u{202e}y\u{9b}z"), "x\\u{202e}y\\u{9b}z");
    assert!(!printable("\r\t\u{7f}").chars().any(char::is_control));
}

/// An event exactly as the seed's Python producer wrote it.
pub(crate) const SEED_EVENT: &str = r#"{"event_id": "3f1c2b7e-8a4d-4e6f-9b1a-2c3d4e5f6a7b", "timestamp": "2024-01-15T10:30:45.123456+00:00", "user_id": "user-1234", "session_id": "9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a", "event_type": "add_to_cart", "page_url": "https://shop.example.com/products/laptop", "referrer": null, "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0", "ip_address": "192.168.1.100", "properties": {"product_id": "prod-001", "product_name": "Laptop", "price": 999.99, "category": "electronics", "cart_value": 999.99}, "device": {"type": "desktop", "os": "Windows", "browser": "Chrome"}, "location": {"country": "US", "city": "New York", "timezone": "America/New_York"}}"#;

fn reference() -> i64 {
    parse_rfc3339_ms("2024-01-15T10:31:00Z").unwrap()
}

fn decode_ok(text: &str) -> Event<'_> {
    decode(text.as_bytes(), reference(), &DecodeLimits::default()).expect("valid event")
}

fn reason(text: &[u8]) -> RejectReason {
    decode(text, reference(), &DecodeLimits::default())
        .expect_err("must be rejected")
        .reason
}

#[test]
fn decodes_a_seed_event_without_copying_plain_strings() {
    let e = decode_ok(SEED_EVENT);
    assert_eq!(e.user_id, "user-1234");
    assert_eq!(e.event_type, EventType::AddToCart);
    assert_eq!(e.timestamp_ms, 1_705_314_645_123);
    assert_eq!(e.referrer, None);
    assert_eq!(e.properties.price, Some(999.99));
    assert_eq!(e.device.device_type.as_deref(), Some("desktop"));
    assert_eq!(e.location.city.as_deref(), Some("New York"));
    assert!(matches!(e.user_id, Cow::Borrowed(_)));
    assert!(matches!(e.device.browser, Some(Cow::Borrowed(_))));
    assert_eq!(e.amount(), 999.99);
}

#[test]
fn amount_is_the_seeds_cart_value_or_price() {
    let with = |cart: &str| SEED_EVENT.replace(r#""cart_value": 999.99"#, cart);
    let amount = |text: String| decode_ok(&text).amount();
    assert_eq!(amount(with(r#""cart_value": 1500.5"#)), 1500.5);
    // Python's `or`: a cart value of 0 falls back to the price.
    assert_eq!(amount(with(r#""cart_value": 0"#)), 999.99);
    assert_eq!(amount(with(r#""cart_value": null"#)), 999.99);
    let neither = with(r#""cart_value": 0"#).replace(r#""price": 999.99, "#, "");
    assert_eq!(amount(neither), 0.0);
}

#[test]
fn escaped_strings_are_decoded() {
    let text = SEED_EVENT.replace("New York", r#"New \"Big Apple\" York"#);
    let e = decode_ok(&text);
    assert_eq!(e.location.city.as_deref(), Some("New \"Big Apple\" York"));
}

#[test]
fn unknown_fields_and_nulls_are_accepted() {
    let text = SEED_EVENT.replace(
        r#""referrer": null"#,
        r#""referrer": null, "ab_test": {"variant": [1, 2, {"x": null}]}, "properties_v2": 7"#,
    );
    assert_eq!(decode_ok(&text).user_id, "user-1234");
    let minimal = r#"{"event_id":"e","timestamp":"2024-01-15T10:30:00Z","user_id":"u","event_type":"page_view","properties":null,"device":null}"#;
    let e = decode_ok(minimal);
    assert_eq!(e.session_id, None);
    assert_eq!(e.properties, Properties::default());
}

#[test]
fn round_trips_through_our_encoder() {
    let e = decode_ok(SEED_EVENT);
    let json = e.to_json();
    let again = decode(&json, reference(), &DecodeLimits::default()).unwrap();
    assert_eq!(again, e);
}

#[test]
fn every_reject_reason_is_reachable_and_named() {
    let limits = DecodeLimits {
        max_event_bytes: 2048,
        ..DecodeLimits::default()
    };
    let cases: Vec<(Vec<u8>, RejectReason)> = vec![
        (vec![b' '; 4096], RejectReason::TooLarge),
        (b"{\"event_id\": \"\xff\xfe\"}".to_vec(), RejectReason::InvalidUtf8),
        (SEED_EVENT.as_bytes()[..200].to_vec(), RejectReason::MalformedJson),
        (b"".to_vec(), RejectReason::MalformedJson),
        (b"[1,2,3]".to_vec(), RejectReason::NotAnObject),
        (
            SEED_EVENT.replace(r#""user_id": "user-1234", "#, "").into_bytes(),
            RejectReason::MissingField,
        ),
        (
            SEED_EVENT.replace(r#""user-1234""#, "1234").into_bytes(),
            RejectReason::WrongType,
        ),
        (
            SEED_EVENT
                .replace(r#""price": 999.99"#, r#""price": "999.99""#)
                .into_bytes(),
            RejectReason::WrongType,
        ),
        (
            SEED_EVENT.replace(r#""user-1234""#, r#""""#).into_bytes(),
            RejectReason::InvalidField,
        ),
        (
            SEED_EVENT.replace("add_to_cart", "wishlist").into_bytes(),
            RejectReason::UnknownEventType,
        ),
        (
            SEED_EVENT
                .replace("2024-01-15T10:30:45.123456+00:00", "15/01/2024")
                .into_bytes(),
            RejectReason::InvalidTimestamp,
        ),
        (
            SEED_EVENT.replace("2024-01-15", "2099-01-15").into_bytes(),
            RejectReason::TimestampOutOfRange,
        ),
        (
            SEED_EVENT.replace("2024-01-15", "2023-01-15").into_bytes(),
            RejectReason::TimestampOutOfRange,
        ),
        (
            SEED_EVENT.replace(r#""price": 999.99"#, r#""price": -5"#).into_bytes(),
            RejectReason::InvalidAmount,
        ),
        (
            SEED_EVENT
                .replace(r#""cart_value": 999.99"#, r#""cart_value": 1e12"#)
                .into_bytes(),
            RejectReason::InvalidAmount,
        ),
    ];
    for (payload, expected) in cases {
        let got = decode(&payload, reference(), &limits).expect_err("rejected");
        assert_eq!(got.reason, expected, "{}", got.detail);
        assert!(!got.detail.is_empty());
    }
}

#[test]
fn wrong_type_names_the_field() {
    let text = SEED_EVENT.replace(r#""type": "desktop""#, r#""type": 3"#);
    let r = decode(text.as_bytes(), reference(), &DecodeLimits::default()).unwrap_err();
    assert_eq!(r.reason, RejectReason::WrongType);
    assert!(r.detail.contains("device.type"), "{}", r.detail);
    let text = SEED_EVENT.replace(r#""location": {"#, r#""location": 5, "x": {"#);
    let r = decode(text.as_bytes(), reference(), &DecodeLimits::default()).unwrap_err();
    assert!(r.detail.contains("location must be an object"), "{}", r.detail);
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let limits = DecodeLimits {
        max_event_bytes: 1 << 20,
        ..DecodeLimits::default()
    };
    let r = decode(deep.as_bytes(), reference(), &limits).unwrap_err();
    assert_eq!(r.reason, RejectReason::MalformedJson);
}

#[test]
fn key_must_be_the_user_id() {
    let e = decode_ok(SEED_EVENT);
    assert!(check_key(Some(b"user-1234"), &e).is_ok());
    assert_eq!(check_key(None, &e).unwrap_err().reason, RejectReason::MissingKey);
    assert_eq!(
        check_key(Some(b"user-9"), &e).unwrap_err().reason,
        RejectReason::KeyMismatch
    );
}

#[test]
fn reason_codes_round_trip() {
    for r in RejectReason::ALL {
        assert_eq!(RejectReason::from_code(r.code()), Some(r));
        assert_eq!(RejectReason::ALL[r.index()], r);
    }
    for t in EventType::ALL {
        assert_eq!(EventType::parse(t.as_str()), Some(t));
        assert_eq!(EventType::ALL[t.index()], t);
    }
}

#[test]
fn page_path_strips_origin_query_and_fragment() {
    assert_eq!(
        page_path("https://shop.example.com/products/laptop?ref=x#top"),
        "/products/laptop"
    );
    assert_eq!(page_path("https://shop.example.com"), "/");
    assert_eq!(page_path("/cart?step=2"), "/cart");
    assert_eq!(page_path(""), "/");
    assert_eq!(page_path("?q=1"), "/");
}

#[test]
fn reason_uses_first_failure() {
    assert_eq!(reason(b"not json"), RejectReason::MalformedJson);
}
