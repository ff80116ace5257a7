//! `dlq inspect|replay`: operate the dead-letter topic.

use crate::config::{Config, Profile, Uses};
use crate::dlq::{DlqAction, InspectOptions, ReplayOptions};
use crate::event::RejectReason;

use super::{Context, Run};

#[derive(clap::Subcommand, Debug)]
pub enum Dlq {
    /// Count dead letters by reason and consumer group and show the latest ones
    Inspect {
        /// How many of the latest dead letters to show
        #[arg(long, value_name = "N", default_value_t = 10)]
        limit: usize,
        /// Print every dead letter as a JSON line instead (for jq)
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters back to the activities topic once each; those the current decoder still refuses stay
    Replay {
        /// Only dead letters with this reason (repeatable)
        #[arg(long, value_name = "CODE", value_parser = clap::builder::PossibleValuesParser::new(RejectReason::ALL.map(|r| r.code())))]
        reason: Vec<String>,
        /// Key events that arrived without their user_id key (or with another) by user_id
        #[arg(long)]
        rekey: bool,
        /// Say what would be replayed; send nothing
        #[arg(long)]
        dry_run: bool,
    },
}

impl Run for Dlq {
    const PROFILE: Profile = Profile {
        name: "dlq",
        uses: Uses::KAFKA
            .or(Uses::TOPICS)
            .or(Uses::DECODER)
            .or(Uses::DEAD_LETTERS)
            .or(Uses::LOGS),
        http_port: 0,
        defaults: &[],
    };

    async fn run(self, config: Config, _: Context) -> anyhow::Result<()> {
        let action = match self {
            Dlq::Inspect { limit, json } => DlqAction::Inspect(InspectOptions { limit, json }),
            Dlq::Replay {
                reason,
                rekey,
                dry_run,
            } => DlqAction::Replay(ReplayOptions {
                reasons: reason.iter().filter_map(|c| RejectReason::from_code(c)).collect(),
                rekey,
                dry_run,
            }),
        };
        crate::dlq::run_command(config, action).await
    }
}
