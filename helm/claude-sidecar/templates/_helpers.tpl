{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "claude-sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name. */}}
{{- define "claude-sidecar.fullname" -}}
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

{{- define "claude-sidecar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "claude-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "claude-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "claude-sidecar.labels" -}}
helm.sh/chart: {{ include "claude-sidecar.chart" . }}
{{ include "claude-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "claude-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "claude-sidecar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "claude-sidecar.secretName" -}}
{{- if .Values.secret.create }}
{{- include "claude-sidecar.fullname" . }}
{{- else }}
{{- required "secret.existingSecret is required when secret.create is false" .Values.secret.existingSecret }}
{{- end }}
{{- end }}

{{/* True ("true") when the sidecar runs as a native sidecar: native mode on Kubernetes >= 1.29. */}}
{{- define "claude-sidecar.nativeSidecar" -}}
{{- if and (eq .Values.mode "native") (semverCompare ">=1.29-0" .Capabilities.KubeVersion.Version) }}true{{- end }}
{{- end }}

{{/* The proxy's bind address: loopback next to an app, all interfaces when standalone. */}}
{{- define "claude-sidecar.proxyHost" -}}
{{- if .Values.proxy.host }}{{ .Values.proxy.host }}{{- else if eq .Values.mode "native" }}127.0.0.1{{- else }}0.0.0.0{{- end }}
{{- end }}

{{- define "claude-sidecar.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The sidecar container (without restartPolicy; the Deployment adds it for the native form). */}}
{{- define "claude-sidecar.container" -}}
name: claude-sidecar
image: {{ include "claude-sidecar.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args: ["serve"]
ports:
  - name: proxy
    containerPort: {{ .Values.proxy.port }}
    protocol: TCP
  - name: admin
    containerPort: {{ .Values.admin.port }}
    protocol: TCP
  {{- if .Values.fleet.enabled }}
  - name: fleet
    containerPort: {{ .Values.fleet.port }}
    protocol: TCP
  {{- end }}
env:
  - name: SIDECAR_HOST
    value: {{ include "claude-sidecar.proxyHost" . | quote }}
  - name: SIDECAR_PORT
    value: {{ .Values.proxy.port | quote }}
  - name: SIDECAR_ADMIN_HOST
    value: "0.0.0.0"
  - name: SIDECAR_ADMIN_PORT
    value: {{ .Values.admin.port | quote }}
  - name: SIDECAR_UPSTREAM_URL
    value: {{ .Values.upstreamUrl | quote }}
  - name: SIDECAR_STORE
    value: {{ default "sqlite:////var/lib/claude-sidecar/events.db" .Values.store | quote }}
  - name: SIDECAR_CONFIG
    value: /etc/claude-sidecar/sidecar.yaml
  - name: SIDECAR_DRAIN_TIMEOUT
    value: {{ .Values.drainTimeoutSeconds | quote }}
  - name: SIDECAR_LOG_LEVEL
    value: {{ .Values.logLevel | quote }}
  {{- if .Values.fleet.enabled }}
  - name: SIDECAR_FLEET_PORT
    value: {{ .Values.fleet.port | quote }}
  {{- end }}
  - name: SIDECAR_ADMIN_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ include "claude-sidecar.secretName" . }}
        key: admin-token
  - name: SIDECAR_UPSTREAM_API_KEY
    valueFrom:
      secretKeyRef:
        name: {{ include "claude-sidecar.secretName" . }}
        key: upstream-api-key
        optional: true
  - name: SIDECAR_CLIENT_TOKENS
    valueFrom:
      secretKeyRef:
        name: {{ include "claude-sidecar.secretName" . }}
        key: client-tokens
        optional: true
  {{- include "claude-sidecar.cloudEnv" . | trim | nindent 2 }}
  - name: SIDECAR_RESPONSE_CACHE
    value: {{ .Values.responseCache.mode | quote }}
  - name: SIDECAR_RESPONSE_CACHE_TTL
    value: {{ .Values.responseCache.ttl | int64 | quote }}
  - name: SIDECAR_RESPONSE_CACHE_MAX_BYTES
    value: {{ .Values.responseCache.maxBytes | int64 | quote }}
  - name: SIDECAR_RESPONSE_CACHE_SHARED
    value: {{ .Values.responseCache.shared | quote }}
  {{- range $key := keys .Values.env | sortAlpha }}
  - name: {{ $key }}
    value: {{ get $.Values.env $key | toString | quote }}
  {{- end }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
startupProbe:
  httpGet:
    path: /healthz
    port: admin
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
resources:
  {{- toYaml .Values.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: config
    mountPath: /etc/claude-sidecar
    readOnly: true
  - name: data
    mountPath: /var/lib/claude-sidecar
  - name: tmp
    mountPath: /tmp
  {{- if .Values.vertex.credentials.existingSecret }}
  - name: gcp-credentials
    mountPath: /var/run/secrets/claude-sidecar/gcp
    readOnly: true
  {{- end }}
{{- end }}

{{/* Bedrock and Vertex (SPEC §18): addresses, and the credentials the sidecar signs or authorizes with. */}}
{{- define "claude-sidecar.cloudEnv" -}}
{{- with .Values.bedrock.region }}
- name: SIDECAR_BEDROCK_REGION
  value: {{ . | quote }}
{{- end }}
{{- with .Values.bedrock.url }}
- name: SIDECAR_BEDROCK_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.bedrock.inferenceProfiles }}
- name: SIDECAR_BEDROCK_INFERENCE_PROFILES
  value: {{ join "," . | quote }}
{{- end }}
- name: SIDECAR_BEDROCK_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "claude-sidecar.secretName" . }}
      key: bedrock-api-key
      optional: true
{{- with .Values.bedrock.awsCredentials }}
{{- if .existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretAccessKeyKey }}
- name: AWS_SESSION_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .sessionTokenKey }}
      optional: true
{{- end }}
{{- end }}
{{- with .Values.vertex.url }}
- name: SIDECAR_VERTEX_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.vertex.credentials }}
{{- if .existingSecret }}
- name: GOOGLE_APPLICATION_CREDENTIALS
  value: {{ printf "/var/run/secrets/claude-sidecar/gcp/%s" .key | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The ServiceAccount's annotations: the user's, and those that bind it to a cloud identity. */}}
{{- define "claude-sidecar.serviceAccountAnnotations" -}}
{{- $annotations := deepCopy .Values.serviceAccount.annotations }}
{{- with .Values.bedrock.irsaRoleArn }}
{{- $_ := set $annotations "eks.amazonaws.com/role-arn" . }}
{{- end }}
{{- with .Values.vertex.gcpServiceAccount }}
{{- $_ := set $annotations "iam.gke.io/gcp-service-account" . }}
{{- end }}
{{- if $annotations }}
{{- toYaml $annotations }}
{{- end }}
{{- end }}

{{/* The application container of native mode, pointed at the sidecar. */}}
{{- define "claude-sidecar.appContainer" -}}
name: {{ .Values.app.name }}
image: {{ printf "%s:%s" (required "app.image.repository is required in native mode" .Values.app.image.repository) .Values.app.image.tag | quote }}
imagePullPolicy: {{ .Values.app.image.pullPolicy }}
{{- with .Values.app.command }}
command:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.app.args }}
args:
  {{- toYaml . | nindent 2 }}
{{- end }}
env:
  - name: ANTHROPIC_BASE_URL
    value: {{ printf "http://127.0.0.1:%v" .Values.proxy.port | quote }}
  {{- with .Values.app.env }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .Values.app.ports }}
ports:
  {{- range . }}
  - name: {{ .name }}
    containerPort: {{ .containerPort }}
    protocol: {{ default "TCP" .protocol }}
  {{- end }}
{{- end }}
{{- with .Values.app.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.app.livenessProbe }}
livenessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.app.readinessProbe }}
readinessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.app.securityContext | nindent 2 }}
{{- end }}
