{{/*
The alert rules, as the `groups` of a Prometheus rule file. The chart's
PrometheusRule renders them scoped to the release (its namespace, its
consumer groups); grafana/alerts/activity-tracker.rules.yml is the same
template rendered unscoped with the application's default group names
(scripts/render-manifests.sh), for a Prometheus without the Operator.
Thresholds, `for`, severities and extra labels are values
(prometheusRule.rules.*); every alert names its runbook in docs/runbooks.md.
*/}}
{{/* A Prometheus duration in words for descriptions: 10m → "10 minutes". */}}
{{- define "at.words" -}}
{{- $units := dict "s" "second" "m" "minute" "h" "hour" "d" "day" -}}
{{- $n := regexReplaceAll "^([0-9]+)([smhd])$" . "${1}" -}}
{{- $unit := get $units (regexReplaceAll "^([0-9]+)([smhd])$" . "${2}") -}}
{{- if and $unit (ne $n .) -}}
{{- $n }} {{ $unit }}{{ if ne $n "1" }}s{{ end -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{- define "at.alertGroups" -}}
{{- $v := .Values.prometheusRule -}}
{{- $r := $v.rules -}}
{{- /* The namespace matcher, with and without a following comma. */ -}}
{{- $ns := ternary (printf "namespace=%q" .Release.Namespace) "" $v.scoped -}}
{{- $ns_ := ternary (printf "%s, " $ns) "" $v.scoped -}}
{{- $consumers := include "at.consumers" . | fromJsonArray -}}
{{- $rules := list -}}
{{- $add := dict -}}

{{- with $r.consumerLagHigh }}{{ if .enabled }}
{{- $rules = append $rules (dict "key" "consumerLagHigh" "alert" "ActivityConsumerLagHigh"
  "expr" (printf "(sum by (namespace, group) (activity_consumer_lag_messages{%s}) > %v)\nand\n(sum by (namespace, group) (deriv(activity_consumer_lag_messages{%s}[10m])) > 0)\n" $ns .threshold $ns)
  "summary" `Consumer group {{ $labels.group }} is {{ $value | humanize }} messages behind and falling further behind`
  "description" (printf "Lag has been above %v messages and growing for %s. Scale the consumers (up to the partition count) or look for a slow pod in the Consumer Fleet dashboard." (toString .threshold) (include "at.words" .for))) }}
{{- end }}{{ end }}

{{- with $r.noEventsProcessed }}{{ if .enabled }}
{{- $rules = append $rules (dict "key" "noEventsProcessed" "alert" "ActivityNoEventsProcessed"
  "expr" (printf "(sum by (namespace, group) (rate(activity_events_processed_total{%s}[5m])) == 0)\nand\n(sum by (namespace, group) (activity_consumer_lag_messages{%s}) > 0)\n" $ns $ns)
  "summary" `Consumer group {{ $labels.group }} processes nothing although events are waiting`
  "description" (printf "No event processed for %s with lag above zero: the consumers are stuck or crash-looping." (include "at.words" .for))) }}
{{- end }}{{ end }}

{{- with $r.consumersAbsent }}{{ if .enabled }}
{{- $for := .for }}
{{- $absent := list }}
{{- range $c := $consumers }}
{{- /* A group KEDA may stop (minReplicaCount 0), or that the values run
with no replica, is absent by design. */}}
{{- $keda := include "at.kedaActive" (dict "root" $ "values" $c.values) }}
{{- $kedaZero := and $keda (eq (int $c.values.keda.minReplicaCount) 0) }}
{{- $noReplicas := and (eq (int $c.values.replicaCount) 0) (not $c.values.autoscaling.enabled) (not $keda) }}
{{- if not (or $kedaZero $noReplicas) }}
{{- $absent = append $absent (printf "absent(activity_consumer_ready{%sgroup=%q})" $ns_ $c.group) }}
{{- end }}
{{- end }}
{{- if $absent }}
{{- $rules = append $rules (dict "key" "consumersAbsent" "alert" "ActivityConsumerGroupAbsent"
  "expr" (printf "%s\n" (join "\nor\n" $absent))
  "summary" `No pod of consumer group {{ $labels.group }} reports to Prometheus`
  "description" (printf "For %s no pod of the group has exported activity_consumer_ready: it is scaled to zero, its pods never start or crash-loop, or Prometheus does not scrape them. Nothing is consumed, and the pods' own lag metrics cannot say so." (include "at.words" $for))) }}
{{- end }}
{{- if and $.Values.collector.enabled $v.scoped }}
{{- $rules = append $rules (dict "key" "consumersAbsent" "alert" "ActivityCollectorAbsent"
  "expr" (printf "absent(activity_collector_kafka_up{%s})\n" $ns)
  "summary" `No collector pod reports to Prometheus`
  "description" (printf "For %s no collector pod has exported metrics: events sent to the collector are not accepted, or Prometheus does not scrape it." (include "at.words" $for))) }}
{{- end }}
{{- end }}{{ end }}

{{- with $r.consumerDown }}{{ if .enabled }}
{{- $rules = append $rules (dict "key" "consumerDown" "alert" "ActivityConsumerDown"
  "expr" (printf "(up{%s} == 0)\nand on (namespace, pod)\nmax by (namespace, pod) (max_over_time(activity_build_info{%s}[1h]))\n" $ns $ns)
  "summary" `{{ $labels.instance }} ({{ $labels.pod }}) cannot be scraped`
  "description" (printf "The pod's /metrics endpoint has been unreachable for %s; its partitions move to other pods after the session timeout." (include "at.words" .for))) }}
{{- end }}{{ end }}

{{- with $r.consumerNotReady }}{{ if .enabled }}
{{- $rules = append $rules (dict "key" "consumerNotReady" "alert" "ActivityConsumerNotReady"
  "expr" (printf "activity_consumer_ready{%s} == 0\n" $ns)
  "summary" (printf "{{ $labels.consumer }} consumer in {{ $labels.pod }} has not been ready for %s" (include "at.words" .for))
  "description" "Not joined to its consumer group, or its loop is stalled (see /readyz).") }}
{{- end }}{{ end }}

{{- with $r.fraudAlertSpike }}{{ if .enabled }}
{{- $rules = append $rules (dict "key" "fraudAlertSpike" "alert" "ActivityFraudAlertSpike"
  "expr" (printf "(sum by (namespace, rule) (rate(activity_fraud_alerts_total{%s}[5m]))\n  / sum by (namespace, rule) (rate(activity_fraud_alerts_total{%s}[1h] offset 5m)) > %v)\nand\n(sum by (namespace, rule) (rate(activity_fraud_alerts_total{%s}[5m])) * 60 > %v)\n" $ns $ns .factor $ns .minPerMinute)
  "summary" `{{ $labels.rule }} alerts at {{ $value | printf "%.1f" }}x the previous hour's rate`
  "description" (printf "More than %v times the rate of the previous hour and above %v per minute: an attack, or a change in traffic that the thresholds should follow." (toString .factor) (toString .minPerMinute))) }}
{{- end }}{{ end }}

{{- with $r.deadLetterGrowing }}{{ if .enabled }}
{{- $rules = append $rules (dict "key" "deadLetterGrowing" "alert" "ActivityDeadLetterGrowing"
  "expr" (printf "sum by (namespace, group, reason) (increase(activity_dlq_messages_total{%s}[10m])) > 0\n" $ns)
  "summary" `Events rejected as {{ $labels.reason }} keep arriving in the dead-letter topic ({{ $labels.group }})`
  "description" (printf "Rejected events have been dead-lettered for %s. Inspect them with `activity-tracker dlq inspect` and fix the producer; replay them with `activity-tracker dlq replay`." (include "at.words" .for))) }}
{{- end }}{{ end }}

{{- with $r.commitsFailing }}{{ if .enabled }}
{{- $rules = append $rules (dict "key" "commitsFailing" "alert" "ActivityCommitsFailing"
  "expr" (printf "(sum by (namespace, group) (rate(activity_consumer_commits_total{%sresult=\"error\"}[5m])) > 0)\nand\n(sum by (namespace, group) (rate(activity_consumer_commits_total{%sresult=\"ok\"}[5m])) == 0)\n" $ns_ $ns_)
  "summary" `Consumer group {{ $labels.group }} cannot commit offsets`
  "description" (printf "Every offset commit has failed for %s; a restart would re-process everything since the last commit." (include "at.words" .for))) }}
{{- end }}{{ end }}

{{- with $r.snapshotsFailing }}{{ if .enabled }}
{{- $rules = append $rules (dict "key" "snapshotsFailing" "alert" "ActivitySnapshotsFailing"
  "expr" (printf "sum by (namespace, group) (increase(activity_state_snapshots_total{%sresult=\"failed\"}[15m])) > 0\nor\nsum by (namespace, group) (increase(activity_state_restores_total{%soutcome=\"unusable\"}[15m])) > 0\n" $ns_ $ns_)
  "summary" `Partition snapshots of {{ $labels.group }} are failing`
  "description" (printf "For %s, snapshots were not written to the group's state topic or new owners found only unusable ones. Moved partitions are still rebuilt correctly, by replaying the whole window: rebalances take longer as traffic grows." (include "at.words" .for))) }}
{{- end }}{{ end }}

{{- with $r.collectorRejecting }}{{ if .enabled }}
{{- $rules = append $rules (dict "key" "collectorRejecting" "alert" "ActivityCollectorRejecting"
  "expr" (printf "(sum by (namespace) (rate(activity_collector_events_rejected_total{%s}[5m]))\n  / (sum by (namespace) (rate(activity_collector_events_accepted_total{%s}[5m]))\n     + sum by (namespace) (rate(activity_collector_events_rejected_total{%s}[5m]))) > %v)\nand\n(sum by (namespace) (rate(activity_collector_events_rejected_total{%s}[5m])) * 60 > %v)\n" $ns $ns $ns .ratio $ns .minPerMinute)
  "summary" `The collector refuses {{ $value | humanizePercentage }} of the events sent to it`
  "description" (printf "More than %v%% of events refused for %s. The reasons are in the Consumer Fleet dashboard's Collector row: unauthorized or forbidden_origin point at write keys or COLLECT_ALLOWED_ORIGINS, decoder codes (missing_field...) at a client sending bad events, rate_limited at COLLECT_RATE_LIMIT or a proxy not counted in COLLECT_TRUSTED_PROXIES, kafka_unavailable at the brokers." (toString (mulf .ratio 100.0)) (include "at.words" .for))) }}
{{- end }}{{ end }}

{{- with $r.collectorKafkaDown }}{{ if .enabled }}
{{- $rules = append $rules (dict "key" "collectorKafkaDown" "alert" "ActivityCollectorKafkaDown"
  "expr" (printf "activity_collector_kafka_up{%s} == 0\n" $ns)
  "summary" `Collector {{ $labels.pod }} cannot reach Kafka`
  "description" (printf "For %s the pod has answered 503 to every event (clients are told to retry) and is out of its Service. Check the brokers, the credentials and that the activities topic exists." (include "at.words" .for))) }}
{{- end }}{{ end }}

{{- with $v.brokerLag }}{{ if .enabled }}
{{- $b := . }}
{{- $exprs := list }}
{{- range $c := $consumers }}
{{- if eq $b.source "kminion" }}
{{- $exprs = append $exprs (printf "label_replace(sum by (group_id) (kminion_kafka_consumer_group_topic_lag{group_id=%q, topic_name=%q}), \"group\", \"$1\", \"group_id\", \"(.*)\") > %v" $c.group $.Values.kafka.topics.activities $b.threshold) }}
{{- else }}
{{- $exprs = append $exprs (printf "label_replace(sum by (consumergroup) (kafka_consumergroup_lag{consumergroup=%q, topic=%q}), \"group\", \"$1\", \"consumergroup\", \"(.*)\") > %v" $c.group $.Values.kafka.topics.activities $b.threshold) }}
{{- end }}
{{- end }}
{{- if $exprs }}
{{- $rules = append $rules (dict "key" "brokerLag" "alert" "ActivityBrokerLagHigh" "for" $b.for "severity" $b.severity
  "expr" (printf "%s\n" (join "\nor\n" $exprs))
  "summary" `Consumer group {{ $labels.group }} is {{ $value | humanize }} messages behind (as the brokers see it)`
  "description" (printf "The brokers report more than %v messages of lag for %s, whether or not any consumer pod runs. If the pods' own lag alert is quiet, the pods are missing: see ActivityConsumerGroupAbsent." (toString $b.threshold) (include "at.words" $b.for))) }}
{{- end }}
{{- end }}{{ end }}
groups:
  - name: activity-tracker
    rules:
{{- range $rule := $rules }}
{{- $conf := get $r $rule.key | default dict }}
{{- $labels := dict "severity" (default $conf.severity $rule.severity) }}
{{- $labels = merge $labels (deepCopy $v.additionalRuleLabels) }}
{{- $anchor := lower $rule.alert }}
{{- $annotations := dict "summary" $rule.summary "description" $rule.description }}
{{- if $v.runbookBaseUrl }}
{{- $_ := set $annotations "runbook_url" (printf "%s#%s" $v.runbookBaseUrl $anchor) }}
{{- else }}
{{- $_ := set $annotations "runbook" (printf "docs/runbooks.md#%s in the activity-tracker repository" $anchor) }}
{{- end }}
      - alert: {{ $rule.alert }}
        expr: {{ $rule.expr | replace "{}" "" | toYaml | indent 10 | trim }}
        for: {{ default $conf.for $rule.for }}
        labels:
          {{- toYaml $labels | nindent 10 }}
        annotations:
          {{- toYaml $annotations | nindent 10 }}
{{- end }}
{{- end -}}
