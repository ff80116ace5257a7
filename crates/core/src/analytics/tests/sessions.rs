//! Acquisition, engagement and live figures against a hand-computed stream,
//! and the properties that make them a function of the events: any arrival
//! order within the lateness, any hand-over point.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// Six counted sessions of five users (hand-computed below), then three
/// users far later who move event time on and stay uncounted.
fn stream() -> Vec<Spec> {
    vec![
        // u1: a newsletter campaign; two pages; buys $100.
        spec("u1", 0, View)
            .page("https://shop.example.com/?utm_source=newsletter&utm_medium=email&utm_campaign=spring")
            .session("a"),
        spec("u1", 20, View)
            .page("https://shop.example.com/products/lamp")
            .session("a"),
        spec("u1", 40, Buy)
            .product("p1", "Lamp", 100.0)
            .page("https://shop.example.com/checkout")
            .session("a"),
        // u2: one page from Google search: a bounce.
        spec("u2", 5, View)
            .page("https://shop.example.com/products/chair")
            .referred("https://www.google.com/search?q=chair")
            .session("b"),
        // u3: Facebook; one page, but 20 s on it: engaged.
        spec("u3", 10, View).referred("https://l.facebook.com/").session("c"),
        spec("u3", 30, Click).session("c"),
        // u4: direct; two pages.
        spec("u4", 20, View).session("d"),
        spec("u4", 25, View).page("https://shop.example.com/about").session("d"),
        // u5: from the site itself (a tab kept open): direct, a bounce.
        spec("u5", 30, View)
            .page("https://shop.example.com/blog")
            .referred("https://shop.example.com/cart")
            .session("e"),
        // u2 again, from a paid campaign: returning; buys $50.
        spec("u2", 1000, View)
            .page("https://shop.example.com/?utm_source=google&utm_medium=cpc&utm_campaign=spring")
            .referred("https://www.google.com/")
            .session("b2"),
        spec("u2", 1010, Buy).product("p2", "Chair", 50.0).session("b2"),
        // Three users far later: event time 5000 s.
        spec("u6", 5000, View).session("z6"),
        spec("u7", 5001, View).session("z7"),
        spec("u8", 5002, View).session("z8"),
    ]
}

fn configured() -> AnalyticsProcessor {
    AnalyticsProcessor::new(AnalyticsConfig {
        site_domains: vec!["shop.example.com".into()],
        ..AnalyticsConfig::default()
    })
}

fn source(r: &AnalyticsReport, name: &str) -> (u64, u64, u64, f64) {
    let f = &r.sources[name];
    (f.sessions, f.users, f.conversions, f.revenue)
}

#[test]
fn acquisition_and_engagement_match_the_hand_computed_stream() {
    let mut p = configured();
    let mut state = p.new_state();
    run(&mut p, &mut state, &stream(), Mode::Live);
    let r = p.report(std::iter::once(&state));

    assert_eq!(r.sessions, 6, "u6-u8 start after the watermark: not counted yet");
    // (sessions, users in the window by latest session, conversions, revenue)
    assert_eq!(source(&r, "newsletter"), (1, 0, 1, 100.0));
    assert_eq!(source(&r, "google.com"), (1, 0, 0, 0.0));
    assert_eq!(source(&r, "facebook.com"), (1, 0, 0, 0.0));
    assert_eq!(
        source(&r, "google"),
        (1, 1, 1, 50.0),
        "u2's latest session, in the window"
    );
    assert_eq!(source(&r, "direct"), (2, 3, 0, 0.0), "u4 and u5; users u6-u8");
    assert_eq!(r.sources.len(), 5);
    assert_eq!(r.sources["newsletter"].conversion_rate, 1.0);
    let channels: Vec<(&str, u64)> = r
        .channels
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        channels,
        vec![
            ("direct", 2),
            ("email", 1),
            ("organic_search", 1),
            ("organic_social", 1),
            ("paid_search", 1)
        ]
    );
    assert_eq!(r.campaigns.len(), 1);
    let spring = &r.campaigns["spring"];
    assert_eq!((spring.sessions, spring.conversions, spring.revenue), (2, 2, 150.0));
    let pages = |m: &BTreeMap<String, u64>| m.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>();
    assert_eq!(
        pages(&r.entry_pages),
        vec![
            ("/".to_string(), 4),
            ("/blog".to_string(), 1),
            ("/products/chair".to_string(), 1)
        ],
        "landing pages: u1, u3, u4 and u2's second visit on /"
    );
    let exits: Vec<(&str, i64)> = r.exit_pages.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        exits,
        vec![
            ("/", 2),
            ("/about", 1),
            ("/blog", 1),
            ("/products/chair", 1),
            ("/products/lamp", 1)
        ],
        "each session's latest page view; a purchase is not a page view"
    );
    assert_eq!(
        r.engaged_sessions, 4,
        "u1 (2 pages), u3 (20 s), u2's second (bought), u4 (2 pages)"
    );
    assert_eq!(r.bounce_rate, 0.3333);
    assert_eq!(r.pages_per_session, 1.33, "8 page views in 6 sessions");
    assert_eq!((r.new_users, r.returning_users), (5, 1));
    assert_eq!(r.live_visitors, 3, "u6-u8 within 5 minutes of event time 5000 s");
    assert_eq!(r.events_per_minute.len(), LIVE_MINUTES);
    assert_eq!(r.events_per_minute[LIVE_MINUTES - 1], 3);
    assert_eq!(
        r.events_per_minute.iter().sum::<u64>(),
        3,
        "nothing else in the last 30 minutes"
    );

    let text = r.render("header");
    for section in ["🔗 Traffic Sources", "📣 Campaigns", "🚪 Engagement"] {
        assert!(text.contains(section), "{section} in {text}");
    }
    assert!(text.contains("newsletter"), "{text}");
}

/// The session figures a fleet adds up.
pub(super) fn figures(t: &SessionTotals) -> Vec<(String, i64)> {
    let mut out = vec![
        ("sessions".to_string(), t.sessions as i64),
        ("engaged".to_string(), t.engaged as i64),
        ("page_views".to_string(), t.page_views as i64),
        ("new".to_string(), t.new_users as i64),
        ("returning".to_string(), t.returning_users as i64),
    ];
    for (name, set) in [
        ("source", &t.sources),
        ("source_conversions", &t.source_conversions),
        ("source_cents", &t.source_revenue_cents),
        ("campaign", &t.campaigns),
        ("campaign_conversions", &t.campaign_conversions),
        ("campaign_cents", &t.campaign_revenue_cents),
        ("entry", &t.entry_pages),
        ("exit", &t.exits_in),
    ] {
        for (k, v) in set.iter() {
            out.push((format!("{name}:{k}"), v as i64));
        }
    }
    for (k, v) in t.exits_out.iter() {
        out.push((format!("exit:{k}"), -(v as i64)));
    }
    for (i, n) in t.channels.iter().enumerate() {
        out.push((format!("channel:{i}"), *n as i64));
    }
    let mut merged: BTreeMap<String, i64> = BTreeMap::new();
    for (k, v) in out {
        *merged.entry(k).or_default() += v;
    }
    merged.retain(|_, v| *v != 0);
    merged.into_iter().collect()
}

fn sum(a: Vec<(String, i64)>, b: Vec<(String, i64)>) -> Vec<(String, i64)> {
    let mut merged: BTreeMap<String, i64> = BTreeMap::new();
    for (k, v) in a.into_iter().chain(b) {
        *merged.entry(k).or_default() += v;
    }
    merged.retain(|_, v| *v != 0);
    merged.into_iter().collect()
}

/// A random shop day: users with sessions from assorted sources, pages and
/// purchases, in timestamp order.
pub(super) fn day() -> impl Strategy<Value = Vec<Spec>> {
    const LANDINGS: [(&str, Option<&str>); 5] = [
        ("https://shop.example.com/", None),
        (
            "https://shop.example.com/products/lamp",
            Some("https://www.google.com/"),
        ),
        (
            "https://shop.example.com/?utm_source=mail&utm_medium=email&utm_campaign=c1",
            None,
        ),
        (
            "https://shop.example.com/?utm_source=fb&utm_medium=paid_social&utm_campaign=c2",
            Some("https://facebook.com/"),
        ),
        ("https://shop.example.com/blog", Some("https://news.example.org/")),
    ];
    const USERS: [&str; 6] = ["v0", "v1", "v2", "v3", "v4", "v5"];
    const SESSIONS: [&str; 4] = ["s0", "s1", "s2", "s3"];
    const PAGES: [&str; 3] = [
        "https://shop.example.com/products/lamp",
        "https://shop.example.com/about",
        "https://shop.example.com/cart",
    ];
    prop::collection::vec((0..6usize, 0..4usize, 0..5usize, 0..4u8, 1..40i64), 10..60).prop_map(|steps| {
        let mut at = 0;
        steps
            .into_iter()
            .map(|(u, s, landing, kind, gap)| {
                at += gap;
                let (page, referrer) = LANDINGS[landing];
                let e = match kind {
                    0 => spec(USERS[u], at, View).page(page),
                    1 => spec(USERS[u], at, View).page(PAGES[landing % 3]),
                    2 => spec(USERS[u], at, Click),
                    _ => spec(USERS[u], at, Buy).product("p1", "Lamp", 10.0 + landing as f64),
                };
                let e = e.session(SESSIONS[s]);
                match referrer {
                    Some(r) if kind == 0 => e.referred(r),
                    _ => e,
                }
            })
            .chain(
                ["w0", "w1", "w2"]
                    .into_iter()
                    .map(|w| spec(w, 100_000, View).session("end")),
            )
            .collect()
    })
}

/// `events` in the order they arrive: each `delays[i % delays.len()]`
/// seconds after its time.
pub(super) fn arriving(events: &[Spec], delays: &[i64]) -> Vec<Spec> {
    let mut arrival: Vec<(i64, usize)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.at_s + delays[i % delays.len()], i))
        .collect();
    arrival.sort();
    arrival.into_iter().map(|(_, i)| events[i].clone()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Events reordered within the lateness (each up to 30 s late) give the
    /// same session figures as timestamp order.
    #[test]
    fn session_figures_do_not_depend_on_arrival_order(events in day(), delays in prop::collection::vec(0..30i64, 80)) {
        let mut ordered = configured();
        let mut state = ordered.new_state();
        run(&mut ordered, &mut state, &events, Mode::Live);
        let shuffled = arriving(&events, &delays);
        let mut disordered = configured();
        let mut state = disordered.new_state();
        let mut out = Vec::new();
        for (n, s) in shuffled.iter().enumerate() {
            disordered.process(&mut state, &s.event(n), Mode::Live, &mut out);
        }
        prop_assert_eq!(figures(&disordered.totals().sessions), figures(&ordered.totals().sessions));
    }

    /// A partition handed over at any point: the new owner replays what
    /// came before (warm-up) and goes on live; the two owners' figures add
    /// up to one owner's.
    #[test]
    fn a_hand_over_anywhere_adds_up_to_one_owner(events in day(), cut in 0..1000usize) {
        let cut = cut % (events.len() + 1);
        let mut one = configured();
        let mut state = one.new_state();
        run(&mut one, &mut state, &events, Mode::Live);

        let mut before = configured();
        let mut state = before.new_state();
        run(&mut before, &mut state, &events[..cut], Mode::Live);
        let mut after = configured();
        let mut state = after.new_state();
        run(&mut after, &mut state, &events[..cut], Mode::Warmup);
        let mut out = Vec::new();
        for (n, s) in events[cut..].iter().enumerate() {
            after.process(&mut state, &s.event(cut + n), Mode::Live, &mut out);
        }
        prop_assert_eq!(
            sum(figures(&before.totals().sessions), figures(&after.totals().sessions)),
            figures(&one.totals().sessions)
        );
    }
}

#[test]
fn per_user_and_per_session_state_stay_small() {
    // The README's memory figures rest on these sizes.
    assert_eq!(std::mem::size_of::<crate::analytics::users::UserActivity>(), 60);
    assert!(std::mem::size_of::<crate::analytics::sessions::Session>() <= 80);
}

#[test]
fn a_pod_reports_the_purchases_of_sessions_another_pod_counted() {
    // u1 lands; u2-u4 move event time past the landing; u1 buys later.
    let events = [
        spec("u1", 0, View).session("a"),
        spec("u2", 100, View).session("b"),
        spec("u3", 101, View).session("c"),
        spec("u4", 102, View).session("d"),
        spec("u1", 110, Buy).product("p1", "Lamp", 40.0).session("a"),
    ];
    // The partition moves to a new owner just before the purchase.
    let mut after = configured();
    let mut state = after.new_state();
    run(&mut after, &mut state, &events[..4], Mode::Warmup);
    let mut out = Vec::new();
    after.process(&mut state, &events[4].event(4), Mode::Live, &mut out);
    let r = after.report(std::iter::once(&state));
    let direct = &r.sources["direct"];
    assert_eq!(
        (direct.sessions, direct.conversions, direct.revenue),
        (0, 1, 40.0),
        "the session was counted by the previous owner, its purchase here"
    );
}

#[test]
fn a_session_id_per_event_cannot_grow_the_sessions_past_the_cap() {
    let mut p = AnalyticsProcessor::new(AnalyticsConfig {
        max_users_per_partition: 1000,
        ..AnalyticsConfig::default()
    });
    let mut state = p.new_state();
    let mut out = Vec::new();
    let ids: Vec<String> = (0..5000).map(|i| format!("forged-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let mut e = spec("bot", i as i64 / 100, View).event(i);
        e.session_id = Some(std::borrow::Cow::Borrowed(id.as_str()));
        p.process(&mut state, &e, Mode::Live, &mut out);
    }
    assert_eq!(
        state.sessions.len(),
        1000,
        "bounded by ANALYTICS_MAX_USERS_PER_PARTITION"
    );
    assert!(state.uncounted.len() <= 1000);
}
