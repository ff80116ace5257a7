//! The browser tracker end to end in a real headless Chromium: a shop page on
//! its own origin loads `/v1/tracker.js` from the collector, a shopper
//! browses, searches, adds to cart and buys; the events arrive in Kafka
//! enriched, and the analytics consumer's `/report` counts the whole funnel.
//!
//! Needs Debian's `chromium` and `npm ci --prefix tests/browser`
//! (`.ci/run` installs both). Without them the test fails, saying what to
//! install, unless `SKIP_BROWSER_TEST` is set; `.ci/run` also fails if its
//! `browser: chromium` summary line is missing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

const KEY: &str = "browser-test-key";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_shopper_in_chromium_reaches_kafka_and_the_analytics_funnel() {
    let driver_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() || !driver_dir.join("node_modules/playwright-core").exists() {
        // A missing tool is a failure, not a pass: skipping is a choice the
        // person running the tests makes out loud.
        if std::env::var_os("SKIP_BROWSER_TEST").is_some() {
            println!("browser: skipped (SKIP_BROWSER_TEST is set)");
            return;
        }
        panic!(
            "the browser test needs {chromium} (or CHROMIUM) and `npm ci --prefix tests/browser`; \
             install them, or set SKIP_BROWSER_TEST=1 to skip it"
        );
    }
    let broker = broker(3);
    let bootstrap = broker.bootstrap_servers().to_string();
    let dir = Scratch::new("browser");

    let page_port = free_port();
    let collector = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut c = Command::new(binary());
    c.arg("collect")
        .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
        .env("HTTP_ADDR", collector.to_string())
        .env("COLLECT_WRITE_KEYS", KEY)
        .env("COLLECT_ALLOWED_ORIGINS", format!("http://127.0.0.1:{page_port}"))
        .env("LOG_LEVEL", "WARNING")
        .stdout(Stdio::null());
    let _collector = Process::spawn("collect", c);
    let analytics = ConsumerProcess::start("analytics", &bootstrap, &dir, 1, &[]);
    wait_until(
        "the collector and the analytics consumer to be ready",
        Duration::from_secs(60),
        || http_get(collector, "/readyz").0 == 200 && http_get(analytics.http, "/readyz").0 == 200,
    );

    let out = Command::new("node")
        .arg(driver_dir.join("drive.mjs"))
        .args(["--collector", &format!("http://{collector}"), "--key", KEY])
        .args(["--page-port", &page_port.to_string(), "--user", "shopper-1"])
        .args(["--chromium", &chromium, "--timeout", "90"])
        .output()
        .expect("node runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser journey failed:\n{stderr}");
    let journey: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    let sent = &journey["events"];
    let total: u64 = sent.as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert!(
        sent["purchase"].as_u64() >= Some(1) && sent["add_to_cart"].as_u64() >= Some(1),
        "{journey}"
    );

    // In Kafka: every event the page sent, keyed by the shopper, enriched.
    let mut events = Vec::new();
    wait_until("the shopper's events in Kafka", Duration::from_secs(30), || {
        events = read_all(&bootstrap, ACTIVITIES).iter().map(Received::json).collect();
        events.len() as u64 >= total
    });
    assert_eq!(events.len() as u64, total, "each event once: {journey}");
    let user_agent = journey["user_agent"].as_str().unwrap();
    let origin = journey["origin"].as_str().unwrap();
    for e in &events {
        assert_eq!(e["user_id"], "shopper-1", "{e}");
        assert_eq!(e["session_id"], journey["session_id"], "one session: {e}");
        assert_eq!(e["ip_address"], "127.0.0.1", "from the socket: {e}");
        assert_eq!(e["user_agent"], user_agent, "from the header: {e}");
        assert_eq!(e["device"]["type"], "desktop", "{e}");
        assert_eq!(e["device"]["os"], "Linux", "{e}");
        assert_eq!(e["device"]["browser"], "HeadlessChrome", "{e}");
        assert_eq!(e["event_id"].as_str().map(str::len), Some(36), "{e}");
        assert!(e["received_at"].is_string() && e["client_timestamp"].is_string(), "{e}");
        assert!(e["page_url"].as_str().unwrap().starts_with(origin), "{e}");
    }
    let mut by_type = std::collections::BTreeMap::<String, u64>::new();
    for e in &events {
        *by_type
            .entry(e["event_type"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let sent_by_type: std::collections::BTreeMap<String, u64> = sent
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(by_type, sent_by_type);
    let purchase = events.iter().find(|e| e["event_type"] == "purchase").unwrap();
    assert!(
        purchase["properties"]["cart_value"].as_f64().unwrap() > 0.0,
        "{purchase}"
    );

    // The analytics consumer counts the shopper through the whole funnel.
    let mut report = serde_json::Value::Null;
    wait_until(
        "the analytics report to count every event",
        Duration::from_secs(30),
        || {
            let (status, body) = http_get(analytics.http, "/report");
            report = serde_json::from_str(&body).unwrap_or_default();
            status == 200 && report["total_events"].as_u64() == Some(total)
        },
    );
    for stage in ["page_view", "click", "search", "add_to_cart", "purchase"] {
        assert_eq!(report["funnel_users"][stage], 1, "{stage}: {report}");
    }
    assert_eq!(report["purchase_count"].as_u64(), sent["purchase"].as_u64());
    println!(
        "browser: chromium {} → collector → Kafka → analytics: {total} events ({}), funnel page_view→purchase 1 user, purchase via {}, {} ms in the browser",
        user_agent
            .split("HeadlessChrome/")
            .nth(1)
            .and_then(|v| v.split(' ').next())
            .unwrap_or("?"),
        sent_by_type
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        journey["exit"]["via"].as_str().unwrap_or("?"),
        journey["elapsed_ms"]
    );
}
