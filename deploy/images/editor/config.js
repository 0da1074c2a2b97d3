// Runtime configuration of the editor. Replaced in Kubernetes by the chart's ConfigMap
// (editor.runtimeConfig); empty here, so the build-time defaults apply.
window.__AMICABLE_CONFIG__ = window.__AMICABLE_CONFIG__ || {};
