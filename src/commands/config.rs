//! `config`: the effective configuration, or the table of every setting.

use crate::config::{Config, Profile, Uses};

use super::{Context, Run};

#[derive(clap::Args, Debug)]
pub struct Describe {
    /// Print the table of every setting, as in the README
    #[arg(long)]
    markdown: bool,
}

impl Run for Describe {
    const PROFILE: Profile = Profile {
        name: "config",
        uses: Uses::ALL,
        http_port: 0,
        defaults: &[],
    };

    async fn run(self, config: Config, _: Context) -> anyhow::Result<()> {
        if self.markdown {
            print!("{}", crate::config::markdown_table());
        } else {
            print!("{}", config.describe());
        }
        Ok(())
    }
}
