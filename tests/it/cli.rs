//! The binary as a user runs it: configuration errors, the seed's
//! multi-terminal walkthrough over TCP (broker, produce, analytics, fraud as
//! separate processes), and the one-command demo.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;
use serde_json::Value;

/// `activity-tracker <args>` with a clean environment of our variables.
fn at(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Command {
    let mut c = Command::new(binary());
    c.args(args)
        .current_dir(dir)
        .env("LOG_LEVEL", "WARNING")
        .env("HTTP_ADDR", "127.0.0.1:0");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// `activity-tracker broker` as a process, and the bootstrap address it
/// prints as its first line.
fn broker_process(dir: &Path) -> (Process, String) {
    let mut broker_cmd = at(&["broker"], &[], dir);
    broker_cmd.stdout(Stdio::piped());
    let mut broker = Process::spawn("broker", broker_cmd);
    let mut first_line = String::new();
    BufReader::new(broker.child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    let bootstrap = first_line
        .trim()
        .strip_prefix("KAFKA_BOOTSTRAP_SERVERS=")
        .unwrap_or_else(|| panic!("first line was {first_line:?}"))
        .to_string();
    (broker, bootstrap)
}

fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("cli-{name}"))
}

#[test]
fn bad_configuration_is_a_one_line_error_with_exit_code_2() {
    let dir = scratch("config");
    for (var, value) in [
        ("EVENTS_PER_SECOND", "fast"),
        ("VELOCITY_THRESHOLD", "-5"),
        ("HIGH_VALUE_THRESHOLD", "-1"),
    ] {
        let out = at(&["produce"], &[(var, value)], &dir).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with(&format!("error: {var}=")), "{stderr}");
        assert!(!stderr.contains("panicked"));
    }
    // The collector refuses to run open to the world or with nonsense.
    for (env, says) in [
        (vec![], "collect needs at least one write key"),
        (
            vec![("COLLECT_WRITE_KEYS", "short")],
            "COLLECT_WRITE_KEYS=\"5 characters\"",
        ),
        (
            vec![
                ("COLLECT_WRITE_KEYS", "long-enough-key"),
                ("COLLECT_ALLOWED_ORIGINS", "shop.example.com"),
            ],
            "COLLECT_ALLOWED_ORIGINS=",
        ),
        (
            vec![("COLLECT_WRITE_KEYS_FILE", "/nonexistent/keys")],
            "COLLECT_WRITE_KEYS_FILE: cannot read /nonexistent/keys",
        ),
    ] {
        let out = at(&["collect"], &env, &dir).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(says), "{says} in {stderr}");
        assert!(!stderr.contains("long-enough-key"), "keys are never printed");
    }
    // A .env file in the working directory is read; the environment wins.
    std::fs::write(dir.join(".env"), "EVENTS_PER_SECOND=sluggish\n").unwrap();
    let out = at(&["config"], &[], &dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("EVENTS_PER_SECOND=\"sluggish\""));
    let out = at(&["config"], &[("EVENTS_PER_SECOND", "25")], &dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("EVENTS_PER_SECOND=25"));
    // Flags beat both.
    let out = at(
        &["config", "--events-per-second", "99"],
        &[("EVENTS_PER_SECOND", "25")],
        &dir,
    )
    .output()
    .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("EVENTS_PER_SECOND=99"));
    // Unknown flags are clap errors, also exit code 2.
    let out = at(&["produce", "--no-such-flag"], &[], &dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_seeds_walkthrough_runs_as_separate_processes_over_tcp() {
    let dir = scratch("walkthrough");
    let (mut broker, bootstrap) = broker_process(&dir);
    let kafka = [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
        ("DRAIN_TIMEOUT", "5s"),
    ];

    let analytics_report = dir.join("analytics.json");
    let fraud_report = dir.join("fraud.json");
    let mut analytics = Process::spawn("analytics", {
        let mut c = at(
            &["analytics", "--report-file", analytics_report.to_str().unwrap()],
            &kafka,
            &dir,
        );
        c.stdout(Stdio::null());
        c
    });
    let mut fraud = Process::spawn("fraud", {
        let mut c = at(
            &["fraud", "--report-file", fraud_report.to_str().unwrap()],
            &kafka,
            &dir,
        );
        c.stdout(Stdio::null());
        c
    });
    let truth = dir.join("truth.jsonl");
    let produced = at(
        &[
            "produce",
            "--max-events",
            "3000",
            "--events-per-second",
            "20",
            "--sim-seed",
            "7",
            "--sim-start-time",
            "2024-01-15T10:00:00Z",
            "--truth-file",
            truth.to_str().unwrap(),
        ],
        &kafka,
        &dir,
    )
    .output()
    .unwrap();
    let out = String::from_utf8_lossy(&produced.stdout);
    assert_eq!(
        produced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    assert!(out.contains("📊 Events sent: 3000"), "{out}");
    assert!(out.contains("Delivered         : 3000"), "{out}");
    assert!(std::fs::read_to_string(&truth).unwrap().lines().count() > 10);

    // Both consumer groups commit the whole topic, then stop on SIGTERM.
    let ends: std::collections::BTreeMap<i32, i64> = high_watermarks(&bootstrap, ACTIVITIES, 6)
        .into_iter()
        .filter(|(_, h)| *h > 0)
        .collect();
    assert_eq!(ends.values().sum::<i64>(), 3000);
    for group in ["analytics-processors", "fraud-detectors"] {
        wait_until(
            &format!("{group} to commit everything"),
            Duration::from_secs(90),
            || committed(&bootstrap, group, ACTIVITIES, 6) == ends,
        );
    }
    analytics.signal("TERM");
    fraud.signal("TERM");
    assert_eq!(analytics.wait(Duration::from_secs(30)), 0);
    assert_eq!(fraud.wait(Duration::from_secs(30)), 0);

    let a: Value = serde_json::from_str(&std::fs::read_to_string(&analytics_report).unwrap()).unwrap();
    assert_eq!(a["total_events"], 3000);
    let by_type: u64 = a["event_types"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_type, 3000);
    assert!(a["purchase_count"].as_u64().unwrap() > 0);
    let f: Value = serde_json::from_str(&std::fs::read_to_string(&fraud_report).unwrap()).unwrap();
    assert_eq!(f["events_analyzed"], 3000);
    assert!(f["alerts_total"].as_u64().unwrap() > 10);
    assert_eq!(
        read_all(&bootstrap, ALERTS).len() as u64,
        f["alerts_total"].as_u64().unwrap()
    );

    broker.signal("INT");
    assert_eq!(broker.wait(Duration::from_secs(15)), 0);
}

#[test]
fn demo_with_max_events_stops_by_itself_with_every_summary() {
    let dir = scratch("demo");
    let out = at(
        &["demo", "--max-events", "400", "--events-per-second", "400"],
        &[],
        &dir,
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for section in [
        "Embedded Kafka broker",
        "Events sent       : 400",
        "PRODUCER FINAL STATISTICS",
        "FINAL ANALYTICS SUMMARY",
        "FRAUD DETECTION SUMMARY",
    ] {
        assert!(stdout.contains(section), "{section} missing:\n{stdout}");
    }
    assert_eq!(
        stdout.matches("⏱️  400 events processed").count(),
        2,
        "both consumers processed all 400:\n{stdout}"
    );
}

/// The `kubectl scale` demo on a laptop, configured by the chart itself: the
/// fleet reads the rendered Deployment (CI keeps this file equal to a fresh
/// `helm template`), runs its replicas as processes against an embedded
/// broker, scales them and prints who owns which partition.
#[test]
fn fleet_runs_the_charts_rendered_deployment_and_scales_it() {
    let dir = scratch("fleet-manifest");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/activity-tracker.yaml");
    let manifest = manifest.to_str().unwrap();
    let mut command = at(
        &[
            "fleet",
            "--manifest",
            manifest,
            "--workload",
            "fraud",
            "--plan",
            "3",
            "--step",
            "1s",
        ],
        &[],
        &dir,
    );
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut fleet = Process::spawn("fleet", command);
    let stdout = fleet.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let mut tables = 0;
    wait_until(
        "two ownership tables (1, then 3 replicas)",
        Duration::from_secs(150),
        || {
            while let Ok(line) = rx.try_recv() {
                tables += usize::from(line.starts_with("🔁"));
                lines.push(line);
            }
            tables >= 2 && lines.iter().rev().take_while(|l| !l.starts_with("🔁")).count() >= 3
        },
    );
    let text = lines.join("\n");
    let header = lines
        .iter()
        .find(|l| l.starts_with("📄 Deployment activity-tracker-fraud from the manifest: `fraud`, "))
        .unwrap_or_else(|| panic!("no workload line:\n{text}"));
    // The first table has the chart's replica count.
    let chart_replicas = header.split(", ").nth(1).unwrap().split(' ').next().unwrap();
    let first = lines.iter().find(|l| l.starts_with("🔁")).unwrap();
    assert!(first.starts_with(&format!("🔁 {chart_replicas} replica")), "{text}");
    assert!(text.contains("not used locally: KAFKA_BOOTSTRAP_SERVERS"), "{text}");
    // The last table: three replicas sharing the chart's 6 partitions, in
    // the chart's group (named after the release, activity-tracker).
    let last = &lines[lines.iter().rposition(|l| l.starts_with("🔁")).unwrap()..];
    assert!(
        last[0].contains("3 replicas of fraud (group activity-tracker-fraud-detectors)"),
        "{text}"
    );
    let mut owned: Vec<i64> = last[1..4]
        .iter()
        .flat_map(|l| {
            let list = l
                .split('[')
                .nth(1)
                .and_then(|r| r.split(']').next())
                .unwrap_or_default();
            list.split(',')
                .filter_map(|p| p.trim().parse::<i64>().ok())
                .collect::<Vec<_>>()
        })
        .collect();
    owned.sort_unstable();
    assert_eq!(
        owned,
        vec![0, 1, 2, 3, 4, 5],
        "every partition owned exactly once:\n{text}"
    );

    use std::io::Write;
    writeln!(fleet.child.stdin.as_mut().unwrap(), "quit").unwrap();
    assert_eq!(
        fleet.wait(Duration::from_secs(60)),
        0,
        "the fleet stops its replicas and exits"
    );
}

/// The collector starts without brokers (answering 503, not ready), says
/// where it listens, and stops cleanly on SIGTERM.
/// (Its first log line used to be lost: a per-layer filter dropped the next
/// event after a refused `log` record from rdkafka.)
#[test]
fn collect_starts_without_brokers_logs_where_it_listens_and_stops_on_sigterm() {
    let dir = scratch("collect");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = at(
        &["collect"],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", &format!("127.0.0.1:{unreachable}")),
            ("HTTP_ADDR", &addr.to_string()),
            ("COLLECT_WRITE_KEYS", "cli-test-key"),
            ("LOG_LEVEL", "INFO"),
        ],
        &dir,
    );
    c.stderr(Stdio::piped()).stdout(Stdio::null());
    let mut p = Process::spawn("collect", c);
    wait_until("the collector to listen", Duration::from_secs(30), || {
        http_get(addr, "/healthz").0 == 200
    });
    assert_eq!(http_get(addr, "/readyz").0, 503, "not ready without brokers");
    p.signal("TERM");
    assert_eq!(p.wait(Duration::from_secs(30)), 0, "clean exit on SIGTERM");
    let mut stderr = String::new();
    std::io::Read::read_to_string(p.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains(&format!("collector on http://{addr}")), "{stderr}");
}

/// Collects a child's stdout, line by line, on a thread of its own, so a
/// test can poll what has been printed so far.
fn collect_lines(stream: impl std::io::Read + Send + 'static) -> std::sync::Arc<std::sync::Mutex<String>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    seen
}

/// The README's first command as a new user runs it: the default rate of
/// 10 events/s, nothing configured. Within 30 s the output shows the
/// producer's progress, a full analytics report and alerts of several
/// rules; Ctrl+C prints every summary and exits 0.
#[test]
fn demo_at_the_default_rate_shows_the_whole_system_within_30_s_and_stops_on_ctrl_c() {
    let dir = scratch("demo-default");
    let mut c = at(&["demo"], &[], &dir);
    c.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut demo = Process::spawn("demo", c);
    let out = collect_lines(demo.child.stdout.take().unwrap());
    let report_sections = [
        "📊 Events sent:",
        "📊 ANALYTICS AGGREGATION REPORT",
        "📈 Event Type Distribution:",
        "📄 Top 10 Pages:",
        "🎯 Conversion Funnel",
        "Cart → Purchase",
        "💰 Revenue Analytics:",
        "Avg Order Value",
        "Top Products by Revenue",
        "Revenue by Hour",
        "🛍️  Top 5 Popular Products:",
        "🌍 Geographic Distribution:",
        "Top Cities",
        "📱 Device Distribution:",
        "Browsers:",
        "OS      :",
        "👥 User Activity",
        "Active Users",
        "Avg Session       :",
    ];
    let alert_rules = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.split("FRAUD ALERT [").nth(1))
            .filter_map(|rest| rest.split(']').next())
            .map(str::to_string)
            .collect()
    };
    let started = std::time::Instant::now();
    wait_until("a full report and alerts of two rules", Duration::from_secs(30), || {
        let text = out.lock().unwrap();
        report_sections.iter().all(|s| text.contains(s)) && alert_rules(&text).len() >= 2
    });
    let within = started.elapsed();
    demo.signal("INT");
    assert_eq!(demo.wait(Duration::from_secs(30)), 0, "Ctrl+C exits 0");
    wait_until("the summaries to be read", Duration::from_secs(5), || {
        let text = out.lock().unwrap();
        text.contains("FRAUD DETECTION SUMMARY")
    });
    let text = out.lock().unwrap().clone();
    for summary in [
        "PRODUCER FINAL STATISTICS",
        "FINAL ANALYTICS SUMMARY",
        "FRAUD DETECTION SUMMARY",
    ] {
        assert!(text.contains(summary), "{summary} missing:\n{text}");
    }
    println!(
        "demo: report with {} sections and alerts of {:?} after {:.1} s at the default rate; Ctrl+C printed every summary, exit 0",
        report_sections.len(),
        alert_rules(&text),
        within.as_secs_f64()
    );
}

/// A pod told to stop while its brokers are gone must still exit within its
/// grace period: the final commit cannot be answered, and librdkafka's own
/// synchronous commit would wait for ever. The consumer stops within
/// SHUTDOWN_TIMEOUT by itself, exit 0 — the watchdog behind it (exit 1,
/// WATCHDOG_SLACK later) is not needed.
#[test]
fn a_consumer_stops_within_its_shutdown_timeout_when_the_brokers_are_gone() {
    let dir = scratch("stop-without-brokers");
    let (mut broker, bootstrap) = broker_process(&dir);
    let shutdown_timeout = Duration::from_secs(4);
    let env = [
        ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
        ("DRAIN_TIMEOUT", "3s"),
        ("SHUTDOWN_TIMEOUT", "4s"),
    ];
    let mut fraud = ConsumerProcess::start("fraud", &bootstrap, &dir, 0, &env);
    let produced = at(
        &["produce", "--max-events", "300", "--events-per-second", "0"],
        &[("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str())],
        &dir,
    )
    .output()
    .unwrap();
    assert_eq!(produced.status.code(), Some(0));
    wait_until("fraud to process the events", Duration::from_secs(60), || {
        fraud.processed() >= 300
    });
    broker.signal("KILL");
    broker.wait(Duration::from_secs(10));
    let stop = std::time::Instant::now();
    fraud.process.signal("TERM");
    let code = fraud
        .process
        .wait(shutdown_timeout + activity_tracker::shutdown::WATCHDOG_SLACK + Duration::from_secs(10));
    let took = stop.elapsed();
    assert_eq!(
        code, 0,
        "stopped by itself, not by the watchdog (exit 1), after {took:?}"
    );
    assert!(took <= shutdown_timeout, "exit within SHUTDOWN_TIMEOUT: {took:?}");
    println!(
        "stop without brokers: exit 0 {:.1} s after SIGTERM (SHUTDOWN_TIMEOUT 4 s)",
        took.as_secs_f64()
    );
}
