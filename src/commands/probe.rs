//! `probe`: an HTTP health check for images without curl.

use std::time::Duration;

use crate::config::{Config, Profile, Uses};

use super::{Context, Run};

#[derive(clap::Args, Debug)]
pub struct Probe {
    /// http://host:port/path, or a path on this container's own server (HTTP_ADDR)
    #[arg(value_name = "URL|PATH", default_value = "/readyz")]
    target: String,
    /// Connect and read timeout
    #[arg(long, value_name = "SECONDS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=300))]
    timeout: u64,
}

impl Run for Probe {
    const PROFILE: Profile = Profile {
        name: "probe",
        uses: Uses::NONE,
        http_port: 0,
        defaults: &[],
    };

    async fn run(self, config: Config, _: Context) -> anyhow::Result<()> {
        // Port 0: HTTP_ADDR is not set, so a bare path has nothing to probe.
        let own = (config.http_addr.port() != 0).then(|| config.http_addr.to_string());
        crate::probe::run_command(&self.target, own.as_deref(), Duration::from_secs(self.timeout))
    }
}
