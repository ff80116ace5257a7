//! What the collector adds to an event before the shared decoder judges it:
//! the client's address (through trusted proxies only), the device parsed
//! from the user agent, the location, a server receive time and a corrected
//! client time.
//!
//! Fields the server knows better than the client win: `ip_address` is
//! always the connection's client address (an attacker cannot hide behind a
//! made-up one), `location` comes from the GeoIP database or the trusted
//! country header when they have an answer. Fields only the client knows
//! (`user_agent` and `device` of a backend forwarding a user's event) are kept
//! when present.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use crate::eventtime::{format_rfc3339_ms, parse_rfc3339_ms};
use crate::privacy::IpRenderer;

/// Longest user agent stored; longer headers are cut (on a char boundary).
pub const MAX_USER_AGENT_BYTES: usize = 512;

/// The client's address: the socket peer, or with `trusted_proxies` > 0 the
/// entry of `X-Forwarded-For` that the outermost trusted proxy appended
/// (each proxy appends the address it received the request from, so with
/// N trusted proxies the client is the N-th entry from the right).
/// Entries further left were written by the client and are never trusted.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted_proxies: usize) -> IpAddr {
    if trusted_proxies == 0 {
        return peer.ip();
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let chosen = if entries.len() >= trusted_proxies {
        entries.get(entries.len() - trusted_proxies)
    } else {
        // Fewer hops than configured: the request reached us through fewer
        // proxies, so the leftmost entry is the best the proxies told us.
        entries.first()
    };
    chosen.and_then(|e| parse_forwarded_ip(e)).unwrap_or_else(|| peer.ip())
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    entry.parse::<SocketAddr>().ok().map(|s| s.ip())
}

/// `device` {type, os, browser} from a user agent, in the simulator's
/// vocabulary (desktop / mobile / tablet / bot; Windows, macOS, iOS, iPadOS,
/// Android, Linux…; Chrome, Edge, Firefox, Safari…), so dashboards group
/// collected and simulated traffic alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedDevice {
    pub device_type: Option<&'static str>,
    pub os: Option<String>,
    pub browser: Option<String>,
}

pub struct DeviceParser {
    parser: woothee::parser::Parser,
}

impl Default for DeviceParser {
    fn default() -> Self {
        DeviceParser {
            parser: woothee::parser::Parser::new(),
        }
    }
}

impl DeviceParser {
    pub fn parse(&self, ua: &str) -> ParsedDevice {
        let unknown = |s: &str| s.is_empty() || s == woothee::woothee::VALUE_UNKNOWN;
        let Some(r) = self.parser.parse(ua) else {
            return ParsedDevice {
                device_type: None,
                os: None,
                browser: None,
            };
        };
        let ipad = ua.contains("iPad");
        let android_tablet = r.os == "Android" && !ua.contains("Mobile");
        let headless = ua.contains("HeadlessChrome");
        let device_type = match r.category {
            "pc" => Some("desktop"),
            "smartphone" if ipad || android_tablet => Some("tablet"),
            "smartphone" | "mobilephone" => Some("mobile"),
            "crawler" => Some("bot"),
            "appliance" | "misc" => Some("other"),
            _ => None,
        };
        let os = match r.os {
            _ if ipad => Some("iPadOS".to_string()),
            "iPhone" | "iPod" => Some("iOS".to_string()),
            "Mac OSX" => Some("macOS".to_string()),
            os if os.starts_with("Windows") => Some("Windows".to_string()),
            os if unknown(os) => None,
            os => Some(os.to_string()),
        };
        let browser = if headless {
            Some("HeadlessChrome".to_string())
        } else if ua.contains(" Edg/") {
            // Chromium-based Edge; woothee knows only the legacy "Edge/" token.
            Some("Edge".to_string())
        } else if unknown(r.name) || r.name == "HTTP Library" {
            // A library or tool: its product token ("python-requests/2.31").
            ua.split(['/', ' '])
                .next()
                .filter(|t| !t.is_empty())
                .map(str::to_string)
        } else {
            Some(r.name.to_string())
        };
        ParsedDevice {
            device_type,
            os,
            browser,
        }
    }
}

/// Where a client is, as far as the server can tell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    pub country: Option<String>,
    pub city: Option<String>,
    pub timezone: Option<String>,
}

/// A MaxMind-format database (GeoIP2 / GeoLite2 City or Country, or any
/// database with the same record layout).
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
}

#[derive(serde::Deserialize)]
struct GeoRecord<'a> {
    #[serde(borrow)]
    country: Option<GeoCountry<'a>>,
    #[serde(borrow)]
    city: Option<GeoCity<'a>>,
    #[serde(borrow)]
    location: Option<GeoLocation<'a>>,
}

#[derive(serde::Deserialize)]
struct GeoCountry<'a> {
    iso_code: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct GeoCity<'a> {
    #[serde(borrow)]
    names: Option<std::collections::BTreeMap<&'a str, &'a str>>,
}

#[derive(serde::Deserialize)]
struct GeoLocation<'a> {
    time_zone: Option<&'a str>,
}

impl GeoIp {
    pub fn open(path: &Path) -> Result<GeoIp, String> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|e| e.to_string())?;
        Ok(GeoIp { reader })
    }

    /// The database's type, e.g. `GeoIP2-City`.
    pub fn kind(&self) -> &str {
        &self.reader.metadata().database_type
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<Place> {
        let record: GeoRecord<'_> = self.reader.lookup(ip).ok()?.decode().ok()??;
        let place = Place {
            country: record.country.and_then(|c| c.iso_code).map(str::to_string),
            city: record
                .city
                .and_then(|c| c.names)
                .and_then(|n| n.get("en").copied())
                .map(str::to_string),
            timezone: record.location.and_then(|l| l.time_zone).map(str::to_string),
        };
        (place != Place::default()).then_some(place)
    }
}

/// Everything the collector knows about one request, applied to each of its
/// events.
pub struct RequestContext<'a> {
    pub received_ms: i64,
    pub client_ip: IpAddr,
    pub user_agent: Option<&'a str>,
    pub device: Option<&'a ParsedDevice>,
    pub place: Option<&'a Place>,
    pub privacy: &'a IpRenderer,
}

/// A fresh random (version 4) UUID.
pub fn uuid_v4() -> String {
    let mut out = String::with_capacity(36);
    crate::event::write_uuid_v4(rand::random(), &mut out);
    out
}

fn is_absent(event: &Map<String, Value>, field: &str) -> bool {
    matches!(event.get(field), None | Some(Value::Null))
}

/// Fills in and overrides the server-side fields of one event object.
pub fn enrich(event: &mut Map<String, Value>, ctx: &RequestContext<'_>) {
    if is_absent(event, "event_id") {
        event.insert("event_id".into(), Value::String(uuid_v4()));
    }
    let received = format_rfc3339_ms(ctx.received_ms);
    // Client clock correction: with `sent_at` (the client's clock when it
    // sent the batch), the event happened (sent_at - timestamp) before the
    // server received it. Without it, a stamp after receipt is the receipt:
    // nothing can have happened after it reached us, and a client must not
    // be able to stamp events into the future (where they would move their
    // partition's event time and make other users' events late). Either way
    // the client's own stamp is kept as `client_timestamp`.
    let sent_at = event.remove("sent_at");
    match event.get_mut("timestamp") {
        None | Some(Value::Null) => {
            event.insert("timestamp".into(), Value::String(received.clone()));
        }
        Some(Value::String(ts)) => {
            let sent_ms = sent_at.as_ref().and_then(Value::as_str).and_then(parse_rfc3339_ms);
            let ts_ms = parse_rfc3339_ms(ts);
            let corrected = match (ts_ms, sent_ms) {
                (Some(ts_ms), Some(sent_ms)) => Some(ctx.received_ms - (sent_ms - ts_ms).max(0)),
                (Some(ts_ms), None) if ts_ms > ctx.received_ms => Some(ctx.received_ms),
                _ => None,
            };
            if let Some(corrected) = corrected {
                let original = std::mem::replace(ts, format_rfc3339_ms(corrected));
                event.insert("client_timestamp".into(), Value::String(original));
            }
        }
        // A wrong type is the decoder's to report.
        Some(_) => {}
    }
    event.insert("received_at".into(), Value::String(received));
    event.insert(
        "ip_address".into(),
        Value::String(ctx.privacy.stored(ctx.client_ip).to_string()),
    );
    if is_absent(event, "user_agent")
        && let Some(ua) = ctx.user_agent
    {
        event.insert(
            "user_agent".into(),
            Value::String(crate::event::truncate(ua, MAX_USER_AGENT_BYTES).to_string()),
        );
    }
    if is_absent(event, "device")
        && let Some(d) = ctx.device
    {
        let mut device = Map::new();
        device.insert(
            "type".into(),
            d.device_type.map_or(Value::Null, |t| Value::String(t.into())),
        );
        device.insert("os".into(), d.os.clone().map_or(Value::Null, Value::String));
        device.insert("browser".into(), d.browser.clone().map_or(Value::Null, Value::String));
        event.insert("device".into(), Value::Object(device));
    }
    if let Some(p) = ctx.place {
        let mut location = Map::new();
        let field = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        location.insert("country".into(), field(&p.country));
        location.insert("city".into(), field(&p.city));
        location.insert("timezone".into(), field(&p.timezone));
        event.insert("location".into(), Value::Object(location));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IpPrivacy;
    use axum::http::HeaderValue;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_addresses_count_only_through_trusted_proxies() {
        let peer: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let spoofed = headers(&["6.6.6.6, 203.0.113.7"]);
        assert_eq!(client_ip(peer, &spoofed, 0).to_string(), "10.0.0.5", "no proxy trusted");
        assert_eq!(client_ip(peer, &spoofed, 1).to_string(), "203.0.113.7");
        assert_eq!(client_ip(peer, &spoofed, 2).to_string(), "6.6.6.6");
        // Two headers count as one list; ports and brackets are stripped.
        let split = headers(&["6.6.6.6", "[2001:db8::1]:443, 198.51.100.2:8080"]);
        assert_eq!(client_ip(peer, &split, 1).to_string(), "198.51.100.2");
        assert_eq!(client_ip(peer, &split, 2).to_string(), "2001:db8::1");
        // Garbage or no header: the socket peer.
        assert_eq!(client_ip(peer, &headers(&["not-an-ip"]), 1).to_string(), "10.0.0.5");
        assert_eq!(client_ip(peer, &HeaderMap::new(), 1).to_string(), "10.0.0.5");
    }

    #[test]
    fn devices_parse_into_the_simulators_vocabulary() {
        let parser = DeviceParser::default();
        let catalog = crate::producer::catalog::DEVICES
            .iter()
            .chain(&crate::producer::catalog::BOT_DEVICES[..1]);
        for d in catalog {
            let parsed = parser.parse(d.user_agent);
            assert_eq!(
                (parsed.device_type, parsed.os.as_deref(), parsed.browser.as_deref()),
                (Some(d.device_type), Some(d.os), Some(d.browser)),
                "{}",
                d.user_agent
            );
        }
        let bot = parser.parse("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)");
        assert_eq!(bot.device_type, Some("bot"));
        assert_eq!(parser.parse("curl/8.5.0").browser.as_deref(), Some("curl"));
        assert_eq!(parser.parse("").browser, None);
    }

    fn context<'a>(privacy: &'a IpRenderer, device: &'a ParsedDevice, place: Option<&'a Place>) -> RequestContext<'a> {
        RequestContext {
            received_ms: parse_rfc3339_ms("2026-11-25T10:00:00.000Z").unwrap(),
            client_ip: "203.0.113.7".parse().unwrap(),
            user_agent: Some("Mozilla/5.0 test"),
            device: Some(device),
            place,
            privacy,
        }
    }

    /// A client cannot stamp an event after its receipt: that would move
    /// its partition's event time ahead and make other users' events late.
    /// An earlier stamp (an app uploading after being offline) stays.
    #[test]
    fn a_client_stamp_after_receipt_becomes_the_receipt() {
        let privacy = IpRenderer::new(IpPrivacy::None);
        let device = ParsedDevice {
            device_type: Some("desktop"),
            os: None,
            browser: None,
        };
        let stamped = |ts: &str| {
            let mut event: Map<String, Value> = serde_json::from_str(&format!(
                r#"{{"user_id":"u1","event_type":"click","timestamp":"{ts}"}}"#
            ))
            .unwrap();
            enrich(&mut event, &context(&privacy, &device, None));
            event
        };
        let future = stamped("2026-11-25T10:04:59.000Z");
        assert_eq!(future["timestamp"], "2026-11-25T10:00:00.000Z");
        assert_eq!(future["client_timestamp"], "2026-11-25T10:04:59.000Z");
        let past = stamped("2026-11-25T08:00:00.000Z");
        assert_eq!(past["timestamp"], "2026-11-25T08:00:00.000Z");
        assert!(past.get("client_timestamp").is_none());
    }

    #[test]
    fn enrichment_fills_gaps_overrides_the_address_and_corrects_the_clock() {
        let privacy = IpRenderer::new(IpPrivacy::None);
        let device = ParsedDevice {
            device_type: Some("desktop"),
            os: Some("Linux".into()),
            browser: Some("Firefox".into()),
        };
        let place = Place {
            country: Some("NZ".into()),
            city: None,
            timezone: None,
        };
        // The client's clock is 1 h fast; the event happened 2 s before the send.
        let mut event: Map<String, Value> = serde_json::from_str(
            r#"{"user_id":"u1","event_type":"click","ip_address":"1.1.1.1",
                "timestamp":"2026-11-25T10:59:58.000Z","sent_at":"2026-11-25T11:00:00.000Z",
                "location":{"country":"FR"}}"#,
        )
        .unwrap();
        enrich(&mut event, &context(&privacy, &device, Some(&place)));
        assert_eq!(event["timestamp"], "2026-11-25T09:59:58.000Z");
        assert_eq!(event["client_timestamp"], "2026-11-25T10:59:58.000Z");
        assert_eq!(event["received_at"], "2026-11-25T10:00:00.000Z");
        assert!(event.get("sent_at").is_none());
        assert_eq!(
            event["ip_address"], "203.0.113.7",
            "the client cannot choose its address"
        );
        assert_eq!(event["user_agent"], "Mozilla/5.0 test");
        assert_eq!(event["device"]["browser"], "Firefox");
        assert_eq!(event["location"]["country"], "NZ");
        assert_eq!(event["event_id"].as_str().unwrap().len(), 36);

        // Without a server-side place, the client's location stays; a
        // client-sent device and user agent stay; no timestamp → receipt.
        let mut event: Map<String, Value> = serde_json::from_str(
            r#"{"user_id":"u1","event_type":"click","event_id":"e1","user_agent":"backend/1.0",
                "device":{"type":"mobile"},"location":{"country":"FR"}}"#,
        )
        .unwrap();
        enrich(&mut event, &context(&privacy, &device, None));
        assert_eq!(event["event_id"], "e1");
        assert_eq!(event["timestamp"], "2026-11-25T10:00:00.000Z");
        assert!(event.get("client_timestamp").is_none());
        assert_eq!(event["user_agent"], "backend/1.0");
        assert_eq!(event["device"]["type"], "mobile");
        assert_eq!(event["location"]["country"], "FR");
    }

    #[test]
    fn geoip_finds_city_country_and_zone_for_v4_and_v6() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/geoip-test.mmdb");
        let db = GeoIp::open(&path).unwrap();
        assert_eq!(db.kind(), "GeoIP2-City");
        let nz = db.lookup("203.0.113.7".parse().unwrap()).unwrap();
        assert_eq!(
            (nz.country.as_deref(), nz.city.as_deref(), nz.timezone.as_deref()),
            (Some("NZ"), Some("Auckland"), Some("Pacific/Auckland"))
        );
        assert_eq!(
            db.lookup("2001:db8:aa::5".parse().unwrap()).unwrap().country.as_deref(),
            Some("JP")
        );
        assert_eq!(db.lookup("192.0.2.1".parse().unwrap()), None, "not in the database");
        assert!(GeoIp::open(Path::new("Cargo.toml")).is_err(), "not a database");
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid_v4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id, uuid_v4());
    }
}
