{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "pgpool-ops-manager.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name: fullnameOverride, else the release name when it already
contains the chart name, else "<release>-<chart>". At most 52 characters, so that suffixes
such as "-leader" keep names within 63.
*/}}
{{- define "pgpool-ops-manager.fullname" -}}
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

{{/*
Chart label value.
*/}}
{{- define "pgpool-ops-manager.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the operator pods. Never change them in an upgrade: a Deployment's
selector is immutable.
*/}}
{{- define "pgpool-ops-manager.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgpool-ops-manager.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels on every object of the chart.
*/}}
{{- define "pgpool-ops-manager.labels" -}}
helm.sh/chart: {{ include "pgpool-ops-manager.chart" . }}
{{ include "pgpool-ops-manager.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pgpool-operator
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "pgpool-ops-manager.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pgpool-ops-manager.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the leader-election Lease (in the release namespace).
*/}}
{{- define "pgpool-ops-manager.leaseName" -}}
{{- default (printf "%s-leader" (include "pgpool-ops-manager.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The operator image reference.
*/}}
{{- define "pgpool-ops-manager.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
