#!/bin/sh
# Renders /config.js from the environment when any editor setting is given, then runs nginx.
#   VITE_AGENT_WS_URL, VITE_AGENT_HTTP_URL, VITE_AGENT_PERMISSION_MODE, VITE_AGENT_THINKING_LEVEL,
#   AMICABLE_AUTH_MODE  ->  window.__AMICABLE_CONFIG__ = {...} in /tmp/amicable-editor/config.js
# nginx serves that file as /config.js ahead of the one in the image (or a mounted ConfigMap).
set -eu
out_dir=/tmp/amicable-editor
keys="VITE_AGENT_WS_URL VITE_AGENT_HTTP_URL VITE_AGENT_PERMISSION_MODE VITE_AGENT_THINKING_LEVEL AMICABLE_AUTH_MODE"
body=""
for key in $keys; do
  value=$(printenv "$key" || true)
  [ -n "$value" ] || continue
  case $value in
    *"
"*) echo "amicable-editor: $key must be one line" >&2; exit 64 ;;
  esac
  # A JSON string: escape backslashes and double quotes; refuse other control characters.
  if printf '%s' "$value" | LC_ALL=C grep -q '[[:cntrl:]]'; then
    echo "amicable-editor: $key contains a control character" >&2; exit 64
  fi
  escaped=$(printf '%s' "$value" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')
  body="$body${body:+, }\"$key\": \"$escaped\""
done
rm -rf "$out_dir"
if [ -n "$body" ]; then
  mkdir -p "$out_dir"
  printf 'window.__AMICABLE_CONFIG__ = {%s};\n' "$body" > "$out_dir/config.js"
fi
exec "$@"
