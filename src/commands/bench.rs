//! `bench`: the end-to-end benchmark.

use crate::bench::BenchOptions;
use crate::config::{Config, Profile, Uses};

use super::{Context, Run};

#[derive(clap::Args, Debug)]
pub struct Bench {
    /// A short run that proves every phase works (50,000 events)
    #[arg(long)]
    quick: bool,
    /// Events in the backlog the throughput phases drain [default: 2000000, --quick 50000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1000..))]
    events: Option<u64>,
    /// Run only these phases (comma-separated): throughput (producer, ceiling, consumers), latency, rebalance, memory, processing (decode + process on one core) [default: all]
    #[arg(long, value_name = "PHASE", value_delimiter = ',', value_parser = crate::bench::Phase::NAMES)]
    only: Vec<String>,
}

impl Run for Bench {
    const PROFILE: Profile = Profile {
        name: "bench",
        uses: Uses::KAFKA
            .or(Uses::TOPICS)
            .or(Uses::TOPIC_ADMIN)
            .or(Uses::SIMULATOR)
            .or(Uses::GROUP_MEMBER)
            .or(Uses::DECODER)
            .or(Uses::ANALYTICS)
            .or(Uses::FRAUD)
            .or(Uses::IP_PRIVACY)
            .or(Uses::LOGS),
        http_port: 0,
        defaults: &[],
    };

    async fn run(self, config: Config, _: Context) -> anyhow::Result<()> {
        let mut options = if self.quick {
            BenchOptions::quick()
        } else {
            BenchOptions::full()
        };
        if let Some(events) = self.events {
            options.events = events;
        }
        if !self.only.is_empty() {
            options.phases = self
                .only
                .iter()
                .map(|p| p.parse())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("--only: {e}"))?;
        }
        crate::bench::run_command(config, options).await
    }
}
