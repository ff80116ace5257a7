//! `fraud`: the fraud detector, one pod of its group.

use std::path::PathBuf;

use crate::config::{Config, Profile, Uses};
use crate::consumers::Kind;

use super::{Context, Run};

#[derive(clap::Args, Debug)]
pub struct Fraud {
    /// On exit, write the final report (as served by /report) to this file as JSON
    #[arg(long, value_name = "PATH")]
    report_file: Option<PathBuf>,
}

impl Run for Fraud {
    const PROFILE: Profile = Profile {
        name: "fraud",
        uses: super::analytics::CONSUMER.or(Uses::FRAUD).or(Uses::IP_PRIVACY),
        http_port: 9102,
        defaults: &[],
    };

    async fn run(self, config: Config, context: Context) -> anyhow::Result<()> {
        let shutdown = context.graceful(crate::shutdown::stop_budget(&config));
        crate::consumers::run_command(Kind::Fraud, config, self.report_file, shutdown).await
    }
}
