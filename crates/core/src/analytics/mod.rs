//! Analytics: what Google Analytics shows, computed from the event stream.
//!
//! Two kinds of figures, because a fleet of pods must add up to the truth:
//!
//! - **Volume figures** — events by type, revenue, purchases, order values,
//!   page views, product interactions, countries, cities, devices, browsers,
//!   operating systems, revenue by hour, closed sessions — are monotonic
//!   counters of the events *this process* processed live ([`AnalyticsTotals`]).
//!   They are never dropped when a partition moves away, so summing them over
//!   pods (which Prometheus does) counts every event once. A rebuild replays
//!   events in warm-up mode, which does not touch them.
//! - **Distinct-user figures** — the conversion funnel (users per stage),
//!   active users, events per user, top users, open sessions — are kept per
//!   partition over an event-time window (`ANALYTICS_WINDOW`, default 1 h)
//!   ([`AnalyticsPartition`]). Events are keyed by user_id, so a user lives in
//!   exactly one partition, and partitions are owned by exactly one pod: the
//!   sum over pods of distinct users is the exact distinct count. When a
//!   partition moves, the new owner rebuilds its window by replay.
//!
//! Every windowed figure is a function of the window's events alone — events
//! per user are counted in quarter-window buckets, sweeps run at instants
//! fixed by event time, a session is open only while within its timeout —
//! so a rebuilt partition shows exactly what a partition owned all along
//! shows (`tests/it/rebuild.rs`). One exception, documented: a session longer
//! than the rebuild window is measured from the replay's start after a
//! hand-over, and sessions open at a hand-over are not counted as closed.
//!
//! Memory is bounded: label sets are capped ([`bounded`]); each partition
//! tracks at most `ANALYTICS_MAX_USERS_PER_PARTITION` users exactly (60
//! bytes of state, about 140 with the hash table's headroom at the cap) and
//! counts any further users with HyperLogLog sketches
//! ([`hll`], 120 KiB per partition, ~1.6 % error), flagging the report as
//! approximate.

pub mod acquisition;
pub mod bounded;
pub mod hll;
pub mod report;
mod sessions;
mod users;

use std::hash::BuildHasher;
use std::time::Duration;

use bounded::BoundedCounts;
use sessions::{Ctx, Labels, Session};
use users::{OverflowSketch, UserActivity};

use crate::event::{Event, EventType, page_path};
use crate::eventtime::{EventClock, hour_of_day};
use crate::prehashed::PrehashedMap;
use crate::processor::{Mode, Processor};

pub use report::AnalyticsReport;
pub use sessions::{ENGAGED_SECONDS, SessionTotals};

/// The analytics settings (ANALYTICS_WINDOW, ANALYTICS_SESSION_TIMEOUT,
/// ANALYTICS_MAX_USERS_PER_PARTITION, ALLOWED_LATENESS, REPORT_USER_IDS).
#[derive(Clone, Debug, PartialEq)]
pub struct AnalyticsConfig {
    pub window: Duration,
    pub session_timeout: Duration,
    pub max_users_per_partition: usize,
    /// ALLOWED_LATENESS.
    pub allowed_lateness: Duration,
    /// REPORT_USER_IDS: `top_users` in /report.
    pub report_user_ids: bool,
    /// SITE_DOMAINS: the site's own domains, whose referrers are not a
    /// traffic source (lower case).
    pub site_domains: Vec<String>,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            window: Duration::from_secs(3600),
            session_timeout: Duration::from_secs(1800),
            max_users_per_partition: 250_000,
            allowed_lateness: crate::eventtime::DEFAULT_ALLOWED_LATENESS,
            report_user_ids: false,
            site_domains: Vec::new(),
        }
    }
}

/// Distinct keys kept per label set before values are counted as `other`.
pub const MAX_PAGES: usize = 500;
pub const MAX_PRODUCTS: usize = 500;
pub const MAX_COUNTRIES: usize = 300;
pub const MAX_CITIES: usize = 1_000;
pub const MAX_DEVICE_LABELS: usize = 50;
pub const MAX_SOURCES: usize = 100;
pub const MAX_CAMPAIGNS: usize = 100;

/// Live visitors: users active within this much event time.
pub const LIVE_SECONDS: u32 = 300;
/// Events per minute: this many minutes, the newest last.
pub const LIVE_MINUTES: usize = 30;

/// Events in the window a user needs to be listed among the top users.
pub const TOP_USER_MIN_EVENTS: u32 = 3;

/// Upper bounds (dollars) of the order-value histogram buckets.
pub const ORDER_VALUE_BUCKETS: [f64; 9] = [10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0];
/// Upper bounds (seconds) of the session-duration histogram buckets.
pub const SESSION_DURATION_BUCKETS: [f64; 9] = [10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0];

/// A histogram of observations with fixed bucket bounds (`counts[i]` counts
/// observations ≤ `bounds[i]` and above the previous bound; the last slot
/// counts those above every bound).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

/// Monotonic figures of everything this process processed live.
#[derive(Clone, Debug)]
pub struct AnalyticsTotals {
    pub total_events: u64,
    /// Events behind the watermark when they arrived: counted in every
    /// volume figure, kept out of the distinct-user window.
    pub late_events: u64,
    pub event_types: [u64; 5],
    /// Revenue in cents: integer, so sums over pods are exact.
    pub revenue_cents: u64,
    pub purchases: u64,
    pub order_values: Histogram,
    pub revenue_by_hour_cents: [u64; 24],
    pub page_views: BoundedCounts,
    pub product_interactions: BoundedCounts,
    pub product_revenue_cents: BoundedCounts,
    /// product_id → product_name, for the products in `product_interactions`.
    pub product_names: std::collections::HashMap<String, String>,
    pub countries: BoundedCounts,
    pub cities: BoundedCounts,
    pub device_types: BoundedCounts,
    pub browsers: BoundedCounts,
    pub operating_systems: BoundedCounts,
    pub session_durations: Histogram,
    /// Acquisition and engagement, per counted session.
    pub sessions: SessionTotals,
}

impl Default for AnalyticsTotals {
    fn default() -> Self {
        AnalyticsTotals {
            total_events: 0,
            late_events: 0,
            event_types: [0; 5],
            revenue_cents: 0,
            purchases: 0,
            order_values: Histogram::new(&ORDER_VALUE_BUCKETS),
            revenue_by_hour_cents: [0; 24],
            page_views: BoundedCounts::new(MAX_PAGES),
            product_interactions: BoundedCounts::new(MAX_PRODUCTS),
            product_revenue_cents: BoundedCounts::new(MAX_PRODUCTS),
            product_names: std::collections::HashMap::new(),
            countries: BoundedCounts::new(MAX_COUNTRIES),
            cities: BoundedCounts::new(MAX_CITIES),
            device_types: BoundedCounts::new(MAX_DEVICE_LABELS),
            browsers: BoundedCounts::new(MAX_DEVICE_LABELS),
            operating_systems: BoundedCounts::new(MAX_DEVICE_LABELS),
            session_durations: Histogram::new(&SESSION_DURATION_BUCKETS),
            sessions: SessionTotals::default(),
        }
    }
}

/// The windowed distinct-user state of one partition.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct AnalyticsPartition {
    #[serde(deserialize_with = "users::consistent_users")]
    users: PrehashedMap<UserActivity>,
    /// The partition's event time (shared definition with fraud).
    clock: EventClock,
    watermark_s: u32,
    last_sweep_s: u32,
    overflow: Option<Box<OverflowSketch>>,
    /// User ids of the exactly tracked users, for "top users".
    names: PrehashedMap<Box<str>>,
    /// Open sessions of the exactly tracked users.
    sessions: PrehashedMap<Session>,
    /// (start ms, session) of the sessions not counted yet: counted when the
    /// watermark passes their start.
    uncounted: std::collections::BTreeSet<(i64, u64)>,
    labels: Labels,
    /// Events per minute of event time: (minute, events), by minute % 32.
    minutes: [(u32, u32); 32],
}

impl AnalyticsPartition {
    pub fn tracked_users(&self) -> usize {
        self.users.len()
    }

    /// The partition's event time in seconds (0 before any event).
    pub fn event_time_s(&self) -> u32 {
        self.watermark_s
    }

    /// Approximate heap bytes of the partition's state.
    pub fn heap_bytes(&self) -> usize {
        let map = self.users.capacity() * (std::mem::size_of::<(u64, UserActivity)>() + 1)
            + self.names.capacity() * (std::mem::size_of::<(u64, Box<str>)>() + 1)
            + self.names.values().map(|n| n.len()).sum::<usize>()
            + self.sessions.capacity() * (std::mem::size_of::<(u64, Session)>() + 1)
            + self.uncounted.len() * 2 * std::mem::size_of::<(i64, u64)>()
            + self.labels.heap_bytes();
        let sketches = self.overflow.as_ref().map_or(0, |o| o.buckets.len() * 6 * 4096);
        map + sketches
    }
}

/// The windowed figures of one partition, ready to be summed over partitions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowFigures {
    pub active_users: u64,
    pub funnel_users: [u64; 5],
    pub events_in_window: u64,
    pub open_sessions: u64,
    pub open_session_seconds: u64,
    pub top_users: Vec<(String, u64)>,
    pub exact: bool,
    /// Users in the window by the source of their latest session.
    pub users_by_source: std::collections::BTreeMap<String, u64>,
    /// Users active within [`LIVE_SECONDS`].
    pub live_visitors: u64,
    /// Events in each of the last [`LIVE_MINUTES`] minutes, the newest last.
    pub events_per_minute: [u64; LIVE_MINUTES],
}

/// The analytics processor.
pub struct AnalyticsProcessor {
    config: AnalyticsConfig,
    totals: AnalyticsTotals,
    hasher: foldhash::fast::FixedState,
}

impl AnalyticsProcessor {
    pub fn new(config: AnalyticsConfig) -> AnalyticsProcessor {
        AnalyticsProcessor {
            config,
            totals: AnalyticsTotals::default(),
            hasher: foldhash::fast::FixedState::with_seed(0xa11a_17c5),
        }
    }

    pub fn totals(&self) -> &AnalyticsTotals {
        &self.totals
    }

    pub fn config(&self) -> &AnalyticsConfig {
        &self.config
    }

    fn window_s(&self) -> u32 {
        self.config.window.as_secs() as u32
    }

    /// The length of a count bucket: a quarter of the window.
    fn quarter_s(&self) -> u32 {
        (self.window_s() / 4).max(1)
    }

    /// The first count bucket inside the window as of `watermark_s`.
    fn first_bucket(&self, watermark_s: u32) -> u32 {
        watermark_s.saturating_sub(self.window_s()) / self.quarter_s()
    }

    /// The windowed figures of one partition, as of its own event time.
    pub fn window_figures(&self, state: &AnalyticsPartition) -> WindowFigures {
        self.window_figures_at(state, state.watermark_s)
    }

    /// The windowed figures of one partition as of `as_of_s`: a pod reports
    /// all its partitions as of the latest event time among them, so an idle
    /// partition's users age out of "the last hour" like everyone else's.
    ///
    /// The window is whole quarter-window buckets (the four before the one
    /// holding `as_of_s`, and that one): users, funnel stages and events per
    /// user are all counted over that same span, between 1 and 1¼ windows.
    pub fn window_figures_at(&self, state: &AnalyticsPartition, as_of_s: u32) -> WindowFigures {
        let as_of_s = as_of_s.max(state.watermark_s);
        let quarter = self.quarter_s();
        let first_bucket = self.first_bucket(as_of_s);
        let from = (first_bucket * quarter).max(1);
        let session_cutoff = as_of_s.saturating_sub(self.config.session_timeout.as_secs() as u32);
        let mut f = WindowFigures {
            exact: state.overflow.is_none(),
            ..WindowFigures::default()
        };
        for user in state.users.values() {
            if user.last_seen < from || user.last_seen == 0 {
                continue;
            }
            f.active_users += 1;
            f.events_in_window += u64::from(user.events_since(first_bucket, quarter));
            if user.last_seen.saturating_add(LIVE_SECONDS) >= as_of_s {
                f.live_visitors += 1;
            }
            if let Some(source) = state.labels.name(user.source) {
                *f.users_by_source.entry(source.to_string()).or_default() += 1;
            }
            for (stage, &seen) in user.stage_seen.iter().enumerate() {
                if seen >= from && seen != 0 {
                    f.funnel_users[stage] += 1;
                }
            }
            // Open: not yet closed by a sweep, and not timed out either (so
            // the figure does not depend on when the last sweep ran).
            if user.session_start != 0 && user.session_last >= session_cutoff {
                f.open_sessions += 1;
                f.open_session_seconds += u64::from(user.session_last - user.session_start);
            }
        }
        if let Some(overflow) = &state.overflow {
            let estimates = overflow.estimates(first_bucket);
            f.active_users += estimates[0];
            for stage in 0..5 {
                f.funnel_users[stage] += estimates[1 + stage];
            }
        }
        // Top users: the busiest in the window, ties by name, from every
        // exactly tracked user (the scan above is paid anyway), so the
        // figure depends on the window's events alone.
        let mut top: Vec<(u32, &str)> = Vec::with_capacity(6);
        for (key, user) in &state.users {
            if user.last_seen < from {
                continue;
            }
            let Some(name) = state.names.get(key) else {
                continue;
            };
            let events = user.events_since(first_bucket, quarter);
            if events < TOP_USER_MIN_EVENTS {
                continue;
            }
            let better = |&(e, n): &(u32, &str)| events > e || (events == e && &**name < n);
            if top.len() < 5 || top.last().is_some_and(better) {
                let at = top.iter().position(better).unwrap_or(top.len());
                top.insert(at, (events, name));
                top.truncate(5);
            }
        }
        f.top_users = top.into_iter().map(|(e, n)| (n.to_string(), u64::from(e))).collect();
        let now_minute = as_of_s / 60;
        for (i, slot) in f.events_per_minute.iter_mut().enumerate() {
            let minute = now_minute.wrapping_sub((LIVE_MINUTES - 1 - i) as u32);
            let (tag, n) = state.minutes[minute as usize % 32];
            if tag == minute && minute <= now_minute {
                *slot = u64::from(n);
            }
        }
        f
    }

    /// Builds the report of this process: its totals plus the windowed
    /// figures of the partitions it owns, all as of the latest event time
    /// among them.
    pub fn report<'a>(&self, partitions: impl Iterator<Item = &'a AnalyticsPartition> + Clone) -> AnalyticsReport {
        let as_of = partitions.clone().map(|p| p.watermark_s).max().unwrap_or(0);
        let figures: Vec<WindowFigures> = partitions.map(|p| self.window_figures_at(p, as_of)).collect();
        AnalyticsReport::build(&self.totals, &figures, self.config.window)
    }

    fn sweep(&mut self, state: &mut AnalyticsPartition, mode: Mode) {
        let window = self.window_s();
        // Every eighth of a window of event time, at the same instants in
        // every process (aligned to the epoch, not to the first event seen).
        let interval = (window / 8).max(1);
        if state.watermark_s / interval == state.last_sweep_s / interval {
            return;
        }
        state.last_sweep_s = state.watermark_s;
        // Users still in the span the figures count (whole quarter-windows).
        let cutoff = self.first_bucket(state.watermark_s) * self.quarter_s();
        let session_cutoff = state
            .watermark_s
            .saturating_sub(self.config.session_timeout.as_secs() as u32);
        let totals = &mut self.totals;
        // Sessions idle for the session timeout close (counted first if the
        // watermark had not passed their start yet), before their users go.
        let AnalyticsPartition {
            users,
            sessions,
            uncounted,
            labels,
            ..
        } = state;
        let mut ctx = Ctx {
            totals: &mut totals.sessions,
            labels,
            live: mode.counts(),
            site_domains: &self.config.site_domains,
        };
        // Those not counted yet are counted in the order they started, as
        // the watermark counts them, not in the map's order: that depends
        // on the map's history (a partition rebuilt or restored from a
        // snapshot has another), and the order decides which labels get
        // the last places under a cap.
        let idle_ms = i64::from(session_cutoff) * 1000;
        let closing: Vec<(i64, u64)> = uncounted
            .iter()
            .filter(|(_, id)| sessions.get(id).is_some_and(|s| s.latest_ms < idle_ms))
            .copied()
            .collect();
        for key in closing {
            uncounted.remove(&key);
            if let Some(session) = sessions.get_mut(&key.1) {
                let returning = users.get(&session.user).is_some_and(|u| u.returning(session));
                session.count(returning, &mut ctx);
            }
        }
        sessions.retain(|_, session| session.latest_ms >= idle_ms);
        state.users.retain(|_, user| {
            if user.session_start != 0 && user.session_last < session_cutoff {
                if mode.counts() {
                    totals
                        .session_durations
                        .observe(f64::from(user.session_last - user.session_start));
                }
                user.session_start = 0;
                user.session_last = 0;
                user.session_key = 0;
            }
            user.last_seen >= cutoff
        });
        let users = &state.users;
        state.names.retain(|key, _| users.contains_key(key));
        // The sketch's buckets slide out with the window; once none is left,
        // new users are tracked exactly again.
        let first_bucket = self.first_bucket(state.watermark_s);
        if state
            .overflow
            .as_ref()
            .is_some_and(|o| o.buckets.iter().all(|(b, _)| *b < first_bucket))
        {
            state.overflow = None;
        }
    }

    fn count_live(&mut self, event: &Event<'_>) {
        let t = &mut self.totals;
        t.total_events += 1;
        t.event_types[event.event_type.index()] += 1;
        if event.event_type == EventType::PageView
            && let Some(url) = &event.page_url
        {
            t.page_views.add(page_path(url), 1);
        }
        if let Some(product) = &event.properties.product_id {
            t.product_interactions.add(product, 1);
            if t.product_names.len() < MAX_PRODUCTS
                && let Some(name) = &event.properties.product_name
                && !t
                    .product_names
                    .contains_key(crate::event::truncate(product, crate::event::MAX_LABEL_BYTES))
            {
                t.product_names.insert(
                    crate::event::truncate(product, crate::event::MAX_LABEL_BYTES).to_string(),
                    crate::event::truncate(name, crate::event::MAX_LABEL_BYTES).to_string(),
                );
            }
        }
        t.countries
            .add(event.location.country.as_deref().unwrap_or("unknown"), 1);
        t.cities.add(event.location.city.as_deref().unwrap_or("unknown"), 1);
        t.device_types
            .add(event.device.device_type.as_deref().unwrap_or("unknown"), 1);
        t.browsers.add(event.device.browser.as_deref().unwrap_or("unknown"), 1);
        t.operating_systems
            .add(event.device.os.as_deref().unwrap_or("unknown"), 1);
        if event.event_type == EventType::Purchase {
            let amount = event.amount();
            let cents = (amount * 100.0).round() as u64;
            t.purchases += 1;
            t.revenue_cents += cents;
            t.order_values.observe(amount);
            t.revenue_by_hour_cents[usize::from(hour_of_day(event.timestamp_ms))] += cents;
            // An order names one product (its headline item); the order's
            // amount is attributed to it, so product revenue adds up to
            // total revenue.
            if let Some(product) = &event.properties.product_id {
                t.product_revenue_cents.add(product, cents);
            }
        }
    }
}

impl Processor for AnalyticsProcessor {
    type State = AnalyticsPartition;
    type Output = std::convert::Infallible;

    fn new_state(&self) -> AnalyticsPartition {
        AnalyticsPartition {
            users: PrehashedMap::default(),
            clock: EventClock::default(),
            watermark_s: 0,
            last_sweep_s: 0,
            overflow: None,
            names: PrehashedMap::default(),
            sessions: PrehashedMap::default(),
            uncounted: std::collections::BTreeSet::new(),
            labels: Labels::default(),
            minutes: [(0, 0); 32],
        }
    }

    /// Every analytics setting: the window, the session timeout, the cap,
    /// the lateness, the site's domains (which decide a session's source)
    /// — and REPORT_USER_IDS, which changes no state but is not worth a
    /// second list — and the cap of labels.
    fn state_fingerprint(&self) -> u64 {
        let settings = (&self.config, sessions::MAX_LABELS);
        crate::snapshot::state_fingerprint("analytics", &settings, &self.hasher)
    }

    /// The distinct-user window and one count bucket more: replaying it
    /// rebuilds the funnel, active users and events per user exactly.
    /// Volume counters need no rebuild.
    fn rebuild_window_ms(&self) -> i64 {
        (i64::from(self.window_s()) + i64::from(self.quarter_s())) * 1000
            + self.config.allowed_lateness.as_millis() as i64
    }

    fn event_time_ms(&self, state: &AnalyticsPartition) -> i64 {
        state.clock.time()
    }

    fn process(&mut self, state: &mut AnalyticsPartition, event: &Event<'_>, mode: Mode, _out: &mut Vec<Self::Output>) {
        if mode.counts() {
            self.count_live(event);
        }
        let key = self.hasher.hash_one(event.user_id.as_bytes());
        let lateness = self.config.allowed_lateness.as_millis() as i64;
        if event.timestamp_ms < state.clock.watermark(lateness) {
            // Late: in the volume figures above, not in the window.
            if mode.counts() {
                self.totals.late_events += 1;
            }
            return;
        }
        state.clock.observe(key, event.timestamp_ms);
        let minute = (event.timestamp_ms.max(0) / 60_000).min(i64::from(u32::MAX)) as u32;
        let slot = &mut state.minutes[minute as usize % 32];
        if slot.0 < minute {
            *slot = (minute, 0);
        }
        if slot.0 == minute {
            slot.1 += 1;
        }
        let to_s = |ms: i64| (ms.max(1000) / 1000).min(i64::from(u32::MAX)) as u32;
        let ts = to_s(event.timestamp_ms);
        let now_s = to_s(state.clock.time());
        if now_s > state.watermark_s {
            state.watermark_s = now_s;
            self.sweep(state, mode);
        }
        let stage = event.event_type.index();
        let cap = self.config.max_users_per_partition;
        let tracked = state.users.len();
        // While the sketch holds users of the window, a user not tracked
        // exactly goes to the sketch even if the map has room again: they may
        // be in it already, and must not be counted twice.
        let user = match state.users.get_mut(&key) {
            Some(user) => user,
            None if tracked < cap && state.overflow.is_none() => state.users.entry(key).or_default(),
            None => {
                let quarter = (self.window_s() / 4).max(1);
                state
                    .overflow
                    .get_or_insert_with(Box::default)
                    .insert(ts / quarter, key, stage);
                return;
            }
        };
        let quarter = self.quarter_s();
        user.count(ts, quarter);
        user.last_seen = user.last_seen.max(ts);
        user.earliest = if user.earliest == 0 { ts } else { user.earliest.min(ts) };
        user.stage_seen[stage] = user.stage_seen[stage].max(ts);
        // Names are kept for the users who can be "top users" (at least
        // TOP_USER_MIN_EVENTS in the window), not for the many one-visit
        // users: a user who has that many in the report's window had them
        // when their last event was processed.
        if !state.names.contains_key(&key)
            && user.events_since(self.first_bucket(state.watermark_s), quarter) >= TOP_USER_MIN_EVENTS
        {
            state.names.insert(key, event.user_id.as_ref().into());
        }

        let session_key = event
            .session_id
            .as_deref()
            .map(|s| (self.hasher.hash_one(s.as_bytes()) as u32).max(1));
        let timeout = self.config.session_timeout.as_secs() as u32;
        if let Some(session_key) = session_key {
            let same = user.session_key == session_key && ts.saturating_sub(user.session_last) <= timeout;
            if !same {
                if user.session_start != 0 && mode.counts() {
                    self.totals
                        .session_durations
                        .observe(f64::from(user.session_last - user.session_start));
                }
                user.session_key = session_key;
                user.session_start = ts;
            }
            user.session_last = user.session_last.max(ts);
        }
        let mut ctx = Ctx {
            totals: &mut self.totals.sessions,
            labels: &mut state.labels,
            live: mode.counts(),
            site_domains: &self.config.site_domains,
        };
        // Acquisition and engagement: one session per (user, session_id),
        // whatever order its events arrive in.
        // Open sessions are bounded like tracked users: a client inventing a
        // session id per event cannot grow them past the cap (its further
        // sessions are not tracked).
        let id = session_key.map(|session_key| self.hasher.hash_one((key, session_key)));
        let room = state.sessions.len() < cap;
        if let Some(id) = id.filter(|id| room || state.sessions.contains_key(id)) {
            let session = state.sessions.entry(id).or_insert_with(|| {
                let session = Session::new(event, key, &mut ctx);
                state.uncounted.insert((session.start_ms, id));
                session
            });
            let start = session.start_ms;
            session.observe(event, &mut ctx);
            if session.start_ms != start && state.uncounted.remove(&(start, id)) {
                state.uncounted.insert((session.start_ms, id));
            }
            user.latest_session(session, &ctx);
        }
        // Sessions whose start the watermark has passed: their landing event
        // is final, so they count now.
        let watermark_ms = state.clock.watermark(lateness);
        while let Some(&(start_ms, id)) = state.uncounted.first()
            && start_ms < watermark_ms
        {
            state.uncounted.pop_first();
            if let Some(session) = state.sessions.get_mut(&id) {
                let returning = state.users.get(&session.user).is_some_and(|u| u.returning(session));
                session.count(returning, &mut ctx);
            }
        }
    }
}

#[cfg(test)]
mod tests;
