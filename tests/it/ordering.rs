//! Results are a function of the events: property tests over random
//! multi-user streams, without a broker.
//!
//! Each case draws a stream (users with ordinary sessions and bursts of bots,
//! several addresses and places), lets every event arrive up to `max_delay`
//! after its timestamp, and checks the detector against itself:
//! - the (user, rule) pairs raised are those of the same events in timestamp
//!   order;
//! - a hand-over at any point (the old owner stops, the new one replays from
//!   the first offset stamped at or after `event time − rebuild window` and
//!   goes live) raises exactly the alert ids of one owner processing it all.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::time::Duration;

use activity_tracker::analytics::AnalyticsProcessor;
use activity_tracker::config::{AnalyticsConfig, FraudConfig, IpPrivacy};
use activity_tracker::event::{Device, Event, EventType, Location, Properties};
use activity_tracker::fraud::{Alert, FraudDetector, FraudRules};
use activity_tracker::privacy::IpRenderer;
use activity_tracker::processor::{Mode, Processor};
use proptest::prelude::*;

const T0: i64 = 1_705_312_800_000;
const KINDS: [EventType; 5] = [
    EventType::PageView,
    EventType::Click,
    EventType::Search,
    EventType::AddToCart,
    EventType::Purchase,
];
const PLACES: [(&str, &str); 3] = [("US", "New York"), ("GB", "London"), ("DE", "Berlin")];

#[derive(Clone, Debug)]
struct Ev {
    id: usize,
    user: u8,
    t_ms: i64,
    kind: u8,
    ip: u8,
    place: u8,
    amount: u16,
}

impl Ev {
    fn event(&self) -> Event<'static> {
        let (country, city) = PLACES[self.place as usize];
        Event {
            event_id: Cow::Owned(format!("evt-{}", self.id)),
            timestamp_ms: self.t_ms,
            user_id: Cow::Owned(format!("user-{}", self.user)),
            session_id: None,
            event_type: KINDS[self.kind as usize],
            page_url: None,
            referrer: None,
            user_agent: None,
            ip_address: Some(Cow::Owned(format!("10.0.{}.{}", self.user, self.ip))),
            properties: Properties {
                price: Some(f64::from(self.amount)),
                ..Properties::default()
            },
            device: Device::default(),
            location: Location {
                country: Some(Cow::Borrowed(country)),
                city: Some(Cow::Borrowed(city)),
                timezone: None,
            },
            record: None,
            received_ms: None,
        }
    }
}

/// One user's activity: a sequence of (gap before, kind, ip, place, amount).
fn user_activity() -> impl Strategy<Value = Vec<(i64, u8, u8, u8, u16)>> {
    let step = (
        prop_oneof![
            6 => 5_000i64..90_000,   // browsing
            3 => 200i64..12_000,     // a burst (bot, card tester)
            1 => 300_000i64..2_400_000, // away for a while
        ],
        prop_oneof![4 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8), 3 => Just(3u8), 2 => Just(4u8)],
        prop_oneof![8 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)],
        prop_oneof![10 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        1u16..900,
    );
    prop::collection::vec(step, 1..30)
}

/// A stream of several users, in timestamp order, with each event's delay.
fn stream(max_delay_ms: i64) -> impl Strategy<Value = (Vec<Ev>, Vec<i64>)> {
    prop::collection::vec((user_activity(), 0i64..600_000), 3..9).prop_flat_map(move |users| {
        let mut events = Vec::new();
        for (u, (steps, start)) in users.iter().enumerate() {
            let mut t = T0 + start;
            for &(gap, kind, ip, place, amount) in steps {
                t += gap;
                events.push(Ev {
                    id: 0,
                    user: u as u8,
                    t_ms: t,
                    kind,
                    ip,
                    place,
                    amount,
                });
            }
        }
        events.sort_by_key(|e| (e.t_ms, e.user));
        for (i, e) in events.iter_mut().enumerate() {
            e.id = i;
        }
        let n = events.len();
        (Just(events), prop::collection::vec(0..=max_delay_ms, n))
    })
}

/// The arrival order: each event arrives `delay` after its timestamp.
fn arrival(events: &[Ev], delays: &[i64]) -> Vec<Ev> {
    let mut order: Vec<(i64, usize)> = events.iter().zip(delays).map(|(e, d)| (e.t_ms + d, e.id)).collect();
    order.sort_unstable();
    order.into_iter().map(|(_, id)| events[id].clone()).collect()
}

fn detector(lateness: Duration) -> FraudDetector {
    let config = FraudConfig {
        allowed_lateness: lateness,
        ..FraudConfig::default()
    };
    FraudDetector::new(FraudRules::from_config(&config), IpRenderer::new(IpPrivacy::None))
}

/// Events from three users a day after the stream: the watermark passes
/// everything and every pending decision is made.
fn flush(events: &[Ev]) -> Vec<Ev> {
    let end = events.iter().map(|e| e.t_ms).max().unwrap_or(T0) + 86_400_000;
    (0..3)
        .map(|i| Ev {
            id: 1_000_000 + i,
            user: 200 + i as u8,
            t_ms: end,
            kind: 0,
            ip: 0,
            place: 0,
            amount: 1,
        })
        .collect()
}

fn run(
    d: &mut FraudDetector,
    state: &mut <FraudDetector as Processor>::State,
    events: &[Ev],
    mode: Mode,
) -> Vec<Alert> {
    let mut out = Vec::new();
    for e in events {
        d.process(state, &e.event(), mode, &mut out);
    }
    out
}

fn single_owner(events: &[Ev], lateness: Duration) -> Vec<Alert> {
    let mut d = detector(lateness);
    let mut state = d.new_state();
    let mut alerts = run(&mut d, &mut state, events, Mode::Live);
    alerts.extend(run(&mut d, &mut state, &flush(events), Mode::Live));
    alerts
}

fn pairs(alerts: &[Alert]) -> BTreeSet<(String, &'static str)> {
    alerts.iter().map(|a| (a.user_id.clone(), a.rule.as_str())).collect()
}

/// Alert ids with what they are about, sorted.
fn ids(alerts: &[Alert]) -> Vec<(String, &'static str, String, String)> {
    let mut ids: Vec<_> = alerts
        .iter()
        .map(|a| {
            (
                a.alert_id.clone(),
                a.rule.as_str(),
                a.user_id.clone(),
                a.event_id.clone(),
            )
        })
        .collect();
    ids.sort();
    ids
}

/// The old owner processes `arrived[..k]` and commits its event time; the
/// new one replays from the first offset stamped at or after
/// `event time − rebuild window` (what Kafka's offsets-for-times answers)
/// and goes live at `k`.
fn handed_over(arrived: &[Ev], k: usize, lateness: Duration) -> Vec<Alert> {
    let mut old = detector(lateness);
    let mut state = old.new_state();
    let mut alerts = run(&mut old, &mut state, &arrived[..k], Mode::Live);
    let committed_time = old.event_time_ms(&state);

    let mut new = detector(lateness);
    let mut state = new.new_state();
    let target = committed_time.saturating_sub(new.rebuild_window_ms());
    let from = arrived.iter().position(|e| e.t_ms >= target).unwrap_or(k).min(k);
    alerts.extend(run(&mut new, &mut state, &arrived[from..k], Mode::Warmup));
    alerts.extend(run(&mut new, &mut state, &arrived[k..], Mode::Live));
    alerts.extend(run(&mut new, &mut state, &flush(arrived), Mode::Live));
    alerts
}

/// The distinct-user figures (sessions aside: a session is cut where a
/// new session id first *arrives*) after `arrived`, a new owner taking over
/// at `k` and replaying as the fraud detector's does.
fn analytics_figures(arrived: &[Ev], k: usize, lateness: Duration) -> (u64, [u64; 5], u64, Vec<(String, u64)>) {
    let config = AnalyticsConfig {
        allowed_lateness: lateness,
        ..AnalyticsConfig::default()
    };
    let mut old = AnalyticsProcessor::new(config.clone());
    let mut state = old.new_state();
    let mut none = Vec::new();
    for e in &arrived[..k] {
        old.process(&mut state, &e.event(), Mode::Live, &mut none);
    }
    let committed_time = old.event_time_ms(&state);
    let mut new = AnalyticsProcessor::new(config);
    let mut state = new.new_state();
    let target = committed_time.saturating_sub(new.rebuild_window_ms());
    let from = arrived.iter().position(|e| e.t_ms >= target).unwrap_or(k).min(k);
    for (i, e) in arrived.iter().enumerate().skip(from) {
        let mode = if i < k { Mode::Warmup } else { Mode::Live };
        new.process(&mut state, &e.event(), mode, &mut none);
    }
    let f = new.window_figures(&state);
    (f.active_users, f.funnel_users, f.events_in_window, f.top_users)
}

fn check(
    events: &[Ev],
    delays: &[i64],
    handover: prop::sample::Index,
    lateness: Duration,
) -> Result<(), TestCaseError> {
    let in_order = single_owner(events, lateness);
    let arrived = arrival(events, delays);
    let figures = analytics_figures(events, 0, lateness);
    prop_assert_eq!(
        &figures,
        &analytics_figures(&arrived, 0, lateness),
        "analytics: timestamp vs arrival order"
    );
    let shuffled = single_owner(&arrived, lateness);
    prop_assert_eq!(pairs(&in_order), pairs(&shuffled), "timestamp order vs arrival order");
    let k = handover.index(arrived.len() + 1);
    prop_assert_eq!(
        &analytics_figures(&arrived, 0, lateness),
        &analytics_figures(&arrived, k, lateness),
        "analytics: hand-over after {} of {} events",
        k,
        arrived.len()
    );
    prop_assert_eq!(
        ids(&shuffled),
        ids(&handed_over(&arrived, k, lateness)),
        "hand-over after {} of {} events",
        k,
        arrived.len()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Defaults: ALLOWED_LATENESS 60 s, each event up to 30 s late.
    #[test]
    fn alerts_do_not_depend_on_arrival_order_or_hand_over(
        (events, delays) in stream(30_000),
        handover in any::<prop::sample::Index>(),
    ) {
        check(&events, &delays, handover, Duration::from_secs(60))?;
    }

    /// ALLOWED_LATENESS 15 min, each event up to 5 minutes late.
    #[test]
    fn alerts_do_not_depend_on_five_minutes_of_disorder(
        (events, delays) in stream(300_000),
        handover in any::<prop::sample::Index>(),
    ) {
        check(&events, &delays, handover, Duration::from_secs(900))?;
    }
}

/// The black-box form of the same claim: simulated traffic through Kafka,
/// once in timestamp order and once with every event up to `max_delay_ms`
/// late (its Kafka timestamp is its own, as a client batching or retrying
/// would send it), processed by the consumers with `extra` settings. Both
/// runs must raise the same (user, rule) pairs.
fn same_alerts_through_kafka(max_delay_ms: i64, extra_settings: &[(&str, &str)]) {
    use crate::support::*;
    use activity_tracker::commands::{Run, demo::Demo};
    use activity_tracker::producer::simulator::{Simulator, SimulatorConfig};

    let broker = kafka(3);
    let bootstrap = broker.bootstrap_servers().to_string();
    let mut sim = Simulator::new(&SimulatorConfig {
        seed: 7,
        users: 400,
        fraud_rate: 0.2,
        events_per_second: 10.0,
    });
    sim.warm_up(T0);
    // Ten minutes of traffic, then visitors two hours later so that every
    // partition's watermark passes every purchase.
    let mut events: Vec<(String, Vec<u8>, i64)> = (0..6_000)
        .map(|i| {
            let e = sim.next_event(T0 + i * 100);
            (e.user_id.to_string(), e.to_json(), e.timestamp_ms)
        })
        .collect();
    let end = T0 + 600_000 + 7_200_000;
    for i in 0..30 {
        let user = format!("visitor-{i}");
        let json = format!(
            r#"{{"event_id":"visit-{i}","timestamp":"{}","user_id":"{user}","event_type":"page_view"}}"#,
            activity_tracker::eventtime::Rfc3339(end)
        );
        events.push((user, json.into_bytes(), end));
    }
    // Each event arrives up to `max_delay_ms` after its time (a fixed
    // pseudo-random delay per event).
    let mut arrival: Vec<(i64, usize)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mixed = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
            (e.2 + (mixed % (max_delay_ms as u64 + 1)) as i64, i)
        })
        .collect();
    arrival.sort_unstable();
    let reordered = arrival
        .windows(2)
        .filter(|w| events[w[0].1].2 > events[w[1].1].2)
        .count();
    assert!(
        reordered > 1_000,
        "the arrival order differs: {reordered} inversions of neighbours"
    );

    let mut raised = Vec::new();
    for (run, order) in [
        ("ordered", (0..events.len()).collect::<Vec<_>>()),
        ("shuffled", arrival.iter().map(|&(_, i)| i).collect()),
    ] {
        let (activities, alerts) = (format!("{run}-activities"), format!("{run}-alerts"));
        let (fraud_group, analytics_group) = (format!("{run}-fraud"), format!("{run}-analytics"));
        broker.create_topic(&activities, 3);
        broker.create_topic(&alerts, 3);
        let messages: Vec<Outgoing> = order
            .iter()
            .map(|&i| Outgoing::keyed(&events[i].0, events[i].1.clone(), events[i].2))
            .collect();
        produce(&bootstrap, &activities, &messages);
        let mut settings = vec![
            ("KAFKA_ACTIVITIES_TOPIC", activities.as_str()),
            ("KAFKA_ALERTS_TOPIC", alerts.as_str()),
            ("KAFKA_FRAUD_GROUP", fraud_group.as_str()),
            ("KAFKA_ANALYTICS_GROUP", analytics_group.as_str()),
        ];
        settings.extend_from_slice(extra_settings);
        let running = InProcess::start(&config(Demo::PROFILE, &bootstrap, &settings));
        running.wait_seen(events.len() as u64, Duration::from_secs(120));
        wait_until("every alert acknowledged", Duration::from_secs(30), || {
            running
                .fraud
                .shared
                .status
                .read()
                .map(|s| s.partitions.iter().all(|p| p.effects_in_flight == 0))
                .unwrap_or(false)
        });
        let (_, _, metrics) = running.stop();
        let late: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("activity_late_events_total{group=\"") && l.contains(&format!("\"{run}-")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(late, 0.0, "{run}: no event is behind the watermark");
        let pairs: BTreeSet<(String, String)> = read_all(&bootstrap, &alerts)
            .iter()
            .map(|a| {
                let v = a.json();
                (
                    v["user_id"].as_str().unwrap().to_string(),
                    v["rule"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        raised.push(pairs);
    }
    let rules: BTreeSet<&str> = raised[0].iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(rules.len(), 6, "the traffic trips every rule: {rules:?}");
    assert!(raised[0].len() > 100, "{} pairs", raised[0].len());
    let missing: Vec<_> = raised[0].difference(&raised[1]).collect();
    let extra: Vec<_> = raised[1].difference(&raised[0]).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "shuffled arrival changed the alerts: {} missing {missing:?}, {} extra {extra:?} (of {})",
        missing.len(),
        extra.len(),
        raised[0].len()
    );
    println!(
        "ordering: {} events through Kafka, in timestamp order and with each up to {} s late ({reordered} neighbours inverted; {}): the same {} (user, rule) pairs, all six rules",
        events.len(),
        max_delay_ms / 1000,
        if extra_settings.is_empty() {
            "defaults".to_string()
        } else {
            extra_settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        },
        raised[0].len()
    );
}

/// With the defaults, each event up to 30 s late.
#[test]
fn through_kafka_thirty_seconds_of_disorder_changes_no_alert() {
    same_alerts_through_kafka(30_000, &[]);
}

/// With ALLOWED_LATENESS=15m, each event up to five minutes late.
#[test]
fn through_kafka_five_minutes_of_disorder_changes_no_alert() {
    same_alerts_through_kafka(300_000, &[("ALLOWED_LATENESS", "15m")]);
}
