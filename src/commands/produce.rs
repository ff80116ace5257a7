//! `produce`: the activity simulator, sending to Kafka.

use std::path::PathBuf;

use crate::config::{Config, Profile, Uses};

use super::{Context, Run};

#[derive(clap::Args, Debug)]
pub struct Produce {
    /// Write one JSON line per injected fraud actor (user_id, scenario, expected rules)
    #[arg(long, value_name = "PATH")]
    truth_file: Option<PathBuf>,
}

impl Run for Produce {
    const PROFILE: Profile = Profile {
        name: "produce",
        uses: Uses::KAFKA
            .or(Uses::TOPICS)
            .or(Uses::SIMULATOR)
            .or(Uses::SERVICE)
            .or(Uses::LOGS),
        http_port: 9103,
        defaults: &[],
    };

    async fn run(self, config: Config, context: Context) -> anyhow::Result<()> {
        let shutdown = context.graceful(crate::shutdown::stop_budget(&config));
        crate::producer::run_command(config, self.truth_file, shutdown).await
    }
}
