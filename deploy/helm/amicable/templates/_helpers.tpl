{{/* Chart name, truncated to a DNS label. */}}
{{- define "amicable.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object name prefix: the release name, plus the chart name unless it already contains it. */}}
{{- define "amicable.fullname" -}}
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

{{/* Name of one component's objects: <fullname>-<component>. */}}
{{- define "amicable.componentName" -}}
{{- printf "%s-%s" (include "amicable.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "amicable.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Standard labels of every object. */}}
{{- define "amicable.labels" -}}
helm.sh/chart: {{ include "amicable.chart" . }}
app.kubernetes.io/name: {{ include "amicable.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: amicable
{{- end -}}

{{/* Selector labels of one component; call with (dict "root" $ "component" "agent"). */}}
{{- define "amicable.selectorLabels" -}}
app.kubernetes.io/name: {{ include "amicable.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of one component's objects. */}}
{{- define "amicable.componentLabels" -}}
{{ include "amicable.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Where claims, sandboxes, the template and warm pools live. */}}
{{- define "amicable.sandboxNamespace" -}}
{{- default .Release.Namespace .Values.sandboxNamespace -}}
{{- end -}}

{{/* Image reference; call with (dict "root" $ "image" .Values.agent.image). */}}
{{- define "amicable.image" -}}
{{- $repo := .image.repository -}}
{{- if and .root.Values.imageRegistry (not (contains "/" $repo)) -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" .root.Values.imageRegistry) $repo -}}
{{- end -}}
{{- printf "%s:%s" $repo (toString .image.tag) -}}
{{- end -}}

{{/*
A host value as the seed guide passes it: `--set x=\"*.preview.example.com\"` reaches Helm with
the double quotes still on, so strip them (and stray whitespace) wherever a host is used.
*/}}
{{- define "amicable.host" -}}
{{- . | toString | trim | trimAll "\"" | trimAll "'" | trim -}}
{{- end -}}

{{- define "amicable.previewBaseDomain" -}}
{{- include "amicable.host" .Values.agent.env.previewBaseDomain | trimPrefix "." -}}
{{- end -}}

{{- define "amicable.previewWildcardHost" -}}
{{- $h := include "amicable.host" .Values.previewRouter.ingress.wildcardHost -}}
{{- default (printf "*.%s" (include "amicable.previewBaseDomain" .)) $h -}}
{{- end -}}

{{- define "amicable.additionalAllowedHosts" -}}
{{- $h := include "amicable.host" .Values.sandboxTemplate.additionalAllowedHosts -}}
{{- default (printf ".%s" (include "amicable.previewBaseDomain" .)) $h -}}
{{- end -}}

{{- define "amicable.secureScheme" -}}
{{- if eq .Values.agent.env.previewScheme "https" }}true{{ end -}}
{{- end -}}

{{- define "amicable.hmrProtocol" -}}
{{- if .Values.sandboxTemplate.hmr.protocol -}}
{{- .Values.sandboxTemplate.hmr.protocol -}}
{{- else -}}
{{- ternary "wss" "ws" (eq .Values.agent.env.previewScheme "https") -}}
{{- end -}}
{{- end -}}

{{- define "amicable.hmrClientPort" -}}
{{- if .Values.sandboxTemplate.hmr.clientPort -}}
{{- .Values.sandboxTemplate.hmr.clientPort | toString -}}
{{- else -}}
{{- ternary "443" "80" (eq .Values.agent.env.previewScheme "https") -}}
{{- end -}}
{{- end -}}

{{/* The editor's origin(s) allowed by the agent. */}}
{{- define "amicable.allowedOrigins" -}}
{{- if .Values.agent.env.allowedOrigins -}}
{{- .Values.agent.env.allowedOrigins -}}
{{- else if .Values.editor.enabled -}}
{{- printf "%s://%s" .Values.agent.env.previewScheme (include "amicable.host" .Values.editor.ingress.host) -}}
{{- end -}}
{{- end -}}

{{- define "amicable.internalSecretName" -}}
{{- default (include "amicable.componentName" (dict "root" . "component" "internal")) .Values.internalSecret.existingSecret -}}
{{- end -}}

{{/* Service DNS name of the agent's internal port, for the router's resolver URL. */}}
{{- define "amicable.resolverUrl" -}}
{{- printf "http://%s.%s.svc.cluster.local:%v/internal/preview/resolve" (include "amicable.componentName" (dict "root" . "component" "agent-internal")) .Release.Namespace .Values.agent.service.internalPort -}}
{{- end -}}

{{/* "true" when the agent's store is PostgreSQL (shared by replicas; no data volume needed),
empty for the SQLite file. */}}
{{- define "amicable.sharedStore" -}}
{{- $db := .Values.agent.database -}}
{{- if or $db.urlSecretKey (hasPrefix "postgresql://" $db.url) (hasPrefix "postgres://" $db.url) -}}true{{- end -}}
{{- end -}}

{{/* Fail early on combinations that cannot work. */}}
{{- define "amicable.validate" -}}
{{- $db := .Values.agent.database -}}
{{- if and $db.url (not (or (hasPrefix "sqlite:///" $db.url) (hasPrefix "postgresql://" $db.url) (hasPrefix "postgres://" $db.url))) -}}
{{- fail "agent.database.url must be sqlite:///<path> or postgresql://user@host/db (put a password in the agent Secret and name its key in agent.database.urlSecretKey)" -}}
{{- end -}}
{{- if and (gt (int .Values.agent.replicaCount) 1) (not (include "amicable.sharedStore" .)) -}}
{{- fail "agent.replicaCount > 1 needs a shared store: set agent.database.url to a postgresql:// URL, or agent.database.urlSecretKey (the default SQLite store lives on one volume)" -}}
{{- end -}}
{{- if and .Values.sandboxWarmPools.enabled (eq .Values.sandboxTemplate.runtimeAuth.mode "perClaimToken") -}}
{{- fail "sandboxWarmPools need sandboxTemplate.runtimeAuth.mode=networkPolicyOnly: a pre-warmed pod starts before any claim can pass it a token" -}}
{{- end -}}
{{- if and (eq .Values.sandboxTemplate.runtimeAuth.mode "networkPolicyOnly") (not .Values.networkPolicy.enabled) -}}
{{- fail "sandboxTemplate.runtimeAuth.mode=networkPolicyOnly without networkPolicy.enabled would leave every sandbox's runtime API open to the whole cluster" -}}
{{- end -}}
{{- if and (eq .Values.sandboxApi.claimVersion "v1beta1") (not .Values.sandboxWarmPools.enabled) -}}
{{- fail "sandboxApi.claimVersion=v1beta1: v1beta1 claims reference a SandboxWarmPool (spec.warmPoolRef); enable sandboxWarmPools" -}}
{{- end -}}
{{- $wild := include "amicable.previewWildcardHost" . -}}
{{- if ne $wild (printf "*.%s" (include "amicable.previewBaseDomain" .)) -}}
{{- fail (printf "previewRouter.ingress.wildcardHost (%s) must be \"*.\" + agent.env.previewBaseDomain (%s)" $wild (include "amicable.previewBaseDomain" .)) -}}
{{- end -}}
{{- end -}}
