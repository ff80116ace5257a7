//! `topics create`: the activities, alerts and dead-letter topics on a real
//! cluster.

use crate::config::{Config, Profile, Uses};

use super::{Context, Run};

#[derive(clap::Subcommand, Debug)]
pub enum Topics {
    /// Create the activities, alerts and dead-letter topics (idempotent)
    Create {
        /// Delete and recreate existing topics (their events are lost)
        #[arg(long)]
        recreate: bool,
    },
}

impl Run for Topics {
    const PROFILE: Profile = Profile {
        name: "topics",
        uses: Uses::KAFKA.or(Uses::TOPICS).or(Uses::TOPIC_ADMIN).or(Uses::LOGS),
        http_port: 0,
        defaults: &[],
    };

    async fn run(self, config: Config, _: Context) -> anyhow::Result<()> {
        let Topics::Create { recreate } = self;
        crate::topics::run_command(config, recreate).await
    }
}
