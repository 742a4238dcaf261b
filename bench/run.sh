#!/usr/bin/env bash
# Runs the benchmarks from a build folder made with -DTHAW_BENCH=ON:
#   bash bench/run.sh BUILD [platform|throughput|versions|kernels|engine|llm|all] [trials]
# Each benchmark prints its baseline measured in the same run and ratios.
set -euo pipefail
build=${1:-build-bench}
what=${2:-all}
trials=${3:-100}
cd "$build"
export THAW_BUILD_DIR=$PWD THAW_BIN=$PWD/thaw

# The benchmarks' own node: a fixed admin key and KEK, never used elsewhere.
export THAW_ADMIN_KEY=thaw_0123456789abcdef_benchbenchbenchbenchbenchbenchbenchbench123
export THAW_KEK=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
AUTH="Authorization: Bearer $THAW_ADMIN_KEY"

throughput() {
  local threads=${1:-1} data port pid
  data=$(mktemp -d /tmp/thaw-bench-XXXXXX)
  port=$((20000 + RANDOM % 20000))
  ./thaw serve --listen 127.0.0.1:$port --data "$data" --access-log off --threads "$threads" &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done

  curl -sf -H "$AUTH" -XPOST "http://127.0.0.1:$port/v1/deployments" -d "{\"name\":\"echo\",\"runtime\":\"exec\",\"command\":[\"$PWD/thaw-echo\"],\"concurrency\":64,\"scale\":{\"min_instances\":1,\"max_instances\":1}}" >/dev/null
  sleep 0.5
  echo
  echo "throughput, wrk -t1 -c64 -d10s, --threads $threads (1: the gateway runs on the scale loop)"
  local base thaw
  base=$(wrk -t1 -c64 -d10s "http://127.0.0.1:$port/healthz" | awk '/Requests\/sec/ {print $2}')
  thaw=$(wrk -t1 -c64 -d10s -H "$AUTH" -s "$OLDPWD/bench/platform/post.lua" "http://127.0.0.1:$port/v1/deployments/echo/invoke" | awk '/Requests\/sec/ {print $2}')
  echo "  baseline GET /healthz (no key, no function)     $base req/s"
  echo "  POST invoke with a key, trivial function        $thaw req/s  ($(awk "BEGIN {printf \"%.2f\", $thaw / $base}")x baseline)"
  kill -TERM $pid; wait $pid || true
  rm -rf "$data"
}

# Routing between versions: the same trivial function as one version with all
# the traffic (the baseline), split 90/10 over two versions, the split with a
# sticky key per request, and one version with every request shadowed to
# another. Both versions run warm with the same capacity.
versions() {
  local data port pid url
  data=$(mktemp -d /tmp/thaw-bench-XXXXXX)
  port=$((20000 + RANDOM % 20000))
  ./thaw serve --listen 127.0.0.1:$port --data "$data" --access-log off --threads 1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
  url="http://127.0.0.1:$port/v1/deployments"
  for tag in a b; do
    curl -sf -H "$AUTH" -XPOST "$url?traffic=0" -d "{\"name\":\"echo\",\"runtime\":\"exec\",\"command\":[\"$PWD/thaw-echo\"],\"env\":{\"TAG\":\"$tag\"},\"concurrency\":64,\"scale\":{\"min_instances\":1,\"max_instances\":1}}" >/dev/null
  done
  set_traffic() { curl -sf -H "$AUTH" -XPOST "$url/echo/traffic" -d "$1" >/dev/null; sleep 0.5; }
  run() { wrk -t1 -c64 -d5s -H "$AUTH" "$@" -s "$OLDPWD/bench/platform/post.lua" "$url/echo/invoke" | awk '/Requests\/sec/ {print $2}'; }
  echo
  echo "versions, wrk -t1 -c64 -d5s, --threads 1, trivial function, 1 warm instance per version"
  local one split sticky shadow
  set_traffic '{"weights":{"v1":100}}'
  one=$(run)
  set_traffic '{"weights":{"v1":90,"v2":10}}'
  split=$(run)
  sticky=$(run -H "x-thaw-sticky: user-1234")
  set_traffic '{"weights":{"v1":100},"shadow":{"version":"v2","percent":100}}'
  shadow=$(run)
  echo "  one version, all traffic                 $one req/s (baseline)"
  echo "  v1=90 v2=10                              $split req/s ($(awk "BEGIN {printf \"%.2f\", $split / $one}")x)"
  echo "  v1=90 v2=10 with x-thaw-sticky           $sticky req/s ($(awk "BEGIN {printf \"%.2f\", $sticky / $one}")x)"
  echo "  v1=100, every request shadowed to v2     $shadow req/s ($(awk "BEGIN {printf \"%.2f\", $shadow / $one}")x; twice the function calls)"
  kill -TERM $pid; wait $pid || true
  rm -rf "$data"
}

case "$what" in
  platform) ./bench_platform "$trials" ;;
  throughput) throughput 1; throughput 2 ;;
  versions) versions ;;
  kernels) [ -x ./bench_kernels ] && ./bench_kernels ;;
  engine) [ -x ./bench_engine ] && ./bench_engine ;;
  llm) ./bench_llm ;;
  all)
    ./bench_platform "$trials"
    throughput 1
    throughput 2
    versions
    if [ -x ./bench_kernels ]; then ./bench_kernels; fi
    if [ -x ./bench_engine ]; then ./bench_engine; fi
    ./bench_llm
    ;;
  *) echo "unknown benchmark '$what'" >&2; exit 2 ;;
esac
