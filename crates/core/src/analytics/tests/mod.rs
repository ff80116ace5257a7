//! Analytics checked against a hand-computed stream.

use std::borrow::Cow;
use std::time::Duration;

use super::*;
use crate::analytics::AnalyticsConfig;
use crate::event::{Device, Event, EventType, Location, Properties};

const T0: i64 = 1_705_312_800_000; // 2024-01-15T10:00:00Z

use EventType::{AddToCart as Cart, Click, PageView as View, Purchase as Buy, Search};

mod sessions;
mod snapshot;

#[derive(Clone, Debug)]
struct Spec {
    referrer: Option<&'static str>,
    user: &'static str,
    session: &'static str,
    at_s: i64,
    kind: EventType,
    page: &'static str,
    product: Option<(&'static str, &'static str, f64)>,
    cart_value: Option<f64>,
    country: &'static str,
    device: &'static str,
}

fn spec(user: &'static str, at_s: i64, kind: EventType) -> Spec {
    Spec {
        referrer: None,
        user,
        session: "s",
        at_s,
        kind,
        page: "https://shop.example.com/",
        product: None,
        cart_value: None,
        country: "US",
        device: "desktop",
    }
}

impl Spec {
    fn page(mut self, p: &'static str) -> Spec {
        self.page = p;
        self
    }
    fn product(mut self, id: &'static str, name: &'static str, price: f64) -> Spec {
        self.product = Some((id, name, price));
        self
    }
    fn cart(mut self, v: f64) -> Spec {
        self.cart_value = Some(v);
        self
    }
    fn from(mut self, country: &'static str, device: &'static str) -> Spec {
        self.country = country;
        self.device = device;
        self
    }
    fn referred(mut self, r: &'static str) -> Spec {
        self.referrer = Some(r);
        self
    }
    fn session(mut self, s: &'static str) -> Spec {
        self.session = s;
        self
    }
    fn event(&self, n: usize) -> Event<'static> {
        Event {
            event_id: Cow::Owned(format!("e{n}")),
            timestamp_ms: T0 + self.at_s * 1000,
            user_id: Cow::Borrowed(self.user),
            session_id: Some(Cow::Borrowed(self.session)),
            event_type: self.kind,
            page_url: Some(Cow::Borrowed(self.page)),
            referrer: self.referrer.map(Cow::Borrowed),
            user_agent: None,
            ip_address: None,
            properties: Properties {
                product_id: self.product.map(|p| Cow::Borrowed(p.0)),
                product_name: self.product.map(|p| Cow::Borrowed(p.1)),
                price: self.product.map(|p| p.2),
                cart_value: self.cart_value,
                ..Properties::default()
            },
            device: Device {
                device_type: Some(Cow::Borrowed(self.device)),
                os: Some(Cow::Borrowed("Linux")),
                browser: Some(Cow::Borrowed("Firefox")),
            },
            location: Location {
                country: Some(Cow::Borrowed(self.country)),
                city: Some(Cow::Borrowed("Somewhere")),
                timezone: None,
            },
            record: None,
            received_ms: None,
        }
    }
}

/// The hand-computed stream: three users; a buys, b abandons a cart, c browses.
fn stream() -> Vec<Spec> {
    vec![
        spec("a", 0, View).page("https://shop.example.com/products/lamp?ref=ad"),
        spec("a", 10, Click).product("p1", "Lamp", 30.0),
        spec("a", 20, Cart).product("p1", "Lamp", 30.0).cart(30.0),
        spec("a", 30, Cart).product("p2", "Chair", 300.0).cart(330.0),
        spec("a", 40, Buy)
            .product("p2", "Chair", 300.0)
            .cart(330.0)
            .page("https://shop.example.com/checkout"),
        spec("b", 5, View).from("DE", "mobile"),
        spec("b", 15, Search).from("DE", "mobile"),
        spec("b", 25, Cart)
            .product("p1", "Lamp", 30.0)
            .cart(30.0)
            .from("DE", "mobile"),
        spec("c", 50, View).page("/products/lamp").from("GB", "tablet"),
        spec("c", 55, View).from("GB", "tablet"),
        spec("a", 3000, Buy)
            .product("p1", "Lamp", 30.0)
            .cart(45.5)
            .session("s2"),
    ]
}

fn run(processor: &mut AnalyticsProcessor, state: &mut AnalyticsPartition, specs: &[Spec], mode: Mode) {
    let mut out = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        processor.process(state, &s.event(i), mode, &mut out);
    }
}

fn fresh() -> (AnalyticsProcessor, AnalyticsPartition) {
    let p = AnalyticsProcessor::new(AnalyticsConfig::default());
    let s = p.new_state();
    (p, s)
}

#[test]
fn totals_match_the_hand_computed_stream() {
    let (mut p, mut state) = fresh();
    run(&mut p, &mut state, &stream(), Mode::Live);
    let r = p.report(std::iter::once(&state));
    assert_eq!(r.total_events, 11);
    assert_eq!(r.event_types["page_view"], 4);
    assert_eq!(r.event_types["click"], 1);
    assert_eq!(r.event_types["search"], 1);
    assert_eq!(r.event_types["add_to_cart"], 3);
    assert_eq!(r.event_types["purchase"], 2);
    assert_eq!(r.purchase_count, 2);
    assert_eq!(r.revenue_total, 375.5, "330.00 + 45.50");
    assert_eq!(r.average_order_value, 187.75);
    assert_eq!(r.countries["US"], 6);
    assert_eq!(r.countries["DE"], 3);
    assert_eq!(r.countries["GB"], 2);
    assert_eq!(r.device_types["desktop"], 6);
    assert_eq!(r.device_types["mobile"], 3);
    assert_eq!(r.device_types["tablet"], 2);
    // Page views by path: query strings and origins are not separate pages.
    let pages: Vec<(&str, u64)> = r.top_pages.iter().map(|p| (p.page.as_str(), p.views)).collect();
    assert_eq!(pages, vec![("/", 2), ("/products/lamp", 2)], "ties in key order");
    // An order's amount goes to the product it names; interactions count events.
    assert_eq!(r.top_products_by_revenue[0].product_id, "p2");
    assert_eq!(r.top_products_by_revenue[0].value, 330.0);
    assert_eq!(r.top_products_by_revenue[1].value, 45.5);
    let by_product: f64 = r.top_products_by_revenue.iter().map(|p| p.value).sum();
    assert_eq!(by_product, r.revenue_total, "product revenue adds up");
    assert_eq!(r.top_products_by_interactions[0].name, "Lamp");
    assert_eq!(r.top_products_by_interactions[0].value, 4.0);
    assert_eq!(r.revenue_by_hour["10"], 375.5);
}

#[test]
fn funnel_and_users_are_distinct_counts() {
    let (mut p, mut state) = fresh();
    run(&mut p, &mut state, &stream(), Mode::Live);
    // Event time moves once three users reach it: b and c come back at
    // t=3000 s in new sessions.
    let back = [
        spec("b", 3000, View).from("DE", "mobile").session("s9"),
        spec("c", 3000, View).from("GB", "tablet").session("s9"),
    ];
    run(&mut p, &mut state, &back, Mode::Live);
    let r = p.report(std::iter::once(&state));
    assert_eq!(r.funnel_users["page_view"], 3, "a, b, c");
    assert_eq!(r.funnel_users["click"], 1);
    assert_eq!(r.funnel_users["search"], 1);
    assert_eq!(r.funnel_users["add_to_cart"], 2, "a twice and b count once each");
    assert_eq!(r.funnel_users["purchase"], 1, "a bought twice, one user");
    assert_eq!(r.active_users, 3);
    assert_eq!(r.avg_events_per_user, 4.33);
    assert_eq!(r.top_users[0].user_id, "a");
    assert_eq!(r.top_users[0].events, 6);
    assert!(r.distinct_counts_exact);
    // By t=3000 s every earlier session has been idle for more than the
    // 30-minute session timeout: a (40 s), b (20 s) and c (5 s) are closed;
    // the new sessions of a, b and c are open (0 s so far).
    assert_eq!(r.sessions_closed, 3);
    assert_eq!(
        r.avg_session_duration_seconds,
        ((40.0 + 20.0 + 5.0) / 6.0_f64 * 100.0).round() / 100.0
    );
    let text = r.render("header");
    for section in [
        "Event Type Distribution",
        "📄 Top 10 Pages:",
        "Conversion Funnel",
        "Revenue Analytics",
        "Top Products",
        "🌍 Geographic Distribution:",
        "🛍️  Top 5 Popular Products:",
        "📱 Device Distribution:",
        "User Activity",
        "Avg Session",
    ] {
        assert!(text.contains(section), "{section} missing");
    }
}

#[test]
fn the_window_slides_on_event_time() {
    let (mut p, mut state) = fresh();
    run(&mut p, &mut state, &stream(), Mode::Live);
    // Two hours later only the new users are in the window; totals remain.
    let later = [spec("x", 7200, View), spec("y", 7200, View), spec("z", 7200, View)];
    run(&mut p, &mut state, &later, Mode::Live);
    let r = p.report(std::iter::once(&state));
    assert_eq!(r.active_users, 3);
    assert_eq!(r.funnel_users["page_view"], 3);
    assert_eq!(r.funnel_users["purchase"], 0);
    assert_eq!(r.total_events, 14);
    assert!(
        state.tracked_users() <= 4,
        "old users evicted: {}",
        state.tracked_users()
    );
}

#[test]
fn events_per_user_count_the_window_in_quarter_steps() {
    let (mut p, mut state) = fresh();
    // One user busy for two hours, an event a minute: 120 events.
    let busy: Vec<Spec> = (0..120).map(|m| spec("busy", m * 60, View)).collect();
    run(&mut p, &mut state, &busy, Mode::Live);
    let f = p.window_figures(&state);
    assert_eq!(f.active_users, 1);
    // Watermark 1:59; the window's first quarter-hour bucket starts at 0:45:
    // the 75 events from 0:45 on, not all 120.
    assert_eq!(f.events_in_window, 75);
    assert_eq!(f.top_users, vec![("busy".to_string(), 75)]);
    // Another hour of silence but for one event: the old buckets slid out.
    run(&mut p, &mut state, &[spec("busy", 3 * 3600, View)], Mode::Live);
    assert_eq!(p.window_figures(&state).events_in_window, 1);
    // A late event from a bucket that has already slid out is not counted.
    run(&mut p, &mut state, &[spec("busy", 60, View)], Mode::Live);
    assert_eq!(p.window_figures(&state).events_in_window, 1);
}

#[test]
fn warm_up_rebuilds_the_window_without_counting() {
    let (mut p, mut state) = fresh();
    run(&mut p, &mut state, &stream(), Mode::Warmup);
    let r = p.report(std::iter::once(&state));
    assert_eq!(r.total_events, 0, "already counted by whoever processed them live");
    assert_eq!(r.revenue_total, 0.0);
    assert_eq!(r.funnel_users["page_view"], 3, "but the window is rebuilt");
    assert_eq!(r.funnel_users["purchase"], 1);
    assert_eq!(r.sessions_closed, 0);
}

#[test]
fn users_split_across_partitions_add_up_exactly() {
    let specs = stream();
    let (mut whole, mut whole_state) = fresh();
    run(&mut whole, &mut whole_state, &specs, Mode::Live);
    let single = whole.report(std::iter::once(&whole_state));

    // The same events, each user in "its" partition, one processor per pod.
    let mut pods: Vec<(AnalyticsProcessor, AnalyticsPartition)> = (0..3).map(|_| fresh()).collect();
    for (i, s) in specs.iter().enumerate() {
        let pod = match s.user {
            "a" => 0,
            "b" => 1,
            _ => 2,
        };
        let (p, st) = &mut pods[pod];
        p.process(st, &s.event(i), Mode::Live, &mut Vec::new());
    }
    let reports: Vec<AnalyticsReport> = pods.iter().map(|(p, st)| p.report(std::iter::once(st))).collect();
    let sum = |f: &dyn Fn(&AnalyticsReport) -> u64| reports.iter().map(f).sum::<u64>();
    assert_eq!(sum(&|r| r.total_events), single.total_events);
    assert_eq!(sum(&|r| r.purchase_count), single.purchase_count);
    assert_eq!(sum(&|r| r.active_users), single.active_users);
    for stage in ["page_view", "click", "search", "add_to_cart", "purchase"] {
        assert_eq!(sum(&|r| r.funnel_users[stage]), single.funnel_users[stage], "{stage}");
    }
    let revenue: f64 = reports.iter().map(|r| r.revenue_total).sum();
    assert_eq!(revenue, single.revenue_total);
}

#[test]
fn users_beyond_the_cap_are_estimated_and_memory_stays_bounded() {
    let config = AnalyticsConfig {
        max_users_per_partition: 1_000,
        window: Duration::from_secs(3600),
        ..AnalyticsConfig::default()
    };
    let mut p = AnalyticsProcessor::new(config);
    let mut state = p.new_state();
    let names: Vec<String> = (0..20_000).map(|i| format!("user-{i}")).collect();
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut e = spec("x", (i / 10) as i64, View).event(i);
        e.user_id = Cow::Borrowed(name.as_str());
        p.process(&mut state, &e, Mode::Live, &mut out);
    }
    assert_eq!(state.tracked_users(), 1_000);
    let r = p.report(std::iter::once(&state));
    assert!(!r.distinct_counts_exact);
    let error = (r.active_users as f64 - 20_000.0).abs() / 20_000.0;
    assert!(error < 0.05, "estimated {} active users", r.active_users);
    assert!(state.heap_bytes() < 1_000_000, "{} bytes", state.heap_bytes());
    assert_eq!(r.total_events, 20_000, "totals stay exact");
}

#[test]
fn label_sets_are_bounded() {
    let (mut p, mut state) = fresh();
    let urls: Vec<String> = (0..(MAX_PAGES + 100)).map(|i| format!("/junk/{i}")).collect();
    let mut out = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let mut e = spec("a", i as i64, View).event(i);
        e.page_url = Some(Cow::Borrowed(url.as_str()));
        p.process(&mut state, &e, Mode::Live, &mut out);
    }
    assert_eq!(p.totals().page_views.len(), MAX_PAGES);
    assert_eq!(p.totals().page_views.get(bounded::OTHER), 100);
}

fn minute(m: i64) -> i64 {
    m * 60
}

/// Finding 9: figures are as of the pod's latest event time, so an idle
/// partition's users leave "the last hour" like everyone else's.
#[test]
fn an_idle_partition_ages_out_with_the_rest() {
    let (mut p, mut idle) = fresh();
    let mut busy = p.new_state();
    run(&mut p, &mut idle, &[spec("old", 0, View)], Mode::Live);
    let later: Vec<Spec> = ["x", "y", "z"].map(|u| spec(u, minute(120), View)).into();
    run(&mut p, &mut busy, &later, Mode::Live);
    let r = p.report([&idle, &busy].into_iter());
    assert_eq!(
        r.active_users, 3,
        "the idle partition's user was last seen two hours ago"
    );
}

/// Finding 9: events per user counted 75 minutes of events over 60 minutes
/// of users. Now users, stages and events share one span of whole
/// quarter-windows.
#[test]
fn users_and_events_are_counted_over_the_same_span() {
    let (mut p, mut state) = fresh();
    let events = [
        spec("a", minute(46), View),
        spec("c", minute(50), View),
        spec("a", minute(65), View),
        spec("b", minute(118), View),
        spec("x", minute(119), View),
        spec("y", minute(119), View),
        spec("z", minute(119), View),
    ];
    run(&mut p, &mut state, &events, Mode::Live);
    let f = p.window_figures(&state);
    // Event time 1:59; the span is the quarters from 0:45 on.
    assert_eq!(
        f.active_users, 6,
        "c (only at 0:50) is in the span a's 0:46 is counted in"
    );
    assert_eq!(f.events_in_window, 7);
}

/// Finding 9: a user first seen while the exact map was full went to the
/// sketch; once the map had room again the same user was tracked exactly
/// too and counted twice.
#[test]
fn a_user_in_the_sketch_is_not_also_counted_exactly() {
    let mut p = AnalyticsProcessor::new(AnalyticsConfig {
        max_users_per_partition: 2,
        ..AnalyticsConfig::default()
    });
    let mut state = p.new_state();
    let events = [
        spec("a", 0, View),
        spec("b", 0, View),
        spec("c", minute(30), View),
        spec("x", minute(80), View),
        spec("y", minute(80), View),
        spec("z", minute(80), View),
        spec("c", minute(81), View),
    ];
    run(&mut p, &mut state, &events, Mode::Live);
    let f = p.window_figures(&state);
    assert!(!f.exact);
    // Event time 1:21: a and b (0:00) are out of the span (from 0:15) and
    // evicted, c's sketch bucket (0:30) is in it.
    assert_eq!(f.active_users, 4, "c, x, y and z");
}

/// Client text (pages, products, places, devices, user ids) cannot write
/// to the operator's terminal through the console report.
#[test]
fn the_console_report_escapes_client_text() {
    let render = |evil: &'static str| {
        let (mut p, mut state) = fresh();
        let events: Vec<Spec> = (0..4)
            .map(|i| {
                let mut s = spec(evil, i * 10, if i == 3 { Buy } else { View })
                    .page(evil)
                    .product(evil, evil, 10.0)
                    .from(evil, evil);
                s.user = evil;
                s
            })
            .collect();
        run(&mut p, &mut state, &events, Mode::Live);
        p.report(std::iter::once(&state)).render("header")
    };
    let benign = render("plain");
    let hostile = render("x\n🔴 FRAUD ALERT\u{1b}[2J\u{1b}]0;owned\u{7}\u{202e}");
    assert_eq!(hostile.lines().count(), benign.lines().count(), "{hostile}");
    assert!(!hostile.replace('\n', "").chars().any(char::is_control), "{hostile:?}");
    assert!(!hostile.contains('\u{202e}'));
}
