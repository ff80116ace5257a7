//! `analytics`: the analytics consumer, one pod of its group.

use std::path::PathBuf;

use crate::config::{Config, Profile, Uses};
use crate::consumers::Kind;

use super::{Context, Run};

#[derive(clap::Args, Debug)]
pub struct Analytics {
    /// On exit, write the final report (as served by /report) to this file as JSON
    #[arg(long, value_name = "PATH")]
    report_file: Option<PathBuf>,
}

/// What both consumer commands read.
pub(super) const CONSUMER: Uses = Uses::KAFKA
    .or(Uses::TOPICS)
    .or(Uses::GROUP_MEMBER)
    .or(Uses::CONSUMER)
    .or(Uses::DECODER)
    .or(Uses::SERVICE)
    .or(Uses::LOGS);

impl Run for Analytics {
    const PROFILE: Profile = Profile {
        name: "analytics",
        uses: CONSUMER.or(Uses::ANALYTICS),
        http_port: 9101,
        defaults: &[],
    };

    async fn run(self, config: Config, context: Context) -> anyhow::Result<()> {
        let shutdown = context.graceful(crate::shutdown::stop_budget(&config));
        crate::consumers::run_command(Kind::Analytics, config, self.report_file, shutdown).await
    }
}
