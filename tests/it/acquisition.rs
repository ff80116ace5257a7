//! Acquisition and engagement through Kafka and `GET /report`: a scripted
//! stream with known referrers, UTM parameters, sessions and purchases, on
//! real Kafka, read back from the pod's HTTP endpoint.

use std::time::Duration;

use crate::support::*;
use activity_tracker::commands::{Run, demo::Demo};
use serde_json::{Value, json};

const SHOP: &str = "https://shop.example.com";

/// (user, session, seconds after T0, type, page path and query, referrer,
/// amount)
type Step = (
    &'static str,
    &'static str,
    i64,
    &'static str,
    &'static str,
    Option<&'static str>,
    f64,
);

/// Six sessions of five users, hand-computed in the test below, then three
/// users far later who move event time past every landing event.
const STREAM: &[Step] = &[
    (
        "u1",
        "a",
        0,
        "page_view",
        "/?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
        None,
        0.0,
    ),
    ("u1", "a", 20, "page_view", "/products/lamp", None, 0.0),
    ("u1", "a", 40, "purchase", "/checkout", None, 100.0),
    (
        "u2",
        "b",
        5,
        "page_view",
        "/products/chair",
        Some("https://www.google.com/search?q=chair"),
        0.0,
    ),
    ("u3", "c", 10, "page_view", "/", Some("https://l.facebook.com/"), 0.0),
    ("u3", "c", 30, "click", "/", None, 0.0),
    ("u4", "d", 20, "page_view", "/", None, 0.0),
    ("u4", "d", 25, "page_view", "/about", None, 0.0),
    (
        "u5",
        "e",
        30,
        "page_view",
        "/blog",
        Some("https://shop.example.com/cart"),
        0.0,
    ),
    (
        "u2",
        "b2",
        1000,
        "page_view",
        "/?utm_source=google&utm_medium=cpc&utm_campaign=spring",
        Some("https://www.google.com/"),
        0.0,
    ),
    ("u2", "b2", 1010, "purchase", "/checkout", None, 50.0),
    ("u6", "z6", 5000, "page_view", "/", None, 0.0),
    ("u7", "z7", 5001, "page_view", "/", None, 0.0),
    ("u8", "z8", 5002, "page_view", "/", None, 0.0),
];

fn message(n: usize, &(user, session, at_s, kind, page, referrer, amount): &Step) -> Outgoing {
    let mut properties = serde_json::Map::new();
    if amount > 0.0 {
        properties.insert("product_id".into(), json!("p1"));
        properties.insert("price".into(), json!(amount));
        properties.insert("cart_value".into(), json!(amount));
    }
    let at = T0 + at_s * 1000;
    let event = json!({
        "event_id": format!("acq-{n}"),
        "timestamp": activity_tracker::eventtime::format_rfc3339_ms(at),
        "user_id": user,
        "session_id": format!("{user}-{session}"),
        "event_type": kind,
        "page_url": format!("{SHOP}{page}"),
        "referrer": referrer,
        "properties": properties,
    });
    Outgoing::keyed(user, event.to_string(), at)
}

#[test]
fn acquisition_and_engagement_reach_report_as_hand_computed() {
    // One partition: its event time is every user's, as in the unit test.
    // (Each partition's clock moves with its own traffic.)
    let broker = kafka(1);
    let bootstrap = broker.bootstrap_servers().to_string();
    let messages: Vec<Outgoing> = STREAM.iter().enumerate().map(|(n, s)| message(n, s)).collect();
    produce(&bootstrap, ACTIVITIES, &messages);
    let running = InProcess::start(&crate::support::config(
        Demo::PROFILE,
        &bootstrap,
        // The stream is in user order, up to 40 s behind the latest event.
        &[("SITE_DOMAINS", "shop.example.com"), ("ALLOWED_LATENESS", "60s")],
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = running.serve_http(&rt);
    let mut report = Value::Null;
    wait_until("every event in /report", Duration::from_secs(60), || {
        let (status, body) = http_get(addr, "/report");
        report = serde_json::from_str(&body).unwrap_or(Value::Null);
        status == 200 && report["total_events"] == json!(STREAM.len())
    });

    assert_eq!(
        report["sessions"],
        json!(6),
        "u6-u8 start after the watermark: not counted yet"
    );
    let source = |name: &str| {
        let s = &report["sources"][name];
        (
            s["sessions"].clone(),
            s["users"].clone(),
            s["conversions"].clone(),
            s["revenue"].clone(),
        )
    };
    assert_eq!(source("newsletter"), (json!(1), json!(0), json!(1), json!(100.0)));
    assert_eq!(source("google.com"), (json!(1), json!(0), json!(0), json!(0.0)));
    assert_eq!(source("facebook.com"), (json!(1), json!(0), json!(0), json!(0.0)));
    assert_eq!(source("google"), (json!(1), json!(1), json!(1), json!(50.0)));
    assert_eq!(source("direct"), (json!(2), json!(3), json!(0), json!(0.0)));
    assert_eq!(report["sources"].as_object().unwrap().len(), 5, "{}", report["sources"]);
    assert_eq!(
        report["channels"],
        json!({"direct": 2, "email": 1, "organic_search": 1, "organic_social": 1, "paid_search": 1,
               "paid_social": 0, "display": 0, "referral": 0, "other": 0})
    );
    assert_eq!(
        report["campaigns"],
        json!({"spring": {"sessions": 2, "conversions": 2, "revenue": 150.0, "conversion_rate": 1.0}})
    );
    assert_eq!(report["entry_pages"], json!({"/": 4, "/blog": 1, "/products/chair": 1}));
    assert_eq!(
        report["exit_pages"],
        json!({"/": 2, "/about": 1, "/blog": 1, "/products/chair": 1, "/products/lamp": 1})
    );
    assert_eq!(report["engaged_sessions"], json!(4));
    assert_eq!(report["bounce_rate"], json!(0.3333));
    assert_eq!(report["pages_per_session"], json!(1.33));
    assert_eq!(
        (report["new_users"].clone(), report["returning_users"].clone()),
        (json!(5), json!(1))
    );
    assert_eq!(report["live_visitors"], json!(3));
    let per_minute = report["events_per_minute"].as_array().unwrap();
    assert_eq!(per_minute.len(), 30);
    assert_eq!(per_minute.last(), Some(&json!(3)));

    let (status, metrics) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    let value = |name: &str, label: &str| -> Option<f64> {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    assert_eq!(
        value("activity_source_sessions_total", r#"source="newsletter""#),
        Some(1.0)
    );
    assert_eq!(
        value("activity_campaign_revenue_total", r#"campaign="spring""#),
        Some(150.0)
    );
    assert_eq!(value("activity_sessions_total", r#"channel="paid_search""#), Some(1.0));
    assert_eq!(value("activity_exit_page_sessions", r#"page="/""#), Some(2.0));
    let (analytics, _, _) = running.stop();
    for section in ["🔗 Traffic Sources", "📣 Campaigns", "🚪 Engagement"] {
        assert!(analytics.final_summary.contains(section), "{section}");
    }
    println!(
        "acquisition through Kafka: 6 sessions from 5 sources and 5 channels, bounce rate {}, as hand-computed",
        report["bounce_rate"]
    );
}
