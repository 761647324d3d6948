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

{{/* The leader Service's name is the release's; a LeaderWorkerSet also creates a headless
     Service named after itself (its leader address resolves through it), so the set is named
     differently. */}}
{{- define "aim-engine.groupname" -}}
{{- printf "%s-group" (include "aim-engine.fullname" . | trunc 50 | trimSuffix "-") -}}
{{- end -}}

{{/* The serving pod spec, shared by the Deployment (role "single") and the LeaderWorkerSet's
     leader and worker templates: the same image, command and settings on every rank. A worker
     serves no OpenAI API, so it publishes only the probe port. Call with
     (dict "root" $ "role" "single|leader|worker"). */}}
{{- define "aim-engine.podSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- with $v.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
terminationGracePeriodSeconds: 60
containers:
  - name: aim-engine
    image: "{{ $v.image.repository }}:{{ $v.image.tag }}"
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args: ["serve"]
    env:
      {{- include "aim-engine.env" $root | nindent 6 }}
      {{- if ne .role "single" }}
      # This pod's address as its peers in the group reach it.
      - name: POD_IP
        valueFrom:
          fieldRef:
            fieldPath: status.podIP
      {{- end }}
    ports:
      {{- if ne .role "worker" }}
      - name: http
        containerPort: {{ $v.ports.http }}
      {{- end }}
      - name: health
        containerPort: {{ $v.ports.health }}
    resources:
      requests:
        {{- toYaml (default dict $v.resources.requests) | nindent 8 }}
      limits:
        {{- with $v.resources.limits }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- if gt (int $v.gpus) 0 }}
        amd.com/gpu: {{ $v.gpus }}
        {{- end }}
    startupProbe:
      httpGet:
        path: /health/startup
        port: health
      periodSeconds: {{ $v.probes.startup.periodSeconds }}
      failureThreshold: {{ $v.probes.startup.failureThreshold }}
    readinessProbe:
      httpGet:
        path: /health/ready
        port: health
      periodSeconds: {{ $v.probes.readiness.periodSeconds }}
      failureThreshold: {{ $v.probes.readiness.failureThreshold }}
    livenessProbe:
      httpGet:
        path: /health/live
        port: health
      periodSeconds: {{ $v.probes.liveness.periodSeconds }}
      failureThreshold: {{ $v.probes.liveness.failureThreshold }}
    volumeMounts:
      - name: model-cache
        mountPath: {{ $v.cache.path }}
      - name: dshm
        mountPath: /dev/shm
volumes:
  - name: model-cache
    persistentVolumeClaim:
      claimName: {{ include "aim-engine.claim" $root }}
  - name: dshm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $v.shm.sizeLimit }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
