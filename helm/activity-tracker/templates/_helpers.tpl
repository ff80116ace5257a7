{{/*
Names, labels, configuration and the workload template shared by every
component (analytics, fraud, producer, collector).
*/}}

{{- define "at.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "at.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "at.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "at.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: activity-tracker
{{- end -}}

{{- define "at.selectorLabels" -}}
app.kubernetes.io/name: {{ include "at.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component: (dict "root" $ "component" "fraud"). */}}
{{- define "at.componentLabels" -}}
{{ include "at.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "at.componentSelectorLabels" -}}
{{ include "at.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "at.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "at.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "at.image" -}}
{{- if not .Values.image.repository -}}
{{- fail "image.repository is not set. Build the image from the repository's Dockerfile and push it where the cluster pulls from (docker build -t REGISTRY/activity-tracker:TAG . && docker push REGISTRY/activity-tracker:TAG), or use the image the release workflow publishes (ghcr.io/OWNER/activity-tracker); then install with --set image.repository=REGISTRY/activity-tracker (and image.tag or image.digest)" -}}
{{- end -}}
{{- $ref := printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- with .Values.image.digest }}{{ $ref = printf "%s@%s" $ref . }}{{ end -}}
{{- $ref -}}
{{- end -}}

{{- define "at.bootstrapServers" -}}
{{- if .Values.kafka.deploy -}}
{{- printf "%s-kafka.%s.svc:9092" (include "at.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.kafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{/*
The bootstrap servers as another namespace resolves them (the KEDA
operator's): a host without a dot is a Service of the release's namespace.
*/}}
{{- define "at.qualifiedBootstrapServers" -}}
{{- $hosts := list -}}
{{- range $server := splitList "," (include "at.bootstrapServers" .) -}}
{{- $host := regexReplaceAll ":[0-9]+$" $server "" -}}
{{- if or (contains "." $host) (eq $host "localhost") -}}
{{- $hosts = append $hosts $server -}}
{{- else -}}
{{- $hosts = append $hosts (printf "%s.%s.svc%s" $host $.Release.Namespace (trimPrefix $host $server)) -}}
{{- end -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}

{{/*
The configuration every component shares, as VAR: value lines. The
ConfigMap holds it (envFrom), its checksum rolls the pods when it changes,
and the topic Job (a hook, created before the ConfigMap exists) inlines it.
*/}}
{{- define "at.configData" -}}
KAFKA_BOOTSTRAP_SERVERS: {{ include "at.bootstrapServers" . | quote }}
KAFKA_ACTIVITIES_TOPIC: {{ .Values.kafka.topics.activities | quote }}
KAFKA_ALERTS_TOPIC: {{ .Values.kafka.topics.alerts | quote }}
KAFKA_DLQ_TOPIC: {{ .Values.kafka.topics.dlq | quote }}
KAFKA_ACTIVITIES_PARTITIONS: {{ .Values.kafka.topics.partitions | quote }}
KAFKA_REPLICATION_FACTOR: {{ .Values.kafka.topics.replicationFactor | quote }}
KAFKA_RETENTION_MS: {{ .Values.kafka.topics.retentionMs | int64 | quote }}
KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | quote }}
{{- with .Values.kafka.sasl.mechanism }}
KAFKA_SASL_MECHANISM: {{ . | quote }}
{{- end }}
{{- with .Values.kafka.sasl.username }}
KAFKA_SASL_USERNAME: {{ . | quote }}
{{- end }}
{{- if .Values.kafka.sasl.existingSecret }}
KAFKA_SASL_PASSWORD_FILE: {{ printf "/etc/activity-tracker/kafka-sasl/%s" .Values.kafka.sasl.passwordKey | quote }}
{{- end }}
{{- if .Values.kafka.tls.existingSecret }}
KAFKA_SSL_CA_LOCATION: {{ printf "/etc/activity-tracker/kafka-tls/%s" .Values.kafka.tls.caKey | quote }}
{{- with .Values.kafka.tls.certKey }}
KAFKA_SSL_CERTIFICATE_LOCATION: {{ printf "/etc/activity-tracker/kafka-tls/%s" . | quote }}
{{- end }}
{{- with .Values.kafka.tls.keyKey }}
KAFKA_SSL_KEY_LOCATION: {{ printf "/etc/activity-tracker/kafka-tls/%s" . | quote }}
{{- end }}
{{- end }}
{{- range $name, $value := .Values.kafka.config }}
{{ printf "KAFKA_CONFIG_%s" ($name | upper | replace "_" "__" | replace "." "_") }}: {{ $value | toString | quote }}
{{- end }}
LOG_LEVEL: {{ .Values.config.logLevel | quote }}
LOG_FORMAT: {{ .Values.config.logFormat | quote }}
SHUTDOWN_TIMEOUT: {{ printf "%ds" (int .Values.config.shutdownTimeoutSeconds) | quote }}
DRAIN_TIMEOUT: {{ printf "%ds" (int .Values.config.drainTimeoutSeconds) | quote }}
KAFKA_SESSION_TIMEOUT_MS: {{ .Values.config.sessionTimeoutMs | int64 | quote }}
KAFKA_COMMIT_INTERVAL_MS: {{ .Values.config.commitIntervalMs | int64 | quote }}
KAFKA_GROUP_PROTOCOL: {{ .Values.config.groupProtocol | quote }}
KAFKA_ASSIGNMENT_STRATEGY: {{ .Values.config.assignmentStrategy | quote }}
STATE_REBUILD: {{ .Values.config.stateRebuild | quote }}
STATE_SNAPSHOT_INTERVAL: {{ printf "%ds" (int .Values.config.stateSnapshotIntervalSeconds) | quote }}
ALLOWED_LATENESS: {{ printf "%ds" (int .Values.config.allowedLatenessSeconds) | quote }}
STATS_INTERVAL: {{ .Values.config.statsInterval | int64 | quote }}
REPORT_USER_IDS: {{ .Values.config.reportUserIds | quote }}
MAX_EVENT_BYTES: {{ .Values.config.maxEventBytes | int64 | quote }}
IP_PRIVACY: {{ .Values.config.ipPrivacy | quote }}
{{- if .Values.config.ipHashKeySecret }}
IP_HASH_KEY_FILE: "/etc/activity-tracker/ip-hash/key"
{{- end }}
{{- with .Values.config.otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
HTTP_ADDR: {{ printf "0.0.0.0:%d" (int .Values.service.port) | quote }}
{{- end -}}

{{/* Resources of `topics create` (the Job or the init container). */}}
{{- define "at.topicsResources" -}}
requests:
  cpu: 10m
  memory: 32Mi
limits:
  memory: 128Mi
{{- end -}}

{{/* Volumes for the Secrets the configuration points at. */}}
{{- define "at.secretVolumes" -}}
{{- if .Values.kafka.sasl.existingSecret }}
- name: kafka-sasl
  secret:
    secretName: {{ .Values.kafka.sasl.existingSecret }}
{{- end }}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
{{- end }}
{{- if .Values.config.ipHashKeySecret }}
- name: ip-hash
  secret:
    secretName: {{ .Values.config.ipHashKeySecret }}
{{- end }}
{{- end -}}

{{- define "at.secretMounts" -}}
{{- if .Values.kafka.sasl.existingSecret }}
- name: kafka-sasl
  mountPath: /etc/activity-tracker/kafka-sasl
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/activity-tracker/kafka-tls
  readOnly: true
{{- end }}
{{- if .Values.config.ipHashKeySecret }}
- name: ip-hash
  mountPath: /etc/activity-tracker/ip-hash
  readOnly: true
{{- end }}
{{- end -}}

{{/*
A component's Deployment (or StatefulSet with static membership).
Arguments: (dict "root" $ "component" "fraud" "values" .Values.fraud
"args" (list "fraud") "env" (list ...)), optionally "annotations" (pod
annotations, e.g. checksums), "volumes" and "volumeMounts" (lists) for what
only this component mounts.
*/}}
{{- define "at.workload" -}}
{{- $root := .root -}}
{{- $c := .values -}}
{{- $fullname := printf "%s-%s" (include "at.fullname" $root) .component -}}
{{- $statefulset := eq (default "deployment" $c.mode) "statefulset" -}}
{{- $autoscaled := or (dig "autoscaling" "enabled" false $c) (include "at.kedaActive" (dict "root" $root "values" $c)) -}}
{{- if le (int $c.terminationGracePeriodSeconds) (int $root.Values.config.shutdownTimeoutSeconds) -}}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must be greater than config.shutdownTimeoutSeconds (%v), or Kubernetes kills pods before they commit" .component $c.terminationGracePeriodSeconds $root.Values.config.shutdownTimeoutSeconds) -}}
{{- end }}
apiVersion: apps/v1
kind: {{ ternary "StatefulSet" "Deployment" $statefulset }}
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "at.componentLabels" . | nindent 4 }}
spec:
  {{- if not $autoscaled }}
  replicas: {{ $c.replicaCount }}
  {{- end }}
  {{- if $statefulset }}
  serviceName: {{ $fullname }}-headless
  podManagementPolicy: Parallel
  {{- end }}
  selector:
    matchLabels:
      {{- include "at.componentSelectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "at.componentSelectorLabels" . | nindent 8 }}
        {{- with $c.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "at.configData" $root | sha256sum }}
        {{- with .annotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $c.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "at.serviceAccountName" $root }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
      {{- if and $root.Values.kafka.deploy $root.Values.kafka.topics.create }}
      {{- /* With the demo broker in the release, every pod creates the
      topics before it starts (idempotent; restarted with back-off until the
      broker answers): no hook that an installer waiting for readiness
      would deadlock on. */}}
      initContainers:
        - name: topics
          image: {{ include "at.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: ["topics", "create"]
          envFrom:
            - configMapRef:
                name: {{ include "at.fullname" $root }}-config
          {{- with $root.Values.config.extraEnv }}
          env:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          resources:
            {{- include "at.topicsResources" $root | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            {{- include "at.secretMounts" $root | nindent 12 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "at.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          ports:
            - name: http
              containerPort: {{ $root.Values.service.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "at.fullname" $root }}-config
          env:
            {{- if $statefulset }}
            # Static membership: a pod that restarts within the session
            # timeout gets its partitions back without a rebalance.
            - name: KAFKA_GROUP_INSTANCE_ID
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            {{- end }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $root.Values.config.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $c.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            initialDelaySeconds: 10
            periodSeconds: 10
            failureThreshold: 6
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: 5
            failureThreshold: 3
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with .volumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- include "at.secretMounts" $root | nindent 12 }}
      volumes:
        - name: tmp
          emptyDir: {}
        {{- with .volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- include "at.secretVolumes" $root | nindent 8 }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (dig "topologySpreadConstraints" list $c) }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{/*
The Service(s) of a component: (dict "root" $ "component" "fraud" "values" ...).
A component with its own `service` values (the collector) sets the type, port
and annotations there; the others use the chart-wide `service`.
*/}}
{{- define "at.services" -}}
{{- $fullname := printf "%s-%s" (include "at.fullname" .root) .component }}
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "at.componentLabels" . | nindent 4 }}
  {{- with (dig "service" "annotations" dict .values) }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ dig "service" "type" .root.Values.service.type .values }}
  selector:
    {{- include "at.componentSelectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ dig "service" "port" .root.Values.service.port .values }}
      targetPort: http
      protocol: TCP
{{- if eq (default "deployment" .values.mode) "statefulset" }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}-headless
  labels:
    {{- include "at.componentLabels" . | nindent 4 }}
    # The ServiceMonitor skips this Service: it selects the same pods as the
    # regular one, and scraping both would count every figure twice.
    activity-tracker/headless: "true"
spec:
  clusterIP: None
  selector:
    {{- include "at.componentSelectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .root.Values.service.port }}
      targetPort: http
      protocol: TCP
{{- end }}
{{- end -}}

{{/*
"true" when a component is scaled by KEDA: keda.enabled and KEDA installed.
Without KEDA the component keeps its replicaCount (or its HPA), rather than
a workload without replicas falling back to one pod.
*/}}
{{- define "at.kedaActive" -}}
{{- if and (dig "keda" "enabled" false .values) (.root.Capabilities.APIVersions.Has "keda.sh/v1alpha1") -}}
true
{{- end -}}
{{- end -}}

{{/*
A consumer's group: (dict "root" $ "component" "fraud"). Unless set, the
application's default name prefixed with the release, so two releases on
one Kafka never split each other's partitions.
*/}}
{{- define "at.group" -}}
{{- $defaults := dict "analytics" "analytics-processors" "fraud" "fraud-detectors" -}}
{{- $values := get .root.Values .component -}}
{{- default (printf "%s-%s" .root.Release.Name (get $defaults .component)) $values.group -}}
{{- end -}}

{{/* Components that are enabled, with their workload kind and group. */}}
{{- define "at.consumers" -}}
{{- $list := list -}}
{{- if .Values.analytics.enabled -}}
{{- $list = append $list (dict "component" "analytics" "values" .Values.analytics "group" (include "at.group" (dict "root" . "component" "analytics"))) -}}
{{- end -}}
{{- if .Values.fraud.enabled -}}
{{- $list = append $list (dict "component" "fraud" "values" .Values.fraud "group" (include "at.group" (dict "root" . "component" "fraud"))) -}}
{{- end -}}
{{- toJson $list -}}
{{- end -}}
