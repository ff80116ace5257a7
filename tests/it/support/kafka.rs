//! Real Apache Kafka for the tests: `scripts/kafka` started as a child
//! process, its `NAME=value` lines read, its nodes stopped, killed and
//! restarted through its standard input. Dropping the guard closes that
//! input, which stops every node and removes the data directory.
//!
//! A missing Java or Maven is a test failure with the script's message,
//! never a silent pass.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How long a cluster may take to start (a cold JVM on a loaded 2-core
/// machine, three nodes formatting and electing a controller).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one `stop`/`kill`/`start` command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// What to start.
#[derive(Clone, Debug, Default)]
pub struct KafkaOptions {
    /// 1 or 3 nodes (3: replication factor 3, `min.insync.replicas=2`).
    pub nodes: u8,
    /// SCRAM-SHA-512 users, (name, password), created before the first start.
    pub scram: Vec<(String, String)>,
    /// A TLS listener and a mutual-TLS listener, with a test CA.
    pub tls: bool,
}

/// A running real Kafka cluster.
pub struct KafkaCluster {
    child: Child,
    control: Option<ChildStdin>,
    lines: Receiver<String>,
    vars: BTreeMap<String, String>,
}

impl KafkaCluster {
    pub fn start(options: &KafkaOptions) -> KafkaCluster {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka");
        let mut command = Command::new(script);
        command.arg("--nodes").arg(options.nodes.max(1).to_string());
        for (name, password) in &options.scram {
            command.arg("--scram").arg(format!("{name}:{password}"));
        }
        if options.tls {
            command.arg("--tls");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e} (it needs python3, java and mvn)"));
        let control = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut cluster = KafkaCluster {
            child,
            control,
            lines,
            vars: BTreeMap::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let line = cluster.next_line(deadline, "real Kafka to start");
            if line == "READY" {
                break;
            }
            if let Some((k, v)) = line.split_once('=') {
                cluster.vars.insert(k.to_string(), v.to_string());
            }
        }
        cluster
    }

    fn next_line(&mut self, deadline: Instant, what: &str) -> String {
        match self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for {what}"),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                panic!("scripts/kafka exited ({status:?}) while waiting for {what}; its messages are above")
            }
        }
    }

    /// The plaintext bootstrap servers.
    pub fn bootstrap_servers(&self) -> &str {
        self.var("KAFKA_BOOTSTRAP_SERVERS")
    }

    /// One of the script's `NAME=value` lines.
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("scripts/kafka printed no {name} (was the listener asked for?)"))
    }

    fn control(&mut self, command: &str) {
        let stdin = self.control.as_mut().expect("the control pipe is open");
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .expect("scripts/kafka takes commands");
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let line = self.next_line(deadline, command);
        assert_eq!(line, format!("ok {command}"), "scripts/kafka answered {line:?}");
    }

    /// SIGTERM to node `id`: a controlled shutdown (leadership moves first).
    pub fn stop_node(&mut self, id: u8) {
        self.control(&format!("stop {id}"));
    }

    /// SIGKILL to node `id`: a crash.
    pub fn kill_node(&mut self, id: u8) {
        self.control(&format!("kill {id}"));
    }

    /// Starts node `id` again and waits until it serves.
    pub fn start_node(&mut self, id: u8) {
        self.control(&format!("start {id}"));
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        // End of input: the script stops every node and cleans up.
        drop(self.control.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50)); // poll until the deadline
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
