#!/usr/bin/env bash
# `make run`: starts a node in the foreground with the embedded store under
# ./thaw-data and deploys the demo function once the node answers.
set -euo pipefail
bin=${1:-build/thaw}
dir=$(cd "$(dirname "$bin")" && pwd)
listen=${THAW_LISTEN:-127.0.0.1:8080}
url="http://$listen"
data=${THAW_DATA:-./thaw-data}

# A development admin key, made once and kept beside the checkout (mode 600)
# unless THAW_ADMIN_KEY is set. Production nodes use --admin-key-file.
if [ -z "${THAW_ADMIN_KEY:-}" ]; then
  keyfile=.thaw-admin-key
  if [ ! -s "$keyfile" ]; then
    umask 077
    id=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
    secret=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    printf 'thaw_%s_%s\n' "$id" "$secret" > "$keyfile"
  fi
  THAW_ADMIN_KEY=$(cat "$keyfile")
  export THAW_ADMIN_KEY
fi
export THAW_KEY=$THAW_ADMIN_KEY

(
  for _ in $(seq 200); do
    curl -sf "$url/healthz" >/dev/null 2>&1 && break
    sleep 0.05
  done
  curl -sf -XPOST "$url/v1/deployments" -H "Authorization: Bearer $THAW_KEY" \
    -H 'Content-Type: application/yaml' --data-binary @- >/dev/null <<YAML || echo "demo deployment failed" >&2
name: demo
runtime: exec
command: ["$dir/thaw-echo"]
concurrency: 16
scale:
  max_instances: 2
  idle_timeout: 60s
  standby_timeout: 10m
YAML
  # A small language model behind the OpenAI-compatible routes: the tiny
  # trained stories260K when the shared models are beside the checkout,
  # otherwise a generated model (random weights: the words are noise).
  model=$(cd "$dir/.." && pwd)/../shared/models/stories260K.gguf
  if [ ! -f "$model" ]; then
    mkdir -p "$data"
    model="$(cd "$data" && pwd)/demo-model.gguf"
    [ -f "$model" ] || "$bin" model gen --preset tiny -o "$model" >/dev/null
  fi
  curl -sf -XPOST "$url/v1/deployments" -H "Authorization: Bearer $THAW_KEY" \
    -H 'Content-Type: application/yaml' --data-binary @- >/dev/null <<YAML || echo "demo model deployment failed" >&2
name: stories
runtime: llm
model: $model
context: 512
parallel: 4
max_output_tokens: 256
sampling: {temperature: 0.8, top_p: 0.95}
scale:
  max_instances: 1
YAML
  cat >&2 <<MSG

thaw is running on $url with the demo deployment "demo" (echoes its input)
and the model "stories" ($model) behind the OpenAI-compatible API.
Admin key (also in .thaw-admin-key): $THAW_KEY
  export THAW_KEY=$THAW_KEY
  curl -s -H "Authorization: Bearer \$THAW_KEY" -XPOST $url/v1/deployments/demo/invoke -d '{"hello":"thaw"}'
  $bin invoke demo -d '{"hello":"thaw"}' --server $url
  curl -s -H "Authorization: Bearer \$THAW_KEY" $url/v1/completions -d '{"model":"stories","prompt":"Once upon a time","max_tokens":40}'
  $bin ls --server $url
  curl -s -H "Authorization: Bearer \$THAW_KEY" $url/metrics
Stop with Ctrl-C (the node drains and exits).

MSG
) &

exec "$bin" serve --listen "$listen" --data "$data"
