{{/* Names and labels. */}}
{{- define "irbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "irbot.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "irbot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "irbot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "irbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "irbot.labels" -}}
helm.sh/chart: {{ include "irbot.chart" . }}
{{ include "irbot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "irbot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "irbot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret irbot's tokens are read from (never created by this chart). */}}
{{- define "irbot.secretName" -}}
{{- default (include "irbot.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "irbot.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* SQLite mode: the embedded store on a volume, one replica. */}}
{{- define "irbot.sqlite" -}}
{{- if not .Values.database.external }}true{{ end }}
{{- end }}

{{/*
The variables taken from existingSecret in this mode, as "NAME=key" lines: Slack's
signing secret only over HTTP, the app token only in Socket Mode, the database URL only
with an external database.
*/}}
{{- define "irbot.secretEnv" -}}
{{- range $name, $key := .Values.secretKeys }}
{{- $skip := or (not $key)
      (and (eq $name "SLACK_SIGNING_SECRET") $.Values.slack.socketMode)
      (and (eq $name "SLACK_APP_TOKEN") (not $.Values.slack.socketMode))
      (and (eq $name "IRBOT_DATABASE_URL") (not $.Values.database.external)) }}
{{- if not $skip }}
{{ $name }}={{ $key }}
{{- end }}
{{- end }}
{{- end }}

{{/* A name that looks like it holds a secret must not get a literal value. */}}
{{- define "irbot.secretLooking" -}}
{{- if regexMatch "(?i)(TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE_KEY|DATABASE_URL|CREDENTIAL)" . }}true{{ end }}
{{- end }}

{{/* Refuse values that would break the promises of the chart, with a clear message. */}}
{{- define "irbot.validate" -}}
{{- $replicas := int .Values.replicaCount }}
{{- if and (gt $replicas 1) (not .Values.database.external) }}
{{- fail (printf "replicaCount is %d, but more than one replica needs an external PostgreSQL database: set database.external=true and put its postgresql:// URL in the existing Secret (key %s). The embedded SQLite store lives on one ReadWriteOnce volume and serves a single replica." $replicas (.Values.secretKeys.IRBOT_DATABASE_URL | default "IRBOT_DATABASE_URL")) }}
{{- end }}
{{- if lt $replicas 1 }}
{{- fail "replicaCount must be at least 1" }}
{{- end }}
{{- if and .Values.database.external (not .Values.secretKeys.IRBOT_DATABASE_URL) }}
{{- fail "database.external is true but secretKeys.IRBOT_DATABASE_URL is empty: name the key of the existing Secret that holds the postgresql:// URL" }}
{{- end }}
{{- range $name, $value := .Values.env }}
{{- if include "irbot.secretLooking" $name }}
{{- fail (printf "env.%s looks like a secret: put it in the existing Secret and reference it (secretKeys, or extraEnv with valueFrom.secretKeyRef), never as a value in values.yaml" $name) }}
{{- end }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if and (hasKey . "value") (include "irbot.secretLooking" .name) }}
{{- fail (printf "extraEnv %s has a literal value but looks like a secret: use valueFrom.secretKeyRef" .name) }}
{{- end }}
{{- end }}
{{- range $name, $_ := .Values.playbooks }}
{{- if not (regexMatch "^[a-z0-9][a-z0-9-]*$" $name) }}
{{- fail (printf "playbooks.%s: a playbook's name is lowercase letters, digits and hyphens (it becomes %s.yaml)" $name $name) }}
{{- end }}
{{- end }}
{{- end }}
