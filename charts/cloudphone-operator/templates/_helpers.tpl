{{/* The release's full name, at most 63 characters. */}}
{{- define "cloudphone-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "cloudphone-operator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that select the operator's pods. */}}
{{- define "cloudphone-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The ServiceAccount's name. */}}
{{- define "cloudphone-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cloudphone-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The rules on CloudPhones, CloudPhoneSchedules and their events: least privilege. */}}
{{- define "cloudphone-operator.phoneRules" -}}
- apiGroups: ["cloudphone.io"]
  resources: ["cloudphones", "cloudphoneschedules"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["cloudphone.io"]
  resources: ["cloudphones/status", "cloudphoneschedules/status"]
  verbs: ["patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
