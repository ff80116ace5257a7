//! The code under test running: the binary as a child process, a consumer
//! process as a pod runs it, both consumers in this process, and a pipeline
//! under load for the fault tests.

use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;

use activity_tracker::config::Config;

use super::http::http_get;
use super::{Scratch, TestBroker, config, wait_until};

/// The path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_activity-tracker")
}

/// A child process killed when the guard is dropped (a failing test leaves
/// nothing running).
pub struct Process {
    pub child: Child,
    pub name: String,
}

impl Process {
    pub fn spawn(name: &str, mut command: std::process::Command) -> Process {
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process {
            child,
            name: name.into(),
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    /// Waits for exit (polling with a deadline) and returns the exit code.
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        let mut code = None;
        wait_until(&format!("{} to exit", self.name), timeout, || {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    code = Some(status.code().unwrap_or(-1));
                    true
                }
                _ => false,
            }
        });
        code.unwrap_or(-1)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Both consumers running in this process, as `demo` runs them.
pub struct InProcess {
    pub shutdown: activity_tracker::shutdown::Shutdown,
    pub analytics: activity_tracker::consumers::RunningConsumer,
    pub fraud: activity_tracker::consumers::RunningConsumer,
    pub telemetry: std::sync::Arc<activity_tracker::telemetry::Telemetry>,
}

impl InProcess {
    /// Serves the pods' endpoints (/report, /metrics, /readyz …) for both
    /// consumers on a free port, on `rt`, until the pipeline stops.
    pub fn serve_http(&self, rt: &tokio::runtime::Runtime) -> std::net::SocketAddr {
        let state = activity_tracker::http::HttpState {
            telemetry: self.telemetry.clone(),
            consumers: vec![
                ("analytics", self.analytics.shared.clone()),
                ("fraud", self.fraud.shared.clone()),
            ],
        };
        rt.block_on(activity_tracker::http::serve(
            "127.0.0.1:0".parse().unwrap(),
            state,
            self.shutdown.clone(),
        ))
        .unwrap()
    }

    pub fn start(config: &Config) -> InProcess {
        use activity_tracker::consumers::{self, Kind};
        let shutdown = activity_tracker::shutdown::Shutdown::new();
        let telemetry = activity_tracker::telemetry::Telemetry::new();
        let analytics = consumers::spawn(
            consumers::analytics_app(config),
            config,
            Kind::Analytics.group(config),
            &telemetry,
            shutdown.clone(),
        )
        .unwrap();
        let fraud = consumers::spawn(
            consumers::fraud_app(config).quiet(),
            config,
            Kind::Fraud.group(config),
            &telemetry,
            shutdown.clone(),
        )
        .unwrap();
        InProcess {
            shutdown,
            analytics,
            fraud,
            telemetry,
        }
    }

    /// Messages seen (processed or rejected) by (analytics, fraud).
    pub fn seen(&self) -> (u64, u64) {
        let seen = |c: &activity_tracker::consumers::RunningConsumer| {
            c.shared
                .status
                .read()
                .map(|s| s.events_processed + s.events_rejected)
                .unwrap_or(0)
        };
        (seen(&self.analytics), seen(&self.fraud))
    }

    /// Fails if a consumer thread has stopped on its own.
    pub fn assert_running(&self) {
        assert!(
            !self.analytics.thread.is_finished() && !self.fraud.thread.is_finished(),
            "a consumer stopped"
        );
    }

    /// Waits until both consumers have seen `n` messages.
    pub fn wait_seen(&self, n: u64, timeout: Duration) {
        wait_until(&format!("both consumers to see {n} messages"), timeout, || {
            self.assert_running();
            let (a, f) = self.seen();
            a >= n && f >= n
        });
    }

    /// Stops both; returns their outcomes and the final /metrics text.
    pub fn stop(
        self,
    ) -> (
        activity_tracker::runtime::RunOutcome,
        activity_tracker::runtime::RunOutcome,
        String,
    ) {
        let metrics = self.telemetry.render();
        self.shutdown.trigger();
        let a = self.analytics.thread.join().expect("no panic").expect("analytics ran");
        let f = self.fraud.thread.join().expect("no panic").expect("fraud ran");
        (a, f, metrics)
    }
}

/// A consumer (`fraud` or `analytics`) running as its own process, as a pod
/// runs it: its own HTTP port, an audit log and a report file in `dir`.
pub struct ConsumerProcess {
    pub process: Process,
    pub http: SocketAddr,
    pub report: std::path::PathBuf,
}

impl ConsumerProcess {
    pub fn start(
        kind: &str,
        bootstrap: &str,
        dir: &std::path::Path,
        n: usize,
        env: &[(&str, &str)],
    ) -> ConsumerProcess {
        Self::spawn(kind, bootstrap, dir, n, env, None)
    }

    /// [`ConsumerProcess::start`], with stderr (the log) written to `log`.
    pub fn start_logged(
        kind: &str,
        bootstrap: &str,
        dir: &std::path::Path,
        n: usize,
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> ConsumerProcess {
        Self::spawn(kind, bootstrap, dir, n, env, Some(log))
    }

    fn spawn(
        kind: &str,
        bootstrap: &str,
        dir: &std::path::Path,
        n: usize,
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> ConsumerProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let http = SocketAddr::from(([127, 0, 0, 1], port));
        let report = dir.join(format!("report-{kind}-{n}.json"));
        let mut c = std::process::Command::new(binary());
        c.arg(kind)
            .arg("--report-file")
            .arg(&report)
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .env("HTTP_ADDR", http.to_string())
            .env("AUDIT_LOG", dir.join("audit"))
            .env(
                "LOG_LEVEL",
                std::env::var("FLEET_TEST_LOG").unwrap_or_else(|_| "WARNING".into()),
            )
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null());
        if let Some(log) = log {
            c.stderr(std::fs::File::create(log).expect("the log file can be created"));
        }
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        ConsumerProcess {
            process: Process::spawn(&format!("{kind} {n}"), c),
            http,
            report,
        }
    }

    /// SIGTERM, and a clean exit within 30 s.
    pub fn stop(&mut self) {
        self.process.signal("TERM");
        assert_eq!(
            self.process.wait(Duration::from_secs(30)),
            0,
            "{} exits cleanly",
            self.process.name
        );
    }

    /// Fails if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.process.child.try_wait() {
            panic!("{} exited: {status}", self.process.name);
        }
    }

    /// `GET /report`, when it answers.
    pub fn report(&self) -> Option<serde_json::Value> {
        let (status, body) = http_get(self.http, "/report");
        (status == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    /// Events processed, from `/report` (0 while it does not answer).
    pub fn processed(&self) -> u64 {
        self.report()
            .and_then(|v| v["consumer"]["events_processed"].as_u64())
            .unwrap_or(0)
    }
}

/// Both consumers in this process (each recording an audit trail) and a
/// producer sending `events` simulated events at 200 events/s, for tests
/// that break the broker while work flows.
pub struct PipelineUnderLoad {
    pub running: InProcess,
    pub producer: std::thread::JoinHandle<anyhow::Result<activity_tracker::producer::ProduceStats>>,
    /// Events the producer has handed to Kafka so far.
    pub sent: prometheus::IntCounter,
    pub audit: std::path::PathBuf,
    /// Holds the directory with the audit trail: bind it for as long as
    /// `audit` is read (a dropped guard removes the directory).
    pub scratch: Scratch,
}

impl PipelineUnderLoad {
    /// `session_timeout_ms` is longer than the failure the test causes, as
    /// in production (45 s by default): the group survives it.
    pub fn start(bootstrap: &str, name: &str, events: u64, seed: u64, session_timeout_ms: u64) -> PipelineUnderLoad {
        use activity_tracker::producer::{self, ProduceOptions};
        let dir = Scratch::new(name);
        let audit = dir.join("audit");
        let (events, seed, session) = (events.to_string(), seed.to_string(), session_timeout_ms.to_string());
        let config = config(
            <activity_tracker::commands::demo::Demo as activity_tracker::commands::Run>::PROFILE,
            bootstrap,
            &[
                ("AUDIT_LOG", audit.to_str().unwrap()),
                ("EVENTS_PER_SECOND", "200"),
                ("MAX_EVENTS", &events),
                ("FRAUD_RATE", "0.15"),
                ("SIM_SEED", &seed),
                ("KAFKA_SESSION_TIMEOUT_MS", &session),
            ],
        );
        let running = InProcess::start(&config);
        let produce = ProduceOptions {
            kafka: config.kafka.clone(),
            topic: config.topics.activities.clone(),
            producer: config.producer.clone(),
            truth_file: None,
            shutdown_timeout: Duration::from_secs(120),
            progress: false,
            trace: false,
        };
        let metrics = activity_tracker::telemetry::Telemetry::new().producer(&produce.topic);
        let sent = metrics.sent.clone();
        let producer =
            std::thread::spawn(move || producer::run(&produce, metrics, &activity_tracker::shutdown::Shutdown::new()));
        PipelineUnderLoad {
            running,
            producer,
            sent,
            audit,
            scratch: dir,
        }
    }
}

/// Processes the activities topic once more, fault-free, with fresh groups,
/// publishing the alerts to `reference-alerts`: what a run that met no
/// fault produces, to compare a faulty run's alerts with.
pub fn reference_run(broker: &TestBroker, partitions: i32, events: u64, timeout: Duration) {
    broker.create_topic("reference-alerts", partitions);
    let reference = InProcess::start(&config(
        <activity_tracker::commands::demo::Demo as activity_tracker::commands::Run>::PROFILE,
        broker.bootstrap_servers(),
        &[
            ("KAFKA_ALERTS_TOPIC", "reference-alerts"),
            ("KAFKA_ANALYTICS_GROUP", "reference-analytics"),
            ("KAFKA_FRAUD_GROUP", "reference-fraud"),
        ],
    ));
    reference.wait_seen(events, timeout);
    let _ = reference.stop();
}
