//! The event schema, and the one decoder that decides what a valid event is.
//!
//! Every component that reads events — both consumers, the dead-letter tooling
//! and the HTTP collector — calls [`decode`] and nothing else, so there is one
//! definition of "valid" and one list of [`RejectReason`]s, each with a stable
//! machine-readable code used in metrics, DLQ headers and HTTP responses.
//!
//! The wire format is the seed demo's JSON object, accepted byte for byte:
//! `event_id`, `timestamp`, `user_id`, `session_id`, `event_type`, `page_url`,
//! `referrer`, `user_agent`, `ip_address`, `properties` {`product_id`,
//! `product_name`, `price`, `category`, `search_query`, `cart_value`},
//! `device` {`type`, `os`, `browser`}, `location` {`country`, `city`,
//! `timezone`}. Unknown fields are ignored.
//!
//! Validation rules (documented in the README's "Event schema" section):
//! - the payload is at most `MAX_EVENT_BYTES`, valid UTF-8, one JSON object;
//! - `event_id`, `timestamp`, `user_id` and `event_type` are present, strings,
//!   non-empty; ids are at most [`MAX_ID_BYTES`] long;
//! - every other field is optional, but when present has the documented type
//!   (`null` counts as absent);
//! - `event_type` is one of the five known types: a new type is rejected (and
//!   can be replayed from the dead-letter topic once supported), never guessed;
//! - `timestamp` is RFC 3339 and lies within `[reference − MAX_EVENT_AGE,
//!   reference + MAX_EVENT_FUTURE_SKEW]`, where the reference is the Kafka
//!   message timestamp (so a replay judges an event exactly as the first run
//!   did) or, without one, the time of receipt;
//! - `price` and `cart_value` are finite, non-negative and at most
//!   `MAX_ORDER_VALUE`.
//!
//! Decoding borrows: string fields are `Cow<str>` that point into the message
//! payload unless they contain JSON escapes, so a typical event is decoded
//! without allocating.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::ser::{SerializeMap, Serializer};

use crate::eventtime::{Rfc3339, parse_rfc3339_ms};

/// Longest accepted `event_id`, `user_id` or `session_id`. Ids are keys of
/// per-user state and appear in alerts; an id longer than this is not an id.
pub const MAX_ID_BYTES: usize = 256;

/// The kinds of activity the system understands, in funnel order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    PageView,
    Click,
    Search,
    AddToCart,
    Purchase,
}

impl EventType {
    /// All types in funnel order; `EventType::ALL[t.index()] == t`.
    pub const ALL: [EventType; 5] = [
        EventType::PageView,
        EventType::Click,
        EventType::Search,
        EventType::AddToCart,
        EventType::Purchase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PageView => "page_view",
            EventType::Click => "click",
            EventType::Search => "search",
            EventType::AddToCart => "add_to_cart",
            EventType::Purchase => "purchase",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        Some(match text {
            "page_view" => EventType::PageView,
            "click" => EventType::Click,
            "search" => EventType::Search,
            "add_to_cart" => EventType::AddToCart,
            "purchase" => EventType::Purchase,
            _ => return None,
        })
    }

    /// Position in [`EventType::ALL`], for array-indexed counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Cart additions and purchases: the events the seed's fraud rules call
    /// "transactional".
    pub fn is_transactional(self) -> bool {
        matches!(self, EventType::AddToCart | EventType::Purchase)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded, validated event. Strings borrow from the message payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub user_id: Cow<'a, str>,
    pub session_id: Option<Cow<'a, str>>,
    pub event_type: EventType,
    pub page_url: Option<Cow<'a, str>>,
    pub referrer: Option<Cow<'a, str>>,
    pub user_agent: Option<Cow<'a, str>>,
    pub ip_address: Option<Cow<'a, str>>,
    pub properties: Properties<'a>,
    pub device: Device<'a>,
    pub location: Location<'a>,
    /// Where the runtime read the event: (partition, offset). Part of every
    /// alert's id, so two records that reuse an `event_id` raise distinct
    /// alerts while a redelivered record raises the same one. `None` outside
    /// the runtime (tests, benchmarks, the producer).
    pub record: Option<(i32, i64)>,
    /// When the collector received the event (`received_at`, which it
    /// always sets and a client cannot), in ms; `None` for events written to
    /// Kafka by other producers.
    pub received_ms: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Properties<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub product_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub product_name: Option<Cow<'a, str>>,
    #[serde(default)]
    pub price: Option<f64>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub category: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub search_query: Option<Cow<'a, str>>,
    #[serde(default)]
    pub cart_value: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Device<'a> {
    #[serde(borrow, default, rename = "type", deserialize_with = "borrowed_opt")]
    pub device_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub os: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub browser: Option<Cow<'a, str>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Location<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub country: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub city: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub timezone: Option<Cow<'a, str>>,
}

impl Event<'_> {
    /// The money a purchase moved, as the seed computes it (`cart_value or
    /// price`): `cart_value` unless it is absent or 0, else `price`, else 0.
    pub fn amount(&self) -> f64 {
        self.properties
            .cart_value
            .filter(|v| *v != 0.0)
            .or(self.properties.price)
            .unwrap_or(0.0)
    }

    /// Converts every borrowed string into an owned one, for events that must
    /// outlive the message they were decoded from.
    pub fn into_owned(self) -> Event<'static> {
        fn own(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        fn own_opt(c: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
            c.map(own)
        }
        Event {
            event_id: own(self.event_id),
            timestamp_ms: self.timestamp_ms,
            user_id: own(self.user_id),
            session_id: own_opt(self.session_id),
            event_type: self.event_type,
            page_url: own_opt(self.page_url),
            referrer: own_opt(self.referrer),
            user_agent: own_opt(self.user_agent),
            ip_address: own_opt(self.ip_address),
            properties: Properties {
                product_id: own_opt(self.properties.product_id),
                product_name: own_opt(self.properties.product_name),
                price: self.properties.price,
                category: own_opt(self.properties.category),
                search_query: own_opt(self.properties.search_query),
                cart_value: self.properties.cart_value,
            },
            device: Device {
                device_type: own_opt(self.device.device_type),
                os: own_opt(self.device.os),
                browser: own_opt(self.device.browser),
            },
            location: Location {
                country: own_opt(self.location.country),
                city: own_opt(self.location.city),
                timezone: own_opt(self.location.timezone),
            },
            record: self.record,
            received_ms: self.received_ms,
        }
    }

    /// Serialises the event in the seed's wire format (compact JSON).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(640);
        self.write_json(&mut out);
        out
    }

    /// Appends the event's JSON to `out` (the producer reuses one buffer).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut ser = serde_json::Serializer::new(out);
        // Writing JSON into a Vec cannot fail: all keys are strings and all
        // numbers are finite (validated or generated).
        let _ = serde::Serialize::serialize(self, &mut ser);
    }
}

impl serde::Serialize for Event<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(12))?;
        m.serialize_entry("event_id", &self.event_id)?;
        m.serialize_entry("timestamp", &Rfc3339AsStr(self.timestamp_ms))?;
        m.serialize_entry("user_id", &self.user_id)?;
        m.serialize_entry("session_id", &self.session_id)?;
        m.serialize_entry("event_type", self.event_type.as_str())?;
        m.serialize_entry("page_url", &self.page_url)?;
        m.serialize_entry("referrer", &self.referrer)?;
        m.serialize_entry("user_agent", &self.user_agent)?;
        m.serialize_entry("ip_address", &self.ip_address)?;
        m.serialize_entry("properties", &PropertiesOut(&self.properties))?;
        m.serialize_entry("device", &DeviceOut(&self.device))?;
        m.serialize_entry("location", &LocationOut(&self.location))?;
        m.end()
    }
}

struct Rfc3339AsStr(i64);
impl serde::Serialize for Rfc3339AsStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Rfc3339(self.0))
    }
}

struct PropertiesOut<'p, 'a>(&'p Properties<'a>);
impl serde::Serialize for PropertiesOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut m = s.serialize_map(None)?;
        if let Some(v) = &p.product_id {
            m.serialize_entry("product_id", v)?;
        }
        if let Some(v) = &p.product_name {
            m.serialize_entry("product_name", v)?;
        }
        if let Some(v) = &p.price {
            m.serialize_entry("price", v)?;
        }
        if let Some(v) = &p.category {
            m.serialize_entry("category", v)?;
        }
        if let Some(v) = &p.search_query {
            m.serialize_entry("search_query", v)?;
        }
        if let Some(v) = &p.cart_value {
            m.serialize_entry("cart_value", v)?;
        }
        m.end()
    }
}

struct DeviceOut<'p, 'a>(&'p Device<'a>);
impl serde::Serialize for DeviceOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("type", &self.0.device_type)?;
        m.serialize_entry("os", &self.0.os)?;
        m.serialize_entry("browser", &self.0.browser)?;
        m.end()
    }
}

struct LocationOut<'p, 'a>(&'p Location<'a>);
impl serde::Serialize for LocationOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("country", &self.0.country)?;
        m.serialize_entry("city", &self.0.city)?;
        m.serialize_entry("timezone", &self.0.timezone)?;
        m.end()
    }
}

/// Why an event was refused. The `code()` strings are a stable interface:
/// they label the `activity_events_rejected_total` metric, the `dlq.reason`
/// header of dead-lettered messages and the collector's 400 responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    TooLarge,
    InvalidUtf8,
    MalformedJson,
    NotAnObject,
    MissingField,
    WrongType,
    InvalidField,
    UnknownEventType,
    InvalidTimestamp,
    TimestampOutOfRange,
    InvalidAmount,
    MissingKey,
    KeyMismatch,
}

impl RejectReason {
    pub const ALL: [RejectReason; 13] = [
        RejectReason::TooLarge,
        RejectReason::InvalidUtf8,
        RejectReason::MalformedJson,
        RejectReason::NotAnObject,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::InvalidField,
        RejectReason::UnknownEventType,
        RejectReason::InvalidTimestamp,
        RejectReason::TimestampOutOfRange,
        RejectReason::InvalidAmount,
        RejectReason::MissingKey,
        RejectReason::KeyMismatch,
    ];

    pub fn code(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::UnknownEventType => "unknown_event_type",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
            RejectReason::InvalidAmount => "invalid_amount",
            RejectReason::MissingKey => "missing_key",
            RejectReason::KeyMismatch => "key_mismatch",
        }
    }

    pub fn from_code(code: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.code() == code)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refused event: the reason code and a human sentence naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

/// Deserialises an optional string, borrowing from the input when it has no
/// escapes. (serde borrows a bare `Cow<str>` field, but not one inside an
/// `Option`, which would cost an allocation per string per event.)
fn borrowed_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
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

/// The limits [`decode`] enforces; all of them are configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeLimits {
    pub max_event_bytes: usize,
    /// How far after the reference time an event may be stamped.
    pub max_future_skew_ms: i64,
    /// How far before the reference time an event may be stamped.
    pub max_age_ms: i64,
    /// Largest accepted `price` / `cart_value`.
    pub max_order_value: f64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_event_bytes: 64 * 1024,
            max_future_skew_ms: 5 * 60 * 1000,
            max_age_ms: 7 * 24 * 3600 * 1000,
            max_order_value: 1_000_000.0,
        }
    }
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

/// The path of a page URL, for analytics: scheme, host, query and fragment
/// removed, so `https://shop.example.com/cart?x=1` and `/cart` are one page.
pub fn page_path(url: &str) -> &str {
    let without_scheme = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            match rest.find('/') {
                Some(j) => &rest[j..],
                None => "/",
            }
        }
        None => url,
    };
    let end = without_scheme.find(['?', '#']).unwrap_or(without_scheme.len());
    let path = &without_scheme[..end];
    if path.is_empty() { "/" } else { path }
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

/// The longest label kept from client text: page paths, product ids and
/// names, countries, cities and devices are cut to this many bytes (on a
/// character boundary) before they are counted, named in a metric or kept
/// as alert evidence, so an event's strings cannot grow any set of labels
/// by more than this each.
pub const MAX_LABEL_BYTES: usize = 128;

/// `s` safe to print on an operator's terminal: control characters (C0,
/// DEL, C1 — newlines and ANSI escapes among them) and the bidirectional
/// overrides that reorder what a terminal shows are written as `\u{..}`
/// escapes. Client-supplied text (user ids, pages, places, products,
/// devices) goes through this before the console sees it.
pub fn printable(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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

/// Writes 16 random bytes as a version 4 UUID (`xxxxxxxx-xxxx-4xxx-
/// [89ab]xxx-xxxxxxxxxxxx`) into `out`, replacing its contents: the form of
/// every `event_id` this project generates (the simulator's, the
/// collector's). The caller brings the randomness, so this stays pure.
pub fn write_uuid_v4(random: [u8; 16], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = random;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = [0u8; 36];
    let mut j = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text[j] = b'-';
            j += 1;
        }
        text[j] = HEX[usize::from(b >> 4)];
        text[j + 1] = HEX[usize::from(b & 0xf)];
        j += 2;
    }
    out.clear();
    // Only ASCII hex digits and dashes were written.
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

#[cfg(test)]
mod tests {
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

    use super::*;

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
}
