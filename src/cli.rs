//! The command line, generated from [`crate::config::SETTINGS`]: every
//! setting in scope of a subcommand becomes a `--flag` on it, with the
//! variable name and default in its help.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::{self, SETTINGS, Scope, Sources};

/// A parsed command line.
#[derive(Debug)]
pub struct Invocation {
    pub command: config::Command,
    pub sources: Sources,
    pub truth_file: Option<PathBuf>,
    pub report_file: Option<PathBuf>,
    pub recreate: bool,
    pub brokers: i32,
    pub markdown: bool,
    pub fleet: Option<crate::fleet::FleetOptions>,
    /// `dlq inspect|replay`.
    pub dlq: Option<crate::dlq::DlqAction>,
    /// `bench`: what to measure.
    pub bench: Option<crate::bench::BenchOptions>,
    /// `probe`: the URL or path to check, and the timeout.
    pub probe: Option<(String, std::time::Duration)>,
}

fn with_settings(mut cmd: Command, scope: Scope) -> Command {
    for s in SETTINGS.iter().filter(|s| s.scope.contains(scope)) {
        let mut help = format!("{} [env: {}]", s.help, s.var);
        if let Some(d) = s.default {
            help.push_str(&format!(" [default: {d}]"));
        }
        cmd = cmd.arg(
            Arg::new(s.var)
                .long(s.flag())
                .value_name("VALUE")
                .help(help)
                .help_heading("Settings (flags override environment and .env)"),
        );
    }
    cmd
}

fn report_file() -> Arg {
    Arg::new("report-file")
        .long("report-file")
        .value_name("PATH")
        .value_parser(clap::value_parser!(PathBuf))
        .help("On exit, write the final report (as served by /report) to this file as JSON")
}

/// The whole command tree.
pub fn command() -> Command {
    Command::new("activity-tracker")
        .about("Real-time user-activity analytics and fraud detection on Kafka")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(with_settings(
            Command::new("broker")
                .about("Run an embedded Kafka-protocol broker with the topics created; prints KAFKA_BOOTSTRAP_SERVERS=… first")
                .arg(
                    Arg::new("brokers")
                        .long("brokers")
                        .value_name("N")
                        .default_value("1")
                        .value_parser(clap::value_parser!(i32).range(1..=9))
                        .help("Number of brokers in the embedded cluster"),
                ),
            Scope::BROKER,
        ))
        .subcommand(
            Command::new("topics")
                .about("Topic administration on a real cluster")
                .subcommand_required(true)
                .subcommand(with_settings(
                    Command::new("create")
                        .about("Create the activities, alerts and dead-letter topics (idempotent)")
                        .arg(
                            Arg::new("recreate")
                                .long("recreate")
                                .action(ArgAction::SetTrue)
                                .help("Delete and recreate existing topics (their events are lost)"),
                        ),
                    Scope::TOPICS,
                )),
        )
        .subcommand(with_settings(
            Command::new("produce").about("Simulate user activity and send it to Kafka").arg(
                Arg::new("truth-file")
                    .long("truth-file")
                    .value_name("PATH")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("Write one JSON line per injected fraud actor (user_id, scenario, expected rules)"),
            ),
            Scope::PRODUCE,
        ))
        .subcommand(with_settings(
            Command::new("analytics").about("Consume events and report analytics").arg(report_file()),
            Scope::ANALYTICS,
        ))
        .subcommand(with_settings(
            Command::new("fraud").about("Consume events and raise fraud alerts").arg(report_file()),
            Scope::FRAUD,
        ))
        .subcommand(with_settings(
            Command::new("collect")
                .about("Accept events over HTTP (POST /v1/events, GET /v1/tracker.js) and send them to Kafka"),
            Scope::COLLECT,
        ))
        .subcommand(
            Command::new("dlq")
                .about("Operate the dead-letter topic: see what was rejected and why, replay it after a fix")
                .subcommand_required(true)
                .subcommand(with_settings(
                    Command::new("inspect")
                        .about("Count dead letters by reason and consumer group and show the latest ones")
                        .arg(
                            Arg::new("limit")
                                .long("limit")
                                .value_name("N")
                                .default_value("10")
                                .value_parser(clap::value_parser!(usize))
                                .help("How many of the latest dead letters to show"),
                        )
                        .arg(
                            Arg::new("json")
                                .long("json")
                                .action(ArgAction::SetTrue)
                                .help("Print every dead letter as a JSON line instead (for jq)"),
                        ),
                    Scope::DLQ,
                ))
                .subcommand(with_settings(
                    Command::new("replay")
                        .about("Send dead letters back to the activities topic once each; those the current decoder still refuses stay")
                        .arg(
                            Arg::new("reason")
                                .long("reason")
                                .value_name("CODE")
                                .action(ArgAction::Append)
                                .value_parser(clap::builder::PossibleValuesParser::new(
                                    crate::event::RejectReason::ALL.map(|r| r.code()),
                                ))
                                .help("Only dead letters with this reason (repeatable)"),
                        )
                        .arg(
                            Arg::new("rekey")
                                .long("rekey")
                                .action(ArgAction::SetTrue)
                                .help("Key events that arrived without their user_id key (or with another) by user_id"),
                        )
                        .arg(
                            Arg::new("dry-run")
                                .long("dry-run")
                                .action(ArgAction::SetTrue)
                                .help("Say what would be replayed; send nothing"),
                        ),
                    Scope::DLQ,
                )),
        )
        .subcommand(with_settings(
            Command::new("demo").about("Broker, producer, analytics and fraud detection in one process"),
            Scope::DEMO,
        ))
        .subcommand(with_settings(
            Command::new("bench")
                .about("Benchmark end to end on the embedded broker (or KAFKA_BOOTSTRAP_SERVERS): producer, the raw-consume ceiling, both consumers, latency, rebalance pause, memory; prints one table")
                .arg(
                    Arg::new("quick")
                        .long("quick")
                        .action(ArgAction::SetTrue)
                        .help("A short run that proves every phase works (50,000 events)"),
                )
                .arg(
                    Arg::new("events")
                        .long("events")
                        .value_name("N")
                        .value_parser(clap::value_parser!(u64).range(1000..))
                        .help("Events in the backlog the throughput phases drain [default: 2000000, --quick 50000]"),
                )
                .arg(
                    Arg::new("only")
                        .long("only")
                        .value_name("PHASE")
                        .value_delimiter(',')
                        .value_parser(["throughput", "latency", "rebalance", "memory"])
                        .help("Run only these phases (comma-separated): throughput (producer, ceiling, consumers), latency, rebalance, memory [default: all]"),
                ),
            Scope::BENCH,
        ))
        .subcommand(with_settings(
            Command::new("fleet")
                .about("Run N local replicas of a consumer in one group and change N while they run, showing who owns which partitions")
                .arg(
                    Arg::new("consumer")
                        .long("consumer")
                        .value_parser(["fraud", "analytics"])
                        .default_value("fraud")
                        .help("Which consumer to replicate"),
                )
                .arg(
                    Arg::new("replicas")
                        .long("replicas")
                        .value_name("N")
                        .default_value("1")
                        .value_parser(clap::value_parser!(u16).range(1..=64))
                        .help("Replicas to start with"),
                )
                .arg(
                    Arg::new("plan")
                        .long("plan")
                        .value_name("STEPS")
                        .help("Changes to make, one per --step: replica counts and `kill` (SIGKILL the newest), e.g. 3,2,kill,4"),
                )
                .arg(
                    Arg::new("manifest")
                        .long("manifest")
                        .value_name("FILE")
                        .value_parser(clap::value_parser!(PathBuf))
                        .help("Run the replicas as this rendered manifest configures the pods (`helm template` output or deploy/kubernetes/activity-tracker.yaml): subcommand, environment, replica count, pod names")
                        .conflicts_with("consumer"),
                )
                .arg(
                    Arg::new("workload")
                        .long("workload")
                        .value_name("NAME")
                        .requires("manifest")
                        .help("The Deployment or StatefulSet in --manifest, by full name or suffix (fraud, analytics) [default: fraud]"),
                )
                .arg(
                    Arg::new("step")
                        .long("step")
                        .value_name("DURATION")
                        .default_value("20s")
                        .help("Time between plan steps"),
                ),
            Scope::FLEET,
        ))
        .subcommand(
            Command::new("probe")
                .about("Check a health endpoint (exit 0 on a 2xx answer): for images without curl, e.g. container healthchecks")
                .arg(
                    Arg::new("target")
                        .value_name("URL|PATH")
                        .default_value("/readyz")
                        .help("http://host:port/path, or a path on this container's own server (HTTP_ADDR)"),
                )
                .arg(
                    Arg::new("timeout")
                        .long("timeout")
                        .value_name("SECONDS")
                        .default_value("3")
                        .value_parser(clap::value_parser!(u64).range(1..=300))
                        .help("Connect and read timeout"),
                ),
        )
        .subcommand(with_settings(
            Command::new("config")
                .about("Print the effective configuration (secrets redacted) and exit")
                .arg(
                    Arg::new("markdown")
                        .long("markdown")
                        .action(ArgAction::SetTrue)
                        .help("Print the table of every setting, as in the README"),
                ),
            Scope::ALL,
        ))
}

fn flags(m: &ArgMatches) -> std::collections::BTreeMap<String, String> {
    SETTINGS
        .iter()
        .filter_map(|s| {
            m.try_get_one::<String>(s.var)
                .ok()
                .flatten()
                .map(|v| (s.var.to_string(), v.clone()))
        })
        .collect()
}

/// Parses arguments; the environment and `.env` come from `env_sources`.
pub fn parse<I, T>(args: I, env_sources: Sources) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    let (name, sub) = matches.subcommand().expect("a subcommand is required");
    let (command, m) = match name {
        "broker" => (config::Command::Broker, sub),
        "topics" => {
            let (_, create) = sub.subcommand().expect("a topics subcommand is required");
            (config::Command::Topics, create)
        }
        "produce" => (config::Command::Produce, sub),
        "analytics" => (config::Command::Analytics, sub),
        "fraud" => (config::Command::Fraud, sub),
        "demo" => (config::Command::Demo, sub),
        "dlq" => (
            config::Command::Dlq,
            sub.subcommand().expect("a dlq subcommand is required").1,
        ),
        "collect" => (config::Command::Collect, sub),
        "fleet" => (config::Command::Fleet, sub),
        "bench" => (config::Command::Bench, sub),
        "probe" => (config::Command::Probe, sub),
        _ => (config::Command::Config, sub),
    };
    let mut sources = env_sources;
    sources.flags = flags(m);
    let fleet = if name == "fleet" { Some(fleet_options(m)?) } else { None };
    if let Some(workload) = fleet.as_ref().and_then(|f| f.workload.as_ref()) {
        // The pods' environment wins over ours, as in the cluster; flags
        // still win over everything.
        sources.env.extend(workload.env.iter().cloned());
    }
    Ok(Invocation {
        command,
        sources,
        truth_file: optional::<PathBuf>(m, "truth-file"),
        report_file: optional::<PathBuf>(m, "report-file"),
        recreate: optional::<bool>(m, "recreate").unwrap_or(false),
        brokers: optional::<i32>(m, "brokers").unwrap_or(1),
        markdown: optional::<bool>(m, "markdown").unwrap_or(false),
        fleet,
        bench: (name == "bench").then(|| {
            let mut options = if optional::<bool>(m, "quick").unwrap_or(false) {
                crate::bench::BenchOptions::quick()
            } else {
                crate::bench::BenchOptions::full()
            };
            if let Some(events) = optional::<u64>(m, "events") {
                options.events = events;
            }
            if let Ok(Some(only)) = m.try_get_many::<String>("only") {
                options.phases = only.map(|p| p.parse().expect("clap checked the value")).collect();
            }
            options
        }),
        dlq: match (name, sub.subcommand()) {
            ("dlq", Some(("inspect", m))) => Some(crate::dlq::DlqAction::Inspect(crate::dlq::InspectOptions {
                limit: optional::<usize>(m, "limit").unwrap_or(10),
                json: optional::<bool>(m, "json").unwrap_or(false),
            })),
            ("dlq", Some((_, m))) => Some(crate::dlq::DlqAction::Replay(crate::dlq::ReplayOptions {
                reasons: m
                    .get_many::<String>("reason")
                    .into_iter()
                    .flatten()
                    .filter_map(|c| crate::event::RejectReason::from_code(c))
                    .collect(),
                rekey: optional::<bool>(m, "rekey").unwrap_or(false),
                dry_run: optional::<bool>(m, "dry-run").unwrap_or(false),
            })),
            _ => None,
        },
        probe: (name == "probe").then(|| {
            let target = optional::<String>(m, "target").unwrap_or_else(|| "/readyz".into());
            (
                target,
                std::time::Duration::from_secs(optional::<u64>(m, "timeout").unwrap_or(3)),
            )
        }),
    })
}

/// The value of an argument that only some subcommands define.
fn optional<T: Clone + Send + Sync + 'static>(m: &ArgMatches, id: &str) -> Option<T> {
    m.try_get_one::<T>(id).ok().flatten().cloned()
}

fn fleet_options(m: &ArgMatches) -> Result<crate::fleet::FleetOptions, clap::Error> {
    let invalid = |message: String| command().error(clap::error::ErrorKind::ValueValidation, message);
    let plan = match optional::<String>(m, "plan") {
        Some(text) => crate::fleet::parse_plan(&text).map_err(|e| invalid(format!("--plan: {e}")))?,
        None => Vec::new(),
    };
    let step_text = optional::<String>(m, "step").unwrap_or_else(|| "20s".into());
    let step = config::parse_duration(&step_text)
        .ok_or_else(|| invalid(format!("--step {step_text:?} is not a duration such as 20s")))?;
    let mut kind = match optional::<String>(m, "consumer").as_deref() {
        Some("analytics") => crate::consumers::Kind::Analytics,
        _ => crate::consumers::Kind::Fraud,
    };
    let mut replicas = optional::<u16>(m, "replicas").unwrap_or(1) as usize;
    let workload = match optional::<PathBuf>(m, "manifest") {
        Some(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|e| invalid(format!("--manifest {}: {e}", path.display())))?;
            let wanted = optional::<String>(m, "workload").unwrap_or_else(|| "fraud".into());
            let workload = crate::manifest::workload(&text, &wanted)
                .map_err(|e| invalid(format!("--manifest {}: {e}", path.display())))?;
            kind = workload.consumer;
            if m.value_source("replicas") != Some(clap::parser::ValueSource::CommandLine) {
                replicas = workload.replicas;
            }
            Some(workload)
        }
        None => None,
    };
    Ok(crate::fleet::FleetOptions {
        kind,
        replicas,
        plan,
        step,
        workload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_tree_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn flags_come_from_the_settings_table() {
        let inv = parse(
            [
                "activity-tracker",
                "produce",
                "--events-per-second",
                "250",
                "--max-events",
                "7",
                "--truth-file",
                "t.jsonl",
            ],
            Sources::default(),
        )
        .unwrap();
        assert_eq!(inv.command, config::Command::Produce);
        assert_eq!(
            inv.sources.flags.get("EVENTS_PER_SECOND").map(String::as_str),
            Some("250")
        );
        assert_eq!(inv.sources.flags.get("MAX_EVENTS").map(String::as_str), Some("7"));
        assert_eq!(inv.truth_file, Some(PathBuf::from("t.jsonl")));
    }

    #[test]
    fn settings_out_of_scope_are_not_flags() {
        let err = parse(
            ["activity-tracker", "broker", "--velocity-threshold", "3"],
            Sources::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn topics_create_takes_recreate() {
        let inv = parse(
            ["activity-tracker", "topics", "create", "--recreate"],
            Sources::default(),
        )
        .unwrap();
        assert_eq!(inv.command, config::Command::Topics);
        assert!(inv.recreate);
    }
}
