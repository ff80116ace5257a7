//! `activity-tracker fleet`: the "scale the replicas and watch the
//! partitions move" demo on a laptop, with no cluster.
//!
//! It runs N replicas of a consumer (`fraud` or `analytics`) as separate
//! local processes in one consumer group — exactly what N pods are — and
//! changes N while they run: on a plan (`--plan 1,3,2,kill,4 --step 20s`) or
//! from commands typed on standard input (`scale 4`, `stop 2`, `kill 3`,
//! `status`, `quit`). After every change it waits for the group to settle —
//! every partition owned by exactly one replica, no rebuild in progress — and
//! prints which replica owns which partitions, read from each replica's
//! `/report`.
//!
//! Without `KAFKA_BOOTSTRAP_SERVERS` it starts an embedded broker and the
//! simulator in this process, so there is traffic to watch; with it, the
//! replicas join that cluster (run `produce` elsewhere).
//!
//! Scaling down stops the newest replica gracefully (SIGTERM: drain, commit,
//! leave); `kill` sends SIGKILL, like an OOM-killed pod, and its partitions
//! move when the group's session timeout expires.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::Config;
use crate::consumers::Kind;
use crate::shutdown::Shutdown;

/// How long a change may take to settle before the table is printed anyway.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Session timeout of replicas on the embedded broker (see `run_command`).
const EMBEDDED_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Run exactly this many replicas.
    Scale(usize),
    /// SIGKILL the newest replica.
    Kill,
}

/// Parses `1,3,2,kill,4`.
pub fn parse_plan(text: &str) -> Result<Vec<Step>, String> {
    text.split(',')
        .map(|t| match t.trim() {
            "kill" => Ok(Step::Kill),
            n => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .map(Step::Scale)
                .ok_or_else(|| format!("plan step {n:?} is not a replica count from 1 to 64 or `kill`")),
        })
        .collect()
}

/// How to start one replica: the arguments and environment of the process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplicaSpec {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The rendered workload the replicas reproduce: its downward-API
    /// variables (the pod name…) differ per replica.
    pub workload: Option<crate::manifest::Workload>,
}

/// A running replica.
struct Replica {
    number: usize,
    child: Child,
    http: SocketAddr,
}

/// What a replica reports about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ownership {
    pub partitions: Vec<i32>,
    pub lag: i64,
    pub rebuilding: bool,
    pub ready: bool,
}

/// The fleet of local replica processes.
pub struct Fleet {
    spec: ReplicaSpec,
    replicas: Vec<Replica>,
    next_number: usize,
    partitions: usize,
    consumer: String,
}

impl Fleet {
    pub fn new(spec: ReplicaSpec, partitions: usize, consumer: &str) -> Fleet {
        Fleet {
            spec,
            replicas: Vec::new(),
            next_number: 1,
            partitions,
            consumer: consumer.to_string(),
        }
    }

    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    fn start_one(&mut self) -> anyhow::Result<()> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free port for a replica")?
            .port();
        let http = SocketAddr::from(([127, 0, 0, 1], port));
        let exe = std::env::current_exe().context("cannot locate our own binary")?;
        let mut command = Command::new(exe);
        command.args(&self.spec.args);
        for (k, v) in &self.spec.env {
            command.env(k, v);
        }
        let mut pod = String::new();
        if let Some(w) = &self.spec.workload {
            for (k, v) in w.pod_env(self.next_number) {
                command.env(k, v);
            }
            pod = format!(", pod {}", w.pod_name(self.next_number));
        }
        command
            .env("HTTP_ADDR", http.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // Own process group: a Ctrl+C in the terminal reaches the fleet only,
        // which then stops each replica gracefully (a replica receiving the
        // terminal's SIGINT *and* our SIGTERM would exit at once).
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().context("cannot start a replica")?;
        println!(
            "➕ started replica {} (pid {}, http://{http}{pod})",
            self.next_number,
            child.id()
        );
        self.replicas.push(Replica {
            number: self.next_number,
            child,
            http,
        });
        self.next_number += 1;
        Ok(())
    }

    fn signal_newest(&mut self, signal: &str) -> Option<Replica> {
        let mut replica = self.replicas.pop()?;
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(replica.child.id().to_string())
            .status();
        if signal == "TERM" {
            // Graceful: wait for drain, commit and leave (bounded by the
            // replica's SHUTDOWN_TIMEOUT).
            let _ = replica.child.wait();
        }
        Some(replica)
    }

    /// Runs exactly `n` replicas: starts new ones, or stops the newest
    /// gracefully.
    pub fn scale(&mut self, n: usize) -> anyhow::Result<()> {
        while self.replicas.len() < n {
            self.start_one()?;
        }
        while self.replicas.len() > n {
            if let Some(mut r) = self.signal_newest("TERM") {
                let status = r.child.wait().map(|s| s.code().unwrap_or(-1)).unwrap_or(-1);
                println!("➖ stopped replica {} gracefully (exit {status})", r.number);
            }
        }
        Ok(())
    }

    /// SIGKILLs the newest replica, as the kernel's OOM killer would.
    pub fn kill_newest(&mut self) {
        if let Some(mut r) = self.signal_newest("KILL") {
            let _ = r.child.wait();
            println!(
                "💥 killed replica {} (SIGKILL): its partitions move after the session timeout",
                r.number
            );
        }
    }

    /// Each replica's view, in replica order.
    pub fn ownership(&self) -> Vec<(usize, u32, Option<Ownership>)> {
        self.replicas
            .iter()
            .map(|r| (r.number, r.child.id(), fetch_ownership(r.http)))
            .collect()
    }

    /// Whether the group has settled: every partition owned by exactly one
    /// replica, the partitions spread evenly (every assignor we support
    /// balances to within one), and no partition rebuilding.
    pub fn settled(&self) -> bool {
        let views = self.ownership();
        let mut owners: BTreeMap<i32, usize> = BTreeMap::new();
        let mut counts = Vec::new();
        for (_, _, view) in &views {
            let Some(v) = view else { return false };
            if v.rebuilding || !v.ready {
                return false;
            }
            counts.push(v.partitions.len());
            for p in &v.partitions {
                *owners.entry(*p).or_default() += 1;
            }
        }
        let balanced = match (counts.iter().min(), counts.iter().max()) {
            (Some(min), Some(max)) => max - min <= 1,
            _ => false,
        };
        balanced && owners.len() == self.partitions && owners.values().all(|n| *n == 1)
    }

    /// Waits (polling) until settled or the timeout passes.
    pub fn wait_settled(&self, timeout: Duration, shutdown: &Shutdown) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.settled() {
                return true;
            }
            if shutdown.sleep(Duration::from_millis(250)) {
                return false;
            }
        }
        false
    }

    /// The ownership table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "🔁 {} replica{} of {} — who owns which of the {} partitions:\n",
            self.replicas.len(),
            if self.replicas.len() == 1 { "" } else { "s" },
            self.consumer,
            self.partitions
        );
        for (number, pid, view) in self.ownership() {
            match view {
                Some(v) => {
                    let ids: Vec<String> = v.partitions.iter().map(i32::to_string).collect();
                    out.push_str(&format!(
                        "   replica {number} (pid {pid:>7})  partitions [{}]{}  lag {}\n",
                        ids.join(","),
                        " ".repeat(18usize.saturating_sub(ids.join(",").len())),
                        v.lag
                    ));
                }
                None => out.push_str(&format!("   replica {number} (pid {pid:>7})  (not answering yet)\n")),
            }
        }
        out
    }

    /// Stops every replica gracefully.
    pub fn stop_all(&mut self) {
        for r in &self.replicas {
            let _ = Command::new("kill").arg("-TERM").arg(r.child.id().to_string()).status();
        }
        for r in &mut self.replicas {
            let _ = r.child.wait();
        }
        self.replicas.clear();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for r in &mut self.replicas {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

/// `GET /report` of a replica, reduced to what the table shows.
fn fetch_ownership(addr: SocketAddr) -> Option<Ownership> {
    let response = crate::http::client::get(addr, "/report", &REPORT_LIMITS).ok()?;
    if response.status != 200 {
        return None;
    }
    let report: crate::runtime::Report<serde::de::IgnoredAny> = serde_json::from_slice(&response.body).ok()?;
    let c = report.consumer;
    Some(Ownership {
        partitions: c.partitions.iter().map(|p| p.partition).collect(),
        lag: c.partitions.iter().filter_map(|p| p.lag).sum(),
        rebuilding: c.partitions.iter().any(|p| p.rebuilding),
        ready: c.ready,
    })
}

/// How long a replica's `/report` may take, and how large it may be.
const REPORT_LIMITS: crate::http::client::Limits = crate::http::client::Limits {
    connect_timeout: Duration::from_millis(500),
    read_timeout: Duration::from_secs(2),
    max_response_bytes: 4 << 20,
};

/// Options of the `fleet` command.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    pub kind: Kind,
    pub replicas: usize,
    pub plan: Vec<Step>,
    pub step: Duration,
    /// From `--manifest`: the workload whose pods the replicas reproduce.
    pub workload: Option<crate::manifest::Workload>,
}

/// The `fleet` command.
pub async fn run_command(mut config: Config, options: FleetOptions, shutdown: Shutdown) -> anyhow::Result<()> {
    let _broker = if config.kafka.bootstrap_servers_set {
        None
    } else {
        let broker = crate::broker::EmbeddedBroker::start(1, &config.topics)?;
        config.kafka.bootstrap_servers = broker.bootstrap_servers().to_string();
        println!(
            "🧪 Embedded Kafka broker on {} with {} partitions; simulating {} events/s",
            broker.bootstrap_servers(),
            config.topics.partitions,
            config.producer.events_per_second
        );
        Some(broker)
    };
    let producer = if config.kafka.bootstrap_servers_set {
        None
    } else {
        let produce = crate::producer::ProduceOptions {
            kafka: config.kafka.clone(),
            topic: config.topics.activities.clone(),
            producer: config.producer.clone(),
            truth_file: None,
            shutdown_timeout: config.consumer.shutdown_timeout,
            progress: false,
            trace: config.log.tracing(),
        };
        let telemetry = crate::telemetry::Telemetry::new();
        let metrics = telemetry.producer(&produce.topic);
        let s = shutdown.clone();
        Some(std::thread::spawn(move || crate::producer::run(&produce, metrics, &s)))
    };

    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(w) = &options.workload {
        println!(
            "📄 {} {} from the manifest: `{}`, {} replica{}, {} environment variables{}",
            match w.kind {
                crate::manifest::WorkloadKind::Deployment => "Deployment",
                crate::manifest::WorkloadKind::StatefulSet => "StatefulSet",
            },
            w.name,
            w.args.join(" "),
            w.replicas,
            if w.replicas == 1 { "" } else { "s" },
            w.env_map().len(),
            if w.pod_fields.is_empty() {
                String::new()
            } else {
                format!(
                    " + per pod {}",
                    w.pod_fields
                        .iter()
                        .map(|(k, _)| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        for note in &w.skipped {
            println!("   not used locally: {note}");
        }
        env.extend(w.env_map());
    }
    env.extend([
        ("KAFKA_BOOTSTRAP_SERVERS".into(), config.kafka.bootstrap_servers.clone()),
        ("KAFKA_ACTIVITIES_TOPIC".into(), config.topics.activities.clone()),
        // Replicas log to this terminal: warnings only.
        ("LOG_LEVEL".into(), "WARNING".into()),
    ]);
    if _broker.is_some() {
        // The embedded broker's group coordinator completes every rebalance
        // only when a session timeout (minus a second) has passed, even once
        // all members have rejoined; a short session keeps each scaling step
        // to seconds instead of the default 45 s.
        let session = config.consumer.session_timeout.min(EMBEDDED_SESSION_TIMEOUT);
        let drain = config.consumer.drain_timeout.min(session / 2);
        env.push(("KAFKA_SESSION_TIMEOUT_MS".into(), session.as_millis().to_string()));
        env.push(("DRAIN_TIMEOUT".into(), format!("{}ms", drain.as_millis())));
    }
    let spec = ReplicaSpec {
        args: match &options.workload {
            Some(w) => w.args.clone(),
            None => vec![options.kind.name().to_string()],
        },
        env,
        workload: options.workload.clone(),
    };
    let partitions = config.topics.partitions as usize;
    let consumer = format!("{} (group {})", options.kind.name(), options.kind.group(&config));
    let worker_shutdown = shutdown.clone();
    let result = tokio::task::spawn_blocking(move || drive(spec, partitions, &consumer, &options, &worker_shutdown))
        .await
        .context("fleet driver")?;
    shutdown.trigger();
    if let Some(p) = producer {
        let _ = p.join();
    }
    result
}

fn drive(
    spec: ReplicaSpec,
    partitions: usize,
    consumer: &str,
    options: &FleetOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut fleet = Fleet::new(spec, partitions, consumer);
    let settle_and_print = |fleet: &Fleet| {
        if !fleet.wait_settled(SETTLE_TIMEOUT, shutdown) && !shutdown.is_triggered() {
            println!(
                "⏳ the group has not settled yet (a killed replica holds its partitions until the session times out)"
            );
        }
        print!("{}", fleet.table());
        let _ = std::io::stdout().flush();
    };
    fleet.scale(options.replicas)?;
    settle_and_print(&fleet);
    for step in &options.plan {
        if shutdown.sleep(options.step) {
            break;
        }
        match step {
            Step::Scale(n) => fleet.scale(*n)?,
            Step::Kill => fleet.kill_newest(),
        }
        settle_and_print(&fleet);
    }
    if !shutdown.is_triggered() {
        println!("Commands: scale N | stop | kill | status | quit   (Ctrl+C stops the fleet)");
        let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        while !shutdown.is_triggered() {
            let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(250)) else {
                continue;
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["scale", n] => match n.parse::<usize>() {
                    Ok(n) if (1..=64).contains(&n) => {
                        fleet.scale(n)?;
                        settle_and_print(&fleet);
                    }
                    _ => println!("scale takes a replica count from 1 to 64"),
                },
                ["stop"] => {
                    let n = fleet.len().saturating_sub(1).max(1);
                    fleet.scale(n)?;
                    settle_and_print(&fleet);
                }
                ["kill"] => {
                    fleet.kill_newest();
                    settle_and_print(&fleet);
                }
                ["status"] | [] => print!("{}", fleet.table()),
                ["quit"] | ["exit"] => break,
                _ => println!("unknown command {line:?}; try scale N | stop | kill | status | quit"),
            }
        }
    }
    println!("stopping {} replicas gracefully…", fleet.len());
    fleet.stop_all();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_counts_and_kills() {
        assert_eq!(
            parse_plan("1, 3,2,kill,4").unwrap(),
            vec![
                Step::Scale(1),
                Step::Scale(3),
                Step::Scale(2),
                Step::Kill,
                Step::Scale(4)
            ]
        );
        assert!(parse_plan("1,0").is_err());
        assert!(parse_plan("two").unwrap_err().contains("\"two\""));
    }
}
