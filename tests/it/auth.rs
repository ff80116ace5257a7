//! Connecting to a cluster that enforces authentication: a real standalone
//! broker (tansu, with SASL/SCRAM users) — valid credentials produce and
//! consume, a wrong password is refused at once with a clear error, no
//! credentials get nothing, and no password reaches a log or a config dump.
//!
//! Needs the `tansu` binary (`.ci/run` installs it): `TANSU_BIN`, else
//! `tansu` on PATH. Without it the test says so and passes; `.ci/run` fails
//! if the test's summary line is missing.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{ConsumerProcess, Process, Scratch, binary, wait_until};

const PASSWORD: &str = "pa55-w0rd-for-alice";
const BOB_PASSWORD: &str = "b0b-pa55-w0rd";
const EVENTS: u64 = 300;

fn tansu() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    })
}

/// A tansu broker on a free loopback port, storing in `dir` (users survive
/// its restarts there).
struct Tansu {
    bin: PathBuf,
    dir: PathBuf,
    addr: SocketAddr,
    process: Option<Process>,
}

impl Tansu {
    fn url(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    fn start(&mut self, authentication: bool) {
        let mut c = Command::new(&self.bin);
        c.current_dir(&self.dir)
            .args([
                "broker",
                "--listener-url",
                &self.url(),
                "--advertised-listener-url",
                &self.url(),
            ])
            // A relative path: the database lives in `dir`.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if authentication {
            c.arg("--authentication");
        }
        let mut process = Process::spawn("tansu", c);
        wait_until("tansu to listen", Duration::from_secs(30), || {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("tansu exited: {status}");
            }
            TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
        });
        self.process = Some(process);
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.signal("INT");
            p.wait(Duration::from_secs(30));
        }
    }

    fn create_user(&self, mechanism: &str, user: &str, password: &str) {
        let out = Command::new("timeout")
            .arg("30")
            .arg(&self.bin)
            .args([
                "user",
                "create",
                "--broker",
                &self.url(),
                "--mechanism",
                mechanism,
                user,
                password,
            ])
            .env("RUST_LOG", "off")
            .output()
            .expect("tansu user create runs");
        assert!(out.status.success(), "tansu user create {user}: {out:?}");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// What a run of the binary printed, and how it ended.
struct Run {
    code: i32,
    output: String,
    took: Duration,
}

/// Runs the binary with `env`, failing the test if it has not exited
/// within `timeout`.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Run {
    let out_path = dir.join("run.out");
    let out = std::fs::File::create(&out_path).expect("output file");
    let started = Instant::now();
    let mut c = Command::new(binary());
    c.args(args)
        .envs(env.iter().copied())
        .env("HTTP_ADDR", "127.0.0.1:0")
        .stdout(out.try_clone().expect("output file"))
        .stderr(out);
    let mut process = Process::spawn(&format!("{args:?}"), c);
    let code = process.wait(timeout);
    Run {
        code,
        output: std::fs::read_to_string(&out_path).unwrap_or_default(),
        took: started.elapsed(),
    }
}

fn alice(bootstrap: &str, password_file: &Path) -> Vec<(String, String)> {
    vec![
        ("KAFKA_BOOTSTRAP_SERVERS".into(), bootstrap.into()),
        ("KAFKA_SECURITY_PROTOCOL".into(), "sasl_plaintext".into()),
        ("KAFKA_SASL_MECHANISM".into(), "SCRAM-SHA-512".into()),
        ("KAFKA_SASL_USERNAME".into(), "alice".into()),
        ("KAFKA_SASL_PASSWORD_FILE".into(), password_file.display().to_string()),
    ]
}

/// Runs the binary with credentials the broker refuses: it must exit 1
/// and say why.
fn refused_run(dir: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let r = run(dir, args, &refs(env), Duration::from_secs(60));
    assert_eq!(r.code, 1, "{args:?} with a wrong password: {}", r.output);
    assert!(
        r.output.contains("error: Kafka refused authentication"),
        "{args:?}: {}",
        r.output
    );
    r
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn sasl_scram_credentials_are_enforced_end_to_end() {
    let Some(bin) = tansu() else {
        println!("auth: SKIPPED — no tansu binary (set TANSU_BIN or put tansu on PATH; .ci/run installs it)");
        return;
    };
    let dir = Scratch::new("auth");
    let mut broker = Tansu {
        bin,
        dir: dir.to_path_buf(),
        addr: free_addr(),
        process: None,
    };
    let bootstrap = broker.addr.to_string();

    // Users are created on an open broker, which is then restarted
    // enforcing authentication (tansu's way; a real cluster's admin does
    // the same with kafka-configs or a Strimzi KafkaUser).
    broker.start(false);
    broker.create_user("scram512", "alice", PASSWORD);
    broker.create_user("scram256", "bob", BOB_PASSWORD);
    broker.stop();
    broker.start(true);

    let password_file = dir.join("alice-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let wrong_file = dir.join("wrong-password");
    std::fs::write(&wrong_file, "not-the-password").unwrap();
    let alice_env = alice(&bootstrap, &password_file);

    // No credentials: the broker answers nothing.
    let open = run(
        &dir,
        &["topics", "create"],
        &[("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)],
        Duration::from_secs(60),
    );
    assert_ne!(
        open.code, 0,
        "topics create without credentials succeeded: {}",
        open.output
    );

    // Valid SCRAM-SHA-512 credentials (password from a file, as a mounted
    // Kubernetes Secret): topics are created.
    let topics = run(&dir, &["topics", "create"], &refs(&alice_env), Duration::from_secs(60));
    assert_eq!(topics.code, 0, "topics create as alice: {}", topics.output);
    assert!(
        topics.output.contains("created user-activities (6 partitions)"),
        "{}",
        topics.output
    );
    // Idempotent: a second run reports the topics and changes nothing;
    // --recreate deletes and recreates them.
    let again = run(&dir, &["topics", "create"], &refs(&alice_env), Duration::from_secs(60));
    assert_eq!(again.code, 0, "topics create again: {}", again.output);
    assert_eq!(again.output.matches("already exists").count(), 3, "{}", again.output);
    let recreated = run(
        &dir,
        &["topics", "create", "--recreate"],
        &refs(&alice_env),
        Duration::from_secs(60),
    );
    assert_eq!(recreated.code, 0, "topics create --recreate: {}", recreated.output);
    assert_eq!(recreated.output.matches("recreated").count(), 3, "{}", recreated.output);

    // A consumer as bob, SCRAM-SHA-256, password from the environment.
    let bob_env = [
        ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        ("KAFKA_SASL_MECHANISM", "scram-sha-256"),
        ("KAFKA_SASL_USERNAME", "bob"),
        ("KAFKA_SASL_PASSWORD", BOB_PASSWORD),
        ("KAFKA_ANALYTICS_GROUP", "auth-test-analytics"),
        ("LOG_LEVEL", "INFO"),
    ];
    let log = dir.join("analytics.log");
    let mut analytics = ConsumerProcess::start_logged("analytics", &bootstrap, &dir, 0, &bob_env, &log);

    let mut produce_env = refs(&alice_env);
    let max_events = EVENTS.to_string();
    produce_env.extend([("MAX_EVENTS", max_events.as_str()), ("EVENTS_PER_SECOND", "1000")]);
    let started = Instant::now();
    let produced = run(&dir, &["produce"], &produce_env, Duration::from_secs(90));
    assert_eq!(produced.code, 0, "produce as alice: {}", produced.output);
    assert!(
        produced.output.contains(&format!("Delivered         : {EVENTS}")),
        "not every event delivered: {}",
        produced.output
    );

    wait_until(
        "bob's analytics to process every event",
        Duration::from_secs(120),
        || {
            analytics.assert_running();
            analytics.processed() >= EVENTS
        },
    );
    let consumed_after = started.elapsed();
    assert_eq!(analytics.processed(), EVENTS, "events processed exactly once");

    // A wrong password: refused at once, exit 1, and the error says why —
    // for a producer and for a consumer alike.
    let mut wrong_env = alice(&bootstrap, &wrong_file);
    wrong_env.push(("MAX_EVENTS".into(), "10".into()));
    let refused = refused_run(&dir, &["produce"], &wrong_env);
    assert!(
        refused.output.contains("KAFKA_SASL_PASSWORD"),
        "the error names what to check: {}",
        refused.output
    );
    let refused_admin = refused_run(&dir, &["topics", "create"], &wrong_env);
    let refused_consumer = refused_run(&dir, &["fraud"], &wrong_env);

    // Secrets never printed: not in the config dump, not in any log.
    let dump = run(&dir, &["config"], &refs(&alice_env), Duration::from_secs(10)).output;
    assert!(dump.contains("KAFKA_SASL_USERNAME=alice"), "{dump}");
    assert!(!dump.contains(PASSWORD), "password in the config dump");
    analytics.stop();
    let consumer_log = std::fs::read_to_string(&log).unwrap_or_default();
    for (what, output) in [
        ("produce", &produced.output),
        ("refused produce", &refused.output),
        ("refused fraud", &refused_consumer.output),
        ("refused topics create", &refused_admin.output),
        ("analytics", &consumer_log),
    ] {
        assert!(
            !output.contains(PASSWORD) && !output.contains(BOB_PASSWORD),
            "a password in the {what} output"
        );
    }
    broker.stop();

    println!(
        "auth: tansu with SASL/SCRAM enforced — {EVENTS} events produced as alice (SCRAM-SHA-512, password file), \
         {EVENTS} processed by bob's analytics (SCRAM-SHA-256, password env) {:.1} s after the producer started, 0 lost; \
         wrong password refused with exit 1 in {:.2} s (produce), {:.2} s (fraud) and {:.2} s (topics create); \
         no credentials refused; no password in any log or config dump; topics create idempotent, --recreate recreated 3",
        consumed_after.as_secs_f64(),
        refused.took.as_secs_f64(),
        refused_consumer.took.as_secs_f64(),
        refused_admin.took.as_secs_f64()
    );
}
