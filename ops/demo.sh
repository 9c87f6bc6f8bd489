#!/usr/bin/env bash
# demo.sh BUILD_DIR: the main job: three local TLS brokers (one cluster), the orders example surviving a leader kill.
#
# Starts three BUILD_DIR/ferryd with generated configs in ./run/demo (data in ./run/demo/data-N,
# wiped at each run), on 127.0.0.1:9700.. (peer ports 9800..; the next free ports otherwise), waits
# for their ready files and registration, then: creates the `orders` topic (3 partitions, RF 3), runs
# the order service (OrderPlaced
# events with key = order id and event headers), runs three independent readers (email,
# inventory, analytics) that each read every partition from the start, and checks that each got
# every event; kills -9 the leader of partition 0, publishes again, restarts the killed broker and
# checks a new reader gets every event. Then it prints how to use ferryctl and waits: Ctrl-C stops
# the brokers cleanly (SIGTERM, wait) and exits 0. With CI=true or DEMO_EXIT=1 it stops after the
# demonstration instead (exit 0 if everything checked out, 1 otherwise).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 BUILD_DIR   (normally: make demo)" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$1" && pwd)
RUN="$ROOT/run/demo"
CERTS="$BUILD/certs"
FERRYD="$BUILD/ferryd"
FERRYCTL="$BUILD/ferryctl"
SERVICE="$BUILD/examples/order_service"
READER="$BUILD/examples/order_reader"
EVENTS=${DEMO_EVENTS:-9}
READERS=(email inventory analytics)

for f in "$FERRYD" "$FERRYCTL" "$SERVICE" "$READER" "$CERTS/ca.crt" "$CERTS/server.crt" "$CERTS/server.key" \
    "$CERTS/client.crt" "$CERTS/client.key"; do
    if [ ! -e "$f" ]; then
        echo "demo: $f is missing: run \`make demo\` (it builds everything and makes the certificates)" >&2
        exit 1
    fi
done

bold() { if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }
# show CMD...: prints the command as a user would type it (paths relative to the repo), then runs it.
show() {
    local a shown=""
    for a in "$@"; do
        a=${a#"$ROOT"/}
        if [[ "$a" =~ [^A-Za-z0-9_./:=,@+-] ]]; then
            a="'${a//\'/\'\\\'\'}'"
        fi
        shown+="${shown:+ }$a"
    done
    printf '$ %s\n' "$shown"
    "$@"
}

mkdir -p "$RUN"
NODES=3
BROKER_PIDS=()

# Brokers left over from an earlier demo (same pid files, still ferryd) are stopped first.
for i in $(seq 0 $((NODES - 1))); do
    pf="$RUN/ferryd-$i.pid"
    [ -f "$pf" ] || continue
    old=$(cat "$pf" 2>/dev/null || true)
    if [ -n "$old" ] && [ -r "/proc/$old/cmdline" ] && tr '\0' ' ' <"/proc/$old/cmdline" | grep -q ferryd; then
        echo "demo: stopping broker $i of an earlier demo (pid $old)"
        kill -TERM "$old" 2>/dev/null || true
        for _ in $(seq 1 100); do [ -d "/proc/$old" ] || break; sleep 0.1; done
    fi
    rm -f "$pf"
done
rm -f "$RUN/ferryd.pid"

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_port FROM: the first port >= FROM nobody listens on (within 100).
free_port() {
    local p=$1
    while port_taken "$p"; do
        p=$((p + 1))
        if [ "$p" -ge $(($1 + 100)) ]; then
            echo "demo: no free port in 127.0.0.1:$1-$(($1 + 99))" >&2
            exit 1
        fi
    done
    echo "$p"
}
PORTS=()
PEERS=()
next=9700
nextp=9800
for i in $(seq 0 $((NODES - 1))); do
    PORTS[$i]=$(free_port $next)
    next=$((PORTS[i] + 1))
    PEERS[$i]=$(free_port $nextp)
    nextp=$((PEERS[i] + 1))
done
MEMBERS=""
BROKERS=""
for i in $(seq 0 $((NODES - 1))); do
    MEMBERS+="${MEMBERS:+,}$i@127.0.0.1:${PEERS[$i]}"
    BROKERS+="${BROKERS:+,}127.0.0.1:${PORTS[$i]}"
done

rm -rf "$RUN/data" "$RUN"/data-* "$RUN"/ready-*
for i in $(seq 0 $((NODES - 1))); do
    cat >"$RUN/ferryd-$i.conf" <<CONF
# ferryd configuration of broker $i written by ops/demo.sh (docs/configuration.md lists every key)
node.id = $i
listen = 127.0.0.1:${PORTS[$i]}
data.dir = $RUN/data-$i
security.protocol = tls
tls.cert.file = $CERTS/server.crt
tls.key.file = $CERTS/server.key
tls.ca.file = $CERTS/ca.crt
ready.file = $RUN/ready-$i
# the cluster: every member lists the same initial members (id@peer address); brokers talk
# mutual TLS on the peer port (server certificate to listen, client certificate to dial)
peer.listen = 127.0.0.1:${PEERS[$i]}
cluster.members = $MEMBERS
peer.tls.cert.file = $CERTS/server.crt
peer.tls.key.file = $CERTS/server.key
peer.tls.client.cert.file = $CERTS/client.crt
peer.tls.client.key.file = $CERTS/client.key
CONF
done

stop_broker() { # stop_broker I: SIGTERM and wait
    local pid=${BROKER_PIDS[$1]:-}
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "demo: stopping broker $1 (SIGTERM to pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    BROKER_PIDS[$1]=""
    rm -f "$RUN/ferryd-$1.pid"
}
stop_all() {
    for i in $(seq 0 $((NODES - 1))); do stop_broker "$i"; done
}
on_signal() {
    echo
    stop_all
    echo "demo: stopped"
    exit 0
}
trap stop_all EXIT
trap on_signal INT TERM

start_broker() { # start_broker I: start and wait for its ready file
    local i=$1
    rm -f "$RUN/ready-$i"
    printf '$ %s --config %s &\n' "${FERRYD#"$ROOT"/}" "${RUN#"$ROOT"/}/ferryd-$i.conf"
    "$FERRYD" --config "$RUN/ferryd-$i.conf" >>"$RUN/ferryd-$i.log" 2>&1 &
    BROKER_PIDS[$i]=$!
    echo "${BROKER_PIDS[$i]}" >"$RUN/ferryd-$i.pid"
    for _ in $(seq 1 200); do
        [ -s "$RUN/ready-$i" ] && break
        if ! kill -0 "${BROKER_PIDS[$i]}" 2>/dev/null; then
            echo "demo: broker $i exited during start-up; its log ($RUN/ferryd-$i.log):" >&2
            tail -n 30 "$RUN/ferryd-$i.log" >&2 || true
            BROKER_PIDS[$i]=""
            exit 1
        fi
        sleep 0.1
    done
    if [ ! -s "$RUN/ready-$i" ]; then
        echo "demo: broker $i did not become ready within 20 s; its log ($RUN/ferryd-$i.log):" >&2
        tail -n 30 "$RUN/ferryd-$i.log" >&2 || true
        exit 1
    fi
    echo "broker $i ready at $(head -n 1 "$RUN/ready-$i") (pid ${BROKER_PIDS[$i]}, log ${RUN#"$ROOT"/}/ferryd-$i.log)"
}

bold "Starting $NODES TLS brokers (one Raft cluster) on $BROKERS"
rm -f "$RUN"/ferryd-*.log
for i in $(seq 0 $((NODES - 1))); do start_broker "$i"; done

# Every client below connects over TLS and verifies the broker against the development CA.
TLS=(--brokers "$BROKERS" --ca "$CERTS/ca.crt")
failed=0

# Every broker registers its client address through the controller (a few seconds after start).
for _ in $(seq 1 100); do
    n=$("$FERRYCTL" cluster info "${TLS[@]}" 2>/dev/null | grep -cE '^[0-9]+ +127\.0\.0\.1:' || true)
    [ "${n:-0}" -ge "$NODES" ] && break
    sleep 0.2
done
bold "The cluster, seen by ferryctl"
show "$FERRYCTL" cluster info "${TLS[@]}"

bold "Create the orders topic: 3 partitions, each replicated on the 3 brokers (a Raft group per partition)"
show "$FERRYCTL" topic create orders --partitions 3 --replicas 3 "${TLS[@]}"
sleep 2 # the partition groups elect their leaders

bold "The order service publishes $EVENTS OrderPlaced events (client/examples/order_service.c)"
echo "key = order id (one order's events stay in order, in one partition);"
echo "headers: event-id, event-type=OrderPlaced, source=order-service, correlation-id"
if ! show "$SERVICE" "${TLS[@]}" --topic orders --count "$EVENTS"; then
    echo "demo: the order service failed" >&2
    failed=1
fi

# run_readers N: the three services, each its own consumer group (fan-out: every group gets every event),
# each expecting N events from its group's committed offsets; checks each got exactly N.
run_readers() {
    local want=$1 r rc got
    declare -A reader_pid
    for r in "${READERS[@]}"; do
        "$READER" --name "$r" "${TLS[@]}" --topic orders --group "$r" --expect "$want" >"$RUN/reader-$r.out" 2>&1 &
        reader_pid[$r]=$!
        printf '$ %s --name %s --brokers %s --ca %s --topic orders --group %s --expect %s &\n' "${READER#"$ROOT"/}" \
            "$r" "$BROKERS" "${CERTS#"$ROOT"/}/ca.crt" "$r" "$want"
    done
    for r in "${READERS[@]}"; do
        rc=0
        wait "${reader_pid[$r]}" || rc=$?
        echo
        cat "$RUN/reader-$r.out"
        got=$(sed -n "s/^$r: received \([0-9]*\) events$/\1/p" "$RUN/reader-$r.out")
        if [ "$rc" -ne 0 ] || [ "${got:-0}" -ne "$want" ]; then
            echo "CHECK FAILED: $r received ${got:-0} of $want events (exit $rc)" >&2
            failed=1
        else
            echo "check: group $r received exactly the $want events it had not committed"
        fi
    done
}

bold "Three services, each its own consumer group, each receives every event (client/examples/order_reader.c)"
run_readers "$EVENTS"
show "$FERRYCTL" group describe email "${TLS[@]}"

bold "kill -9 the leader of partition 0, then publish $EVENTS more events: a new leader takes over"
victim=$("$FERRYCTL" topic describe orders "${TLS[@]}" | awk '$1 == "0" { print $2 }')
if [ -n "$victim" ] && [ "$victim" -ge 0 ] 2>/dev/null && [ -n "${BROKER_PIDS[$victim]:-}" ]; then
    echo "$ kill -9 ${BROKER_PIDS[$victim]}    # broker $victim"
    kill -9 "${BROKER_PIDS[$victim]}"
    wait "${BROKER_PIDS[$victim]}" 2>/dev/null || true
    BROKER_PIDS[$victim]=""
    if ! show "$SERVICE" "${TLS[@]}" --topic orders --count "$EVENTS"; then
        echo "demo: the order service failed after the kill" >&2
        failed=1
    fi
    show "$FERRYCTL" topic describe orders "${TLS[@]}"
    bold "Restart broker $victim with its data: it rejoins and catches up"
    start_broker "$victim"
    bold "The three groups resume from their committed offsets: each gets only the $EVENTS new events"
    run_readers "$EVENTS"
    EVENTS=$((EVENTS * 2))
    bold "A new reader sees all $EVENTS events"
    out=$("$READER" --name audit "${TLS[@]}" --topic orders --expect "$EVENTS" 2>&1) || true
    echo "$out"
    got=$(sed -n "s/^audit: received \([0-9]*\) events$/\1/p" <<<"$out")
    if [ "${got:-0}" -ne "$EVENTS" ]; then
        echo "CHECK FAILED: audit received ${got:-0} of $EVENTS events" >&2
        failed=1
    else
        echo "check: audit received all $EVENTS events, across the leader's kill"
    fi
else
    echo "demo: no leader known for partition 0 (got '$victim')" >&2
    failed=1
fi

bold "The same data through ferryctl"
show "$FERRYCTL" topic describe orders "${TLS[@]}"
echo
show "$FERRYCTL" consume orders --from start -n 3 --print 'partition %p offset %o key %k headers %h' "${TLS[@]}"
echo
show "$FERRYCTL" consume orders -p 0 -n 1 --format json "${TLS[@]}"

ENVFILE="$RUN/ferryctl.env"
cat >"$ENVFILE" <<ENV
# source this file to point ferryctl at the demo broker (written by ops/demo.sh)
export FERRY_BROKERS=$BROKERS
export FERRYCTL_CA=$CERTS/ca.crt
export PATH="$BUILD:\$PATH"
ENV

if [ "$failed" -ne 0 ]; then
    bold "The demonstration FAILED (see above); broker logs: ${RUN#"$ROOT"/}/ferryd-*.log"
else
    bold "All readers received all their events; the cluster survived the kill of a leader"
fi

if [ "${CI:-}" = "true" ] || [ "${DEMO_EXIT:-}" = "1" ]; then
    stop_all
    exit "$failed"
fi

cat <<USAGE

The $NODES brokers keep running on $BROKERS (TLS; data in ${RUN#"$ROOT"/}/data-N). In another terminal:

  source ${ENVFILE#"$ROOT"/}        # sets FERRY_BROKERS, FERRYCTL_CA and PATH
  ferryctl cluster info
  ferryctl topic list
  printf 'order-2001\t{"total_cents": 990}\n' | ferryctl produce orders --key-sep \$'\\t' -H event-type=OrderPlaced
  ferryctl consume orders --from start --timeout 2000 --format json
  ferryctl consume orders --from end          # follow new events; Ctrl-C to stop
  ferryctl topic describe orders --format json

or without the env file, with every flag spelled out:

  ${FERRYCTL#"$ROOT"/} --brokers $BROKERS --ca ${CERTS#"$ROOT"/}/ca.crt topic list

More: ${FERRYCTL#"$ROOT"/} --help, docs/cli.md. Press Ctrl-C here to stop the brokers.
USAGE

# Wait for the brokers; Ctrl-C (SIGINT) or SIGTERM runs on_signal, which stops them and exits 0.
wait -n "${BROKER_PIDS[@]}" || true
echo "demo: a broker exited by itself; logs: ${RUN#"$ROOT"/}/ferryd-*.log" >&2
exit 1
