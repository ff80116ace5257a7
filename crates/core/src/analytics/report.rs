//! The analytics report: one structure, two renderings — the seed's console
//! report and the JSON of `GET /report`.
//!
//! JSON keys are a stable interface (documented in the README): at least
//! `total_events`, `event_types`, `revenue_total`, `purchase_count`,
//! `funnel_users`, `countries`, `device_types`, `active_users`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use super::acquisition::Channel;
use super::bounded::BoundedCounts;
use super::{AnalyticsTotals, LIVE_MINUTES, WindowFigures};
use crate::event::{EventType, printable};

/// Pages in the report's top list (the seed's "Top 10 Pages").
pub const TOP_PAGES: usize = 10;
/// Products in each top list (the seed's "Top 5 Popular Products").
pub const TOP_PRODUCTS: usize = 5;
/// Sources and campaigns in the console report.
pub const TOP_SOURCES: usize = 5;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PageCount {
    pub page: String,
    pub views: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProductFigure {
    pub product_id: String,
    pub name: String,
    pub value: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UserCount {
    pub user_id: String,
    pub events: u64,
}

/// A traffic source's sessions and what they sold. `users` are the
/// window's users whose latest session came from the source.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SourceFigures {
    pub sessions: u64,
    pub users: u64,
    pub conversions: u64,
    pub revenue: f64,
    /// conversions / sessions.
    pub conversion_rate: f64,
}

/// A campaign's sessions and what they sold.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CampaignFigures {
    pub sessions: u64,
    pub conversions: u64,
    pub revenue: f64,
    pub conversion_rate: f64,
}

/// Everything the analytics consumer reports. Volume figures are this
/// process's totals; distinct-user figures are over `window_seconds` of event
/// time for the partitions this process owns (see the module docs of
/// [`crate::analytics`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AnalyticsReport {
    pub total_events: u64,
    pub event_types: BTreeMap<String, u64>,
    pub revenue_total: f64,
    pub purchase_count: u64,
    pub average_order_value: f64,
    pub revenue_by_hour: BTreeMap<String, f64>,
    pub top_pages: Vec<PageCount>,
    pub top_products_by_revenue: Vec<ProductFigure>,
    pub top_products_by_interactions: Vec<ProductFigure>,
    pub countries: BTreeMap<String, u64>,
    pub cities: BTreeMap<String, u64>,
    pub device_types: BTreeMap<String, u64>,
    pub browsers: BTreeMap<String, u64>,
    pub operating_systems: BTreeMap<String, u64>,
    pub window_seconds: u64,
    pub funnel_users: BTreeMap<String, u64>,
    pub active_users: u64,
    pub avg_events_per_user: f64,
    /// The most active users. Not serialised with the rest: user ids reach
    /// `/report` only when REPORT_USER_IDS allows (the service decides).
    #[serde(skip)]
    pub top_users: Vec<UserCount>,
    pub sessions_closed: u64,
    pub avg_session_duration_seconds: f64,
    /// False when a partition tracks more users than its exact cap and
    /// distinct counts include HyperLogLog estimates.
    pub distinct_counts_exact: bool,
    /// Acquisition: counted sessions by source, channel and campaign.
    pub sources: BTreeMap<String, SourceFigures>,
    pub channels: BTreeMap<String, u64>,
    pub campaigns: BTreeMap<String, CampaignFigures>,
    /// Engagement: counted sessions, their landing and (latest) exit pages.
    pub sessions: u64,
    pub engaged_sessions: u64,
    pub entry_pages: BTreeMap<String, u64>,
    /// Signed: a pod counts a page's exits out when a session it did not
    /// count moves on; summed over pods the figures are the sessions'.
    pub exit_pages: BTreeMap<String, i64>,
    /// Share of counted sessions not engaged (0–1).
    pub bounce_rate: f64,
    pub pages_per_session: f64,
    pub new_users: u64,
    pub returning_users: u64,
    /// Live: users active in the last 5 minutes of event time, and events
    /// in each of the last 30 minutes (the newest last).
    pub live_visitors: u64,
    pub events_per_minute: Vec<u64>,
}

impl AnalyticsReport {
    pub fn build(totals: &AnalyticsTotals, partitions: &[WindowFigures], window: Duration) -> AnalyticsReport {
        let mut funnel = [0u64; 5];
        let mut active = 0;
        let mut window_events = 0;
        let mut open_sessions = 0;
        let mut open_seconds = 0;
        let mut users: Vec<UserCount> = Vec::new();
        let mut exact = true;
        for p in partitions {
            for (f, v) in funnel.iter_mut().zip(p.funnel_users) {
                *f += v;
            }
            active += p.active_users;
            window_events += p.events_in_window;
            open_sessions += p.open_sessions;
            open_seconds += p.open_session_seconds;
            exact &= p.exact;
            users.extend(p.top_users.iter().map(|(u, e)| UserCount {
                user_id: u.clone(),
                events: *e,
            }));
        }
        users.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.user_id.cmp(&b.user_id)));
        users.truncate(5);

        let mut users_by_source: BTreeMap<&str, u64> = BTreeMap::new();
        let mut live_visitors = 0;
        let mut per_minute = [0u64; LIVE_MINUTES];
        for p in partitions {
            for (source, n) in &p.users_by_source {
                *users_by_source.entry(source).or_default() += n;
            }
            live_visitors += p.live_visitors;
            for (total, n) in per_minute.iter_mut().zip(p.events_per_minute) {
                *total += n;
            }
        }
        let st = &totals.sessions;
        let rate = |part: u64, whole: u64| {
            if whole > 0 {
                round4(part as f64 / whole as f64)
            } else {
                0.0
            }
        };
        // Every key any of a source's counters has: a pod can count a
        // purchase of a session another pod counted.
        let keys = |sets: [&BoundedCounts; 3]| -> BTreeSet<String> {
            sets.iter()
                .flat_map(|set| set.iter().map(|(k, _)| k.to_string()))
                .collect()
        };
        let mut sources: BTreeMap<String, SourceFigures> = BTreeMap::new();
        for source in keys([&st.sources, &st.source_conversions, &st.source_revenue_cents]) {
            let (sessions, conversions) = (st.sources.get(&source), st.source_conversions.get(&source));
            let figures = SourceFigures {
                sessions,
                users: users_by_source.get(source.as_str()).copied().unwrap_or(0),
                conversions,
                revenue: st.source_revenue_cents.get(&source) as f64 / 100.0,
                conversion_rate: rate(conversions, sessions),
            };
            sources.insert(source, figures);
        }
        for (source, users) in users_by_source {
            sources.entry(source.to_string()).or_default().users = users;
        }
        let campaigns = keys([&st.campaigns, &st.campaign_conversions, &st.campaign_revenue_cents])
            .into_iter()
            .map(|campaign| {
                let (sessions, conversions) = (st.campaigns.get(&campaign), st.campaign_conversions.get(&campaign));
                let figures = CampaignFigures {
                    sessions,
                    conversions,
                    revenue: st.campaign_revenue_cents.get(&campaign) as f64 / 100.0,
                    conversion_rate: rate(conversions, sessions),
                };
                (campaign, figures)
            })
            .collect();
        let mut exit_pages: BTreeMap<String, i64> = st
            .exits_in
            .iter()
            .map(|(page, n)| (page.to_string(), n as i64))
            .collect();
        for (page, n) in st.exits_out.iter() {
            *exit_pages.entry(page.to_string()).or_default() -= n as i64;
        }
        exit_pages.retain(|_, n| *n != 0);
        let name_of = |id: &str| totals.product_names.get(id).cloned().unwrap_or_else(|| id.to_string());
        let sessions = totals.session_durations.count + open_sessions;
        let session_seconds = totals.session_durations.sum + open_seconds as f64;
        let revenue = totals.revenue_cents as f64 / 100.0;
        AnalyticsReport {
            total_events: totals.total_events,
            event_types: EventType::ALL
                .iter()
                .map(|t| (t.as_str().to_string(), totals.event_types[t.index()]))
                .collect(),
            revenue_total: revenue,
            purchase_count: totals.purchases,
            average_order_value: if totals.purchases > 0 {
                round2(revenue / totals.purchases as f64)
            } else {
                0.0
            },
            revenue_by_hour: totals
                .revenue_by_hour_cents
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(h, c)| (format!("{h:02}"), *c as f64 / 100.0))
                .collect(),
            top_pages: totals
                .page_views
                .top(TOP_PAGES)
                .into_iter()
                .map(|(page, views)| PageCount { page, views })
                .collect(),
            top_products_by_revenue: totals
                .product_revenue_cents
                .top(TOP_PRODUCTS)
                .into_iter()
                .map(|(id, cents)| ProductFigure {
                    name: name_of(&id),
                    product_id: id,
                    value: cents as f64 / 100.0,
                })
                .collect(),
            top_products_by_interactions: totals
                .product_interactions
                .top(TOP_PRODUCTS)
                .into_iter()
                .map(|(id, n)| ProductFigure {
                    name: name_of(&id),
                    product_id: id,
                    value: n as f64,
                })
                .collect(),
            countries: totals.countries.iter().map(|(k, v)| (k.to_string(), v)).collect(),
            cities: totals.cities.iter().map(|(k, v)| (k.to_string(), v)).collect(),
            device_types: totals.device_types.iter().map(|(k, v)| (k.to_string(), v)).collect(),
            browsers: totals.browsers.iter().map(|(k, v)| (k.to_string(), v)).collect(),
            operating_systems: totals
                .operating_systems
                .iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            window_seconds: window.as_secs(),
            funnel_users: EventType::ALL
                .iter()
                .map(|t| (t.as_str().to_string(), funnel[t.index()]))
                .collect(),
            active_users: active,
            avg_events_per_user: if active > 0 {
                round2(window_events as f64 / active as f64)
            } else {
                0.0
            },
            top_users: users,
            sessions_closed: totals.session_durations.count,
            avg_session_duration_seconds: if sessions > 0 {
                round2(session_seconds / sessions as f64)
            } else {
                0.0
            },
            distinct_counts_exact: exact,
            sources,
            channels: Channel::ALL
                .iter()
                .map(|c| (c.as_str().to_string(), st.channels[c.index()]))
                .collect(),
            campaigns,
            sessions: st.sessions,
            engaged_sessions: st.engaged,
            entry_pages: st.entry_pages.iter().map(|(k, v)| (k.to_string(), v)).collect(),
            exit_pages,
            bounce_rate: rate(st.sessions.saturating_sub(st.engaged), st.sessions),
            pages_per_session: if st.sessions > 0 {
                round2(st.page_views as f64 / st.sessions as f64)
            } else {
                0.0
            },
            new_users: st.new_users,
            returning_users: st.returning_users,
            live_visitors,
            events_per_minute: per_minute.to_vec(),
        }
    }

    /// The seed's console report. `header` carries the consumer's own line
    /// (events processed, partitions owned).
    pub fn render(&self, header: &str) -> String {
        let mut s = String::with_capacity(4096);
        let total = self.total_events.max(1) as f64;
        let _ = writeln!(s, "\n📊 ANALYTICS AGGREGATION REPORT");
        let _ = writeln!(s, "==========================================");
        let _ = writeln!(s, "{header}");
        let _ = writeln!(s, "📈 Event Type Distribution:");
        for t in EventType::ALL {
            let n = self.event_types.get(t.as_str()).copied().unwrap_or(0);
            let _ = writeln!(s, "  {:<16}: {:>6} ({:.1}%)", t.as_str(), n, n as f64 * 100.0 / total);
        }
        let _ = writeln!(s, "\n📄 Top {TOP_PAGES} Pages:");
        for p in &self.top_pages {
            let _ = writeln!(s, "  {:<36}: {:>6}", printable(&p.page), p.views);
        }

        let window = format_duration(self.window_seconds as f64);
        let approx = if self.distinct_counts_exact { "" } else { " ≈" };
        let _ = writeln!(s, "\n🎯 Conversion Funnel (distinct users, last {window}{approx}):");
        let pv = self.funnel_users.get("page_view").copied().unwrap_or(0);
        let labels = [
            ("page_view", "Page Views"),
            ("click", "Clicks"),
            ("search", "Searches"),
            ("add_to_cart", "Add to Cart"),
            ("purchase", "Purchases"),
        ];
        for (key, label) in labels {
            let n = self.funnel_users.get(key).copied().unwrap_or(0);
            if key == "page_view" {
                let _ = writeln!(s, "  {label:<18}: {n:>6} users");
            } else {
                let _ = writeln!(s, "  {label:<18}: {n:>6} users ({} of page-view users)", percent(n, pv));
            }
        }
        let carts = self.funnel_users.get("add_to_cart").copied().unwrap_or(0);
        let buyers = self.funnel_users.get("purchase").copied().unwrap_or(0);
        let _ = writeln!(s, "  {:<18}: {}", "Cart → Purchase", percent(buyers, carts));

        let _ = writeln!(s, "\n💰 Revenue Analytics:");
        let _ = writeln!(s, "  Total Revenue     : ${}", money(self.revenue_total));
        let _ = writeln!(s, "  Purchases         : {}", self.purchase_count);
        let _ = writeln!(s, "  Avg Order Value   : ${}", money(self.average_order_value));
        if !self.top_products_by_revenue.is_empty() {
            let _ = writeln!(s, "  Top Products by Revenue:");
            for p in &self.top_products_by_revenue {
                let _ = writeln!(s, "    {:<32} ${}", printable(&p.name), money(p.value));
            }
        }
        if !self.revenue_by_hour.is_empty() {
            let hours: Vec<String> = self
                .revenue_by_hour
                .iter()
                .map(|(h, v)| format!("{h}:00 ${}", money(*v)))
                .collect();
            let _ = writeln!(s, "  Revenue by Hour (UTC): {}", hours.join(" | "));
        }

        let _ = writeln!(s, "\n🛍️  Top {TOP_PRODUCTS} Popular Products:");
        for p in &self.top_products_by_interactions {
            let _ = writeln!(s, "  {:<32}: {:>6}", printable(&p.name), p.value as u64);
        }

        let _ = writeln!(s, "\n🌍 Geographic Distribution:");
        let _ = writeln!(s, "  Top Countries: {}", top_line(&self.countries, 5, total));
        let _ = writeln!(s, "  Top Cities   : {}", top_line(&self.cities, 5, total));

        let _ = writeln!(s, "\n📱 Device Distribution:");
        let _ = writeln!(s, "  Types   : {}", top_line(&self.device_types, 5, total));
        let _ = writeln!(s, "  Browsers: {}", top_line(&self.browsers, 5, total));
        let _ = writeln!(s, "  OS      : {}", top_line(&self.operating_systems, 6, total));

        let _ = writeln!(s, "\n👥 User Activity (last {window}{approx}):");
        let _ = writeln!(s, "  Active Users      : {}", self.active_users);
        let _ = writeln!(s, "  Avg Events / User : {:.1}", self.avg_events_per_user);
        let top: Vec<String> = self
            .top_users
            .iter()
            .map(|u| format!("{} ({})", printable(&u.user_id), u.events))
            .collect();
        let _ = writeln!(s, "  Top Users         : {}", top.join(", "));
        let _ = writeln!(
            s,
            "  Avg Session       : {}",
            format_duration(self.avg_session_duration_seconds)
        );
        self.render_acquisition(&mut s);
        s
    }

    /// The sections GA leads with: sources, campaigns, engagement, live.
    fn render_acquisition(&self, s: &mut String) {
        let _ = writeln!(s, "\n🔗 Traffic Sources ({} sessions):", self.sessions);
        let mut sources: Vec<(&String, &SourceFigures)> = self.sources.iter().collect();
        sources.sort_by(|a, b| b.1.sessions.cmp(&a.1.sessions).then_with(|| a.0.cmp(b.0)));
        for (name, f) in sources.into_iter().take(TOP_SOURCES) {
            sold_line(s, name, f.sessions, f.conversions, f.conversion_rate, f.revenue);
        }
        let channels: BTreeMap<String, u64> = self
            .channels
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let _ = writeln!(s, "  Channels: {}", top_line(&channels, 9, self.sessions.max(1) as f64));

        let _ = writeln!(s, "\n📣 Campaigns:");
        let mut campaigns: Vec<(&String, &CampaignFigures)> = self.campaigns.iter().collect();
        campaigns.sort_by(|a, b| b.1.revenue.total_cmp(&a.1.revenue).then_with(|| a.0.cmp(b.0)));
        if campaigns.is_empty() {
            let _ = writeln!(s, "  (no utm_campaign on any landing page yet)");
        }
        for (name, f) in campaigns.into_iter().take(TOP_SOURCES) {
            sold_line(s, name, f.sessions, f.conversions, f.conversion_rate, f.revenue);
        }

        let _ = writeln!(s, "\n🚪 Engagement:");
        let _ = writeln!(
            s,
            "  Bounce Rate       : {:.1}% ({} of {} sessions engaged)",
            self.bounce_rate * 100.0,
            self.engaged_sessions,
            self.sessions
        );
        let _ = writeln!(s, "  Pages / Session   : {:.2}", self.pages_per_session);
        let _ = writeln!(s, "  New / Returning   : {} / {}", self.new_users, self.returning_users);
        let total = self.sessions.max(1) as f64;
        let _ = writeln!(s, "  Entry Pages       : {}", top_line(&self.entry_pages, 3, total));
        let exits: BTreeMap<String, u64> = self
            .exit_pages
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, v)| (k.clone(), *v as u64))
            .collect();
        let _ = writeln!(s, "  Exit Pages        : {}", top_line(&exits, 3, total));
        let recent: Vec<String> = self
            .events_per_minute
            .iter()
            .rev()
            .take(10)
            .rev()
            .map(u64::to_string)
            .collect();
        let _ = writeln!(
            s,
            "  Live              : {} visitors in the last 5 min; events/min {}",
            self.live_visitors,
            recent.join(" ")
        );
    }
}

/// One source's or campaign's line: sessions, conversions and revenue.
fn sold_line(s: &mut String, name: &str, sessions: u64, conversions: u64, rate: f64, revenue: f64) {
    let _ = writeln!(
        s,
        "  {:<24}: {:>6} sessions, {:>5} conversions ({:.1}%), ${}",
        printable(name),
        sessions,
        conversions,
        rate * 100.0,
        money(revenue)
    );
}

fn top_line(map: &BTreeMap<String, u64>, n: usize, total: f64) -> String {
    let mut v: Vec<(&String, &u64)> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    v.into_iter()
        .take(n)
        .map(|(k, c)| format!("{} {} ({:.1}%)", printable(k), c, *c as f64 * 100.0 / total))
        .collect::<Vec<_>>()
        .join(", ")
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "n/a".to_string()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

pub use crate::money::money;

/// `5400` → `1h 30m`, `75` → `1m 15s`.
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_thousands() {
        assert_eq!(money(9999.9), "9,999.90");
        assert_eq!(money(999.99), "999.99");
        assert_eq!(money(1_234_567.891), "1,234,567.89");
        assert_eq!(money(0.0), "0.00");
        assert_eq!(money(-12.5), "-12.50");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(3600.0), "1h");
        assert_eq!(format_duration(5400.0), "1h 30m");
        assert_eq!(format_duration(75.0), "1m 15s");
        assert_eq!(format_duration(9.4), "9s");
    }
}
