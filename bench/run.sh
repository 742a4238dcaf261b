#!/usr/bin/env bash
# Runs the benchmarks from a build folder made with -DTHAW_BENCH=ON:
#   bash bench/run.sh BUILD [platform|throughput|versions|security|security-ir|kernels|engine|llm|all] [trials]
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

# Nodes (and data dirs) a benchmark started, stopped and removed on any exit:
# under set -e a failure after the first of two nodes started (the second
# did not come up, a curl failed) would otherwise leave the first running.
# A benchmark that ends normally stops its own with stop_nodes/cleanup, so a
# pid is never signalled after it was waited for (and possibly reused).
bench_pids=()
bench_dirs=()
started() { bench_pids+=("$1"); }
made() { bench_dirs+=("$1"); }
stop_nodes() {
  local p
  for p in ${bench_pids[@]+"${bench_pids[@]}"}; do kill -TERM "$p" 2>/dev/null || true; done
  for p in ${bench_pids[@]+"${bench_pids[@]}"}; do wait "$p" 2>/dev/null || true; done
  bench_pids=()
}
cleanup() {
  stop_nodes
  local d
  for d in ${bench_dirs[@]+"${bench_dirs[@]}"}; do rm -rf "$d"; done
  bench_dirs=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Waits for a node on port to answer /healthz; fails (and so cleans up) if
# it never does, rather than benchmarking a node that is not there.
wait_up() {
  local _
  for _ in $(seq "${2:-100}"); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return 0; sleep "${3:-0.05}"; done
  echo "bench: the node on port $1 did not start" >&2
  exit 1
}

throughput() {
  local threads=${1:-1} data port pid
  data=$(mktemp -d /tmp/thaw-bench-XXXXXX); made "$data"
  port=$((20000 + RANDOM % 20000))
  ./thaw serve --listen 127.0.0.1:$port --data "$data" --access-log off --threads "$threads" &
  pid=$!; started $pid
  wait_up $port

  curl -sf -H "$AUTH" -XPOST "http://127.0.0.1:$port/v1/deployments" -d "{\"name\":\"echo\",\"runtime\":\"exec\",\"command\":[\"$PWD/thaw-echo\"],\"concurrency\":64,\"scale\":{\"min_instances\":1,\"max_instances\":1}}" >/dev/null
  sleep 0.5
  echo
  echo "throughput, wrk -t1 -c64 -d10s, --threads $threads (1: the gateway runs on the scale loop)"
  local base thaw
  base=$(wrk -t1 -c64 -d10s "http://127.0.0.1:$port/healthz" | awk '/Requests\/sec/ {print $2}')
  thaw=$(wrk -t1 -c64 -d10s -H "$AUTH" -s "$OLDPWD/bench/platform/post.lua" "http://127.0.0.1:$port/v1/deployments/echo/invoke" | awk '/Requests\/sec/ {print $2}')
  echo "  baseline GET /healthz (no key, no function)     $base req/s"
  echo "  POST invoke with a key, trivial function        $thaw req/s  ($(awk "BEGIN {printf \"%.2f\", $thaw / $base}")x baseline)"
  cleanup
}

# Routing between versions: the same trivial function as one version with all
# the traffic (the baseline), split 90/10 over two versions, the split with a
# sticky key per request, and one version with every request shadowed to
# another. Both versions run warm with the same capacity.
versions() {
  local data port pid url
  data=$(mktemp -d /tmp/thaw-bench-XXXXXX); made "$data"
  port=$((20000 + RANDOM % 20000))
  ./thaw serve --listen 127.0.0.1:$port --data "$data" --access-log off --threads 1 &
  pid=$!; started $pid
  wait_up $port
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
  cleanup
}

# Milliseconds from a wrk --latency line value ("812.00us", "1.20ms", "2.01s").
to_ms() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /[0-9]s$/ && v !~ /ms$/) n *= 1000; printf "%.3f", n }'
}

# The cost of security on the hot path (issue #3: under 5% throughput loss):
# warm invoke of a trivial function with a key of a rate-limited tenant
# (authentication, GCRA and concurrency checks; its burst is never half spent,
# so no x-ratelimit headers, as for any client far from its limit) against
# the same on a node with --security off, alternating runs in the same loop.
security_onoff() {
  local threads=${1:-1} rounds=${BENCH_ROUNDS:-5} secs=${BENCH_SECONDS:-4} data_on data_off port_on port_off pid_on pid_off key
  data_on=$(mktemp -d /tmp/thaw-bench-XXXXXX); made "$data_on"
  data_off=$(mktemp -d /tmp/thaw-bench-XXXXXX); made "$data_off"
  port_on=$((20000 + RANDOM % 20000)); port_off=$((port_on + 1))
  ./thaw serve --listen 127.0.0.1:$port_on --data "$data_on" --access-log off --threads "$threads" 2>/dev/null &
  pid_on=$!; started $pid_on
  ./thaw serve --listen 127.0.0.1:$port_off --data "$data_off" --access-log off --threads "$threads" --security off 2>/dev/null &
  pid_off=$!; started $pid_off
  wait_up $port_on
  wait_up $port_off
  curl -sf -H "$AUTH" -XPOST "http://127.0.0.1:$port_on/v1/tenants" -d '{"name":"bench","limits":{"rps":1000000,"burst":1000000,"concurrency":100000}}' >/dev/null
  key=$(curl -sf -H "$AUTH" -XPOST "http://127.0.0.1:$port_on/v1/tenants/bench/keys" -d '{"scopes":["deploy","invoke"],"limits":{"rps":1000000,"burst":1000000}}' | sed 's/.*"key":"\([^"]*\)".*/\1/')
  local dep="{\"name\":\"echo\",\"runtime\":\"exec\",\"command\":[\"$PWD/thaw-echo\"],\"concurrency\":64,\"scale\":{\"min_instances\":1,\"max_instances\":1}}"
  curl -sf -H "Authorization: Bearer $key" -XPOST "http://127.0.0.1:$port_on/v1/deployments" -d "$dep" >/dev/null
  curl -sf -XPOST "http://127.0.0.1:$port_off/v1/deployments" -d "$dep" >/dev/null
  sleep 0.5
  local url_on="http://127.0.0.1:$port_on/v1/deployments/echo/invoke" url_off="http://127.0.0.1:$port_off/v1/deployments/echo/invoke"
  wrk -t1 -c64 -d2s -H "Authorization: Bearer $key" -s "$OLDPWD/bench/platform/post.lua" "$url_on" >/dev/null
  wrk -t1 -c64 -d2s -s "$OLDPWD/bench/platform/post.lua" "$url_off" >/dev/null
  echo
  echo "security on vs. off: warm POST invoke, trivial function, wrk -t1 -c64 -d${secs}s x $rounds rounds each, alternating, --threads $threads"
  local out on_rps="" off_rps="" on_p50="" off_p50="" on_p99="" off_p99="" on_cpu="" off_cpu="" t0
  # The node's own CPU time per request (user + system, from /proc): what
  # the checks cost, whatever else the machine is doing.
  ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
  cpu_us() { awk -v d="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}'; }
  for _ in $(seq "$rounds"); do
    t0=$(ticks $pid_on)
    out=$(wrk -t1 -c64 -d${secs}s --latency -H "Authorization: Bearer $key" -s "$OLDPWD/bench/platform/post.lua" "$url_on")
    on_cpu="$on_cpu $(cpu_us $(( $(ticks $pid_on) - t0 )) "$(echo "$out" | awk '/requests in/ {print $1}')")"
    on_rps="$on_rps $(echo "$out" | awk '/Requests\/sec/ {print $2}')"
    on_p50="$on_p50 $(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")"
    on_p99="$on_p99 $(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")"
    t0=$(ticks $pid_off)
    out=$(wrk -t1 -c64 -d${secs}s --latency -s "$OLDPWD/bench/platform/post.lua" "$url_off")
    off_cpu="$off_cpu $(cpu_us $(( $(ticks $pid_off) - t0 )) "$(echo "$out" | awk '/requests in/ {print $1}')")"
    off_rps="$off_rps $(echo "$out" | awk '/Requests\/sec/ {print $2}')"
    off_p50="$off_p50 $(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")"
    off_p99="$off_p99 $(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")"
  done
  # Medians over the rounds.
  med() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
  local r_on r_off
  r_on=$(echo "$on_rps" | med); r_off=$(echo "$off_rps" | med)
  local c_on c_off
  c_on=$(echo "$on_cpu" | med); c_off=$(echo "$off_cpu" | med)
  printf "  security off (baseline)   %10.0f req/s   p50 %7.3f ms   p99 %7.3f ms   node CPU %6.1f us/req   (req/s runs:%s)\n" "$r_off" "$(echo "$off_p50" | med)" "$(echo "$off_p99" | med)" "$c_off" "$off_rps"
  printf "  security on               %10.0f req/s   p50 %7.3f ms   p99 %7.3f ms   node CPU %6.1f us/req   (req/s runs:%s)\n" "$r_on" "$(echo "$on_p50" | med)" "$(echo "$on_p99" | med)" "$c_on" "$on_rps"
  awk -v a="$r_on" -v b="$r_off" -v ca="$c_on" -v cb="$c_off" 'BEGIN {printf "  on/off throughput %.3fx: %.1f%% loss (target < 5%%); node CPU per request %.3fx (+%.1f us)\n", a / b, (1 - a / b) * 100, ca / cb, ca - cb}'
  cleanup
}

# The same cost as instructions per request (valgrind's callgrind; user space
# only, deterministic, so it holds on a busy machine where req/s does not):
# a key of a rate-limited tenant against --security off, on an invoke of a
# deployment that does not exist (404 after authentication and limits), so
# no instance runs under valgrind and what differs is the security path.
security_ir() {
  if ! command -v valgrind >/dev/null; then echo "security-ir: valgrind is not installed" >&2; return 0; fi
  echo
  echo "security on vs. off in instructions per request (callgrind), POST invoke -> 404, wrk -t1 -c8 -d8s, --threads 1"
  local mode ir_on="" ir_off=""
  for mode in on off; do
    local data port pid key="" extra="" out n ir
    data=$(mktemp -d /tmp/thaw-bench-XXXXXX); made "$data"
    port=$((20000 + RANDOM % 20000))
    out="$data/callgrind.out"
    [ "$mode" = off ] && extra="--security off"
    valgrind --tool=callgrind --callgrind-out-file="$out" ./thaw serve --listen 127.0.0.1:$port --data "$data/d" --access-log off --threads 1 $extra 2>/dev/null &
    pid=$!; started $pid
    wait_up $port 600 0.1
    if [ "$mode" = on ]; then
      curl -sf -H "$AUTH" -XPOST "http://127.0.0.1:$port/v1/tenants" -d '{"name":"bench","limits":{"rps":1000000,"burst":1000000,"concurrency":100000}}' >/dev/null
      key=$(curl -sf -H "$AUTH" -XPOST "http://127.0.0.1:$port/v1/tenants/bench/keys" -d '{"scopes":["deploy","invoke"],"limits":{"rps":1000000,"burst":1000000}}' | sed 's/.*"key":"\([^"]*\)".*/\1/')
    fi
    local url="http://127.0.0.1:$port/v1/deployments/none/invoke"
    wrk -t1 -c8 -d2s -H "Authorization: Bearer $key" -s "$OLDPWD/bench/platform/post.lua" "$url" >/dev/null
    callgrind_control -z $pid >/dev/null 2>&1
    n=$(wrk -t1 -c8 -d8s -H "Authorization: Bearer $key" -s "$OLDPWD/bench/platform/post.lua" "$url" | awk '/requests in/ {print $1}')
    callgrind_control -d $pid >/dev/null 2>&1
    stop_nodes
    ir=$(callgrind_annotate "$out".1 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    ir=$(awk -v a="$ir" -v b="$n" 'BEGIN {printf "%.0f", a / b}')
    if [ "$mode" = on ]; then ir_on=$ir; else ir_off=$ir; fi
    cleanup
  done
  echo "  security off (baseline)   $ir_off instructions/request"
  echo "  security on               $ir_on instructions/request"
  awk -v a="$ir_on" -v b="$ir_off" 'BEGIN {printf "  on/off %.3fx (+%d instructions per request)\n", a / b, a - b}'
}

case "$what" in
  platform) ./bench_platform "$trials" ;;
  throughput) throughput 1; throughput 2 ;;
  versions) versions ;;
  security) if [ -x ./bench_security ]; then ./bench_security; fi; if [ -x ./bench_access ]; then ./bench_access; fi; security_onoff 1; security_onoff 2 ;;
  security-ir) security_ir ;;
  kernels) [ -x ./bench_kernels ] && ./bench_kernels ;;
  engine) [ -x ./bench_engine ] && ./bench_engine ;;
  llm) ./bench_llm ;;
  all)
    ./bench_platform "$trials"
    throughput 1
    throughput 2
    versions
    security_onoff 1
    security_onoff 2
    if [ -x ./bench_kernels ]; then ./bench_kernels; fi
    if [ -x ./bench_engine ]; then ./bench_engine; fi
    ./bench_llm
    ;;
  *) echo "unknown benchmark '$what'" >&2; exit 2 ;;
esac
