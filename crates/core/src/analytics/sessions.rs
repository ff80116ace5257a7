//! Sessions for acquisition and engagement: where each session came from
//! (its landing event's source, channel and campaign), its landing and exit
//! pages, whether it engaged, converted and how much it sold, and whether its
//! user was new.
//!
//! **A session** is one `session_id` of one user, kept from its first event
//! until `ANALYTICS_SESSION_TIMEOUT` of event time passes without another;
//! its landing event is its earliest, whatever order its events arrive in.
//!
//! **When a session counts.** A session is counted — in sessions by source,
//! channel and campaign, entry pages, new or returning users — once the
//! watermark passes its start: from then on no on-time event can be earlier
//! than its landing event, so its attribution is final. Until then a
//! purchase adds to the session's pending revenue; after, it is counted at
//! once. Every count is made while processing live (a rebuild replays in
//! warm-up and counts nothing), so a fleet's counts add up to one
//! replica's: the replay leaves each session in the state the previous owner
//! had, counted or not.
//!
//! **Engagement** is GA4's: a session is engaged once it lasted more than
//! [`ENGAGED_SECONDS`], or has two page views, or a purchase; the bounce rate
//! is the share of counted sessions that are not (yet) engaged.
//!
//! **Exit pages** are the page of each session's latest page view: when a
//! later page view arrives, the session's count moves from the old page to
//! the new one (`exits_in` and `exits_out` count the moves, so the figures
//! stay monotonic counters that sum over pods). Open sessions show their
//! current page, closed ones their exit page.
//!
//! **Returning users**: a session whose user had an on-time event before it,
//! in the user's record — which lives while the user is seen within
//! `ANALYTICS_WINDOW`: a visitor back within the window is returning.
//!
//! Only exactly tracked users have sessions (users beyond
//! `ANALYTICS_MAX_USERS_PER_PARTITION` are counted by sketch, without
//! sessions), and a partition keeps at most that many open sessions. Labels are interned per partition, at most [`MAX_LABELS`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::acquisition::{Acquisition, Channel};
use super::bounded::{BoundedCounts, OTHER};
use super::{MAX_CAMPAIGNS, MAX_PAGES, MAX_SOURCES};
use crate::event::{Event, EventType, page_path};

/// A session longer than this (seconds, first to latest event) is engaged.
pub const ENGAGED_SECONDS: u32 = 10;
/// Distinct labels (sources, campaigns, pages) one partition interns; the
/// rest share [`OTHER`]'s id.
pub const MAX_LABELS: usize = 4096;

/// Label ids of one partition; 0 is "none", 1 is [`OTHER`].
///
/// A snapshot holds the names; the ids are rebuilt from them.
#[derive(Default, Serialize, Deserialize)]
#[serde(try_from = "LabelNames")]
pub(super) struct Labels {
    #[serde(skip_serializing)]
    ids: HashMap<Box<str>, u32, foldhash::fast::FixedState>,
    names: Vec<Box<str>>,
}

/// What a snapshot holds of [`Labels`].
#[derive(Deserialize)]
struct LabelNames {
    names: Vec<Box<str>>,
}

impl TryFrom<LabelNames> for Labels {
    type Error = &'static str;

    fn try_from(LabelNames { names }: LabelNames) -> Result<Labels, &'static str> {
        let reserved = names.is_empty() || (names.len() >= 2 && names[0].is_empty() && &*names[1] == OTHER);
        if !reserved || names.len() > MAX_LABELS {
            return Err("labels without the reserved ids, or too many");
        }
        // As `id` made them: every name from id 2 on, the latest of equal
        // names winning (only "" can repeat, after id 0's).
        let ids = names
            .iter()
            .enumerate()
            .skip(2)
            .map(|(id, name)| (name.clone(), id as u32))
            .collect();
        Ok(Labels { ids, names })
    }
}

impl Labels {
    pub fn id(&mut self, label: &str) -> u32 {
        if self.names.is_empty() {
            self.names.push("".into());
            self.names.push(OTHER.into());
        }
        if let Some(&id) = self.ids.get(label) {
            return id;
        }
        if self.names.len() >= MAX_LABELS || label == OTHER {
            return 1;
        }
        let id = self.names.len() as u32;
        self.names.push(label.into());
        self.ids.insert(label.into(), id);
        id
    }

    pub fn name(&self, id: u32) -> Option<&str> {
        (id != 0).then(|| self.names.get(id as usize).map(|n| &**n)).flatten()
    }

    pub fn heap_bytes(&self) -> usize {
        self.names.iter().map(|n| 2 * n.len() + 40).sum()
    }
}

const COUNTED: u8 = 1;
const ENGAGED: u8 = 2;
const CONVERTED: u8 = 4;

/// One open session (a user's `session_id`) of an exactly tracked user.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(super) struct Session {
    /// The user's key.
    pub user: u64,
    /// Its earliest event (ms): the landing event, whose referrer and URL
    /// say where the session came from.
    pub start_ms: i64,
    /// Its latest event (ms).
    pub latest_ms: i64,
    pub source: u32,
    campaign: u32,
    #[serde(deserialize_with = "channel_index")]
    channel: u8,
    entry: u32,
    exit: u32,
    exit_at_ms: i64,
    pages: u32,
    pending_cents: u64,
    flags: u8,
}

/// A snapshot's session channel: the index of one of [`Channel::ALL`].
fn channel_index<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let channel = u8::deserialize(d)?;
    crate::snapshot::require(usize::from(channel) < Channel::ALL.len(), "a session of no channel")?;
    Ok(channel)
}

/// What sessions add up to: the processor's monotonic counters.
#[derive(Clone, Debug)]
pub struct SessionTotals {
    pub sessions: u64,
    pub engaged: u64,
    pub page_views: u64,
    pub new_users: u64,
    pub returning_users: u64,
    pub channels: [u64; 9],
    pub sources: BoundedCounts,
    pub source_conversions: BoundedCounts,
    pub source_revenue_cents: BoundedCounts,
    pub campaigns: BoundedCounts,
    pub campaign_conversions: BoundedCounts,
    pub campaign_revenue_cents: BoundedCounts,
    pub entry_pages: BoundedCounts,
    /// A session's latest page became this page…
    pub exits_in: BoundedCounts,
    /// …and later moved on from it: exit pages are `exits_in - exits_out`.
    pub exits_out: BoundedCounts,
}

impl Default for SessionTotals {
    fn default() -> Self {
        SessionTotals {
            sessions: 0,
            engaged: 0,
            page_views: 0,
            new_users: 0,
            returning_users: 0,
            channels: [0; 9],
            sources: BoundedCounts::new(MAX_SOURCES),
            source_conversions: BoundedCounts::new(MAX_SOURCES),
            source_revenue_cents: BoundedCounts::new(MAX_SOURCES),
            campaigns: BoundedCounts::new(MAX_CAMPAIGNS),
            campaign_conversions: BoundedCounts::new(MAX_CAMPAIGNS),
            campaign_revenue_cents: BoundedCounts::new(MAX_CAMPAIGNS),
            entry_pages: BoundedCounts::new(MAX_PAGES),
            exits_in: BoundedCounts::new(MAX_PAGES),
            exits_out: BoundedCounts::new(MAX_PAGES),
        }
    }
}

/// Everything session bookkeeping needs besides the session.
pub(super) struct Ctx<'a> {
    pub totals: &'a mut SessionTotals,
    pub labels: &'a mut Labels,
    /// Processing live: counts are made (a replay only rebuilds state).
    pub live: bool,
    pub site_domains: &'a [String],
}

impl Session {
    /// A session whose first event so far is `event`.
    pub fn new(event: &Event<'_>, user: u64, ctx: &mut Ctx<'_>) -> Session {
        let mut s = Session {
            user,
            start_ms: event.timestamp_ms,
            latest_ms: event.timestamp_ms,
            exit_at_ms: i64::MIN,
            ..Session::default()
        };
        s.attribute(event, ctx);
        s
    }

    /// The session's start in seconds.
    pub fn start_s(&self) -> u32 {
        (self.start_ms.max(0) / 1000).min(i64::from(u32::MAX)) as u32
    }

    /// Takes the acquisition and landing page from `event`, the session's
    /// earliest so far.
    fn attribute(&mut self, event: &Event<'_>, ctx: &mut Ctx<'_>) {
        let Acquisition {
            source,
            campaign,
            channel,
            ..
        } = super::acquisition::acquisition(event.page_url.as_deref(), event.referrer.as_deref(), ctx.site_domains);
        self.source = ctx.labels.id(&source);
        self.campaign = campaign.map_or(0, |c| ctx.labels.id(&c));
        self.channel = channel.index() as u8;
        self.entry = event.page_url.as_deref().map_or(0, |u| ctx.labels.id(page_path(u)));
    }

    fn is(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn engaged_now(&self) -> bool {
        self.latest_ms.saturating_sub(self.start_ms) > i64::from(ENGAGED_SECONDS) * 1000
            || self.pages >= 2
            || self.is(CONVERTED)
    }

    pub fn label(labels: &Labels, id: u32) -> &str {
        labels.name(id).unwrap_or(OTHER)
    }

    /// Takes `event` into the session (the one it was created with too).
    pub fn observe(&mut self, event: &Event<'_>, ctx: &mut Ctx<'_>) {
        let ts = event.timestamp_ms;
        if ts < self.start_ms {
            if !self.is(COUNTED) {
                self.attribute(event, ctx);
            }
            self.start_ms = ts;
        }
        self.latest_ms = self.latest_ms.max(ts);
        let counted = self.is(COUNTED) && ctx.live;
        if event.event_type == EventType::PageView
            && let Some(url) = event.page_url.as_deref()
        {
            self.pages += 1;
            if counted {
                ctx.totals.page_views += 1;
            }
            let path = page_path(url);
            // The latest page view; at the same millisecond, the greater
            // path, so the arrival order cannot decide.
            let later = ts > self.exit_at_ms
                || (ts == self.exit_at_ms && ctx.labels.name(self.exit).is_none_or(|current| path > current));
            if later {
                let page = ctx.labels.id(path);
                if counted && self.exit != page {
                    if self.exit != 0 {
                        ctx.totals.exits_out.add(Self::label(ctx.labels, self.exit), 1);
                    }
                    ctx.totals.exits_in.add(Self::label(ctx.labels, page), 1);
                }
                self.exit = page;
                self.exit_at_ms = ts;
            }
        }
        if event.event_type == EventType::Purchase {
            let cents = (event.amount() * 100.0).round() as u64;
            if self.is(COUNTED) {
                if ctx.live {
                    self.count_purchase(cents, !self.is(CONVERTED), ctx);
                }
            } else {
                self.pending_cents += cents;
            }
            self.flags |= CONVERTED;
        }
        if self.is(COUNTED) && !self.is(ENGAGED) && self.engaged_now() {
            self.flags |= ENGAGED;
            if ctx.live {
                ctx.totals.engaged += 1;
            }
        }
    }

    fn count_purchase(&self, cents: u64, first: bool, ctx: &mut Ctx<'_>) {
        let t = &mut *ctx.totals;
        let source = Self::label(ctx.labels, self.source);
        t.source_revenue_cents.add(source, cents);
        if first {
            t.source_conversions.add(source, 1);
        }
        if let Some(campaign) = ctx.labels.name(self.campaign) {
            t.campaign_revenue_cents.add(campaign, cents);
            if first {
                t.campaign_conversions.add(campaign, 1);
            }
        }
    }

    /// Counts the session: its start is final (the watermark passed it), or
    /// it is closing before that. `returning`: its user was active before it.
    pub fn count(&mut self, returning: bool, ctx: &mut Ctx<'_>) {
        if self.is(COUNTED) {
            return;
        }
        self.flags |= COUNTED;
        let engaged = self.engaged_now();
        if engaged {
            self.flags |= ENGAGED;
        }
        if !ctx.live {
            return;
        }
        let labels = &*ctx.labels;
        let t = &mut *ctx.totals;
        t.sessions += 1;
        t.page_views += u64::from(self.pages);
        t.channels[usize::from(self.channel)] += 1;
        t.sources.add(Self::label(labels, self.source), 1);
        if let Some(campaign) = labels.name(self.campaign) {
            t.campaigns.add(campaign, 1);
        }
        if let Some(entry) = labels.name(self.entry) {
            t.entry_pages.add(entry, 1);
        }
        if let Some(exit) = labels.name(self.exit) {
            t.exits_in.add(exit, 1);
        }
        if returning {
            t.returning_users += 1;
        } else {
            t.new_users += 1;
        }
        if engaged {
            t.engaged += 1;
        }
        if self.is(CONVERTED) {
            self.count_purchase(self.pending_cents, true, ctx);
        }
        self.pending_cents = 0;
    }
}
