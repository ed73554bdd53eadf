{{/*
The shared compile cache (docs/decisions/0030-compile-cache.md): one Redis per sharing group.
*/}}
{{- define "maxtune.cache.name" -}}{{ include "maxtune.fullname" .ctx }}-cache-{{ .group.name }}{{- end -}}
{{- define "maxtune.cache.agentSecretName" -}}{{ include "maxtune.fullname" . }}-compile-cache-agent{{- end -}}
{{- define "maxtune.cache.directoryName" -}}{{ include "maxtune.fullname" . }}-compile-cache{{- end -}}
{{- define "maxtune.cache.configName" -}}{{ include "maxtune.fullname" . }}-cache-config{{- end -}}
{{- define "maxtune.cache.serviceAccountName" -}}{{ include "maxtune.fullname" . }}-compile-cache{{- end -}}

{{/* Selector labels of one group's Redis; call with (dict "ctx" $ "group" $group). */}}
{{- define "maxtune.cache.selectorLabels" -}}
{{ include "maxtune.selectorLabels" (dict "ctx" .ctx "component" "compile-cache") }}
maxtune.io/cache-group: {{ .group.name }}
{{- end -}}

{{- define "maxtune.cache.labels" -}}
{{ include "maxtune.componentLabels" (dict "ctx" .ctx "component" "compile-cache") }}
maxtune.io/cache-group: {{ .group.name }}
{{- end -}}

{{/* Host pods reach a group's cache at; call with (dict "ctx" $ "group" $group). */}}
{{- define "maxtune.cache.host" -}}
{{- if .group.external -}}
{{- .group.external.host -}}
{{- else -}}
{{- printf "%s.%s.svc.%s" (include "maxtune.cache.name" .) .ctx.Release.Namespace .ctx.Values.clusterDomain -}}
{{- end -}}
{{- end -}}

{{- define "maxtune.cache.port" -}}
{{- if .group.external -}}{{ .group.external.port | default 6379 }}{{- else -}}{{ .ctx.Values.compileCache.port }}{{- end -}}
{{- end -}}

{{/* redis-py's URL query: timeouts, so a hung cache never hangs a compile. */}}
{{- define "maxtune.cache.urlQuery" -}}
{{- $c := .Values.compileCache.client -}}
socket_connect_timeout={{ $c.connectTimeoutSeconds }}&socket_timeout={{ $c.socketTimeoutSeconds }}
{{- end -}}

{{/* The URL of one user; call with (dict "ctx" $ "group" $g "user" U "password" P). */}}
{{- define "maxtune.cache.url" -}}
redis://{{ .user }}:{{ .password }}@{{ include "maxtune.cache.host" . }}:{{ include "maxtune.cache.port" . }}?{{ include "maxtune.cache.urlQuery" .ctx }}
{{- end -}}

{{/* What the values cannot say alone: refused here, with the fix in the message. */}}
{{- define "maxtune.cache.validate" -}}
{{- $cc := .Values.compileCache -}}
{{- if not $cc.groups -}}
{{- fail "compileCache.enabled=true needs at least one group in compileCache.groups, e.g. [{name: team-a, namespaces: [team-a]}] (a group of one namespace keeps that namespace's cache to itself)" -}}
{{- end -}}
{{- $names := dict -}}
{{- $members := dict -}}
{{- range $group := $cc.groups -}}
{{- if hasKey $names $group.name -}}
{{- fail (printf "compileCache.groups: group name %q appears twice" $group.name) -}}
{{- end -}}
{{- $_ := set $names $group.name true -}}
{{- range $ns := concat $group.namespaces ($group.readOnlyNamespaces | default list) -}}
{{- if hasKey $members $ns -}}
{{- fail (printf "compileCache.groups: namespace %q is listed in group %q and again in group %q: a namespace may be listed once (its pods get one cache, and a namespace in two groups would carry entries, which are code, from one to the other)" $ns (get $members $ns) $group.name) -}}
{{- end -}}
{{- if eq $ns $.Release.Namespace -}}
{{- fail (printf "compileCache.groups: %q is the release namespace: maxtune's own namespace is never a member (the webhook never mutates it, and the cache's credentials live there)" $ns) -}}
{{- end -}}
{{- $_ := set $members $ns $group.name -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
ACL users of one group's Redis, as a JSON object user -> namespace ("" for maxtune's own):
ns-<ns> reads and writes, ro-<ns> only reads, svc-probe runs PING (the readiness probe),
svc-agent reads and writes (the agent's proof), svc-exporter runs INFO (metrics).
Call with (dict "ctx" $ "group" $group).
*/}}
{{- define "maxtune.cache.users" -}}
{{- $cc := .ctx.Values.compileCache -}}
{{- $users := dict -}}
{{- range $ns := .group.namespaces -}}{{- $_ := set $users (printf "ns-%s" $ns) $ns -}}{{- end -}}
{{- range $ns := (.group.readOnlyNamespaces | default list) -}}{{- $_ := set $users (printf "ro-%s" $ns) $ns -}}{{- end -}}
{{- $_ := set $users "svc-probe" "" -}}
{{- if $cc.agentAccess -}}{{- $_ := set $users "svc-agent" "" -}}{{- end -}}
{{- if $cc.metrics.enabled -}}{{- $_ := set $users "svc-exporter" "" -}}{{- end -}}
{{- toJson $users -}}
{{- end -}}
