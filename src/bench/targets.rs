//! The performance targets and this run's figures against them: the table
//! `bench` prints last, each target with its measured value and a mark.
//!
//! The targets are the project's (BENCHMARKS.md, "Targets"): consumers at
//! the broker's ceiling, milliseconds from event to alert, rebalances that
//! pause a partition briefly and rebuilds that do not grow with traffic, and
//! state that fits a pod. A target this run did not measure (a phase left
//! out, a quick run, the embedded broker) is marked as such, never as met.

/// The chart's memory limits of the consumer pods
/// (`helm/activity-tracker/values.yaml`, `analytics.resources` and
/// `fraud.resources`; a test keeps them equal).
pub const ANALYTICS_MEMORY_LIMIT_BYTES: f64 = 1280.0 * MIB;
pub const FRAUD_MEMORY_LIMIT_BYTES: f64 = 2048.0 * MIB;
const MIB: f64 = 1024.0 * 1024.0;
/// The rate of the partition whose rebuild has a target (events/s).
pub const REBUILD_RATE: u64 = 1_000;
/// The offered rate the latency targets are set at.
pub const LATENCY_RATE: u64 = 10_000;
/// The users a pod's memory target is set at.
pub const POD_USERS: u64 = 10_000_000;

/// A consumer draining a backlog.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Drain {
    /// Events per second.
    pub rate: f64,
    /// Cores the process used meanwhile (CPU seconds per second).
    pub cores: f64,
}

/// What this run measured, for the targets (seconds, bytes, events/s).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    pub ceiling: Option<f64>,
    pub analytics: Option<Drain>,
    pub fraud: Option<Drain>,
    /// Decode + process on one core, events/s: analytics, fraud.
    pub per_core: Option<(f64, f64)>,
    /// At [`LATENCY_RATE`]: event → processed p99; → alert acknowledged
    /// p99 and p99.9.
    pub processed_p99: Option<f64>,
    pub alert_p99: Option<f64>,
    pub alert_p999: Option<f64>,
    /// The longest pause of a moved partition, a replica joining or leaving.
    pub pause_classic: Option<f64>,
    pub pause_kip848: Option<f64>,
    /// Rebuild of a partition that received [`REBUILD_RATE`] events/s for
    /// the fraud detector's whole replay window (its widest rule window and
    /// cooldown, plus the allowed lateness: 2 h 10 s by default), by its
    /// owner after a crash: from the last snapshot, with a snapshot
    /// interval's events to replay since (the worst case; a graceful
    /// hand-over replays nothing).
    pub rebuild_at_rate: Option<f64>,
    /// Fraud state per tracked user at the largest user count measured.
    pub fraud_bytes_per_user: Option<f64>,
    /// State of one pod owning 12 partitions and [`POD_USERS`] users.
    pub fraud_pod_bytes: Option<f64>,
    pub analytics_pod_bytes: Option<f64>,
}

/// A line of the targets table.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub what: &'static str,
    pub goal: String,
    pub measured: String,
    /// `None`: not measured in this run.
    pub met: Option<bool>,
}

impl Target {
    pub fn mark(&self) -> &'static str {
        match self.met {
            Some(true) => "✅ met",
            Some(false) => "❌ missed",
            None => "– not measured in this run",
        }
    }
}

fn at_most(what: &'static str, goal: f64, unit: Unit, value: Option<f64>) -> Target {
    target(
        what,
        format!("≤ {}", unit.show(goal)),
        value.map(|v| (unit.show(v), v <= goal)),
    )
}

fn at_least(what: &'static str, goal: f64, unit: Unit, value: Option<f64>) -> Target {
    target(
        what,
        format!("≥ {}", unit.show(goal)),
        value.map(|v| (unit.show(v), v >= goal)),
    )
}

fn target(what: &'static str, goal: String, measured: Option<(String, bool)>) -> Target {
    let (measured, met) = match measured {
        Some((text, met)) => (text, Some(met)),
        None => ("–".to_string(), None),
    };
    Target {
        what,
        goal,
        measured,
        met,
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Millis,
    Seconds,
    Rate,
    Bytes,
    Share,
}

impl Unit {
    fn show(self, v: f64) -> String {
        match self {
            Unit::Millis => format!("{:.1} ms", v * 1000.0),
            Unit::Seconds => format!("{v:.2} s"),
            Unit::Rate => format!("{} events/s", super::thousands(v)),
            Unit::Bytes if v >= 1e6 => format!("{:.0} MiB", v / (1024.0 * 1024.0)),
            Unit::Bytes => format!("{v:.0} B"),
            Unit::Share => format!("{:.0} %", v * 100.0),
        }
    }
}

/// Every target, judged on `f`.
pub fn judge(f: &Figures) -> Vec<Target> {
    let share = |drain: Option<Drain>| Some(drain?.rate / f.ceiling?);
    let mut analytics = at_least(
        "analytics consumer against the counting consumer's ceiling",
        0.9,
        Unit::Share,
        share(f.analytics),
    );
    let mut fraud = at_least(
        "fraud consumer against the counting consumer's ceiling",
        0.9,
        Unit::Share,
        share(f.fraud),
    );
    for (t, drain) in [(&mut analytics, f.analytics), (&mut fraud, f.fraud)] {
        if let Some(d) = drain {
            t.measured = format!("{} ({}, {:.2} cores)", t.measured, Unit::Rate.show(d.rate), d.cores);
        }
    }
    let per_core = f.per_core.map(|(a, b)| a.min(b));
    let mut per_core_target = at_least(
        "decode + process, one core (the slower consumer)",
        1.5e6,
        Unit::Rate,
        per_core,
    );
    if let Some((a, b)) = f.per_core {
        per_core_target.measured = format!("analytics {} · fraud {}", Unit::Rate.show(a), Unit::Rate.show(b));
    }
    vec![
        analytics,
        fraud,
        per_core_target,
        at_most(
            "event → processed p99 at 10,000 events/s",
            0.003,
            Unit::Millis,
            f.processed_p99,
        ),
        at_most(
            "event → alert acknowledged p99 at 10,000 events/s",
            0.005,
            Unit::Millis,
            f.alert_p99,
        ),
        at_most(
            "event → alert acknowledged p99.9 at 10,000 events/s",
            0.010,
            Unit::Millis,
            f.alert_p999,
        ),
        at_most(
            "rebalance pause per moved partition, classic cooperative-sticky",
            1.0,
            Unit::Seconds,
            f.pause_classic,
        ),
        at_most(
            "rebalance pause per moved partition, KIP-848",
            0.3,
            Unit::Seconds,
            f.pause_kip848,
        ),
        at_most(
            "state rebuild of a partition at 1,000 events/s, default windows, after a crash (snapshot + the 5 min of events since)",
            2.0,
            Unit::Seconds,
            f.rebuild_at_rate,
        ),
        at_most(
            "fraud state per tracked user",
            150.0,
            Unit::Bytes,
            f.fraud_bytes_per_user,
        ),
        at_most(
            "fraud pod: 12 partitions, 10 M users, against the chart's memory limit",
            FRAUD_MEMORY_LIMIT_BYTES,
            Unit::Bytes,
            f.fraud_pod_bytes,
        ),
        at_most(
            "analytics pod: 12 partitions, 10 M users, against the chart's memory limit",
            ANALYTICS_MEMORY_LIMIT_BYTES,
            Unit::Bytes,
            f.analytics_pod_bytes,
        ),
    ]
}

/// The targets table, in Markdown.
pub fn table(f: &Figures) -> String {
    let mut out = String::from("| target | goal | measured | |\n|---|---|---|---|\n");
    for t in judge(f) {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            t.what,
            t.goal,
            t.measured,
            t.mark()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn met(f: &Figures, what: &str) -> Option<bool> {
        judge(f).into_iter().find(|t| t.what.starts_with(what)).unwrap().met
    }

    #[test]
    fn nothing_measured_is_never_met() {
        assert!(judge(&Figures::default()).iter().all(|t| t.met.is_none()));
        // A consumer's rate without the ceiling cannot be judged either.
        let f = Figures {
            analytics: Some(Drain { rate: 1e6, cores: 2.0 }),
            ..Figures::default()
        };
        assert_eq!(met(&f, "analytics consumer"), None);
    }

    #[test]
    fn targets_are_judged_on_their_side_of_the_goal() {
        let f = Figures {
            ceiling: Some(1_000_000.0),
            analytics: Some(Drain {
                rate: 900_000.0,
                cores: 1.9,
            }),
            fraud: Some(Drain {
                rate: 899_000.0,
                cores: 1.9,
            }),
            per_core: Some((1.6e6, 1.4e6)),
            processed_p99: Some(0.003),
            alert_p99: Some(0.0051),
            alert_p999: Some(0.009),
            pause_classic: Some(0.99),
            pause_kip848: Some(0.31),
            rebuild_at_rate: Some(1.5),
            fraud_bytes_per_user: Some(151.0),
            fraud_pod_bytes: Some(FRAUD_MEMORY_LIMIT_BYTES + 1.0),
            analytics_pod_bytes: Some(300e6),
        };
        assert_eq!(met(&f, "analytics consumer"), Some(true));
        assert_eq!(met(&f, "fraud consumer"), Some(false));
        assert_eq!(met(&f, "decode + process"), Some(false), "the slower consumer decides");
        assert_eq!(met(&f, "event → processed p99"), Some(true), "the goal itself is met");
        assert_eq!(met(&f, "event → alert acknowledged p99 "), Some(false));
        assert_eq!(met(&f, "event → alert acknowledged p99.9"), Some(true));
        assert_eq!(met(&f, "rebalance pause per moved partition, classic"), Some(true));
        assert_eq!(met(&f, "rebalance pause per moved partition, KIP-848"), Some(false));
        assert_eq!(met(&f, "state rebuild"), Some(true));
        assert_eq!(met(&f, "fraud state per tracked user"), Some(false));
        assert_eq!(met(&f, "fraud pod"), Some(false));
        assert_eq!(met(&f, "analytics pod"), Some(true));
        let printed = table(&f);
        assert!(
            printed.contains("| ≥ 90 % | 90 % (900,000 events/s, 1.90 cores) | ✅ met |"),
            "{printed}"
        );
        assert!(printed.contains("| ≤ 5.0 ms | 5.1 ms | ❌ missed |"), "{printed}");
    }

    #[test]
    fn the_memory_limit_is_the_charts() {
        let values = include_str!("../../helm/activity-tracker/values.yaml");
        // The memory limit in a top-level section of the chart's values.
        let limit = |section: &str| {
            let lines: Vec<&str> = values
                .lines()
                .skip_while(|l| *l != format!("{section}:"))
                .skip(1)
                .take_while(|l| l.is_empty() || l.starts_with(' '))
                .collect();
            let at = lines.iter().position(|l| l.trim() == "limits:")?;
            lines[at + 1].trim().strip_prefix("memory: ").map(str::to_string)
        };
        assert_eq!(limit("analytics").as_deref(), Some("1280Mi"));
        assert_eq!(ANALYTICS_MEMORY_LIMIT_BYTES, 1280.0 * 1024.0 * 1024.0);
        assert_eq!(limit("fraud").as_deref(), Some("2Gi"));
        assert_eq!(FRAUD_MEMORY_LIMIT_BYTES, 2.0 * 1024.0 * 1024.0 * 1024.0);
        assert_eq!(
            limit("producer").as_deref(),
            Some("256Mi"),
            "the reader finds each section's own"
        );
    }
}
