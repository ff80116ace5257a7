//! Hostile clients: the probes of an attacker holding a public write key,
//! replayed against the real processes (collector, fraud detector,
//! analytics) on real Kafka, scaled down to run in seconds. Each asserts the
//! bound that now holds; before it, each of these grew memory without limit,
//! dodged a rule, forged a duplicate or wrote to the operator's terminal.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

const KEY: &str = "hostile+key/with=base64";

/// Resident memory of a process, in MB.
fn rss_mb(process: &Process) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A process of the binary with its stdout in `out`, its HTTP port at the
/// returned address, ready.
fn spawn(command: &str, bootstrap: &str, env: &[(&str, &str)], out: &std::path::Path) -> (Process, SocketAddr) {
    let http = free_addr();
    let mut c = std::process::Command::new(binary());
    c.arg(command)
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("HTTP_ADDR", http.to_string())
        .env("LOG_LEVEL", "WARNING")
        .env("STATS_INTERVAL", "200")
        .envs(env.iter().copied())
        .stdout(std::fs::File::create(out).unwrap());
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let process = Process::spawn(command, c);
    wait_until(&format!("{command} to be ready"), Duration::from_secs(60), || {
        http_get(http, "/readyz").0 == 200
    });
    (process, http)
}

fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], events: &Value) -> HttpResponse {
    http_send(addr, "POST", path, headers, events.to_string().as_bytes())
}

fn authorised(addr: SocketAddr, events: &Value) -> HttpResponse {
    post(
        addr,
        "/v1/events",
        &[("Authorization", &format!("Bearer {KEY}"))],
        events,
    )
}

/// Opens `n` connections that each send `bytes` of headers and never finish
/// them; returns the open streams (kept open by the caller).
fn unfinished_headers(addr: SocketAddr, n: usize, bytes: usize) -> Vec<TcpStream> {
    let filler = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}", "a".repeat(bytes));
    (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
            let _ = s.write_all(filler.as_bytes());
            Some(s)
        })
        .collect()
}

/// Sends a request with a `bytes`-long User-Agent and returns the status
/// (0 when the server closed the connection without one).
fn huge_user_agent(addr: SocketAddr, bytes: usize) -> u16 {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nUser-Agent: {}\r\nContent-Length: 3\r\nConnection: close\r\n\r\n[1]",
        "M".repeat(bytes)
    );
    let _ = s.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn alerts_of(bootstrap: &str, user: &str) -> Vec<Value> {
    read_all(bootstrap, ALERTS)
        .iter()
        .map(Received::json)
        .filter(|a| a["user_id"] == user)
        .collect()
}

fn state_bytes(http: SocketAddr) -> f64 {
    let (_, body) = http_get(http, "/report");
    serde_json::from_str::<Value>(&body).map_or(0.0, |v| v["state_bytes"].as_f64().unwrap_or(0.0))
}

fn seen(http: SocketAddr) -> u64 {
    let (_, body) = http_get(http, "/report");
    serde_json::from_str::<Value>(&body).map_or(0, |v| {
        v["consumer"]["events_processed"].as_u64().unwrap_or(0) + v["consumer"]["events_rejected"].as_u64().unwrap_or(0)
    })
}

#[test]
fn a_public_write_key_cannot_exhaust_memory_dodge_rules_forge_duplicates_or_write_to_a_terminal() {
    let broker = kafka(3);
    let bootstrap = broker.bootstrap_servers().to_string();
    let dir = Scratch::new("hostile");
    let (collector, collect) = spawn(
        "collect",
        &bootstrap,
        &[("COLLECT_WRITE_KEYS", KEY), ("COLLECT_RATE_LIMIT", "0")],
        &dir.join("collect.out"),
    );
    let (fraud, fraud_http) = spawn("fraud", &bootstrap, &[], &dir.join("fraud.out"));
    let (analytics, analytics_http) = spawn("analytics", &bootstrap, &[], &dir.join("analytics.out"));
    let mut sent = 0u64;

    // 1. The user-agent cache and hyper's header buffer: 300 KB user agents
    // are refused (431) and cache nothing; 400 connections holding 30 KB of
    // unfinished headers hold at most that.
    let before = rss_mb(&collector);
    for _ in 0..200 {
        let status = huge_user_agent(collect, 300_000);
        assert!(status == 431 || status == 0, "a 300 KB header got {status}");
    }
    let held = unfinished_headers(collect, 400, 30_000);
    let during = rss_mb(&collector);
    drop(held);
    assert!(
        during - before < 64.0 && during < 256.0,
        "collector RSS {before:.0} → {during:.0} MB (chart limit 256 MiB)"
    );

    // 2 and 3. Long strings: 300 events each with a 60 KB city (fraud keeps
    // place names for evidence) and 300 with 15 KB page, product id and name
    // and city (analytics labels). Each is cut to MAX_LABEL_BYTES.
    let (fraud_before, fraud_state_before) = (rss_mb(&fraud), state_bytes(fraud_http));
    let analytics_before = rss_mb(&analytics);
    for batch in 0..30 {
        let events: Vec<Value> = (0..10)
            .map(|i| {
                let n = batch * 10 + i;
                json!({"user_id": format!("long-{n}"), "event_type": "page_view",
                       "location": {"country": "ZZ", "city": format!("{n}{}", "c".repeat(60_000))}})
            })
            .collect();
        assert_eq!(authorised(collect, &Value::Array(events)).status, 202);
        let events: Vec<Value> = (0..10)
            .map(|i| {
                let n = batch * 10 + i;
                let long = |tag: &str| format!("{tag}{n}{}", "x".repeat(15_000));
                json!({"user_id": format!("label-{n}"), "event_type": "page_view",
                       "page_url": format!("https://shop.example.com/{}", long("p")),
                       "properties": {"product_id": long("id"), "product_name": long("name")},
                       "location": {"country": "ZZ", "city": long("city")}})
            })
            .collect();
        assert_eq!(authorised(collect, &Value::Array(events)).status, 202);
    }
    sent += 600;
    wait_until(
        "the consumers to read the long strings",
        Duration::from_secs(60),
        || seen(fraud_http) >= sent && seen(analytics_http) >= sent,
    );
    let fraud_growth = rss_mb(&fraud) - fraud_before;
    let state_growth = (state_bytes(fraud_http) - fraud_state_before) / 1e6;
    assert!(
        fraud_growth < 16.0 + state_growth.max(0.0),
        "fraud RSS grew {fraud_growth:.1} MB while its state_bytes grew {state_growth:.1} MB"
    );
    let analytics_growth = rss_mb(&analytics) - analytics_before;
    let (_, metrics) = http_get(analytics_http, "/metrics");
    assert!(analytics_growth < 24.0, "analytics RSS grew {analytics_growth:.1} MB");
    assert!(
        rss_mb(&analytics) < 512.0 && rss_mb(&fraud) < 512.0,
        "over the chart's 512 MiB"
    );
    // 50 concurrent scrapes of that /metrics.
    let scrapes: Vec<_> = (0..50)
        .map(|_| std::thread::spawn(move || http_get(analytics_http, "/metrics").0))
        .collect();
    let peak = rss_mb(&analytics);
    assert!(
        scrapes.into_iter().all(|t| t.join().unwrap() == 200),
        "every scrape answered"
    );
    assert!(peak < 512.0, "analytics at {peak:.0} MB during 50 scrapes");
    assert!(metrics.len() < 2_000_000, "/metrics is {} bytes", metrics.len());

    // 4. The consumers' own port: unfinished headers are bounded there too.
    let before = rss_mb(&analytics);
    let held = unfinished_headers(analytics_http, 400, 30_000);
    let during = rss_mb(&analytics);
    drop(held);
    assert!(
        during - before < 32.0,
        "analytics RSS {before:.0} → {during:.0} MB under held connections"
    );

    // 7. A producer with topic access forges future records (Kafka
    // timestamp to match; Kafka itself refuses more than an hour ahead, its
    // message.timestamp.after.max.ms) between a user's events: the
    // partition's event time does not follow one user, so the user's next
    // cart is on time and completes the burst.
    let now = activity_tracker::eventtime::now_ms();
    let cart = |i: i64| json!({"user_id": "victim", "event_type": "add_to_cart", "properties": {"price": 5.0}, "event_id": format!("v-{i}")});
    assert_eq!(
        authorised(collect, &json!([cart(1), cart(2), cart(3), cart(4)])).status,
        202
    );
    let future = now + 50 * 60_000;
    let forged: Vec<Outgoing> = (0..5)
        .map(|i| {
            let json = json!({"event_id": format!("forged-{i}"), "user_id": "victim", "event_type": "page_view",
                              "timestamp": activity_tracker::eventtime::format_rfc3339_ms(future)});
            Outgoing::keyed("victim", json.to_string(), future)
        })
        .collect();
    produce(&bootstrap, ACTIVITIES, &forged);
    assert_eq!(authorised(collect, &json!([cart(5)])).status, 202);
    sent += 10;

    // 5. Dodging by timestamps: six carts and three purchases in one
    // request, stamped 2.6 minutes apart from six hours back, are judged
    // when they arrived.
    let six_hours_ago = activity_tracker::eventtime::now_ms() - 6 * 3_600_000;
    let burst: Vec<Value> = (0..9)
        .map(|i| {
            let t = activity_tracker::eventtime::format_rfc3339_ms(six_hours_ago + i * 156_000);
            let kind = if i < 6 { "add_to_cart" } else { "purchase" };
            json!({"user_id": "dodger", "event_type": kind, "timestamp": t, "properties": {"price": 20.0}})
        })
        .collect();
    assert_eq!(authorised(collect, &Value::Array(burst)).status, 202);
    // 6. One event id reused by three $900 purchases: three alerts, three ids.
    let reused: Vec<Value> = (0..3)
        .map(|_| json!({"event_id": "same-id", "user_id": "reuser", "event_type": "purchase", "properties": {"price": 900.0}}))
        .collect();
    assert_eq!(authorised(collect, &Value::Array(reused)).status, 202);
    // 8. Control characters in everything a client names, on an alerting
    // event (printed by the fraud console) and in the analytics report.
    let evil = "evil\u{1b}[2J\u{1b}]0;owned\u{7}\n🔴 FRAUD ALERT [FAKE]\u{202e}";
    let hostile = json!([{"user_id": evil, "event_type": "purchase", "page_url": format!("https://x/{evil}"),
        "properties": {"price": 900.0, "product_id": evil, "product_name": evil},
        "location": {"country": evil, "city": evil}, "device": {"type": evil, "os": evil, "browser": evil}}]);
    assert_eq!(authorised(collect, &hostile).status, 202);
    sent += 13;
    wait_until("the dodger's alerts", Duration::from_secs(60), || {
        let rules: Vec<Value> = alerts_of(&bootstrap, "dodger")
            .iter()
            .map(|a| a["rule"].clone())
            .collect();
        rules.contains(&json!("HIGH_VELOCITY")) && rules.contains(&json!("RAPID_PURCHASES"))
    });
    let high_value = || -> Vec<Value> {
        alerts_of(&bootstrap, "reuser")
            .into_iter()
            .filter(|a| a["rule"] == "HIGH_VALUE_PURCHASE")
            .collect()
    };
    wait_until(
        "the victim's fifth cart to raise HIGH_VELOCITY",
        Duration::from_secs(30),
        || {
            alerts_of(&bootstrap, "victim")
                .iter()
                .any(|a| a["rule"] == "HIGH_VELOCITY")
        },
    );
    wait_until("three alerts for the reused event id", Duration::from_secs(30), || {
        high_value().len() >= 3
    });
    let ids: std::collections::BTreeSet<String> = high_value()
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "three records, three alert ids: {ids:?}");
    wait_until("the hostile event's alert", Duration::from_secs(30), || {
        !alerts_of(&bootstrap, evil).is_empty() && seen(analytics_http) >= sent
    });
    let (_, report) = http_get(analytics_http, "/report");
    assert!(
        report.contains("\\u001b"),
        "the JSON report carries the text, escaped as JSON"
    );

    let mut fraud = fraud;
    let mut analytics = analytics;
    let mut collector = collector;
    for p in [&mut fraud, &mut analytics, &mut collector] {
        p.signal("TERM");
        assert_eq!(p.wait(Duration::from_secs(30)), 0, "{} exits cleanly", p.name);
    }
    for console in ["fraud.out", "analytics.out"] {
        let text = std::fs::read_to_string(dir.join(console)).unwrap();
        let bad: Vec<char> = text
            .chars()
            .filter(|&c| (c.is_control() && c != '\n') || c == '\u{202e}')
            .collect();
        assert!(bad.is_empty(), "{console} printed control characters {bad:?}");
    }
    let fraud_console = std::fs::read_to_string(dir.join("fraud.out")).unwrap();
    assert!(
        fraud_console.contains("evil\\u{1b}[2J"),
        "the hostile user's alert is printed, escaped"
    );
    assert!(
        !fraud_console.lines().any(|l| l.starts_with("🔴 FRAUD ALERT [FAKE]")),
        "a client printed a fake alert"
    );
    println!(
        "hostile: 200 × 300 KB user agents refused (431), 400 held connections: collector ≤ {during:.0} MB; 600 events with 20–60 KB strings: fraud +{fraud_growth:.1} MB (state +{state_growth:.1} MB), analytics +{analytics_growth:.1} MB, /metrics {} KB; five records forged 50 min ahead did not make a user's events late; a burst stamped hours apart raised HIGH_VELOCITY and RAPID_PURCHASES; a reused event id gave 3 alert ids; consoles free of control characters",
        metrics.len() / 1000
    );
}

/// Keys as browsers and backends send them, and the rate limit per IPv6
/// subscriber (/64), through the in-process collector.
#[test]
fn keys_are_read_as_sent_and_ipv6_clients_share_their_64s_rate_limit() {
    use activity_tracker::collect::{Collector, serve};
    let broker = broker(3);
    let bootstrap = broker.bootstrap_servers().to_string();
    let config = config(
        <activity_tracker::commands::collect::Collect as activity_tracker::commands::Run>::PROFILE,
        &bootstrap,
        &[
            ("COLLECT_WRITE_KEYS", KEY),
            ("COLLECT_TRUSTED_PROXIES", "1"),
            ("COLLECT_RATE_LIMIT", "1"),
            ("COLLECT_RATE_BURST", "3"),
        ],
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let shutdown = activity_tracker::shutdown::Shutdown::new();
    let addr = runtime.block_on(async {
        let collector = Collector::new(&config, activity_tracker::telemetry::Telemetry::new()).unwrap();
        serve(collector, config.http_addr, shutdown.clone()).await.unwrap().0
    });
    wait_until("the collector to reach Kafka", Duration::from_secs(30), || {
        http_get(addr, "/readyz").0 == 200
    });
    let one = |user: &str| json!([{"user_id": user, "event_type": "page_view"}]);
    let from = |ip: &str, headers: &[(&str, &str)]| {
        let mut h = vec![("X-Forwarded-For", ip)];
        h.extend_from_slice(headers);
        post(addr, "/v1/events", &h, &one("k")).status
    };
    let encoded = "hostile%2Bkey%2Fwith%3Dbase64";
    assert_eq!(
        post(
            addr,
            &format!("/v1/events?key={encoded}"),
            &[("X-Forwarded-For", "198.51.100.1")],
            &one("q")
        )
        .status,
        202,
        "the tracker's encodeURIComponent(key)"
    );
    let upper = format!("BEARER {KEY}");
    assert_eq!(
        from("198.51.100.2", &[("Authorization", &upper)]),
        202,
        "the scheme is case-insensitive"
    );
    let bearer = format!("Bearer {KEY}");
    let auth = [("Authorization", bearer.as_str())];
    // Burst of 3 for the /64: rotating the interface id does not renew it.
    let statuses: Vec<u16> = (1..=5)
        .map(|i| from(&format!("2001:db8:7:7:{i:x}::{i:x}"), &auth))
        .collect();
    assert_eq!(&statuses[..3], &[202, 202, 202], "{statuses:?}");
    assert!(
        statuses[3..].iter().all(|&s| s == 429),
        "one /64, one limit: {statuses:?}"
    );
    assert_eq!(from("2001:db8:7:8::1", &auth), 202, "another /64 has its own");
    shutdown.trigger();
    runtime.shutdown_timeout(Duration::from_secs(5));
    println!("hostile keys: ?key= percent-decoded, BEARER accepted, IPv6 rate-limited per /64");
}
