//! Fuzzing the decoder and both processors, for a bounded time.
//!
//! Three campaigns run side by side, each for `FUZZ_SECONDS` (default 10):
//!
//! - **bytes**: arbitrary byte strings and JSON token soup (deep nesting,
//!   escapes, huge numbers) into [`decode`] and [`check_key`];
//! - **mutations**: real simulator events with bytes flipped, cut, inserted
//!   and duplicated, and fields replaced by arbitrary JSON values; whatever
//!   still decodes must re-encode to the same event and go through both
//!   processors;
//! - **streams**: event streams with adversarial field values (time running
//!   backwards and jumping years, odd addresses and places, extreme amounts,
//!   a tiny analytics user cap) through both processors, whose reports and
//!   alerts must render, stay within their bounds, and be deterministic.
//!
//! No input may panic, and no decode may allocate more than a small multiple
//! of its input (a counting allocator measures each call). Failures shrink to
//! a minimal input; `FUZZ_SEED` replays a run (the seed is printed).
//!
//! Each campaign has a module (`bytes`, `mutations`, `streams`); the
//! allocation accounting, the time-bounded runner and the pieces they share
//! are here.

mod bytes;
mod mutations;
mod streams;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use activity_tracker::analytics::AnalyticsProcessor;
use activity_tracker::config::{AnalyticsConfig, FraudConfig, IpPrivacy};
use activity_tracker::event::{DecodeLimits, Event, check_key, decode, page_path};
use activity_tracker::fraud::{Alert, FraudDetector, FraudRules};
use activity_tracker::privacy::IpRenderer;
use activity_tracker::processor::{Mode, Processor};
use activity_tracker::producer::simulator::{Simulator, SimulatorConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use serde_json::Value;

// ---- allocation accounting ----------------------------------------------

/// Counts, per thread, the bytes live since the last [`measure`] began and
/// their peak, so one decode call's footprint can be read off.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        account(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        account(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the peak bytes it had allocated at
/// once (on this thread).
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    (out, (PEAK.with(Cell::get) - start).max(0) as usize)
}

/// The most a decode of `len` bytes may hold at once: the event's owned
/// strings (escaped text, at most the input) plus its error message.
fn decode_bound(len: usize) -> usize {
    2 * len + 16 * 1024
}

// ---- the time-bounded runner ---------------------------------------------

fn fuzz_seconds() -> Duration {
    let s: f64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    Duration::from_secs_f64(s)
}

fn base_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
    })
}

/// Runs `check` on inputs from `strategy` in rounds of 256 until the time
/// budget is spent; returns the number of inputs tried. A failure (a panic
/// or a failed property) is shrunk by proptest and reported with its seed.
fn run_for<S: Strategy>(campaign: u64, strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>) -> u64
where
    S::Value: std::fmt::Debug,
{
    let deadline = Instant::now() + fuzz_seconds();
    let tried = AtomicU64::new(0);
    let mut round = 0u64;
    loop {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&base_seed().to_le_bytes());
        seed[8..16].copy_from_slice(&campaign.to_le_bytes());
        seed[16..24].copy_from_slice(&round.to_le_bytes());
        let config = Config {
            cases: 256,
            failure_persistence: None,
            max_shrink_time: 30_000,
            ..Config::default()
        };
        let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
        let result = runner.run(&strategy, |input| {
            tried.fetch_add(1, Ordering::Relaxed);
            check(input)
        });
        if let Err(e) = result {
            match e {
                TestError::Fail(why, input) => panic!(
                    "campaign {campaign} failed (FUZZ_SEED={}, round {round}): {why}\nminimal input: {input:#?}",
                    base_seed()
                ),
                TestError::Abort(why) => panic!("campaign {campaign} aborted: {why}"),
            }
        }
        round += 1;
        if Instant::now() >= deadline {
            return tried.into_inner();
        }
    }
}

// ---- shared pieces -----------------------------------------------------

const REFERENCE_MS: i64 = 1_705_314_645_123; // 2024-01-15T10:30:45.123Z

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

/// Both processors and a partition state for each.
struct Pipeline {
    analytics: AnalyticsProcessor,
    analytics_state: <AnalyticsProcessor as Processor>::State,
    fraud: FraudDetector,
    fraud_state: <FraudDetector as Processor>::State,
    alerts: Vec<Alert>,
    /// (user, event id) of the purchases processed so far.
    purchases: std::collections::HashSet<(String, String)>,
}

const ANALYTICS_USER_CAP: usize = 16;

impl Pipeline {
    fn new(privacy: IpPrivacy) -> Pipeline {
        let analytics = AnalyticsProcessor::new(AnalyticsConfig {
            max_users_per_partition: ANALYTICS_USER_CAP,
            ..AnalyticsConfig::default()
        });
        let fraud = FraudDetector::new(
            FraudRules::from_config(&FraudConfig::default()),
            IpRenderer::new(privacy),
        );
        Pipeline {
            analytics_state: analytics.new_state(),
            fraud_state: fraud.new_state(),
            analytics,
            fraud,
            alerts: Vec::new(),
            purchases: std::collections::HashSet::new(),
        }
    }

    fn process(&mut self, event: &Event<'_>, mode: Mode) -> Result<(), TestCaseError> {
        let mut none = Vec::new();
        self.analytics
            .process(&mut self.analytics_state, event, mode, &mut none);
        let before = self.alerts.len();
        self.fraud.process(&mut self.fraud_state, event, mode, &mut self.alerts);
        prop_assert!(
            self.analytics_state.tracked_users() <= ANALYTICS_USER_CAP,
            "analytics tracks {} users, cap {ANALYTICS_USER_CAP}",
            self.analytics_state.tracked_users()
        );
        if event.event_type == activity_tracker::event::EventType::Purchase {
            self.purchases
                .insert((event.user_id.to_string(), event.event_id.to_string()));
        }
        for alert in &self.alerts[before..] {
            if alert.rule == activity_tracker::fraud::Rule::PurchaseWithoutActivity {
                // Decided when the watermark passes the purchase: about an
                // earlier purchase, raised by a later event.
                prop_assert!(
                    self.purchases
                        .contains(&(alert.user_id.clone(), alert.event_id.clone())),
                    "PURCHASE_WITHOUT_ACTIVITY about {}/{}, not a purchase processed",
                    alert.user_id,
                    alert.event_id
                );
            } else {
                prop_assert_eq!(&alert.user_id, &event.user_id);
                prop_assert_eq!(&alert.event_id, &event.event_id);
            }
            let parsed: Value = serde_json::from_slice(&alert.to_json())
                .map_err(|e| TestCaseError::fail(format!("alert JSON does not parse: {e}")))?;
            prop_assert_eq!(parsed["alert_id"].as_str(), Some(alert.alert_id.as_str()));
            let _ = alert.console();
        }
        Ok(())
    }

    /// Builds and renders the report, as `/report` and the console do.
    fn report(&self) -> Result<(), TestCaseError> {
        let report = self.analytics.report(std::iter::once(&self.analytics_state));
        let _ = report.render("fuzz");
        serde_json::to_string(&report).map_err(|e| TestCaseError::fail(format!("report JSON: {e}")))?;
        Ok(())
    }
}

/// Decodes `payload` within the allocation bound, checking the key too.
fn decode_checked(payload: &[u8], key: Option<&[u8]>) -> Result<Option<Event<'static>>, TestCaseError> {
    let limits = limits();
    let (decoded, peak) = measure(|| decode(payload, REFERENCE_MS, &limits).map(Event::into_owned));
    prop_assert!(
        peak <= decode_bound(payload.len()),
        "decoding {} bytes held {peak} bytes at once (bound {})",
        payload.len(),
        decode_bound(payload.len())
    );
    LARGEST_DECODE_PEAK.fetch_max(peak, Ordering::Relaxed);
    match decoded {
        Ok(event) => {
            let _ = check_key(key, &event);
            if let Some(url) = &event.page_url {
                let _ = page_path(url);
            }
            Ok(Some(event))
        }
        Err(rejection) => {
            prop_assert!(!rejection.detail.is_empty(), "a rejection without a message");
            prop_assert!(
                rejection.detail.len() <= 1024,
                "a {}-byte rejection message",
                rejection.detail.len()
            );
            Ok(None)
        }
    }
}

static LARGEST_DECODE_PEAK: AtomicUsize = AtomicUsize::new(0);

fn simulator_events(n: usize) -> Vec<Vec<u8>> {
    let mut sim = Simulator::new(&SimulatorConfig {
        seed: 7,
        users: 200,
        fraud_rate: 0.2,
        events_per_second: 100.0,
    });
    (0..n)
        .map(|i| sim.next_event(REFERENCE_MS - 3_600_000 + i as i64 * 250).to_json())
        .collect()
}
