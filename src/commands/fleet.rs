//! `fleet`: local replicas of a consumer in one group, scaled while they run.

use std::path::PathBuf;

use crate::config::{Config, Profile, Sources};
use crate::consumers::Kind;
use crate::fleet::FleetOptions;

use super::{Context, Run, usage_error};

#[derive(clap::Args, Debug)]
pub struct Fleet {
    /// Which consumer to replicate
    #[arg(long, value_parser = ["fraud", "analytics"], default_value = "fraud", conflicts_with = "manifest")]
    consumer: String,
    /// Replicas to start with [default: 1, or the manifest's]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    replicas: Option<u16>,
    /// Changes to make, one per --step: replica counts and `kill` (SIGKILL the newest), e.g. 3,2,kill,4
    #[arg(long, value_name = "STEPS")]
    plan: Option<String>,
    /// Run the replicas as this rendered manifest configures the pods (`helm template` output or deploy/kubernetes/activity-tracker.yaml): subcommand, environment, replica count, pod names
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// The Deployment or StatefulSet in --manifest, by full name or suffix (fraud, analytics) [default: fraud]
    #[arg(long, value_name = "NAME", requires = "manifest")]
    workload: Option<String>,
    /// Time between plan steps
    #[arg(long, value_name = "DURATION", default_value = "20s")]
    step: String,
    /// Filled in by `prepare`.
    #[arg(skip)]
    options: Option<Box<FleetOptions>>,
}

impl Run for Fleet {
    const PROFILE: Profile = Profile {
        name: "fleet",
        uses: super::demo::PIPELINE,
        http_port: 0,
        defaults: &[],
    };

    fn prepare(&mut self, sources: &mut Sources) -> Result<(), clap::Error> {
        let plan = match &self.plan {
            Some(text) => crate::fleet::parse_plan(text).map_err(|e| usage_error(format!("--plan: {e}")))?,
            None => Vec::new(),
        };
        let step = crate::config::parse_duration(&self.step)
            .ok_or_else(|| usage_error(format!("--step {:?} is not a duration such as 20s", self.step)))?;
        let mut kind = match self.consumer.as_str() {
            "analytics" => Kind::Analytics,
            _ => Kind::Fraud,
        };
        let mut replicas = self.replicas.unwrap_or(1) as usize;
        let workload = match &self.manifest {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| usage_error(format!("--manifest {}: {e}", path.display())))?;
                let wanted = self.workload.as_deref().unwrap_or("fraud");
                let workload = crate::manifest::workload(&text, wanted)
                    .map_err(|e| usage_error(format!("--manifest {}: {e}", path.display())))?;
                kind = workload.consumer;
                if self.replicas.is_none() {
                    replicas = workload.replicas;
                }
                // The pods' environment wins over ours, as in the cluster;
                // flags still win over everything.
                sources.env.extend(workload.env.iter().cloned());
                Some(workload)
            }
            None => None,
        };
        self.options = Some(Box::new(FleetOptions {
            kind,
            replicas,
            plan,
            step,
            workload,
        }));
        Ok(())
    }

    async fn run(self, config: Config, context: Context) -> anyhow::Result<()> {
        let options = self.options.ok_or_else(|| anyhow::anyhow!("fleet was not prepared"))?;
        // It stops after its replicas, each with its own budget.
        let shutdown = context.graceful(crate::shutdown::stop_budget(&config) + crate::shutdown::FLEET_STOP_EXTRA);
        crate::fleet::run_command(config, *options, shutdown).await
    }
}
