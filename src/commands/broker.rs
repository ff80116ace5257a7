//! `broker`: an embedded Kafka-protocol broker for local runs and tests.

use crate::config::{Config, Profile, Uses};

use super::{Context, Run};

#[derive(clap::Args, Debug)]
pub struct Broker {
    /// Number of brokers in the embedded cluster
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=9))]
    brokers: i32,
}

impl Run for Broker {
    const PROFILE: Profile = Profile {
        name: "broker",
        uses: Uses::TOPICS.or(Uses::TOPIC_ADMIN).or(Uses::LOGS),
        http_port: 0,
        defaults: &[],
    };

    async fn run(self, config: Config, context: Context) -> anyhow::Result<()> {
        let shutdown = context.graceful(crate::shutdown::stop_budget(&config));
        crate::broker::run_command(config, self.brokers, shutdown).await
    }
}
