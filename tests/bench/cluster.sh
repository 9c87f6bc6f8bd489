#!/usr/bin/env bash
# cluster.sh BUILD: the 3-broker section of `make bench` (called by run.sh): three TLS ferryd on 127.0.0.1 (mutual
# TLS between peers, fsync before ack), RF 3 topics: produce throughput at 1/12/100 partitions, open-loop latency,
# catch-up consume and leader failover (kill -9 of a partition leader, restart between kills); prints a table
# with ratios to NATS JetStream R3 measured on this machine, and cleans up every process and temp dir. Then, on a
# fresh cluster, the scale section (tests/bench/scale.sh: 1,000 partitions; its header lists its settings).
#
# Environment: BENCH_CLUSTER_PRODUCE_RECORDS (default 100000), BENCH_CLUSTER_CONSUME_BYTES (default 268435456),
# BENCH_CLUSTER_LATENCY_SECONDS (default 15), BENCH_CLUSTER_KILLS (default 10),
# BENCH_CLUSTER_BUDGET_SECONDS (default 200: no new kill starts once this much time has passed),
# BENCH_LATENCY_LINGER_MS (default 1), BENCH_RECORD_BYTES (default 1024), BENCH_CLUSTER_MAIN (default 1; 0 skips
# everything above the scale section), BENCH_SCALE (default 1; 0 skips the scale section), BENCH_GROUPS (default 1;
# 0 skips the consumer-group section, tests/bench/groups.sh, which runs on a fresh cluster before the scale one).
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 BUILD_DIR" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
bench=$build/bench/ferry_bench
ferryctl=$build/ferryctl
certs=$build/certs
for f in "$build/ferryd" "$ferryctl" "$bench" "$certs/ca.crt" "$certs/client.crt"; do
    [ -e "$f" ] || { echo "cluster.sh: $f missing (make all certs $bench)" >&2; exit 1; }
done

produce_records=${BENCH_CLUSTER_PRODUCE_RECORDS:-100000}
consume_bytes=${BENCH_CLUSTER_CONSUME_BYTES:-268435456}
latency_seconds=${BENCH_CLUSTER_LATENCY_SECONDS:-15}
kills=${BENCH_CLUSTER_KILLS:-10}
budget=${BENCH_CLUSTER_BUDGET_SECONDS:-200}
latency_linger=${BENCH_LATENCY_LINGER_MS:-1}
size=${BENCH_RECORD_BYTES:-1024}
nodes=3
start_s=$(date +%s)

# fd 3 keeps the real stderr: the failover loop silences bash's "Killed" job reports on fd 2.
exec 3>&2
dir=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-cluster.XXXXXX")
pids=()
stop_broker() { # stop_broker I SIGNAL: signal broker I and wait for it (SIGKILL after 10 s)
    local pid=${pids[$1]:-}
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "-$2" "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    [ -n "$pid" ] && { wait "$pid" 2>/dev/null || true; }
    pids[$1]=""
}
cleanup() { # all brokers get SIGTERM at once, then each is waited for
    for i in $(seq 0 $((nodes - 1))); do
        [ -n "${pids[$i]:-}" ] && kill -TERM "${pids[$i]}" 2>/dev/null || true
    done
    for i in $(seq 0 $((nodes - 1))); do stop_broker "$i" TERM; done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Port 0 would not do: every member must know the others' peer addresses up front. A port nobody accepts
# on is taken as free (a race with another program only makes start-up fail, loudly).
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { # free_port FROM: the first port >= FROM nobody listens on and not in $used_ports
    local p=$1
    while port_taken "$p" || [[ " ${used_ports:-} " == *" $p "* ]]; do
        p=$((p + 1))
        [ "$p" -lt $(($1 + 500)) ] || { echo "cluster.sh: no free port near $1" >&2; exit 1; }
    done
    echo "$p"
}
ports=()
peers=()
configure() { # configure BASE: picks free ports from BASE (client) and BASE+100 (peer), writes the configs
    local i
    used_ports=""
    for i in $(seq 0 $((nodes - 1))); do
        ports[$i]=$(free_port $(($1 + i)))
        used_ports+=" ${ports[$i]}"
        peers[$i]=$(free_port $(($1 + 100 + i)))
        used_ports+=" ${peers[$i]}"
    done
    members=""
    brokers=""
    for i in $(seq 0 $((nodes - 1))); do
        members+="${members:+,}$i@127.0.0.1:${peers[$i]}"
        brokers+="${brokers:+,}127.0.0.1:${ports[$i]}"
    done
    for i in $(seq 0 $((nodes - 1))); do
        cat >"$dir/ferryd-$i.conf" <<CONF
node.id = $i
listen = 127.0.0.1:${ports[$i]}
data.dir = $dir/data-$i
ready.file = $dir/ready-$i
security.protocol = tls
tls.cert.file = $certs/server.crt
tls.key.file = $certs/server.key
tls.ca.file = $certs/ca.crt
peer.listen = 127.0.0.1:${peers[$i]}
cluster.members = $members
peer.tls.cert.file = $certs/server.crt
peer.tls.key.file = $certs/server.key
peer.tls.client.cert.file = $certs/client.crt
peer.tls.client.key.file = $certs/client.key
log.level = warn
CONF
    done
}

start_broker() { # start_broker I: starts broker I and waits for its ready file; 1 (log shown) if it failed
    local i=$1
    rm -f "$dir/ready-$i"
    "$build/ferryd" --config "$dir/ferryd-$i.conf" >>"$dir/ferryd-$i.log" 2>&1 &
    pids[$i]=$!
    for _ in $(seq 200); do
        [ -s "$dir/ready-$i" ] && return 0
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            echo "cluster.sh: broker $i exited during start-up:" >&3
            tail -n 30 "$dir/ferryd-$i.log" >&3
            wait "${pids[$i]}" 2>/dev/null || true
            pids[$i]=""
            return 1
        fi
        sleep 0.1
    done
    echo "cluster.sh: broker $i not ready after 20 s:" >&3
    tail -n 30 "$dir/ferryd-$i.log" >&3
    return 1
}
# Ports below the ephemeral range (32768+), so outgoing connections do not take them; another program may
# still grab one between the look and the bind: then the whole cluster starts again on other ports.
start_cluster() { # start_cluster: starts the 3 brokers on fresh data dirs and waits until all registered
    local started=0 attempt i ok
    for attempt in 1 2 3; do
        configure $((20000 + ($$ * 7 + attempt * 1000) % 12000))
        ok=1
        for i in $(seq 0 $((nodes - 1))); do start_broker "$i" || { ok=0; break; }; done
        if [ "$ok" = 1 ]; then
            started=1
            break
        fi
        for i in $(seq 0 $((nodes - 1))); do stop_broker "$i" TERM; done
        rm -rf "$dir"/data-* "$dir"/ready-* "$dir"/ferryd-*.log
        echo "cluster.sh: start-up attempt $attempt failed; trying other ports" >&3
    done
    [ "$started" = 1 ] || { echo "cluster.sh: the cluster did not start" >&3; exit 1; }
    tls=(--brokers "$brokers" --ca "$certs/ca.crt")
    # Every broker registers its client address through the controller a moment after start.
    for _ in $(seq 150); do
        n=$("$ferryctl" cluster info "${tls[@]}" 2>/dev/null | grep -cE '^[0-9]+ +127\.0\.0\.1:' || true)
        [ "${n:-0}" -ge "$nodes" ] && break
        sleep 0.2
    done
    [ "${n:-0}" -ge "$nodes" ] || { echo "cluster.sh: only ${n:-0} of $nodes brokers registered" >&2;
        "$ferryctl" cluster info "${tls[@]}" >&2 || true; exit 1; }
}
stop_cluster() { # stop_cluster: SIGTERM to all brokers at once, waits for them, removes their data
    for i in $(seq 0 $((nodes - 1))); do
        [ -n "${pids[$i]:-}" ] && kill -TERM "${pids[$i]}" 2>/dev/null || true
    done
    for i in $(seq 0 $((nodes - 1))); do stop_broker "$i" TERM; done
    rm -rf "$dir"/data-* "$dir"/ready-* "$dir"/ferryd-*.log "$dir"/results "$dir"/failover
}

if [ "${BENCH_CLUSTER_MAIN:-1}" != "0" ]; then
start_cluster
echo "ferry bench, cluster: 3 ferryd on $brokers (TLS clients and peers, RF 3, fsync before ack), data in $dir"

common=(--brokers "$brokers" --ca "$certs/ca.crt" --size "$size" --replicas 3)
results=$dir/results
: >"$results"
run() { # run LABEL ARGS...: runs one mode, keeps its RESULT line
    local label=$1
    shift
    local out
    if ! out=$("$bench" "$@" "${common[@]}" 2>&1); then
        echo "$out" >&3
        echo "cluster.sh: $label failed" >&3
        for i in $(seq 0 $((nodes - 1))); do echo "-- broker $i log:" >&3; tail -n 10 "$dir/ferryd-$i.log" >&3; done
        exit 1
    fi
    echo "$out" | grep -v '^RESULT' | sed 's/^/  /'
    echo "$out" | grep '^RESULT' | sed "s/^RESULT/$label/" >>"$results"
}
t0=$(date +%s)
# What a Kafka user sets for a throughput test (printed by the bench as "producer: ..."): acks=all with the
# idempotent producer, linger.ms=5, 1 MiB batches, 5 requests in flight per connection.
producer_conf=(--conf batch.size=1048576 --conf max.in.flight.requests.per.connection=5)
run produce_p1 produce --records "$produce_records" --linger 5 --partitions 1 "${producer_conf[@]}"
run produce_p12 produce --records "$produce_records" --linger 5 --partitions 12 "${producer_conf[@]}"
run produce_p100 produce --records "$produce_records" --linger 5 --partitions 100 "${producer_conf[@]}"
run latency latency --rate 5000 --seconds "$latency_seconds" --warmup 2 --linger "$latency_linger" "${producer_conf[@]}"
run consume consume --bytes "$consume_bytes"
t1=$(date +%s)

# Failover: the probe produces one record at a time to partition 0 of an RF 3 topic, kill -9's the
# partition's leader right after an acknowledgement (nothing in flight), and times the kill to the first
# acknowledgement that follows (necessarily from a new leader: the old one is dead). The killed broker is
# restarted with its data and given time to rejoin before the next kill.
"$ferryctl" topic create bench-failover --partitions 1 --replicas 3 "${tls[@]}" >/dev/null
fo=$dir/failover
: >"$fo"
done_kills=0
skips=0
k=0
{ while [ "$done_kills" -lt "$kills" ]; do
    k=$((k + 1))
    if [ $(($(date +%s) - start_s)) -ge "$budget" ]; then
        echo "  failover: time budget (${budget} s) reached after $done_kills kills"
        break
    fi
    leader=""
    for _ in $(seq 100); do
        leader=$("$ferryctl" topic describe bench-failover "${tls[@]}" 2>/dev/null | awk '$1 == "0" { print $2 }')
        [[ "$leader" =~ ^[0-9]+$ ]] && [ "$leader" -lt "$nodes" ] && break
        leader=""
        sleep 0.2
    done
    [ -n "$leader" ] || { echo "cluster.sh: no leader for bench-failover/0" >&3; exit 1; }
    victim=${pids[$leader]}
    survivors=""
    for i in $(seq 0 $((nodes - 1))); do
        [ "$i" = "$leader" ] || survivors+="${survivors:+,}127.0.0.1:${ports[$i]}"
    done
    run "failover_$k" failover --kill-pid "$victim" --victim "$leader" --survivors "$survivors"
    if grep -q "^failover_$k .*skipped=1" "$results"; then
        # leadership moved between ferryctl's look and the probe's: nobody was killed, look again
        skips=$((skips + 1))
        [ "$skips" -le 20 ] || { echo "cluster.sh: the leader of bench-failover/0 keeps moving" >&3; exit 1; }
        sleep 1
        continue
    fi
    grep "^failover_$k " "$results" >>"$fo"
    wait "$victim" 2>/dev/null || true
    pids[$leader]=""
    start_broker "$leader" || exit 1
    done_kills=$((done_kills + 1))
    sleep 3 # the restarted broker rejoins its groups and catches up before the next kill
done; } 2>/dev/null
t2=$(date +%s)

get() { # get LABEL KEY
    grep "^$1 " "$results" | tr ' ' '\n' | sed -n "s/^$2=//p"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2fx", a / b; else print "-" }'; }
field() { # field KEY: KEY's values in the failover results, one a line
    awk -v k="$1=" '{ for (i = 1; i <= NF; i++) if (index($i, k) == 1) print substr($i, length(k) + 1) }' "$fo"
}
stats() { # p50 (lower median), max and count of numbers on stdin ("nan" ignored)
    grep -v -i nan | sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "- - 0"; exit }
        printf "%.0f %.0f %d\n", v[int((NR + 1) / 2)], v[NR], NR }'
}
read -r fo_p50 fo_max fo_n <<<"$(field ms | stats)"
read -r fl_p50 fl_max fl_n <<<"$(field leader_ms | stats)"
fo_list=$(field ms | tr '\n' ' ')

echo
echo "Ferry 3-broker cluster, TLS (clients + peers), RF 3, ${size} B records, fsync before ack" \
    "($((t1 - t0)) s + failover $((t2 - t1)) s)"
printf '%-44s %14s %10s   %s\n' "measure" "records/s" "MB/s" "vs NATS JetStream R3 on this machine"
for p in 1 12 100; do
    printf '%-44s %14s %10s   %s\n' "produce, $p partition(s) (linger.ms=5, 1 MiB)" "$(get "produce_p$p" rps)" \
        "$(get "produce_p$p" mbps)" "$(ratio "$(get "produce_p$p" rps)" 15000) of ~15,000 msg/s publish"
done
printf '%-44s %14s %10s   %s\n' "consume ($((consume_bytes / 1048576)) MiB catch-up, 1 partition)" \
    "$(get consume rps)" "$(get consume mbps)" "$(ratio "$(get consume rps)" 68000) of ~68,000 msg/s consume"
echo
printf '%-44s %10s %10s %10s %10s\n' "produce->ack latency, open loop 5,000/s" "p50 ms" "p99 ms" "p99.9 ms" "max ms"
printf '%-44s %10s %10s %10s %10s\n' "ferry R3 (linger.ms=$latency_linger, from intended send)" "$(get latency p50)" \
    "$(get latency p99)" "$(get latency p999)" "$(get latency max)"
printf '%-44s %10s %10s %10s %10s\n' "NATS JetStream R3 on this machine" "-" "~40" "-" "-"
printf '%-44s %10s %10s\n' "ratio (NATS / ferry; >1 = ferry faster)" "-" "$(ratio 40 "$(get latency p99)")"
echo
printf '%-44s %10s %10s %10s\n' "failover, kill -9 of the leader of partition 0" "p50 ms" "max ms" "kills"
printf '%-44s %10s %10s %10s\n' "  -> first acknowledged produce (new leader)" "$fo_p50" "$fo_max" "$fo_n"
printf '%-44s %10s %10s %10s\n' "  -> new leader in the survivors' metadata" "$fl_p50" "$fl_max" "$fl_n"
[ "$skips" -eq 0 ] || echo "  ($skips time(s) the leader moved before the kill: those looks were repeated)"
echo "  kill -> first ack, each kill (ms): $fo_list"
echo
echo "Notes: NATS figures were measured on this machine with 3 nodes (no fsync before ack); ferry fsyncs on"
echo "every replica's commit path before acking. Figures swing +-40% run to run; compare ratios within one run."
stop_cluster
fi # BENCH_CLUSTER_MAIN

if [ "${BENCH_GROUPS:-1}" != "0" ]; then
    . "$(dirname "$0")/groups.sh"
fi

if [ "${BENCH_SCALE:-1}" != "0" ]; then
    . "$(dirname "$0")/scale.sh"
fi
