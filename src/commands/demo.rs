//! `demo`: broker, producer and both consumers in one process.

use crate::config::{Config, Profile, Uses};

use super::{Context, Run};

#[derive(clap::Args, Debug)]
pub struct Demo {}

/// Everything a whole pipeline in one process reads (also `fleet`'s).
pub(super) const PIPELINE: Uses = super::analytics::CONSUMER
    .or(Uses::TOPIC_ADMIN)
    .or(Uses::SIMULATOR)
    .or(Uses::ANALYTICS)
    .or(Uses::FRAUD)
    .or(Uses::IP_PRIVACY);

impl Run for Demo {
    const PROFILE: Profile = Profile {
        name: "demo",
        uses: PIPELINE,
        http_port: 9100,
        // Ten seconds of lateness instead of a minute: sessions count and
        // PURCHASE_WITHOUT_ACTIVITY decides within seconds of watching. The
        // simulated shop's own pages are not a traffic source.
        defaults: &[("ALLOWED_LATENESS", "10s"), ("SITE_DOMAINS", "shop.example.com")],
    };

    async fn run(self, config: Config, context: Context) -> anyhow::Result<()> {
        let shutdown = context.graceful(crate::shutdown::stop_budget(&config));
        crate::demo::run_command(config, shutdown).await
    }
}
