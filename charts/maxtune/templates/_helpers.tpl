{{/*
Names. Every object is prefixed with the full name so two releases in one cluster cannot
collide on the cluster-scoped objects (ClusterRoles, webhook configuration, policies).
*/}}
{{- define "maxtune.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "maxtune.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "maxtune.operator.fullname" -}}{{ include "maxtune.fullname" . }}-operator{{- end -}}
{{- define "maxtune.agent.fullname" -}}{{ include "maxtune.fullname" . }}-agent{{- end -}}
{{- define "maxtune.cleanup.fullname" -}}{{ include "maxtune.fullname" . }}-cleanup{{- end -}}
{{- define "maxtune.webhook.serviceName" -}}{{ include "maxtune.fullname" . }}-webhook{{- end -}}
{{/* The Secret the operator serves the webhook with: the user's in secret mode, else the chart's. */}}
{{- define "maxtune.webhook.tlsSecretName" -}}
{{- if eq .Values.webhook.tls.mode "secret" -}}
{{- .Values.webhook.tls.secret.name -}}
{{- else -}}
{{- include "maxtune.fullname" . }}-webhook-tls
{{- end -}}
{{- end -}}
{{- define "maxtune.operator.metricsServiceName" -}}{{ include "maxtune.fullname" . }}-operator-metrics{{- end -}}
{{- define "maxtune.agent.metricsServiceName" -}}{{ include "maxtune.fullname" . }}-agent-metrics{{- end -}}

{{/* The service-account user names the API server authenticates the pods as. */}}
{{- define "maxtune.operator.username" -}}system:serviceaccount:{{ .Release.Namespace }}:{{ include "maxtune.operator.fullname" . }}{{- end -}}
{{- define "maxtune.agent.username" -}}system:serviceaccount:{{ .Release.Namespace }}:{{ include "maxtune.agent.fullname" . }}{{- end -}}
{{- define "maxtune.cleanup.username" -}}system:serviceaccount:{{ .Release.Namespace }}:{{ include "maxtune.cleanup.fullname" . }}{{- end -}}

{{- define "maxtune.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "maxtune.labels" -}}
helm.sh/chart: {{ include "maxtune.chart" . }}
app.kubernetes.io/name: {{ include "maxtune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: maxtune
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "operator"). */}}
{{- define "maxtune.selectorLabels" -}}
app.kubernetes.io/name: {{ include "maxtune.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "maxtune.componentLabels" -}}
{{ include "maxtune.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* image reference: repository[:tag][@digest]; call with (dict "ctx" $ "image" .Values.x.image). */}}
{{- define "maxtune.image" -}}
{{- $tag := default .ctx.Chart.AppVersion .image.tag -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "maxtune.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ if kindIs "string" . }}{{ . }}{{ else }}{{ .name }}{{ end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
TLS mode after resolving "auto": certManager when the cluster serves cert-manager.io/v1.
Asking for certManager on a cluster without it, or for secret without the Secret's name and
CA, fails here with the fix in the message.
*/}}
{{- define "maxtune.tls.mode" -}}
{{- $mode := .Values.webhook.tls.mode -}}
{{- $has := .Capabilities.APIVersions.Has "cert-manager.io/v1" -}}
{{- if eq $mode "auto" -}}
{{- ternary "certManager" "chart" $has -}}
{{- else if and (eq $mode "certManager") (not $has) -}}
{{- fail "webhook.tls.mode=certManager, but this cluster does not serve cert-manager.io/v1: install cert-manager first, or use webhook.tls.mode=secret or chart (with `helm template`, pass --api-versions cert-manager.io/v1)" -}}
{{- else if and (eq $mode "secret") (not (and .Values.webhook.tls.secret.name .Values.webhook.tls.secret.caBundle)) -}}
{{- fail "webhook.tls.mode=secret needs webhook.tls.secret.name (a kubernetes.io/tls Secret in the release namespace) and webhook.tls.secret.caBundle (the PEM of the CA that issued it)" -}}
{{- else -}}
{{- $mode -}}
{{- end -}}
{{- end -}}

{{/* Host of webhook.url, when it is set (an IP or a DNS name, without brackets or port). */}}
{{- define "maxtune.webhook.urlHost" -}}
{{- if .Values.webhook.url -}}
{{- $host := (urlParse .Values.webhook.url).host -}}
{{- if hasPrefix "[" $host -}}
{{- regexReplaceAll "^\\[(.*)\\](:[0-9]+)?$" $host "${1}" -}}
{{- else -}}
{{- regexReplaceAll ":[0-9]+$" $host "" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* DNS names of the webhook certificate, as a JSON list. */}}
{{- define "maxtune.webhook.dnsNames" -}}
{{- $svc := include "maxtune.webhook.serviceName" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) -}}
{{- $host := include "maxtune.webhook.urlHost" . -}}
{{- if and $host (not (regexMatch "^[0-9.]+$|:" $host)) -}}
{{- $names = append $names $host -}}
{{- end -}}
{{- concat $names .Values.webhook.tls.extraDNSNames | uniq | toJson -}}
{{- end -}}

{{/* IP addresses of the webhook certificate, as a JSON list. */}}
{{- define "maxtune.webhook.ipAddresses" -}}
{{- $ips := list -}}
{{- $host := include "maxtune.webhook.urlHost" . -}}
{{- if and $host (regexMatch "^[0-9.]+$|:" $host) -}}
{{- $ips = append $ips $host -}}
{{- end -}}
{{- concat $ips .Values.webhook.tls.extraIPSANs | uniq | toJson -}}
{{- end -}}

{{/* prometheus.io scrape annotations; call with (dict "ctx" $ "port" N). */}}
{{- define "maxtune.scrapeAnnotations" -}}
{{- if .ctx.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* Fails when Prometheus Operator objects (monitors, rules) are asked for on a cluster without them. */}}
{{- define "maxtune.requireMonitoringAPI" -}}
{{- if not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") -}}
{{- fail "metrics.serviceMonitor, podMonitor or prometheusRule enabled, but this cluster does not serve monitoring.coreos.com/v1: install the Prometheus Operator CRDs first, or leave them off (with `helm template`, pass --api-versions monitoring.coreos.com/v1)" -}}
{{- end -}}
{{- end -}}

{{/* What both webhook entries share; call with (dict "ctx" $ "caBundle" B64). */}}
{{- define "maxtune.webhook.common" -}}
admissionReviewVersions: ["v1"]
sideEffects: None
failurePolicy: Ignore
matchPolicy: Equivalent
reinvocationPolicy: IfNeeded
timeoutSeconds: {{ .ctx.Values.webhook.timeoutSeconds }}
clientConfig:
  {{- if .ctx.Values.webhook.url }}
  url: {{ .ctx.Values.webhook.url | quote }}
  {{- else }}
  service:
    name: {{ include "maxtune.webhook.serviceName" .ctx }}
    namespace: {{ .ctx.Release.Namespace }}
    path: /mutate
    port: {{ .ctx.Values.webhook.servicePort }}
  {{- end }}
  {{- if .caBundle }}
  caBundle: {{ .caBundle }}
  {{- end }}
rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["CREATE"]
    resources: ["pods"]
    scope: Namespaced
{{- end -}}
