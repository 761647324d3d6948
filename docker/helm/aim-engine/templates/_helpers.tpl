{{/* Common names and labels. */}}
{{- define "aim-engine.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aim-engine.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "aim-engine.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "aim-engine.claim" -}}
{{- default (printf "%s-cache" (include "aim-engine.fullname" .)) .Values.cache.existingClaim -}}
{{- end -}}

{{/* The agent's environment: every non-null `aim` value by its real name, plus the cache
     path, ports and the token Secret. Objects (AIM_ENGINE_ARGS) are passed as JSON. */}}
{{- define "aim-engine.env" -}}
- name: AIM_CACHE_PATH
  value: {{ .Values.cache.path | quote }}
- name: AIM_PORT
  value: {{ .Values.ports.http | quote }}
- name: AIM_HEALTH_PORT
  value: {{ .Values.ports.health | quote }}
{{- range $name, $value := .Values.aim }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ $name }}
  value: {{ if kindIs "map" $value }}{{ toJson $value | quote }}{{ else }}{{ toString $value | quote }}{{ end }}
{{- end }}
{{- end }}
{{- if .Values.hfToken.secretName }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.hfToken.secretName }}
      key: {{ .Values.hfToken.secretKey }}
{{- end }}
{{- end -}}
