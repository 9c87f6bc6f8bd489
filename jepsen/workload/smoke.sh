#!/usr/bin/env bash
# smoke.sh BUILD [OUT]: the workload programs and the checker end to end on 3 TLS brokers on 127.0.0.1, no namespaces.
# Two producers and a consumer run for $SMOKE_SECONDS (default 12); a third of the way in, the leader of
# partition 0 is killed with SIGKILL and restarted 3 s later. Then the final read, a graceful stop, a replica
# dump of every node, the merged history and the checker's verdict. Exit status: the checker's (0 valid,
# 1 anomalies, 2 bad input), or 3 if the cluster could not be run. Every broker is stopped and the temp dir
# removed at exit (OUT, if given, keeps history.jsonl, verdict.* and the broker logs). Environment:
# SMOKE_SECONDS, SMOKE_KILL=0 (no kill), FERRYD (another ferryd binary, e.g. build-bugs/ferryd),
# SMOKE_EXTRA_CONF (lines added to each broker's config, e.g. "debug.bug = drop-entry").
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 BUILD_DIR [OUT_DIR]" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
out=${2:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
ferryd=${FERRYD:-$build/ferryd}
ferryctl=$build/ferryctl
certs=$build/certs
w=$build/jepsen
for f in "$ferryd" "$ferryctl" "$certs/ca.crt" "$w/jp_producer" "$w/jp_consumer" "$w/jp_final_read" \
    "$w/jp_replica_dump"; do
    [ -e "$f" ] || { echo "smoke.sh: $f missing (make all certs jepsen-workload)" >&2; exit 3; }
done
seconds=${SMOKE_SECONDS:-12}
dir=$(mktemp -d "${TMPDIR:-/tmp}/ferry-jepsen-smoke.XXXXXX")
pids=()
clients=()
stop_all() {
    local p
    for p in "${clients[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${clients[@]}"; do wait "$p" 2>/dev/null || true; done
    clients=()
    for i in 0 1 2; do if [ -n "${pids[i]:-}" ]; then kill -TERM "${pids[i]}" 2>/dev/null || true; fi; done
    for i in 0 1 2; do
        [ -n "${pids[$i]:-}" ] || continue
        for _ in $(seq 100); do kill -0 "${pids[$i]}" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${pids[$i]}" 2>/dev/null || true
        wait "${pids[$i]}" 2>/dev/null || true
        pids[i]=""
    done
}
cleanup() {
    stop_all
    if [ -n "$out" ]; then
        mkdir -p "$out"
        cp "$dir"/history.jsonl "$dir"/verdict.* "$dir"/ferryd-*.log "$out"/ 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
base=$((23000 + ($$ * 7) % 6000))
while port_taken "$base" || port_taken $((base + 1)) || port_taken $((base + 2)) || port_taken $((base + 100)) ||
    port_taken $((base + 101)) || port_taken $((base + 102)); do
    base=$((base + 3))
done
members=""
brokers=""
for i in 0 1 2; do
    members+="${members:+,}$i@127.0.0.1:$((base + 100 + i))"
    brokers+="${brokers:+,}127.0.0.1:$((base + i))"
done
for i in 0 1 2; do
    cat >"$dir/ferryd-$i.conf" <<CONF
node.id = $i
listen = 127.0.0.1:$((base + i))
data.dir = $dir/data-$i
ready.file = $dir/ready-$i
security.protocol = tls
tls.cert.file = $certs/server.crt
tls.key.file = $certs/server.key
tls.ca.file = $certs/ca.crt
peer.listen = 127.0.0.1:$((base + 100 + i))
cluster.members = $members
peer.tls.cert.file = $certs/server.crt
peer.tls.key.file = $certs/server.key
peer.tls.client.cert.file = $certs/client.crt
peer.tls.client.key.file = $certs/client.key
log.level = warn
${SMOKE_EXTRA_CONF:-}
CONF
done
start() { # start I: starts broker I, waits for its ready file
    rm -f "$dir/ready-$1"
    "$ferryd" --config "$dir/ferryd-$1.conf" >>"$dir/ferryd-$1.log" 2>&1 &
    pids[$1]=$!
    for _ in $(seq 200); do
        [ -s "$dir/ready-$1" ] && return 0
        kill -0 "${pids[$1]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "smoke.sh: broker $1 did not start:" >&2
    tail -n 20 "$dir/ferryd-$1.log" >&2
    exit 3
}
for i in 0 1 2; do start "$i"; done
tls=(--brokers "$brokers" --ca "$certs/ca.crt")
n=0
for _ in $(seq 150); do
    n=$("$ferryctl" cluster info "${tls[@]}" 2>/dev/null | grep -cE '^[0-9]+ +127\.0\.0\.1:' || true)
    [ "${n:-0}" -ge 3 ] && break
    sleep 0.2
done
[ "${n:-0}" -ge 3 ] || { echo "smoke.sh: only ${n:-0} of 3 brokers registered" >&2; exit 3; }
"$ferryctl" topic create jepsen --partitions 4 --replicas 3 "${tls[@]}" >/dev/null || exit 3
echo "smoke.sh: 3 brokers on $brokers, topic jepsen (4 partitions, RF 3), ${seconds} s of workload"

common=("${tls[@]}" --topic jepsen --partitions 4)
"$w/jp_producer" "${common[@]}" --process p1 --rate 100 --duration "$seconds" --history "$dir/h-p1.jsonl" &
clients+=($!)
"$w/jp_producer" "${common[@]}" --process p2 --rate 100 --duration "$seconds" --history "$dir/h-p2.jsonl" &
clients+=($!)
"$w/jp_consumer" "${common[@]}" --process c1 --duration $((seconds + 8)) --history "$dir/h-c1.jsonl" &
clients+=($!)
if [ "${SMOKE_KILL:-1}" != 0 ]; then
    sleep $((seconds / 3))
    # the leader of partition 0, so that batches in flight to it are retried elsewhere (broker 1 if unknown)
    v=$("$ferryctl" topic describe jepsen "${tls[@]}" 2>/dev/null | awk '$1 == "0" { print $2 }')
    [[ "$v" =~ ^[0-2]$ ]] || v=1
    kill -KILL "${pids[$v]}"
    wait "${pids[$v]}" 2>/dev/null || true
    pids[v]=""
    echo "smoke.sh: broker $v (leader of partition 0) killed (SIGKILL)"
    sleep 3
    start "$v"
    echo "smoke.sh: broker $v restarted"
fi
for p in "${clients[@]}"; do wait "$p" || true; done
clients=()
"$w/jp_final_read" "${common[@]}" --timeout 60 --history "$dir/h-final.jsonl" || echo "smoke.sh: final read incomplete"
sleep 3 # followers apply what the leader committed last before the graceful stop
stop_all
for i in 0 1 2; do
    "$w/jp_replica_dump" --data-dir "$dir/data-$i" --source "n$i" --node-id "$i" --topic jepsen --partitions 4 \
        --history "$dir/h-replica.jsonl" || true
done
cat "$dir"/h-*.jsonl | python3 -c 'import json, sys
lines = sys.stdin.readlines()
lines.sort(key=lambda l: json.loads(l)["time"])
sys.stdout.write("".join(lines))' >"$dir/history.jsonl"
set +e
python3 "$root/jepsen/checker/checker.py" "$dir/history.jsonl" --out "$dir"
rc=$?
set -e
exit "$rc"
