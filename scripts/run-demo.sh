#!/usr/bin/env bash
# `make run`: starts a node in the foreground with the embedded store under
# ./thaw-data and deploys the demo function once the node answers.
set -euo pipefail
bin=${1:-build/thaw}
dir=$(cd "$(dirname "$bin")" && pwd)
listen=${THAW_LISTEN:-127.0.0.1:8080}
url="http://$listen"

(
  for _ in $(seq 200); do
    curl -sf "$url/healthz" >/dev/null 2>&1 && break
    sleep 0.05
  done
  curl -sf -XPOST "$url/v1/deployments" -H 'Content-Type: application/yaml' --data-binary @- >/dev/null <<YAML || echo "demo deployment failed" >&2
name: demo
runtime: exec
command: ["$dir/thaw-echo"]
concurrency: 16
scale:
  max_instances: 2
  idle_timeout: 60s
  standby_timeout: 10m
YAML
  cat >&2 <<MSG

thaw is running on $url with the demo deployment "demo" (echoes its input).
  curl -s -XPOST $url/v1/deployments/demo/invoke -d '{"hello":"thaw"}'
  $bin invoke demo -d '{"hello":"thaw"}' --server $url
  $bin ls --server $url
  curl -s $url/metrics
Stop with Ctrl-C (the node drains and exits).

MSG
) &

exec "$bin" serve --listen "$listen" --data "${THAW_DATA:-./thaw-data}"
