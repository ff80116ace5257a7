//! `collect`: the HTTP collector for browsers and servers.

use crate::config::{Config, ConfigError, Profile, Uses};

use super::{Context, Run};

#[derive(clap::Args, Debug)]
pub struct Collect {}

impl Run for Collect {
    const PROFILE: Profile = Profile {
        name: "collect",
        uses: Uses::KAFKA
            .or(Uses::TOPICS)
            .or(Uses::DECODER)
            .or(Uses::IP_PRIVACY)
            .or(Uses::COLLECTOR)
            .or(Uses::SERVICE)
            .or(Uses::LOGS),
        http_port: 8080,
        defaults: &[],
    };

    async fn run(self, config: Config, context: Context) -> anyhow::Result<()> {
        if config.collect.write_keys.is_empty() {
            return Err(ConfigError::Inconsistent(
                "collect needs at least one write key: set COLLECT_WRITE_KEYS or COLLECT_WRITE_KEYS_FILE".into(),
            )
            .into());
        }
        // It keeps serving, not ready, for the delay before its stop begins.
        let budget = crate::shutdown::stop_budget(&config) + config.collect.shutdown_delay;
        let shutdown = context.graceful(budget);
        crate::collect::run_command(config, shutdown).await
    }
}
