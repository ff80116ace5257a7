//! The traffic model: users, sessions and fraudulent actors.
//!
//! Realistic traffic rather than uniform noise, because both consumers are
//! judged on it: the analytics funnel must look like a shop's, and the fraud
//! detector must find the injected fraud without drowning in false alarms.
//!
//! - **Users** (`user-1000` …) have a stable home: one place, one IP address,
//!   one device, derived from the seed and the user's number, so a user looks
//!   the same in every session and ordinary users never trip the IP or
//!   location rules.
//! - **Sessions** walk page_view → click → search → add_to_cart → purchase.
//!   Browsers look around and leave; buyers view products, put two or three
//!   in the cart and check out. Carts accumulate and the purchase carries the
//!   `cart_value`. Buyers add at least two items because the seed's
//!   PURCHASE_WITHOUT_ACTIVITY rule flags any purchase with fewer than two
//!   prior transactional events; the resulting mix is about
//!   58/25/10/4.5/2 % (page_view/click/search/add_to_cart/purchase): the
//!   seed's 60/25/10/3/2 with 1.5 points moved from page views to carts.
//! - **Acquisition**: each session comes from somewhere (`catalog::ACQUISITION`):
//!   direct, organic search, social sites, a review blog, Google search ads,
//!   Instagram ads and a newsletter, the last three with `utm_*` parameters
//!   on the landing URL. Sources convert differently (ads and the newsletter
//!   best, social visits least), around the same overall share of buyers.
//! - **Fraud** (`FRAUD_RATE` of new sessions, scenarios in rotation): bots
//!   (bursts of cart additions), card testers (several small purchases in
//!   minutes), account takeovers (a live user's account used from another
//!   country, switching IPs) and high-value purchases. Each actor is reported
//!   once through [`Simulator::take_new_actors`] with the rules expected to
//!   catch it, so detection can be scored.
//!
//! The simulator is pure: the caller supplies the clock (`now_ms`), so the
//! same seed and the same clock give the same events, byte for byte.
//! Concurrency follows the rate: about `rate × mean think time` sessions are
//! open at once (capped), and the session whose next step is due soonest
//! speaks next, so each session's events are spaced like a person's (or a
//! bot's) and the overall rate is exactly what the caller asks for.
//!
//! Ordinary users' homes and sessions are built in `shoppers`, the fraud
//! scenarios in `fraud`; this module schedules the sessions and renders
//! their steps as events.

mod fraud;
mod shoppers;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use super::catalog::{self, DeviceProfile, Place};
use crate::event::{Device, Event, EventType, Location, Properties};
pub use fraud::{FraudActor, Scenario};

/// Mean gap between a person's events; sets concurrency for a given rate.
const MEAN_THINK_MS: f64 = 4_500.0;
/// Upper bound on open sessions, which bounds memory at any rate.
const MAX_OPEN_SESSIONS: usize = 20_000;
const MIN_OPEN_SESSIONS: usize = 8;

#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    pub seed: u64,
    pub users: u64,
    pub fraud_rate: f64,
    /// The intended events per second (0 = unknown/unlimited); sets how many
    /// sessions are open at once.
    pub events_per_second: f64,
}

#[derive(Clone, Copy, Debug)]
enum Page {
    Static(usize),
    Product(usize),
    Category(usize),
    Search(usize),
    Checkout,
}

#[derive(Clone, Copy, Debug)]
enum Step {
    View(Page),
    Click(Page),
    Search(usize),
    AddToCart(usize),
    /// Check out the cart.
    Purchase,
    /// Buy one item directly, without a cart (what card testers do).
    BuyNow(usize),
    /// Not an event: the actor switches to its next IP address.
    SwitchIp,
}

struct Session {
    user_id: String,
    session_id: String,
    ip: String,
    /// A second address an account takeover switches to.
    next_ip: Option<String>,
    place: &'static Place,
    device: &'static DeviceProfile,
    referrer: Option<&'static str>,
    /// The `utm_*` query of the landing URL.
    utm: Option<&'static str>,
    steps: Vec<Step>,
    next_step: usize,
    think_ms: (u32, u32),
    cart_value: f64,
    /// The dearest item in the cart, named by the purchase event.
    last_product: Option<usize>,
    previous_page: Option<Page>,
    /// Population number for ordinary users (None for fresh fraud identities).
    user_number: Option<u64>,
    emitted: u32,
    fraud: bool,
    /// Reported when the actor's first event is emitted.
    actor: Option<FraudActor>,
}

/// The traffic generator. See the module documentation.
pub struct Simulator {
    rng: Xoshiro256PlusPlus,
    seed: u64,
    users: u64,
    fraud_rate: f64,
    fraud_budget: f64,
    next_scenario: usize,
    fresh_identities: u64,
    target_open: usize,
    sessions: Vec<Option<Session>>,
    free_slots: Vec<usize>,
    due: BinaryHeap<Reverse<(i64, u64, usize)>>,
    sequence: u64,
    busy_users: HashSet<u64>,
    new_actors: Vec<FraudActor>,
    // Pre-rendered URLs, so events borrow instead of formatting per event.
    static_urls: Vec<String>,
    product_urls: Vec<String>,
    category_urls: Vec<String>,
    search_urls: Vec<String>,
    checkout_url: String,
    product_pick: Vec<u32>,
    page_pick: Vec<u32>,
    acquisition_pick: Vec<u32>,
    place_pick: Vec<u32>,
    device_pick: Vec<u32>,
    event_id: String,
    emitted: u64,
    warming_up: bool,
    events_per_second: f64,
}

impl Simulator {
    pub fn new(config: &SimulatorConfig) -> Simulator {
        let target_open = if config.events_per_second > 0.0 {
            ((config.events_per_second * MEAN_THINK_MS / 1000.0) as usize).clamp(MIN_OPEN_SESSIONS, MAX_OPEN_SESSIONS)
        } else {
            MAX_OPEN_SESSIONS
        };
        let cumulative = |weights: &mut dyn Iterator<Item = u32>| -> Vec<u32> {
            let mut total = 0;
            weights
                .map(|w| {
                    total += w;
                    total
                })
                .collect()
        };
        Simulator {
            rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
            seed: config.seed,
            users: config.users,
            fraud_rate: config.fraud_rate,
            // Start half-way to the first fraudulent session so a short demo
            // shows fraud early instead of after 1/FRAUD_RATE sessions.
            fraud_budget: 0.5,
            next_scenario: 0,
            fresh_identities: 0,
            target_open,
            sessions: Vec::new(),
            free_slots: Vec::new(),
            due: BinaryHeap::new(),
            sequence: 0,
            busy_users: HashSet::new(),
            new_actors: Vec::new(),
            static_urls: catalog::PAGES
                .iter()
                .map(|(p, _)| format!("{}{p}", catalog::ORIGIN))
                .collect(),
            product_urls: catalog::PRODUCTS
                .iter()
                .map(|p| format!("{}/products/{}", catalog::ORIGIN, p.slug))
                .collect(),
            category_urls: catalog::CATEGORIES
                .iter()
                .map(|c| format!("{}/category/{c}", catalog::ORIGIN))
                .collect(),
            search_urls: catalog::SEARCH_QUERIES
                .iter()
                .map(|q| format!("{}/search?q={}", catalog::ORIGIN, q.replace(' ', "+")))
                .collect(),
            checkout_url: format!("{}/checkout", catalog::ORIGIN),
            product_pick: cumulative(&mut catalog::PRODUCT_WEIGHTS.iter().copied()),
            page_pick: cumulative(&mut catalog::PAGES.iter().map(|(_, w)| *w)),
            acquisition_pick: cumulative(&mut catalog::ACQUISITION.iter().map(|a| a.weight)),
            place_pick: cumulative(&mut catalog::PLACES.iter().map(|p| p.weight)),
            device_pick: cumulative(&mut catalog::DEVICES.iter().map(|d| d.weight)),
            event_id: String::with_capacity(36),
            emitted: 0,
            warming_up: false,
            events_per_second: config.events_per_second,
        }
    }

    /// Runs the site for a while before `now_ms`, discarding the events, so
    /// that the first emitted events come from a site in steady state (people
    /// mid-session, carts half full) rather than a burst of landing pages.
    /// No fraud starts during warm-up, so every actor is seen from its start.
    pub fn warm_up(&mut self, now_ms: i64) {
        // A buyer's session is ~8 events a few seconds apart: a minute of
        // simulated time, or ten events per open session, reaches steady state.
        const WARM_UP_MS: f64 = 60_000.0;
        const MAX_WARM_UP_EVENTS: f64 = 300_000.0;
        let spacing_ms = if self.events_per_second > 0.0 {
            1000.0 / self.events_per_second
        } else {
            MEAN_THINK_MS / self.target_open as f64
        };
        let events = (WARM_UP_MS / spacing_ms)
            .max(self.target_open as f64 * 10.0)
            .min(MAX_WARM_UP_EVENTS) as usize;
        self.warming_up = true;
        for i in 0..events {
            let t = now_ms - ((events - i) as f64 * spacing_ms) as i64;
            self.next_event(t);
        }
        self.warming_up = false;
        self.emitted = 0;
        self.new_actors.clear();
        // A shopper whose cart additions fell in the discarded warm-up would
        // check out in the live stream without them, which looks exactly like
        // PURCHASE_WITHOUT_ACTIVITY. They abandon their cart instead.
        for session in self.sessions.iter_mut().flatten() {
            let carted = session.steps[..session.next_step]
                .iter()
                .any(|s| matches!(s, Step::AddToCart(_)));
            if carted
                && let Some(at) = session.steps[session.next_step..]
                    .iter()
                    .position(|s| matches!(s, Step::Purchase))
            {
                session.steps.truncate(session.next_step + at);
            }
        }
    }

    /// Sessions currently open.
    pub fn active_sessions(&self) -> usize {
        self.due.len()
    }

    /// Events generated so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Fraudulent actors that started since the last call.
    pub fn take_new_actors(&mut self) -> Vec<FraudActor> {
        std::mem::take(&mut self.new_actors)
    }

    /// The next event, stamped `now_ms`.
    pub fn next_event(&mut self, now_ms: i64) -> Event<'_> {
        while self.due.len() < self.target_open {
            let stagger = self.rng.random_range(0..MEAN_THINK_MS as i64);
            self.open_session(now_ms, now_ms + stagger);
        }
        let slot = loop {
            let Reverse((_, _, slot)) = self.due.pop().expect("sessions were just opened");
            let session = self.sessions[slot].as_mut().expect("scheduled sessions exist");
            if let Some(Step::SwitchIp) = session.steps.get(session.next_step) {
                if let Some(ip) = session.next_ip.take() {
                    session.ip = ip;
                }
                session.next_step += 1;
            }
            if session.next_step < session.steps.len() {
                break slot;
            }
            self.close_session(slot);
            let stagger = self.rng.random_range(0..MEAN_THINK_MS as i64 / 4);
            self.open_session(now_ms, now_ms + stagger);
        };

        let (think_lo, think_hi) = self.sessions[slot].as_ref().map(|s| s.think_ms).unwrap_or((1000, 2000));
        let think = self.rng.random_range(think_lo..=think_hi);
        write_uuid(&mut self.rng, &mut self.event_id);
        let session = self.sessions[slot].as_mut().expect("slot is live");
        if let Some(mut actor) = session.actor.take() {
            actor.started_at = crate::eventtime::format_rfc3339_ms(now_ms);
            self.new_actors.push(actor);
        }
        let step = session.steps[session.next_step];
        session.next_step += 1;
        session.emitted += 1;
        let finished = session.next_step >= session.steps.len();
        self.sequence += 1;
        if finished {
            // Close after this event: schedule an immediate wake-up that
            // finds no steps left and recycles the slot.
            self.due.push(Reverse((now_ms, self.sequence, slot)));
        } else {
            self.due.push(Reverse((now_ms + i64::from(think), self.sequence, slot)));
        }
        self.emitted += 1;

        let session = self.sessions[slot].as_mut().expect("slot is live");
        let mut properties = Properties::default();
        let (event_type, page) = match step {
            Step::View(page) => {
                if let Page::Product(i) = page {
                    product_properties(&mut properties, i);
                }
                (EventType::PageView, page)
            }
            Step::Click(page) => {
                if let Page::Product(i) = page {
                    product_properties(&mut properties, i);
                }
                (EventType::Click, page)
            }
            Step::Search(q) => {
                properties.search_query = Some(Cow::Borrowed(catalog::SEARCH_QUERIES[q]));
                (EventType::Search, Page::Search(q))
            }
            Step::AddToCart(i) => {
                session.cart_value = round_cents(session.cart_value + catalog::PRODUCTS[i].price);
                // The order's headline item: the dearest in the cart.
                if session
                    .last_product
                    .is_none_or(|top| catalog::PRODUCTS[top].price < catalog::PRODUCTS[i].price)
                {
                    session.last_product = Some(i);
                }
                product_properties(&mut properties, i);
                properties.cart_value = Some(session.cart_value);
                (EventType::AddToCart, Page::Product(i))
            }
            Step::Purchase => {
                if let Some(i) = session.last_product {
                    product_properties(&mut properties, i);
                }
                properties.cart_value = Some(session.cart_value);
                session.cart_value = 0.0;
                session.last_product = None;
                (EventType::Purchase, Page::Checkout)
            }
            Step::BuyNow(i) => {
                product_properties(&mut properties, i);
                properties.cart_value = properties.price;
                (EventType::Purchase, Page::Checkout)
            }
            // Consumed above, before a step is chosen to emit.
            Step::SwitchIp => (EventType::PageView, Page::Static(0)),
        };
        let first = session.previous_page.is_none();
        let referrer = match session.previous_page {
            None => session.referrer.map(Cow::Borrowed),
            Some(prev) => Some(Cow::Borrowed(url_of(
                prev,
                &self.static_urls,
                &self.product_urls,
                &self.category_urls,
                &self.search_urls,
                &self.checkout_url,
            ))),
        };
        session.previous_page = Some(page);
        let session = &*session;
        Event {
            event_id: Cow::Borrowed(self.event_id.as_str()),
            timestamp_ms: now_ms,
            user_id: Cow::Borrowed(session.user_id.as_str()),
            session_id: Some(Cow::Borrowed(session.session_id.as_str())),
            event_type,
            page_url: Some(landing_url(
                url_of(
                    page,
                    &self.static_urls,
                    &self.product_urls,
                    &self.category_urls,
                    &self.search_urls,
                    &self.checkout_url,
                ),
                first.then_some(session.utm).flatten(),
            )),
            referrer,
            user_agent: Some(Cow::Borrowed(session.device.user_agent)),
            ip_address: Some(Cow::Borrowed(session.ip.as_str())),
            properties,
            device: Device {
                device_type: Some(Cow::Borrowed(session.device.device_type)),
                os: Some(Cow::Borrowed(session.device.os)),
                browser: Some(Cow::Borrowed(session.device.browser)),
            },
            location: Location {
                country: Some(Cow::Borrowed(session.place.country)),
                city: Some(Cow::Borrowed(session.place.city)),
                timezone: Some(Cow::Borrowed(session.place.timezone)),
            },
            record: None,
            received_ms: None,
        }
    }

    fn open_session(&mut self, now_ms: i64, due_ms: i64) {
        if !self.warming_up {
            self.fraud_budget += self.fraud_rate;
        }
        let session = if self.fraud_budget >= 1.0 {
            self.fraud_budget -= 1.0;
            self.fraud_session(now_ms)
        } else {
            None
        };
        let session = match session {
            Some(s) => s,
            None => self.normal_session(),
        };
        if let Some(n) = session.user_number {
            self.busy_users.insert(n);
        }
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.sessions[slot] = Some(session);
                slot
            }
            None => {
                self.sessions.push(Some(session));
                self.sessions.len() - 1
            }
        };
        self.sequence += 1;
        self.due.push(Reverse((due_ms, self.sequence, slot)));
    }

    fn close_session(&mut self, slot: usize) {
        if let Some(session) = self.sessions[slot].take()
            && let Some(n) = session.user_number
        {
            self.busy_users.remove(&n);
        }
        self.free_slots.push(slot);
    }

    fn uuid(&mut self) -> String {
        let mut s = String::with_capacity(36);
        write_uuid(&mut self.rng, &mut s);
        s
    }

    fn random_ip(&mut self, first_octet: u8) -> String {
        let x: u32 = self.rng.random();
        format!(
            "{first_octet}.{}.{}.{}",
            (x >> 16) & 0xff,
            (x >> 8) & 0xff,
            (x & 0xfe).max(1)
        )
    }
}

/// An index drawn with the weights whose running totals are `cumulative`.
fn weighted(rng: &mut Xoshiro256PlusPlus, cumulative: &[u32]) -> usize {
    let total = *cumulative.last().unwrap_or(&1);
    let x = rng.random_range(0..total);
    cumulative.partition_point(|&c| c <= x)
}

fn url_of<'a>(
    page: Page,
    statics: &'a [String],
    products: &'a [String],
    categories: &'a [String],
    searches: &'a [String],
    checkout: &'a str,
) -> &'a str {
    match page {
        Page::Static(i) => &statics[i],
        Page::Product(i) => &products[i],
        Page::Category(i) => &categories[i],
        Page::Search(i) => &searches[i],
        Page::Checkout => checkout,
    }
}

fn product_properties(properties: &mut Properties<'_>, index: usize) {
    let p = &catalog::PRODUCTS[index];
    properties.product_id = Some(Cow::Borrowed(p.id));
    properties.product_name = Some(Cow::Borrowed(p.name));
    properties.price = Some(p.price);
    properties.category = Some(Cow::Borrowed(p.category));
}

fn round_cents(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// `user-1000`, `user-1001`, … like the seed's ids.
pub fn user_id(number: u64) -> String {
    format!("user-{}", 1000 + number)
}

/// Writes a random (version 4) UUID in its 36-character text form.
fn write_uuid(rng: &mut Xoshiro256PlusPlus, out: &mut String) {
    let hi: u64 = rng.random();
    let lo: u64 = rng.random();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    crate::event::write_uuid_v4(bytes, out);
}

#[cfg(test)]
mod tests;

/// The landing page's URL with the session's `utm_*` query, if any.
fn landing_url<'a>(url: &'a str, utm: Option<&str>) -> Cow<'a, str> {
    match utm {
        None => Cow::Borrowed(url),
        Some(query) => {
            let joint = if url.contains('?') { '&' } else { '?' };
            Cow::Owned(format!("{url}{joint}{query}"))
        }
    }
}
