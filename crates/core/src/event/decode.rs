//! The decoder: from message bytes to a validated [`Event`] or a
//! [`Rejection`], and the slow path that finds out why a payload was refused.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

use super::{
    DecodeLimits, Device, Event, EventType, Location, MAX_ID_BYTES, Properties, RejectReason, Rejection, truncate,
};
use crate::eventtime::{Rfc3339, parse_rfc3339_ms};

/// Deserialises an optional string, borrowing from the input when it has no
/// escapes. (serde borrows a bare `Cow<str>` field, but not one inside an
/// `Option`, which would cost an allocation per string per event.)
pub(super) fn borrowed_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }
    d.deserialize_option(Visitor)
}

#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    page_url: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    referrer: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    user_agent: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    ip_address: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    properties: Option<Properties<'a>>,
    #[serde(borrow, default)]
    device: Option<Device<'a>>,
    #[serde(borrow, default)]
    location: Option<Location<'a>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    received_at: Option<Cow<'a, str>>,
}

/// Decodes and validates one event.
///
/// `reference_ms` is "now" for the timestamp sanity check: the Kafka message
/// timestamp in the consumers, the receive time in the collector.
pub fn decode<'a>(payload: &'a [u8], reference_ms: i64, limits: &DecodeLimits) -> Result<Event<'a>, Rejection> {
    if payload.len() > limits.max_event_bytes {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!(
                "event is {} bytes, the limit (MAX_EVENT_BYTES) is {}",
                payload.len(),
                limits.max_event_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(payload).map_err(|e| {
        Rejection::new(
            RejectReason::InvalidUtf8,
            format!("payload is not UTF-8 (invalid byte at {})", e.valid_up_to()),
        )
    })?;
    let wire: WireEvent<'a> = serde_json::from_str(text).map_err(|e| diagnose(text, &e))?;

    let event_id = required_id(wire.event_id, "event_id")?;
    let user_id = required_id(wire.user_id, "user_id")?;
    let session_id = match wire.session_id {
        Some(s) if s.len() > MAX_ID_BYTES => {
            return Err(too_long("session_id", s.len()));
        }
        other => other,
    };
    let event_type_text = wire.event_type.ok_or_else(|| missing("event_type"))?;
    let event_type = EventType::parse(&event_type_text).ok_or_else(|| {
        Rejection::new(
            RejectReason::UnknownEventType,
            format!(
                "event_type {:?} is not one of page_view, click, search, add_to_cart, purchase",
                truncate(&event_type_text, 64)
            ),
        )
    })?;
    let timestamp_text = wire.timestamp.ok_or_else(|| missing("timestamp"))?;
    let timestamp_ms = checked_time("timestamp", &timestamp_text, reference_ms, limits)?;
    let received_ms = wire
        .received_at
        .map(|text| checked_time("received_at", &text, reference_ms, limits))
        .transpose()?;

    let properties = wire.properties.unwrap_or_default();
    for (name, value) in [
        ("properties.price", properties.price),
        ("properties.cart_value", properties.cart_value),
    ] {
        if let Some(v) = value
            && !(v.is_finite() && v >= 0.0 && v <= limits.max_order_value)
        {
            return Err(Rejection::new(
                RejectReason::InvalidAmount,
                format!(
                    "{name} is {v}; expected 0 to {} (MAX_ORDER_VALUE)",
                    limits.max_order_value
                ),
            ));
        }
    }

    Ok(Event {
        event_id,
        timestamp_ms,
        user_id,
        session_id,
        event_type,
        page_url: wire.page_url,
        referrer: wire.referrer,
        user_agent: wire.user_agent,
        ip_address: wire.ip_address,
        properties,
        device: wire.device.unwrap_or_default(),
        location: wire.location.unwrap_or_default(),
        record: None,
        received_ms,
    })
}

/// Checks the Kafka message key against the event: events are keyed by
/// `user_id` so that each user's events share one partition. A message with
/// another key sits on the wrong partition and would split that user's
/// per-partition state, so it is refused rather than processed.
pub fn check_key(key: Option<&[u8]>, event: &Event<'_>) -> Result<(), Rejection> {
    match key {
        None => Err(Rejection::new(
            RejectReason::MissingKey,
            "message has no key; events must be keyed by user_id",
        )),
        Some(k) if k != event.user_id.as_bytes() => Err(Rejection::new(
            RejectReason::KeyMismatch,
            format!(
                "message key {:?} differs from user_id {:?}",
                truncate(&String::from_utf8_lossy(k), 64),
                truncate(&event.user_id, 64)
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn required_id<'a>(value: Option<Cow<'a, str>>, name: &str) -> Result<Cow<'a, str>, Rejection> {
    match value {
        None => Err(missing(name)),
        Some(v) if v.is_empty() => Err(Rejection::new(RejectReason::InvalidField, format!("{name} is empty"))),
        Some(v) if v.len() > MAX_ID_BYTES => Err(too_long(name, v.len())),
        Some(v) => Ok(v),
    }
}

fn missing(name: &str) -> Rejection {
    Rejection::new(
        RejectReason::MissingField,
        format!("required field {name} is missing or null"),
    )
}

/// Parses the time field `name` and checks it against `reference_ms` (the
/// Kafka timestamp, or the collector's receipt).
fn checked_time(name: &str, text: &str, reference_ms: i64, limits: &DecodeLimits) -> Result<i64, Rejection> {
    let ms = parse_rfc3339_ms(text).ok_or_else(|| {
        Rejection::new(
            RejectReason::InvalidTimestamp,
            format!(
                "{name} {:?} is not an RFC 3339 date-time such as 2024-01-15T10:30:45.123Z",
                truncate(text, 64)
            ),
        )
    })?;
    if ms > reference_ms.saturating_add(limits.max_future_skew_ms)
        || ms < reference_ms.saturating_sub(limits.max_age_ms)
    {
        return Err(Rejection::new(
            RejectReason::TimestampOutOfRange,
            format!(
                "{name} {} is outside [{} - MAX_EVENT_AGE, {} + MAX_EVENT_FUTURE_SKEW]",
                Rfc3339(ms),
                Rfc3339(reference_ms),
                Rfc3339(reference_ms)
            ),
        ));
    }
    Ok(ms)
}

fn too_long(name: &str, len: usize) -> Rejection {
    Rejection::new(
        RejectReason::InvalidField,
        format!("{name} is {len} bytes long; at most {MAX_ID_BYTES} are accepted"),
    )
}

/// The slow path, run only for events the fast decoder refused: find out
/// *why* (not JSON, not an object, which field has which wrong type).
fn diagnose(text: &str, error: &serde_json::Error) -> Rejection {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            let what = if text.trim().is_empty() {
                "message is empty".to_string()
            } else {
                format!("not valid JSON: {error}")
            };
            return Rejection::new(RejectReason::MalformedJson, what);
        }
    };
    let Some(object) = value.as_object() else {
        return Rejection::new(
            RejectReason::NotAnObject,
            format!("expected a JSON object, got {}", json_kind(&value)),
        );
    };
    let string_fields = [
        "event_id",
        "timestamp",
        "user_id",
        "session_id",
        "event_type",
        "page_url",
        "referrer",
        "user_agent",
        "ip_address",
    ];
    for name in string_fields {
        if let Some(v) = object.get(name)
            && !(v.is_string() || v.is_null())
        {
            return wrong_type(name, "a string", v);
        }
    }
    let nested: [(&str, &[(&str, bool)]); 3] = [
        (
            "properties",
            &[
                ("product_id", false),
                ("product_name", false),
                ("price", true),
                ("category", false),
                ("search_query", false),
                ("cart_value", true),
            ],
        ),
        ("device", &[("type", false), ("os", false), ("browser", false)]),
        ("location", &[("country", false), ("city", false), ("timezone", false)]),
    ];
    for (name, fields) in nested {
        let Some(v) = object.get(name) else { continue };
        if v.is_null() {
            continue;
        }
        let Some(inner) = v.as_object() else {
            return wrong_type(name, "an object", v);
        };
        for &(field, numeric) in fields {
            let Some(fv) = inner.get(field) else { continue };
            let ok = fv.is_null() || if numeric { fv.is_number() } else { fv.is_string() };
            if !ok {
                let path = format!("{name}.{field}");
                return wrong_type(&path, if numeric { "a number" } else { "a string" }, fv);
            }
        }
    }
    Rejection::new(RejectReason::MalformedJson, format!("{error}"))
}

fn wrong_type(field: &str, expected: &str, got: &serde_json::Value) -> Rejection {
    Rejection::new(
        RejectReason::WrongType,
        format!("{field} must be {expected}, got {}", json_kind(got)),
    )
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
