//! The command line: one clap-derived enum of subcommands, each a module of
//! its own with its options and how it runs ([`Run`]).
//!
//! Adding a subcommand is a module here and a line in the `commands!` list
//! below (`if "tools"` after it builds it only with the `tools` feature, as
//! `bench` and `fleet` are: developer tools the container image leaves out): its options are a clap `Args` struct, its [`Profile`] names the
//! settings it reads (they become its `--flags`, generated from
//! [`crate::config::SETTINGS`], with the variable name and default in their
//! help), and [`Run::run`] gets the loaded [`Config`] and a [`Context`].
//!
//! The binary owns the process: it parses ([`parse`]), loads the
//! configuration, starts logging and the async runtime, and hands
//! [`Command::run`] a [`Context`] whose stop handler it supplies, since the
//! library installs no signal handler and never exits the process.

use std::ffi::OsString;
use std::future::Future;
use std::time::Duration;

use clap::{Arg, ArgMatches, FromArgMatches, Parser};

use crate::config::{Config, Profile, SETTINGS, Sources};
use crate::shutdown::Shutdown;

/// What every subcommand implements.
pub trait Run: Sized {
    /// The settings it reads and its defaults.
    const PROFILE: Profile;

    /// Before the configuration loads: add to its sources (`fleet` takes a
    /// rendered manifest's pod environment). Errors are usage errors.
    fn prepare(&mut self, _sources: &mut Sources) -> Result<(), clap::Error> {
        Ok(())
    }

    /// Runs the command to completion.
    fn run(self, config: Config, context: Context) -> impl Future<Output = anyhow::Result<()>>;
}

/// What the binary gives a running command.
#[derive(Clone, Copy)]
pub struct Context {
    /// Makes the process's stop signals (and fatal Kafka errors) trigger the
    /// token, and bounds the stop that follows by the budget: the binary's.
    pub stop_on_signals: fn(&Shutdown, Duration),
}

impl Context {
    /// The stop token of a long-running command whose graceful stop takes at
    /// most `budget`. Commands that never call this end on the first signal.
    pub fn graceful(&self, budget: Duration) -> Shutdown {
        let shutdown = Shutdown::new();
        (self.stop_on_signals)(&shutdown, budget);
        shutdown
    }
}

macro_rules! commands {
    ($($(#[$attr:meta])* $variant:ident($module:ident::$ty:ident) $(if $feature:literal)?,)*) => {
        $($(#[cfg(feature = $feature)])? pub mod $module;)*

        /// Every subcommand.
        #[derive(clap::Subcommand, Debug)]
        pub enum Command {
            $($(#[cfg(feature = $feature)])? $(#[$attr])* $variant($module::$ty),)*
        }

        impl Command {
            /// What the command reads from the configuration.
            pub fn profile(&self) -> Profile {
                match self {
                    $($(#[cfg(feature = $feature)])? Command::$variant(_) => <$module::$ty as Run>::PROFILE,)*
                }
            }

            /// Every subcommand's profile, in the order of the help.
            #[allow(clippy::vec_init_then_push, reason = "some pushes are behind a feature")]
            pub fn profiles() -> Vec<Profile> {
                let mut profiles = Vec::new();
                $($(#[cfg(feature = $feature)])? profiles.push(<$module::$ty as Run>::PROFILE);)*
                profiles
            }

            /// See [`Run::prepare`].
            pub fn prepare(&mut self, sources: &mut Sources) -> Result<(), clap::Error> {
                match self {
                    $($(#[cfg(feature = $feature)])? Command::$variant(c) => c.prepare(sources),)*
                }
            }

            /// See [`Run::run`].
            pub async fn run(self, config: Config, context: Context) -> anyhow::Result<()> {
                match self {
                    $($(#[cfg(feature = $feature)])? Command::$variant(c) => c.run(config, context).await,)*
                }
            }
        }
    };
}

commands! {
    /// Run an embedded Kafka-protocol broker with the topics created; prints KAFKA_BOOTSTRAP_SERVERS=… first
    Broker(broker::Broker),
    /// Topic administration on a real cluster
    #[command(subcommand)]
    Topics(topics::Topics),
    /// Simulate user activity and send it to Kafka
    Produce(produce::Produce),
    /// Consume events and report analytics
    Analytics(analytics::Analytics),
    /// Consume events and raise fraud alerts
    Fraud(fraud::Fraud),
    /// Accept events over HTTP (POST /v1/events, GET /v1/tracker.js) and send them to Kafka
    Collect(collect::Collect),
    /// Operate the dead-letter topic: see what was rejected and why, replay it after a fix
    #[command(subcommand)]
    Dlq(dlq::Dlq),
    /// Broker, producer, analytics and fraud detection in one process
    Demo(demo::Demo),
    /// Benchmark end to end on the embedded broker (or KAFKA_BOOTSTRAP_SERVERS): producer, the raw-consume ceiling, both consumers, latency, rebalance pause, memory; prints one table
    Bench(bench::Bench) if "tools",
    /// Run N local replicas of a consumer in one group and change N while they run, showing who owns which partitions
    Fleet(fleet::Fleet) if "tools",
    /// Check a health endpoint (exit 0 on a 2xx answer): for images without curl, e.g. container healthchecks
    Probe(probe::Probe),
    /// Print the effective configuration (secrets redacted) and exit
    Config(config::Describe),
}

/// The command line as clap derives it, before the settings' flags.
#[derive(Parser, Debug)]
#[command(
    name = "activity-tracker",
    version,
    about = "Real-time user-activity analytics and fraud detection on Kafka",
    subcommand_required = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The whole command tree: the derived one, with each subcommand's settings
/// as flags.
pub fn command() -> clap::Command {
    let mut tree = <Cli as clap::CommandFactory>::command();
    for profile in Command::profiles() {
        tree = tree.mut_subcommand(profile.name, |sub| with_settings(sub, profile));
    }
    tree
}

/// Adds the settings `profile` reads as flags to `cmd`, or to each of its
/// subcommands when it has them (`topics create`, `dlq inspect`).
fn with_settings(mut cmd: clap::Command, profile: Profile) -> clap::Command {
    let children: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
    if !children.is_empty() {
        for child in children {
            cmd = cmd.mut_subcommand(child, |c| with_settings(c, profile));
        }
        return cmd;
    }
    for s in SETTINGS.iter().filter(|s| s.uses.contains(profile.uses)) {
        let mut help = format!("{} Accepts {}. [env: {}]", s.help, s.kind.expected(), s.var);
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

/// The settings given as flags, by variable name.
fn flags(m: &ArgMatches) -> std::collections::BTreeMap<String, String> {
    let mut leaf = m;
    while let Some((_, sub)) = leaf.subcommand() {
        leaf = sub;
    }
    SETTINGS
        .iter()
        .filter_map(|s| {
            leaf.try_get_one::<String>(s.var)
                .ok()
                .flatten()
                .map(|v| (s.var.to_string(), v.clone()))
        })
        .collect()
}

/// Parses arguments; the environment and `.env` come from `env_sources`.
/// Returns the command, prepared, and where its settings come from.
pub fn parse<I, T>(args: I, env_sources: Sources) -> Result<(Command, Sources), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    let mut sources = env_sources;
    sources.flags = flags(&matches);
    let mut command = Cli::from_arg_matches(&matches)?.command;
    command.prepare(&mut sources)?;
    Ok((command, sources))
}

/// A usage error about `what`, reported like clap's own (exit code 2).
pub fn usage_error(what: impl std::fmt::Display) -> clap::Error {
    command().error(clap::error::ErrorKind::ValueValidation, what)
}

#[cfg(test)]
mod tests;
