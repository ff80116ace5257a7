//! Who may send events: the write keys, the allowed origins and the
//! per-client rate limit, each refusing a request with a [`Refusal`].

use std::net::IpAddr;
use std::num::NonZeroU32;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};

use super::Collector;
/// A refused request: status, the reason counted per event, a message.
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) reason: &'static str,
    pub(super) message: String,
    pub(super) retry_after: Option<u64>,
}

impl Refusal {
    pub(super) fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(super) fn retry(mut self, seconds: u64) -> Refusal {
        self.retry_after = Some(seconds.max(1));
        self
    }
}

impl Collector {
    /// The origin of a browser request if it is allowed; `Err` if the request
    /// has an Origin header that is not on the list.
    pub(super) fn origin<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h HeaderValue>, Refusal> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(None);
        };
        let allowed = match &self.config.allowed_origins {
            None => true,
            Some(list) => origin.to_str().is_ok_and(|o| {
                let o = o.trim_end_matches('/');
                list.iter().any(|a| a.eq_ignore_ascii_case(o))
            }),
        };
        if allowed {
            Ok(Some(origin))
        } else {
            Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!(
                    "origin {} is not in COLLECT_ALLOWED_ORIGINS",
                    origin.to_str().unwrap_or("(not text)")
                ),
            ))
        }
    }

    pub(super) fn authorize(&self, headers: &HeaderMap, query: Option<&str>) -> Result<(), Refusal> {
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| std::borrow::Cow::Borrowed(key))
            .or_else(|| {
                headers
                    .get("x-write-key")
                    .and_then(|v| v.to_str().ok())
                    .map(std::borrow::Cow::Borrowed)
            });
        // The browser tracker sends `encodeURIComponent(key)`: a base64 key's
        // `+`, `/` and `=` arrive percent-encoded.
        let from_query = query.and_then(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == "key")
                .and_then(|(_, v)| percent_decode(v))
        });
        let key = from_header.or(from_query);
        let Some(key) = key.as_deref().map(str::trim).filter(|k| !k.is_empty()) else {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a write key is required: Authorization: Bearer KEY, X-Write-Key: KEY or ?key=KEY",
            ));
        };
        // Compare against every key in constant time per key, so the answer
        // time does not tell how much of a guess was right.
        let mut matched = false;
        for k in &self.write_keys {
            matched |= constant_time_eq(k, key.as_bytes());
        }
        if matched {
            Ok(())
        } else {
            Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown write key",
            ))
        }
    }
    pub(super) fn rate_limit(&self, ip: IpAddr, events: usize) -> Result<(), Refusal> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let n = NonZeroU32::new(u32::try_from(events).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let wait = |events: f64| (events / f64::from(self.config.rate_limit)).ceil() as u64;
        match limiter.check_key_n(&rate_key(ip), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than COLLECT_RATE_LIMIT={} events/s from {ip}",
                    self.config.rate_limit
                ),
            )
            .retry(wait(n.get() as f64))),
            Err(_) => Err(Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "{events} events in one request exceed COLLECT_RATE_BURST={}",
                    self.config.rate_burst
                ),
            )
            .retry(wait(self.config.rate_burst as f64))),
        }
    }
}

/// Whom a rate limit counts: an IPv4 address, or an IPv6 client's /64 (the
/// network one subscriber gets; privacy extensions rotate the rest).
fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

/// Decodes `%XX` escapes (a `+` stays a `+`: keys have no spaces, and
/// `encodeURIComponent` never writes a bare one); `None` if malformed.
fn percent_decode(text: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !text.contains('%') {
        return Some(std::borrow::Cow::Borrowed(text));
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(std::borrow::Cow::Owned)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_the_query_are_percent_decoded() {
        assert_eq!(percent_decode("abc").as_deref(), Some("abc"));
        assert_eq!(percent_decode("a%2Bb%2Fc%3D%3D").as_deref(), Some("a+b/c=="));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"), "a bare + is a +");
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }

    #[test]
    fn ipv6_clients_are_rate_limited_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb:cccc:dddd:eeee".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(rate_key(a), rate_key(b));
        assert_ne!(rate_key(a), rate_key(other));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(rate_key(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(rate_key(mapped), v4);
    }
}
