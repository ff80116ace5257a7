//! The bounds the decoder holds an event to: the id length, which is fixed,
//! and the configurable [`DecodeLimits`].

/// Longest accepted `event_id`, `user_id` or `session_id`. Ids are keys of
/// per-user state and appear in alerts; an id longer than this is not an id.
pub const MAX_ID_BYTES: usize = 256;

/// The limits [`decode`](super::decode) enforces; all of them are configuration.
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
