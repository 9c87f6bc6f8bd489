#!/usr/bin/env bash
# run.sh BUILD: the single-broker benchmark (make bench): starts a TLS ferryd on 127.0.0.1 with fsync before
# ack (the default), runs build/bench/ferry_bench for produce throughput, open-loop latency and consume
# throughput, prints a table with ratios to the reference figures of ARCHITECTURE.md, and cleans up. Then it
# runs the 3-broker section, tests/bench/cluster.sh (its header lists its settings); BENCH_CLUSTER=0 skips it.
# cluster.sh ends with the scale section (1,000 partitions: start-up, idle CPU, memory and disk per partition;
# tests/bench/scale.sh); BENCH_SCALE=0 skips it, BENCH_CLUSTER_MAIN=0 runs the scale section alone. Before it,
# the consumer-group section (rebalance, group consume, commit rate: tests/bench/groups.sh); BENCH_GROUPS=0 skips it.
#
# Environment: BENCH_CONSUME_BYTES (default 1073741824), BENCH_PRODUCE_RECORDS (default 300000),
# BENCH_LATENCY_SECONDS (default 15), BENCH_LATENCY_LINGER_MS (default 1), BENCH_RECORD_BYTES (default 1024).
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 BUILD_DIR" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
bench=$build/bench/ferry_bench
certs=$build/certs
for f in "$build/ferryd" "$bench" "$certs/ca.crt"; do
    [ -e "$f" ] || { echo "run.sh: $f missing (make all certs $bench)" >&2; exit 1; }
done

consume_bytes=${BENCH_CONSUME_BYTES:-1073741824}
produce_records=${BENCH_PRODUCE_RECORDS:-300000}
latency_seconds=${BENCH_LATENCY_SECONDS:-15}
latency_linger=${BENCH_LATENCY_LINGER_MS:-1}
size=${BENCH_RECORD_BYTES:-1024}

dir=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$dir/ferryd.conf" <<CONF
node.id = 0
listen = 127.0.0.1:0
data.dir = $dir/data
ready.file = $dir/ready
security.protocol = tls
tls.cert.file = $certs/server.crt
tls.key.file = $certs/server.key
log.level = warn
CONF
"$build/ferryd" --config "$dir/ferryd.conf" >"$dir/ferryd.log" 2>&1 &
pid=$!
for _ in $(seq 150); do
    [ -s "$dir/ready" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "run.sh: ferryd exited:" >&2; cat "$dir/ferryd.log" >&2; exit 1; }
    sleep 0.1
done
[ -s "$dir/ready" ] || { echo "run.sh: ferryd not ready after 15 s" >&2; cat "$dir/ferryd.log" >&2; exit 1; }
addr=$(head -n 1 "$dir/ready")
echo "ferry bench: ferryd $addr (TLS, fsync before ack), data in $dir, $(nproc) cores, records of $size B"
common=(--brokers "$addr" --ca "$certs/ca.crt" --size "$size")

results=$dir/results
: >"$results"
run() { # run LABEL ARGS...: runs one mode, keeps its RESULT line
    local label=$1
    shift
    local out
    if ! out=$("$bench" "$@" "${common[@]}" 2>&1); then
        echo "$out" >&2
        echo "run.sh: $label failed" >&2
        tail -n 20 "$dir/ferryd.log" >&2
        exit 1
    fi
    echo "$out" | grep -v '^RESULT' | sed 's/^/  /'
    echo "$out" | grep '^RESULT' | sed "s/^RESULT/$label/" >>"$results"
}
t0=$(date +%s)
run produce_batched produce --records "$produce_records" --linger 5
run produce_linger0 produce --records "$((produce_records / 3))" --linger 0
run latency latency --rate 5000 --seconds "$latency_seconds" --warmup 2 --linger "$latency_linger"
run consume consume --bytes "$consume_bytes"
t1=$(date +%s)

get() { # get LABEL KEY
    grep "^$1 " "$results" | tr ' ' '\n' | sed -n "s/^$2=//p"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

echo
echo "Ferry single broker, TLS, ${size} B records, fsync before ack ($((t1 - t0)) s)"
printf '%-44s %14s %10s   %s\n' "measure" "records/s" "MB/s" "vs reference (ARCHITECTURE.md, NATS JetStream R3)"
printf '%-44s %14s %10s   %s\n' "produce, batched (linger.ms=5)" "$(get produce_batched rps)" \
    "$(get produce_batched mbps)" "$(ratio "$(get produce_batched rps)" 15400) of 15,400 msg/s publish"
printf '%-44s %14s %10s   %s\n' "produce, linger.ms=0" "$(get produce_linger0 rps)" \
    "$(get produce_linger0 mbps)" "$(ratio "$(get produce_linger0 rps)" 15400) of 15,400 msg/s publish"
printf '%-44s %14s %10s   %s\n' "consume ($((consume_bytes / 1048576)) MiB from the start)" "$(get consume rps)" \
    "$(get consume mbps)" "$(ratio "$(get consume rps)" 68000) of 68,000 msg/s consume"
echo
printf '%-44s %10s %10s %10s %10s\n' "produce->ack latency, open loop 5,000/s" "p50 ms" "p99 ms" "p99.9 ms" "max ms"
printf '%-44s %10s %10s %10s %10s\n' "ferry (linger.ms=$latency_linger, from intended send)" "$(get latency p50)" "$(get latency p99)" \
    "$(get latency p999)" "$(get latency max)"
printf '%-44s %10s %10s %10s %10s\n' "reference NATS (no fsync before ack)" "4.2" "40" "-" "-"
printf '%-44s %10s %10s\n' "ratio (reference / ferry; >1 = ferry faster)" \
    "$(ratio 4.2 "$(get latency p50)")" "$(ratio 40 "$(get latency p99)")"
echo
echo "Notes: the reference ran 3 nodes with replication and no fsync; this is one broker that fsyncs"
echo "before acking. Figures swing +-40% run to run; compare ratios within one run."

# The single broker stops (and its data goes) before the cluster starts.
cleanup
pid=
if [ "${BENCH_CLUSTER:-1}" != "0" ]; then
    echo
    "$(dirname "$0")/cluster.sh" "$build"
fi
