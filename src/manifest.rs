//! Reads a consumer workload out of rendered Kubernetes manifests (`helm
//! template` output or `deploy/kubernetes/activity-tracker.yaml`), so
//! `activity-tracker fleet --manifest FILE --workload fraud` runs its replicas
//! as local processes exactly as the chart configures the pods: the same
//! subcommand, the same environment (literal values, `envFrom` ConfigMaps
//! from the same file, the pod name through the downward API), the same
//! replica count and, for a StatefulSet, the same pod names.
//!
//! What cannot exist on a laptop is reported, not silently dropped: values
//! read from Secrets, and the cluster's connection settings (brokers, TLS,
//! SASL) which are replaced by the local broker's.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::consumers::Kind;

/// Settings that describe how to reach the cluster's Kafka; a local fleet
/// connects to its own broker instead.
const CLUSTER_CONNECTION: &[&str] = &[
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_PASSWORD_FILE",
    "KAFKA_SSL_CA_LOCATION",
    "KAFKA_SSL_CERTIFICATE_LOCATION",
    "KAFKA_SSL_KEY_LOCATION",
    "KAFKA_SSL_KEY_PASSWORD",
    "KAFKA_SSL_KEY_PASSWORD_FILE",
    // Each local replica gets its own loopback port.
    "HTTP_ADDR",
];

/// A pod field exposed through the downward API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodField {
    /// `metadata.name`: the pod name.
    Name,
    /// `metadata.namespace`.
    Namespace,
    /// `status.podIP` (loopback locally).
    Ip,
}

/// The workload kinds a consumer runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

/// One consumer workload, ready to run locally.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    pub namespace: String,
    pub consumer: Kind,
    pub replicas: usize,
    /// The container's arguments, e.g. `["fraud"]`.
    pub args: Vec<String>,
    /// Environment in the order Kubernetes applies it (envFrom, then env).
    pub env: Vec<(String, String)>,
    /// Variables set per pod from the downward API.
    pub pod_fields: Vec<(String, PodField)>,
    /// What was left out and why, for the user to see.
    pub skipped: Vec<String>,
}

impl Workload {
    /// The name of replica `number` (1-based): a StatefulSet's stable
    /// `<name>-<ordinal>`, or a Deployment-like `<name>-local-<number>`.
    pub fn pod_name(&self, number: usize) -> String {
        match self.kind {
            WorkloadKind::StatefulSet => format!("{}-{}", self.name, number - 1),
            WorkloadKind::Deployment => format!("{}-local-{number}", self.name),
        }
    }

    /// The downward-API variables of replica `number`.
    pub fn pod_env(&self, number: usize) -> Vec<(String, String)> {
        self.pod_fields
            .iter()
            .map(|(var, field)| {
                let value = match field {
                    PodField::Name => self.pod_name(number),
                    PodField::Namespace => self.namespace.clone(),
                    PodField::Ip => "127.0.0.1".to_string(),
                };
                (var.clone(), value)
            })
            .collect()
    }

    /// The literal environment as a map (later entries win, as in a pod).
    pub fn env_map(&self) -> BTreeMap<String, String> {
        self.env.iter().cloned().collect()
    }
}

/// Why a manifest could not give a workload.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot parse the manifests: {0}")]
    Yaml(String),
    #[error(
        "no Deployment or StatefulSet named {wanted:?} (or ending in -{wanted}); consumer workloads found: {found}"
    )]
    NotFound { wanted: String, found: String },
    #[error("{wanted:?} matches several workloads: {found}; give the full name")]
    Ambiguous { wanted: String, found: String },
    #[error("workload {name}: {problem}")]
    Invalid { name: String, problem: String },
}

/// Parses every document of `text`.
fn documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| ManifestError::Yaml(e.to_string()))?;
    Ok(docs.into_iter().filter(Value::is_object).collect())
}

fn string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind_of(doc: &Value) -> Option<WorkloadKind> {
    match doc["kind"].as_str()? {
        "Deployment" => Some(WorkloadKind::Deployment),
        "StatefulSet" => Some(WorkloadKind::StatefulSet),
        _ => None,
    }
}

/// The consumer a workload runs, from its first container's first argument.
fn consumer_of(doc: &Value) -> Option<Kind> {
    let args = doc["spec"]["template"]["spec"]["containers"][0]["args"].as_array()?;
    match args.first()?.as_str()? {
        "fraud" => Some(Kind::Fraud),
        "analytics" => Some(Kind::Analytics),
        _ => None,
    }
}

/// Finds the consumer workload `wanted` (full name, or the suffix after the
/// release name such as `fraud`) in `text` and resolves its environment.
pub fn workload(text: &str, wanted: &str) -> Result<Workload, ManifestError> {
    let docs = documents(text)?;
    let consumers: Vec<&Value> = docs
        .iter()
        .filter(|d| kind_of(d).is_some() && consumer_of(d).is_some())
        .collect();
    let name_of = |d: &Value| d["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let exact: Vec<&&Value> = consumers.iter().filter(|d| name_of(d) == wanted).collect();
    let matches = if exact.is_empty() {
        consumers
            .iter()
            .filter(|d| name_of(d).ends_with(&format!("-{wanted}")))
            .collect()
    } else {
        exact
    };
    let all = || consumers.iter().map(|d| name_of(d)).collect::<Vec<_>>().join(", ");
    let doc = match matches.as_slice() {
        [one] => **one,
        [] => {
            return Err(ManifestError::NotFound {
                wanted: wanted.to_string(),
                found: if consumers.is_empty() { "none".into() } else { all() },
            });
        }
        several => {
            return Err(ManifestError::Ambiguous {
                wanted: wanted.to_string(),
                found: several.iter().map(|d| name_of(d)).collect::<Vec<_>>().join(", "),
            });
        }
    };
    let name = name_of(doc);
    let invalid = |problem: String| ManifestError::Invalid {
        name: name.clone(),
        problem,
    };
    let container = &doc["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .map(|a| a.iter().filter_map(string).collect())
        .unwrap_or_default();
    let replicas = match &doc["spec"]["replicas"] {
        Value::Null => 1,
        v => v
            .as_u64()
            .filter(|n| (1..=64).contains(n))
            .ok_or_else(|| invalid(format!("replicas {v} is not a count from 1 to 64")))? as usize,
    };
    let namespace = doc["metadata"]["namespace"].as_str().unwrap_or("default").to_string();

    let mut env = Vec::new();
    let mut pod_fields = Vec::new();
    let mut skipped = Vec::new();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        if let Some(cm) = source["configMapRef"]["name"].as_str() {
            let found = docs
                .iter()
                .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm)
                .ok_or_else(|| invalid(format!("envFrom ConfigMap {cm} is not in the file")))?;
            let prefix = source["prefix"].as_str().unwrap_or("");
            for (k, v) in found["data"].as_object().into_iter().flatten() {
                if let Some(v) = string(v) {
                    env.push((format!("{prefix}{k}"), v));
                }
            }
        } else if let Some(secret) = source["secretRef"]["name"].as_str() {
            skipped.push(format!(
                "envFrom Secret {secret} (Secrets are not in rendered manifests)"
            ));
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let Some(key) = var["name"].as_str() else { continue };
        if let Some(v) = string(&var["value"]) {
            env.push((key.to_string(), v));
            continue;
        }
        let from = &var["valueFrom"];
        if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            match path {
                "metadata.name" => pod_fields.push((key.to_string(), PodField::Name)),
                "metadata.namespace" => pod_fields.push((key.to_string(), PodField::Namespace)),
                "status.podIP" => pod_fields.push((key.to_string(), PodField::Ip)),
                other => skipped.push(format!("{key} (pod field {other})")),
            }
        } else if let Some(secret) = from["secretKeyRef"]["name"].as_str() {
            skipped.push(format!("{key} (from Secret {secret})"));
        } else if from.is_object() {
            skipped.push(format!("{key} (valueFrom not available locally)"));
        } else {
            env.push((key.to_string(), String::new()));
        }
    }
    // The cluster's connection settings do not apply to a local broker.
    let replaced: Vec<&str> = CLUSTER_CONNECTION
        .iter()
        .copied()
        .filter(|c| env.iter().any(|(k, _)| k == c) || pod_fields.iter().any(|(k, _)| k == c))
        .collect();
    env.retain(|(k, _)| !CLUSTER_CONNECTION.contains(&k.as_str()));
    pod_fields.retain(|(k, _)| !CLUSTER_CONNECTION.contains(&k.as_str()));
    if !replaced.is_empty() {
        skipped.push(format!(
            "{} (the local broker's settings are used)",
            replaced.join(", ")
        ));
    }
    Ok(Workload {
        kind: kind_of(doc).expect("filtered on kind"),
        consumer: consumer_of(doc).expect("filtered on consumer"),
        name,
        namespace,
        replicas,
        args,
        env,
        pod_fields,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
# Source: activity-tracker/templates/configmap.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: at-activity-tracker
data:
  KAFKA_BOOTSTRAP_SERVERS: "kafka.prod:9093"
  KAFKA_SECURITY_PROTOCOL: "sasl_ssl"
  KAFKA_SASL_PASSWORD_FILE: "/etc/activity-tracker/kafka-sasl/password"
  KAFKA_ACTIVITIES_TOPIC: "user-activities"
  KAFKA_ACTIVITIES_PARTITIONS: "12"
  HTTP_ADDR: "0.0.0.0:8080"
  SHUTDOWN_TIMEOUT: "20s"
---
apiVersion: v1
kind: Service
metadata:
  name: at-activity-tracker-fraud
spec:
  ports:
    - port: 8080
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: at-activity-tracker-fraud
  namespace: shop
spec:
  replicas: 3
  template:
    spec:
      containers:
        - name: fraud
          args: ["fraud"]
          envFrom:
            - configMapRef:
                name: at-activity-tracker
          env:
            - name: KAFKA_FRAUD_GROUP
              value: "fraud-detectors"
            - name: KAFKA_GROUP_INSTANCE_ID
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: IP_HASH_KEY
              valueFrom:
                secretKeyRef:
                  name: ip-key
                  key: key
            - name: SHUTDOWN_TIMEOUT
              value: "25s"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: at-activity-tracker-analytics
spec:
  template:
    spec:
      containers:
        - name: analytics
          args:
            - analytics
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: at-activity-tracker-producer
spec:
  replicas: 1
  template:
    spec:
      containers:
        - name: producer
          args: ["produce"]
"#;

    #[test]
    fn a_statefulset_gives_its_env_replicas_and_stable_pod_names() {
        let w = workload(MANIFEST, "fraud").unwrap();
        assert_eq!(w.kind, WorkloadKind::StatefulSet);
        assert_eq!(w.consumer, Kind::Fraud);
        assert_eq!((w.replicas, w.args.as_slice()), (3, ["fraud".to_string()].as_slice()));
        let env = w.env_map();
        assert_eq!(env["KAFKA_ACTIVITIES_PARTITIONS"], "12");
        assert_eq!(env["KAFKA_FRAUD_GROUP"], "fraud-detectors");
        assert_eq!(env["SHUTDOWN_TIMEOUT"], "25s", "env wins over envFrom, as in a pod");
        for gone in [
            "KAFKA_BOOTSTRAP_SERVERS",
            "KAFKA_SECURITY_PROTOCOL",
            "KAFKA_SASL_PASSWORD_FILE",
            "HTTP_ADDR",
        ] {
            assert!(!env.contains_key(gone), "{gone} is the cluster's");
        }
        assert_eq!(
            w.pod_env(2),
            vec![(
                "KAFKA_GROUP_INSTANCE_ID".to_string(),
                "at-activity-tracker-fraud-1".to_string()
            )]
        );
        let skipped = w.skipped.join("; ");
        assert!(skipped.contains("IP_HASH_KEY (from Secret ip-key)"), "{skipped}");
        assert!(
            skipped.contains("KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL"),
            "{skipped}"
        );
    }

    #[test]
    fn a_deployment_without_replicas_runs_one_and_full_names_match() {
        let w = workload(MANIFEST, "at-activity-tracker-analytics").unwrap();
        assert_eq!(
            (w.kind, w.consumer, w.replicas),
            (WorkloadKind::Deployment, Kind::Analytics, 1)
        );
        assert_eq!(w.namespace, "default");
        assert_eq!(w.pod_name(2), "at-activity-tracker-analytics-local-2");
        assert!(w.env.is_empty() && w.pod_fields.is_empty());
    }

    #[test]
    fn unknown_ambiguous_and_broken_inputs_are_clear_errors() {
        let err = workload(MANIFEST, "producer").unwrap_err().to_string();
        assert!(
            err.contains("at-activity-tracker-fraud, at-activity-tracker-analytics"),
            "{err}"
        );
        let twice = format!("{MANIFEST}\n---\n{}", MANIFEST.replace("at-activity", "other-activity"));
        let err = workload(&twice, "fraud").unwrap_err().to_string();
        assert!(err.contains("several"), "{err}");
        assert!(matches!(workload("kind: [", "fraud"), Err(ManifestError::Yaml(_))));
        let missing = MANIFEST.replace("  name: at-activity-tracker\ndata:", "  name: renamed\ndata:");
        let err = workload(&missing, "fraud").unwrap_err().to_string();
        assert!(
            err.contains("envFrom ConfigMap at-activity-tracker is not in the file"),
            "{err}"
        );
        let zero = MANIFEST.replace("replicas: 3", "replicas: 0");
        assert!(workload(&zero, "fraud").unwrap_err().to_string().contains("replicas 0"));
    }
}
