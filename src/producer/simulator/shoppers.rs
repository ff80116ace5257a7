//! Ordinary users: a stable home per user number, and sessions that browse
//! and sometimes fill a cart and buy.

use rand::RngExt;

use super::catalog::{self, DeviceProfile, Place};
use super::{Page, Session, Simulator, Step, user_id, weighted};

/// Share of normal sessions that end in a purchase (tuned so purchases are
/// ~2 % of events, like the seed), on average over the sources: each source
/// scales it (see `catalog::ACQUISITION`).
const BUYER_SHARE: f64 = 0.075;
/// Share of browsing sessions that put something in the cart and leave.
const ABANDON_SHARE: f64 = 0.01;

impl Simulator {
    pub(super) fn normal_session(&mut self) -> Session {
        // Prefer a user without an open session; a person browses in one tab.
        let mut number = self.rng.random_range(0..self.users);
        for _ in 0..4 {
            if !self.busy_users.contains(&number) {
                break;
            }
            number = self.rng.random_range(0..self.users);
        }
        let home = self.home_of(number);
        let acquisition = &catalog::ACQUISITION[weighted(&mut self.rng, &self.acquisition_pick)];
        let buyer = self
            .rng
            .random_bool((BUYER_SHARE * acquisition.buys / catalog::mean_buys()).min(1.0));
        let mut steps = Vec::with_capacity(12);
        let landing = self.browse_page();
        steps.push(Step::View(landing));
        let browse = if buyer {
            self.geometric(4.0)
        } else {
            self.geometric(2.0)
        };
        for _ in 0..browse {
            let step = self.browse_step();
            steps.push(step);
        }
        if buyer {
            let items = if self.rng.random_bool(0.95) { 2 } else { 3 };
            for _ in 0..items {
                let product = self.pick_product();
                let at = self.rng.random_range(1..=steps.len());
                steps.insert(at, Step::AddToCart(product));
                steps.insert(at, Step::View(Page::Product(product)));
            }
            steps.push(Step::Purchase);
        } else if self.rng.random_bool(ABANDON_SHARE) {
            let product = self.pick_product();
            steps.push(Step::View(Page::Product(product)));
            steps.push(Step::AddToCart(product));
        }
        Session {
            user_id: user_id(number),
            session_id: self.uuid(),
            ip: home.ip,
            next_ip: None,
            place: home.place,
            device: home.device,
            referrer: acquisition.referrer,
            utm: acquisition.utm,
            steps,
            next_step: 0,
            think_ms: (1_000, 8_000),
            cart_value: 0.0,
            last_product: None,
            previous_page: None,
            user_number: Some(number),
            emitted: 0,
            fraud: false,
            actor: None,
        }
    }

    fn browse_page(&mut self) -> Page {
        match self.rng.random_range(0..10) {
            0..=3 => Page::Product(self.pick_product()),
            4 => Page::Category(self.rng.random_range(0..catalog::CATEGORIES.len())),
            _ => Page::Static(weighted(&mut self.rng, &self.page_pick)),
        }
    }

    fn browse_step(&mut self) -> Step {
        // Weights chosen so that, landing pages included, page views, clicks
        // and searches come out near the seed's 60/25/10.
        match self.rng.random_range(0..1000) {
            0..=419 => Step::View(self.browse_page()),
            420..=829 => {
                if self.rng.random_bool(0.7) {
                    Step::Click(Page::Product(self.pick_product()))
                } else {
                    Step::Click(self.browse_page())
                }
            }
            _ => Step::Search(self.rng.random_range(0..catalog::SEARCH_QUERIES.len())),
        }
    }

    pub(super) fn pick_product(&mut self) -> usize {
        weighted(&mut self.rng, &self.product_pick)
    }

    /// Number of extra browse steps: geometric with the given mean.
    fn geometric(&mut self, mean: f64) -> usize {
        let p = 1.0 / (mean + 1.0);
        let mut n = 0;
        while n < 40 && !self.rng.random_bool(p) {
            n += 1;
        }
        n
    }

    /// A user's stable home, derived from the seed and the user's number
    /// without storing anything, so populations of millions cost nothing.
    fn home_of(&self, number: u64) -> Home {
        let h = splitmix64(self.seed ^ splitmix64(number.wrapping_add(0x9e37_79b9)));
        let pick = |cumulative: &[u32], x: u64| {
            let total = u64::from(*cumulative.last().unwrap_or(&1));
            let x = (x % total) as u32;
            cumulative.partition_point(|&c| c <= x)
        };
        let place = &catalog::PLACES[pick(&self.place_pick, h)];
        let device = &catalog::DEVICES[pick(&self.device_pick, h >> 20)];
        let ip = format!(
            "{}.{}.{}.{}",
            place.ip_octet,
            (h >> 40) & 0xff,
            (h >> 48) & 0xff,
            ((h >> 56) & 0xfe).max(1)
        );
        Home { place, device, ip }
    }
}

struct Home {
    place: &'static Place,
    device: &'static DeviceProfile,
    ip: String,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
