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

{{/* A list value rendered as one env string: list items joined by `sep`, a string as given
(so both `[a, b]` and `--set x=a` work); call with (dict "value" $v "sep" ","). */}}
{{- define "amicable.joinList" -}}
{{- if kindIs "slice" .value -}}
{{- join .sep .value -}}
{{- else -}}
{{- .value | default "" | toString | trim -}}
{{- end -}}
{{- end -}}

{{/* PUBLIC_BASE_URL: the agent's origin as browsers reach it. Derived from the agent Ingress:
https when it terminates TLS, else previewScheme (the scheme the editor and NOTES assume). */}}
{{- define "amicable.publicBaseUrl" -}}
{{- with .Values.agent.auth.publicBaseUrl -}}
{{- trimSuffix "/" . -}}
{{- else -}}
{{- $scheme := ternary "https" .Values.agent.env.previewScheme .Values.agent.ingress.tls.enabled -}}
{{- printf "%s://%s" $scheme (include "amicable.host" .Values.agent.ingress.host) -}}
{{- end -}}
{{- end -}}

{{/* host[:port] of PUBLIC_BASE_URL: the Host the agent answers (421 for any other). */}}
{{- define "amicable.publicHost" -}}
{{- $hostAndPath := regexReplaceAll "^[A-Za-z]+://" (include "amicable.publicBaseUrl" .) "" -}}
{{- regexReplaceAll "/.*$" $hostAndPath "" -}}
{{- end -}}

{{/* The last two DNS labels of a host: a cheap stand-in for its registrable domain (wrong for
public suffixes such as co.uk, so it only ever warns). */}}
{{- define "amicable.lastTwoLabels" -}}
{{- $labels := splitList "." (include "amicable.host" . | trimSuffix ".") -}}
{{- if gt (len $labels) 2 -}}
{{- join "." (slice $labels (sub (len $labels) 2)) -}}
{{- else -}}
{{- join "." $labels -}}
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
{{/*
The SandboxTemplate of a project template: sandboxTemplate.name for the default template,
<sandboxTemplate.name without its "-vite" suffix>-<id> for the others.
*/}}
{{- define "amicable.sandboxTemplateName" -}}
{{- $t := .root.Values.sandboxTemplate -}}
{{- if eq .id .root.Values.defaultTemplate -}}{{ $t.name }}{{- else -}}{{ printf "%s-%s" (trimSuffix "-vite" $t.name) .id }}{{- end -}}
{{- end -}}

{{/* The enabled template ids, comma-separated (AMICABLE_TEMPLATES). */}}
{{- define "amicable.enabledTemplates" -}}
{{- $ids := list -}}
{{- range .Values.sandboxTemplates -}}{{- if .enabled -}}{{- $ids = append $ids .id -}}{{- end -}}{{- end -}}
{{- join "," $ids -}}
{{- end -}}

{{/* {template id: SandboxTemplate name} of the enabled templates, as JSON. */}}
{{- define "amicable.templateMap" -}}
{{- $map := dict -}}
{{- range .Values.sandboxTemplates -}}{{- if .enabled -}}{{- $_ := set $map .id (include "amicable.sandboxTemplateName" (dict "root" $ "id" .id)) -}}{{- end -}}{{- end -}}
{{- toJson $map -}}
{{- end -}}

{{- define "amicable.validate" -}}
{{- if not (has .Values.defaultTemplate (splitList "," (include "amicable.enabledTemplates" .))) -}}
{{- fail (printf "defaultTemplate %s is not an enabled entry of sandboxTemplates" .Values.defaultTemplate) -}}
{{- end -}}
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
{{- $auth := .Values.agent.auth -}}
{{- if and (eq $auth.mode "none") (not $auth.allowInsecureNoAuth) -}}
{{- if .Values.agent.ingress.enabled -}}
{{- fail (printf "agent.auth.mode=none would publish the agent without login on its Ingress (%s): anyone who reaches it could run prompts on your API keys and open every project. Set agent.auth.mode=oidc (with agent.auth.oidc.issuerUrl and agent.auth.oidc.clientId) or agent.auth.mode=google, see docs/kubernetes.md \"Login and sharing\". Only if a proxy in front of the Ingress already authenticates every request: agent.auth.allowInsecureNoAuth=true" (include "amicable.host" .Values.agent.ingress.host)) -}}
{{- else -}}
{{- fail "agent.auth.mode=none: the agent listens on 0.0.0.0 in its pod and refuses to start without login there. Set agent.auth.mode=oidc (with agent.auth.oidc.issuerUrl and agent.auth.oidc.clientId) or agent.auth.mode=google, see docs/kubernetes.md \"Login and sharing\"; or, for a cluster-internal install with no Ingress, agent.auth.allowInsecureNoAuth=true (every pod that reaches the agent's Service then acts as its one user)" -}}
{{- end -}}
{{- end -}}
{{- if and (eq $auth.mode "oidc") (not (and $auth.oidc.issuerUrl $auth.oidc.clientId)) -}}
{{- fail "agent.auth.mode=oidc needs agent.auth.oidc.issuerUrl (e.g. https://keycloak.example.com/realms/amicable) and agent.auth.oidc.clientId; the client secret comes from the agent Secret (key agent.secret.oidcClientSecretKey), see docs/kubernetes.md \"Login and sharing\"" -}}
{{- end -}}
{{- $preview := include "amicable.previewBaseDomain" . -}}
{{- $hosts := list (include "amicable.host" .Values.agent.ingress.host) -}}
{{- if .Values.editor.enabled -}}{{- $hosts = append $hosts (include "amicable.host" .Values.editor.ingress.host) -}}{{- end -}}
{{- range $hosts -}}
{{- if or (eq . $preview) (hasSuffix (printf ".%s" $preview) .) -}}
{{- fail (printf "%s is inside the preview domain %s (agent.env.previewBaseDomain): previews run code the model wrote, and from there they could set the agent's cookies and call it as a same-site page. Put previews on a domain of their own, e.g. agent.example.com and *.example-preview.net" . $preview) -}}
{{- end -}}
{{- end -}}
{{- $wild := include "amicable.previewWildcardHost" . -}}
{{- if ne $wild (printf "*.%s" (include "amicable.previewBaseDomain" .)) -}}
{{- fail (printf "previewRouter.ingress.wildcardHost (%s) must be \"*.\" + agent.env.previewBaseDomain (%s)" $wild (include "amicable.previewBaseDomain" .)) -}}
{{- end -}}
{{- end -}}

{{/*
AMICABLE_MODELS: agent.models with the agent's (snake_case) keys, as one JSON line.
*/}}
{{- define "amicable.modelsJson" -}}
{{- $keys := dict "baseUrl" "base_url" "apiKeyEnv" "api_key_env" "apiKeyHeader" "api_key_header" "priceInputPerMtok" "price_input_per_mtok" "priceOutputPerMtok" "price_output_per_mtok" "priceCacheReadPerMtok" "price_cache_read_per_mtok" "priceCacheWritePerMtok" "price_cache_write_per_mtok" "contextWindow" "context_window" "maxTokensField" "max_tokens_field" -}}
{{- $out := list -}}
{{- range .Values.agent.models -}}
{{- $entry := dict -}}
{{- range $key, $value := . -}}
{{- $_ := set $entry (get $keys $key | default $key) $value -}}
{{- end -}}
{{- $out = append $out $entry -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
Whether the default model is an Anthropic one (then ANTHROPIC_API_KEY is required).
*/}}
{{- define "amicable.anthropicDefault" -}}
{{- $default := .Values.agent.model.default | default "" -}}
{{- $named := false -}}
{{- range .Values.agent.models -}}
{{- if eq .id $default -}}{{- $named = . -}}{{- end -}}
{{- end -}}
{{- if $named -}}
{{- if eq $named.provider "anthropic" -}}true{{- end -}}
{{- else if or (eq $default "") (hasPrefix "anthropic:" $default) (not (contains ":" $default)) -}}
true
{{- end -}}
{{- end -}}
