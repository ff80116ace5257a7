//! The injected fraud: the four scenarios, the actors reported for scoring,
//! and the sessions that act them out.

use rand::RngExt;

use super::{Page, Session, Simulator, Step, catalog, user_id, weighted};
use crate::fraud::Rule;

/// The kinds of injected fraud.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    Bot,
    CardTester,
    AccountTakeover,
    HighValue,
}

impl Scenario {
    pub(super) const ROTATION: [Scenario; 4] = [
        Scenario::Bot,
        Scenario::CardTester,
        Scenario::AccountTakeover,
        Scenario::HighValue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Bot => "bot",
            Scenario::CardTester => "card_tester",
            Scenario::AccountTakeover => "account_takeover",
            Scenario::HighValue => "high_value_purchase",
        }
    }

    /// The rules any one of which should flag this actor.
    pub fn expected_rules(self) -> &'static [Rule] {
        match self {
            Scenario::Bot => &[Rule::HighVelocity],
            Scenario::CardTester => &[Rule::RapidPurchases, Rule::PurchaseWithoutActivity],
            Scenario::AccountTakeover => &[Rule::RapidLocationChange, Rule::MultipleIps],
            Scenario::HighValue => &[Rule::HighValuePurchase],
        }
    }
}

/// One injected fraudulent actor, for the `--truth-file`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FraudActor {
    pub user_id: String,
    pub scenario: &'static str,
    pub expected_rules: Vec<&'static str>,
    pub session_id: String,
    pub started_at: String,
}

impl Simulator {
    pub(super) fn fraud_session(&mut self, now_ms: i64) -> Option<Session> {
        for _ in 0..Scenario::ROTATION.len() {
            let scenario = Scenario::ROTATION[self.next_scenario % Scenario::ROTATION.len()];
            self.next_scenario += 1;
            if let Some(mut session) = self.build_fraud(scenario) {
                session.actor = Some(FraudActor {
                    user_id: session.user_id.clone(),
                    scenario: scenario.as_str(),
                    expected_rules: scenario.expected_rules().iter().map(|r| r.as_str()).collect(),
                    session_id: session.session_id.clone(),
                    started_at: crate::eventtime::format_rfc3339_ms(now_ms),
                });
                return Some(session);
            }
        }
        None
    }

    fn build_fraud(&mut self, scenario: Scenario) -> Option<Session> {
        let mut steps = vec![Step::View(Page::Static(0))];
        let hostile = &catalog::HOSTILE_PLACES[self.rng.random_range(0..catalog::HOSTILE_PLACES.len())];
        let mut session = Session {
            user_id: String::new(),
            session_id: self.uuid(),
            ip: String::new(),
            next_ip: None,
            place: hostile,
            device: &catalog::DEVICES[0],
            referrer: None,
            utm: None,
            steps: Vec::new(),
            next_step: 0,
            think_ms: (2_000, 8_000),
            cart_value: 0.0,
            last_product: None,
            previous_page: None,
            user_number: None,
            emitted: 0,
            fraud: true,
            actor: None,
        };
        match scenario {
            Scenario::Bot => {
                session.device = &catalog::BOT_DEVICES[self.rng.random_range(0..catalog::BOT_DEVICES.len())];
                session.think_ms = (500, 2_500);
                for _ in 0..self.rng.random_range(6..=12) {
                    let product = self.pick_product();
                    steps.push(Step::AddToCart(product));
                }
                if self.rng.random_bool(0.5) {
                    steps.push(Step::Purchase);
                }
            }
            Scenario::CardTester => {
                session.think_ms = (3_000, 10_000);
                // Gift cards, a paperback, a bottle: cheap, instantly usable.
                const CHEAP: [usize; 3] = [19, 15, 8];
                for _ in 0..self.rng.random_range(3..=5) {
                    steps.push(Step::BuyNow(CHEAP[self.rng.random_range(0..CHEAP.len())]));
                }
            }
            Scenario::AccountTakeover => {
                // The victim is someone active right now: their last event is
                // seconds old, so the attacker's first event is a rapid
                // location change, and the second address makes three IPs.
                let victim = self
                    .sessions
                    .iter()
                    .flatten()
                    .filter(|s| !s.fraud && s.emitted > 0)
                    .map(|s| s.user_id.clone())
                    .nth(self.rng.random_range(0..8))?;
                session.user_id = victim;
                session.device = &catalog::DEVICES[weighted(&mut self.rng, &self.device_pick)];
                session.think_ms = (2_000, 8_000);
                let premium = catalog::PREMIUM_PRODUCTS[self.rng.random_range(0..catalog::PREMIUM_PRODUCTS.len())];
                steps = vec![
                    Step::View(Page::Static(6)),
                    Step::View(Page::Product(premium)),
                    Step::SwitchIp,
                    Step::AddToCart(premium),
                    Step::AddToCart(self.pick_product()),
                    Step::Purchase,
                ];
                session.next_ip = Some(self.random_ip(hostile.ip_octet));
            }
            Scenario::HighValue => {
                let place = &catalog::PLACES[weighted(&mut self.rng, &self.place_pick)];
                session.place = place;
                session.device = &catalog::DEVICES[weighted(&mut self.rng, &self.device_pick)];
                session.think_ms = (2_000, 6_000);
                let a = catalog::PREMIUM_PRODUCTS[self.rng.random_range(0..catalog::PREMIUM_PRODUCTS.len())];
                let b = catalog::PREMIUM_PRODUCTS[self.rng.random_range(0..catalog::PREMIUM_PRODUCTS.len())];
                steps.extend([
                    Step::View(Page::Product(a)),
                    Step::AddToCart(a),
                    Step::View(Page::Product(b)),
                    Step::AddToCart(b),
                    Step::Purchase,
                ]);
            }
        }
        if session.user_id.is_empty() {
            self.fresh_identities += 1;
            session.user_id = user_id(self.users + self.fresh_identities - 1);
        }
        session.ip = self.random_ip(session.place.ip_octet);
        session.steps = steps;
        Some(session)
    }
}
