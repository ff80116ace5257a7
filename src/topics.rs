//! Topic administration: `activity-tracker topics create`.
//!
//! Creates the activities, alerts and dead-letter topics with the configured
//! partitions, replication factor and `retention.ms`. Idempotent: a topic
//! that exists is reported with its partition count and left alone (exit 0).
//! `--recreate` deletes and recreates them — every event in them is lost, so
//! it is a deliberate flag, never a default.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::RDKafkaErrorCode;

use crate::config::{KafkaConfig, TopicsConfig};

const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicOutcome {
    Created {
        name: String,
        partitions: i32,
    },
    /// `configured` is KAFKA_ACTIVITIES_PARTITIONS: an existing topic with
    /// another count is reported loudly (see [`TopicOutcome::mismatch`]).
    Exists {
        name: String,
        partitions: i32,
        configured: i32,
    },
    Recreated {
        name: String,
        partitions: i32,
    },
}

impl std::fmt::Display for TopicOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicOutcome::Created { name, partitions } => {
                write!(f, "✅ created {name} ({partitions} partitions)")
            }
            TopicOutcome::Exists {
                name,
                partitions,
                configured,
            } if partitions != configured => write!(
                f,
                "⚠️  {name} already exists with {partitions} partitions, not the configured {configured} \
                 (KAFKA_ACTIVITIES_PARTITIONS); left unchanged. At most {partitions} consumers per group do work, \
                 and whatever was sized on {configured} (the chart's KEDA maximum, the dashboards' expectations) is wrong: \
                 set the partition count to {partitions}, or add partitions to the topic (kafka-topics.sh --alter; \
                 users then move to other partitions)"
            ),
            TopicOutcome::Exists { name, partitions, .. } => {
                write!(f, "ℹ️  {name} already exists ({partitions} partitions); left unchanged")
            }
            TopicOutcome::Recreated { name, partitions } => {
                write!(f, "♻️  recreated {name} ({partitions} partitions)")
            }
        }
    }
}

impl TopicOutcome {
    /// An existing topic whose partition count is not the configured one.
    pub fn mismatch(&self) -> bool {
        matches!(self, TopicOutcome::Exists { partitions, configured, .. } if partitions != configured)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    #[error("cannot create an admin client for {servers}: {error}")]
    Client {
        servers: String,
        error: rdkafka::error::KafkaError,
    },
    #[error(
        "cannot reach the cluster at {servers} to list topics: {error} (is KAFKA_BOOTSTRAP_SERVERS right and the broker up?)"
    )]
    Metadata {
        servers: String,
        error: rdkafka::error::KafkaError,
    },
    #[error("cannot {action} topic {topic}: {error}")]
    Admin {
        action: &'static str,
        topic: String,
        error: String,
    },
}

/// Whether `topic` exists (None when the cluster cannot be asked), for error
/// messages that can then say what is wrong. Lists all topics rather than
/// asking for this one, which could auto-create it.
pub fn exists(kafka: &KafkaConfig, topic: &str) -> Option<bool> {
    let admin: AdminClient<crate::kafka::BaseContext> = crate::kafka::admin(kafka)
        .create_with_context(crate::kafka::BaseContext)
        .ok()?;
    let metadata = admin.inner().fetch_metadata(None, Duration::from_secs(5)).ok()?;
    Some(
        metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none()),
    )
}

/// Waits (up to [`ADMIN_TIMEOUT`]) until the cluster's metadata lists
/// `name` with a leader for every partition; returns its partition count.
fn await_topic<C: rdkafka::consumer::ConsumerContext>(reader: &BaseConsumer<C>, name: &str) -> Option<i32> {
    let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
    loop {
        let listed = crate::kafka::fetch_metadata(reader, Some(name), Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                let t = m.topics().iter().find(|t| t.name() == name && t.error().is_none())?;
                let ready = !t.partitions().is_empty() && t.partitions().iter().all(|p| p.leader() >= 0);
                ready.then_some(t.partitions().len() as i32)
            });
        if listed.is_some() || std::time::Instant::now() >= deadline {
            return listed;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes sure the three topics exist; see the module documentation.
pub async fn ensure_topics(
    kafka: &KafkaConfig,
    topics: &TopicsConfig,
    recreate: bool,
) -> Result<Vec<TopicOutcome>, TopicsError> {
    let admin: AdminClient<crate::kafka::BaseContext> = crate::kafka::admin(kafka)
        .create_with_context(crate::kafka::BaseContext)
        .map_err(|error| TopicsError::Client {
            servers: kafka.bootstrap_servers.clone(),
            error,
        })?;
    // Metadata through a consumer-type client: its error callback reports a
    // refused login (the admin client's does not), so a wrong password is
    // named as such.
    let reader: BaseConsumer<crate::kafka::BaseContext> = crate::kafka::reader(kafka, "activity-tracker-admin")
        .create_with_context(crate::kafka::BaseContext)
        .map_err(|error| TopicsError::Client {
            servers: kafka.bootstrap_servers.clone(),
            error,
        })?;
    let metadata =
        crate::kafka::fetch_metadata(&reader, None, ADMIN_TIMEOUT).map_err(|error| TopicsError::Metadata {
            servers: kafka.bootstrap_servers.clone(),
            error,
        })?;
    let existing = |name: &str| {
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
    };
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let retention = topics.retention_ms.to_string();
    let mut outcomes = Vec::new();
    for name in [&topics.activities, &topics.alerts, &topics.dlq] {
        let was_there = existing(name);
        if let Some(partitions) = was_there
            && !recreate
        {
            outcomes.push(TopicOutcome::Exists {
                name: name.clone(),
                partitions,
                configured: topics.partitions,
            });
            continue;
        }
        if was_there.is_some() {
            let results = admin
                .delete_topics(&[name.as_str()], &options)
                .await
                .map_err(|e| TopicsError::Admin {
                    action: "delete",
                    topic: name.clone(),
                    error: e.to_string(),
                })?;
            for r in results {
                if let Err((topic, code)) = r
                    && code != RDKafkaErrorCode::UnknownTopicOrPartition
                {
                    return Err(TopicsError::Admin {
                        action: "delete",
                        topic,
                        error: code.to_string(),
                    });
                }
            }
        }
        let new_topic = || {
            NewTopic::new(
                name,
                topics.partitions,
                TopicReplication::Fixed(topics.replication_factor),
            )
            .set("retention.ms", &retention)
        };
        let mut attempts = 0;
        let mut created_meanwhile = false;
        loop {
            attempts += 1;
            let results = admin
                .create_topics(&[new_topic()], &options)
                .await
                .map_err(|e| TopicsError::Admin {
                    action: "create",
                    topic: name.clone(),
                    error: e.to_string(),
                })?;
            match results.into_iter().next() {
                Some(Ok(_)) | None => break,
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) if was_there.is_none() => {
                    // Created by another process, or so recently that the
                    // metadata read above did not list it yet: it exists.
                    created_meanwhile = true;
                    break;
                }
                // A deleted topic takes a moment to disappear.
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) if attempts < 30 => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Some(Err((topic, code))) => {
                    return Err(TopicsError::Admin {
                        action: "create",
                        topic,
                        error: code.to_string(),
                    });
                }
            }
        }
        // Kafka creates a topic asynchronously: return once the cluster
        // lists it with a leader for every partition, so the next command
        // (or the next run of this one) sees it.
        let listed = await_topic(&reader, name);
        if created_meanwhile {
            outcomes.push(TopicOutcome::Exists {
                name: name.clone(),
                partitions: listed.unwrap_or(topics.partitions),
                configured: topics.partitions,
            });
            continue;
        }
        outcomes.push(if was_there.is_some() {
            TopicOutcome::Recreated {
                name: name.clone(),
                partitions: topics.partitions,
            }
        } else {
            TopicOutcome::Created {
                name: name.clone(),
                partitions: topics.partitions,
            }
        });
    }
    Ok(outcomes)
}

/// The `topics create` command.
pub async fn run_command(config: crate::config::Config, recreate: bool) -> anyhow::Result<()> {
    for outcome in ensure_topics(&config.kafka, &config.topics, recreate).await? {
        if outcome.mismatch() {
            tracing::warn!(%outcome, "existing topic has another partition count than configured");
        }
        println!("{outcome}");
    }
    Ok(())
}
