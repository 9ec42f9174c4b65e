{{/* The chart name, or nameOverride. */}}
{{- define "paystream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full resource name: the StatefulSet, and the prefix of every other resource. */}}
{{- define "paystream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The headless Service that gives every worker pod its DNS name. */}}
{{- define "paystream.workersService" -}}
{{- printf "%s-workers" (include "paystream.fullname" .) }}
{{- end }}

{{- define "paystream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "paystream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "paystream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "paystream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: paystream
{{- end }}

{{- define "paystream.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Bytewax's `-a`: host:port of every process, ordinal 0 first, separated by ";". */}}
{{- define "paystream.addresses" -}}
{{- $fullname := include "paystream.fullname" . }}
{{- $host := printf "%s.%s.svc.%s" (include "paystream.workersService" .) .Release.Namespace .Values.clusterDomain }}
{{- $addresses := list }}
{{- range $i := until (int .Values.replicas) }}
{{- $addresses = append $addresses (printf "%s-%d.%s:%d" $fullname $i $host (int $.Values.bytewax.port)) }}
{{- end }}
{{- join ";" $addresses }}
{{- end }}

{{/* Interactive queries are forwarded to the pod that owns the key: every pod's engine HTTP address, by ","  */}}
{{- define "paystream.httpPeers" -}}
{{- $fullname := include "paystream.fullname" . }}
{{- $host := printf "%s.%s.svc.%s" (include "paystream.workersService" .) .Release.Namespace .Values.clusterDomain }}
{{- $peers := list }}
{{- range $i := until (int .Values.replicas) }}
{{- $peers = append $peers (printf "%s-%d.%s:%d" $fullname $i $host (int $.Values.metrics.port)) }}
{{- end }}
{{- join "," $peers }}
{{- end }}

{{/* Bytewax's `-s`, the epoch length in whole seconds, from config.engine.epoch_interval_ms. */}}
{{- define "paystream.epochSeconds" -}}
{{- $ms := int (.Values.config.engine.epoch_interval_ms | default 1000) }}
{{- if or (lt $ms 1000) (ne (mod $ms 1000) 0) }}
{{- fail (printf "config.engine.epoch_interval_ms must be whole seconds (Bytewax's -s takes seconds); got %d" $ms) }}
{{- end }}
{{- div $ms 1000 }}
{{- end }}

{{/*
The settings tree as environment variables, one `NAME: "value"` line each:
config.<section>.<field> -> PAYSTREAM_<SECTION>__<FIELD> (settings.py's form). librdkafka keys
under kafka.client keep their own spelling (settings.py lower-cases names anyway). Whole numbers
are printed as integers: Helm reads YAML numbers as floats and would print 604800000 as 6.048e+08.
*/}}
{{- define "paystream.settingsEnv" -}}
{{- $prefix := .prefix }}
{{- range $key, $value := .node }}
{{- $field := ternary $key (upper $key) (eq $prefix "PAYSTREAM_KAFKA__CLIENT") }}
{{- $name := ternary (printf "PAYSTREAM_%s" $field) (printf "%s__%s" $prefix $field) (eq $prefix "PAYSTREAM") }}
{{- if kindIs "map" $value }}
{{- include "paystream.settingsEnv" (dict "prefix" $name "node" $value) }}
{{- else if and (kindIs "float64" $value) (eq $value (floor $value)) }}
{{ $name }}: {{ int64 $value | toString | quote }}
{{- else }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The ConfigMap's data: the settings, the snapshot directory on the pod's volume, and the engine's
HTTP server (metrics and probes) on every interface of the pod at metrics.port.
*/}}
{{- define "paystream.configData" -}}
{{- $engine := .Values.config.engine | default dict }}
{{- if hasKey $engine "snapshot_dir" }}
{{- fail "config.engine.snapshot_dir is set by the chart to persistence.mountPath; set that instead" }}
{{- end }}
{{- range $field := list "http_host" "http_port" "http_peers" }}
{{- if hasKey $engine $field }}
{{- fail (printf "config.engine.%s is set by the chart (0.0.0.0:metrics.port, every pod's address); set metrics.port instead" $field) }}
{{- end }}
{{- end }}
{{- include "paystream.settingsEnv" (dict "prefix" "PAYSTREAM" "node" .Values.config) }}
PAYSTREAM_ENGINE__SNAPSHOT_DIR: {{ printf "%s/snapshots" .Values.persistence.mountPath | quote }}
PAYSTREAM_ENGINE__HTTP_HOST: "0.0.0.0"
PAYSTREAM_ENGINE__HTTP_PORT: {{ int .Values.metrics.port | toString | quote }}
PAYSTREAM_ENGINE__HTTP_PEERS: {{ include "paystream.httpPeers" . | quote }}
{{- end }}

{{/* The Secret's data: each credential as PAYSTREAM_KAFKA__CLIENT__<librdkafka property>, base64. */}}
{{- define "paystream.secretData" -}}
{{- range $key, $value := .Values.kafkaCredentials.values }}
{{ printf "PAYSTREAM_KAFKA__CLIENT__%s" $key }}: {{ $value | toString | b64enc | quote }}
{{- end }}
{{- end }}

{{- define "paystream.secretName" -}}
{{- default (printf "%s-kafka" (include "paystream.fullname" .)) .Values.kafkaCredentials.existingSecret }}
{{- end }}
