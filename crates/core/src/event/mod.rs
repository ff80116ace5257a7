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

mod decode;
mod encode;
mod limits;
mod reject;
mod text;

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

use decode::borrowed_opt;
pub use decode::{check_key, decode};
pub use limits::{DecodeLimits, MAX_ID_BYTES};
pub use reject::{RejectReason, Rejection};
pub use text::{MAX_LABEL_BYTES, page_path, printable, truncate, write_uuid_v4};

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
}

#[cfg(test)]
mod tests;
