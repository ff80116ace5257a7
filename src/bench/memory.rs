//! Phase 6: the memory of the pure processors, per tracked fraud user and
//! for analytics at many distinct users.

use crate::analytics::AnalyticsProcessor;
use crate::config::Config;
use crate::event::{Device, Event, EventType, Location, Properties};
use crate::fraud::{FraudDetector, FraudRules};
use crate::privacy::IpRenderer;
use crate::processor::{Mode, Processor};

use super::targets::{Figures, POD_USERS};
use super::{BenchOptions, Row, rss_bytes, thousands};

/// Memory of the pure processors: per tracked fraud user, and analytics at
/// many distinct users.
pub(super) fn memory(config: &Config, options: &BenchOptions, figures: &mut Figures) -> Vec<Row> {
    let mut rows = Vec::new();
    let t0 = 1_705_312_800_000;
    for &users in &options.fraud_users {
        let mut fraud = FraudDetector::new(
            FraudRules::from_config(&config.fraud),
            IpRenderer::new(config.ip_privacy.clone()),
        );
        let mut state = fraud.new_state();
        let rss0 = rss_bytes();
        let mut out = Vec::new();
        // Each user: a page view, an add-to-cart and a purchase from one
        // address, within the hour the widest rule remembers.
        // Spread over 50 minutes, within the widest window: every user is
        // still tracked at the end, however many there are.
        let at = |u: u64| t0 + (u as i64 * 3_000_000) / users.max(1) as i64;
        for u in 0..users {
            let user = format!("user-{u}");
            let ip = format!("10.{}.{}.{}", (u >> 16) & 255, (u >> 8) & 255, u & 255);
            for (k, event_type) in [EventType::PageView, EventType::AddToCart, EventType::Purchase]
                .into_iter()
                .enumerate()
            {
                let e = synthetic(&user, &ip, event_type, at(u) + k as i64);
                fraud.process(&mut state, &e, Mode::Live, &mut out);
                out.clear();
            }
        }
        let rss = rss_bytes().saturating_sub(rss0);
        let per_user = state.heap_bytes() as f64 / state.tracked_users().max(1) as f64;
        figures.fraud_bytes_per_user = Some(per_user);
        if users == POD_USERS {
            figures.fraud_pod_bytes = Some(state.heap_bytes() as f64);
        }
        rows.push(Row {
            what: format!("fraud state, {} users", thousands(users as f64)),
            value: format!(
                "{:.0} bytes per user",
                state.heap_bytes() as f64 / state.tracked_users().max(1) as f64
            ),
            note: format!(
                "{} users tracked, {} MB of state; RSS grew {} MB",
                state.tracked_users(),
                state.heap_bytes() / 1_000_000,
                rss / 1_000_000
            ),
        });
    }

    // Analytics: one pod owning 12 partitions, every event a new user.
    let mut analytics = AnalyticsProcessor::new(config.analytics.clone());
    let mut states: Vec<_> = (0..12).map(|_| analytics.new_state()).collect();
    let rss0 = rss_bytes();
    let mut none = Vec::new();
    let users = options.analytics_users;
    for u in 0..users {
        let user = format!("user-{u}");
        let e = synthetic(&user, "10.0.0.1", EventType::PageView, t0 + (u as i64) / 1000);
        analytics.process(&mut states[(u % 12) as usize], &e, Mode::Live, &mut none);
    }
    let heap: usize = states.iter().map(|s| s.heap_bytes()).sum();
    let tracked: usize = states.iter().map(|s| s.tracked_users()).sum();
    if users == POD_USERS {
        figures.analytics_pod_bytes = Some(heap as f64);
    }
    rows.push(Row {
        what: format!("analytics state, {} distinct users", thousands(users as f64)),
        value: format!("{} MB", heap / 1_000_000),
        note: format!(
            "12 partitions; {tracked} users tracked exactly (cap {} per partition), the rest in HyperLogLog sketches; RSS grew {} MB",
            config.analytics.max_users_per_partition,
            rss_bytes().saturating_sub(rss0) / 1_000_000
        ),
    });
    rows
}

fn synthetic<'a>(user: &'a str, ip: &'a str, event_type: EventType, t: i64) -> Event<'a> {
    let purchase = event_type == EventType::Purchase;
    Event {
        event_id: std::borrow::Cow::Owned(format!("{user}-{t}")),
        timestamp_ms: t,
        user_id: user.into(),
        session_id: Some(user.into()),
        event_type,
        page_url: Some("https://shop.example.com/products/usb-c-hub".into()),
        referrer: None,
        user_agent: None,
        ip_address: Some(ip.into()),
        properties: Properties {
            price: purchase.then_some(49.99),
            cart_value: purchase.then_some(49.99),
            ..Properties::default()
        },
        device: Device::default(),
        location: Location {
            country: Some("US".into()),
            city: Some("New York".into()),
            timezone: None,
        },
        record: None,
        received_ms: None,
    }
}
