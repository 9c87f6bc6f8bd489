#!/usr/bin/env bash
# demo.sh BUILD_DIR: the main job: one local TLS broker, the orders example, then ferryctl by hand.
#
# Starts BUILD_DIR/ferryd with a generated config in ./run/demo (data in ./run/demo/data, wiped at
# each run), listening on 127.0.0.1:9700 (or the next free port, said so), waits for its ready
# file, then: creates the `orders` topic (3 partitions), runs the order service (OrderPlaced
# events with key = order id and event headers), runs three independent readers (email,
# inventory, analytics) that each read every partition from the start, and checks that each got
# every event. Then it prints how to use ferryctl against the broker and waits: Ctrl-C stops the
# broker cleanly (SIGTERM, wait) and exits 0. With CI=true or DEMO_EXIT=1 it stops after the
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

for f in "$FERRYD" "$FERRYCTL" "$SERVICE" "$READER" "$CERTS/ca.crt" "$CERTS/server.crt" "$CERTS/server.key"; do
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
PIDFILE="$RUN/ferryd.pid"
BROKER_PID=""

# A broker left over from an earlier demo (same pid file, still a ferryd) is stopped first.
if [ -f "$PIDFILE" ]; then
    old=$(cat "$PIDFILE" 2>/dev/null || true)
    if [ -n "$old" ] && [ -r "/proc/$old/cmdline" ] && tr '\0' ' ' <"/proc/$old/cmdline" | grep -q ferryd; then
        echo "demo: stopping the broker of an earlier demo (pid $old)"
        kill -TERM "$old" 2>/dev/null || true
        for _ in $(seq 1 100); do [ -d "/proc/$old" ] || break; sleep 0.1; done
    fi
    rm -f "$PIDFILE"
fi

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=9700
while port_taken "$PORT"; do
    PORT=$((PORT + 1))
    if [ "$PORT" -gt 9799 ]; then
        echo "demo: no free port in 127.0.0.1:9700-9799" >&2
        exit 1
    fi
done
BROKERS="127.0.0.1:$PORT"
if [ "$PORT" -ne 9700 ]; then
    echo "demo: 127.0.0.1:9700 is taken, using $BROKERS instead"
fi

rm -rf "$RUN/data" "$RUN/ready"
cat >"$RUN/ferryd.conf" <<CONF
# ferryd configuration written by ops/demo.sh (docs/configuration.md lists every key)
node.id = 1
listen = $BROKERS
data.dir = $RUN/data
security.protocol = tls
tls.cert.file = $CERTS/server.crt
tls.key.file = $CERTS/server.key
tls.ca.file = $CERTS/ca.crt
ready.file = $RUN/ready
CONF

stop_broker() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        echo "demo: stopping the broker (SIGTERM to pid $BROKER_PID)"
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    BROKER_PID=""
    rm -f "$PIDFILE"
}
on_signal() {
    echo
    stop_broker
    echo "demo: stopped"
    exit 0
}
trap stop_broker EXIT
trap on_signal INT TERM

bold "Starting one TLS broker on $BROKERS"
printf '$ %s --config %s &\n' "${FERRYD#"$ROOT"/}" "${RUN#"$ROOT"/}/ferryd.conf"
"$FERRYD" --config "$RUN/ferryd.conf" >"$RUN/ferryd.log" 2>&1 &
BROKER_PID=$!
echo "$BROKER_PID" >"$PIDFILE"
for _ in $(seq 1 200); do
    [ -s "$RUN/ready" ] && break
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        echo "demo: ferryd exited during start-up; its log ($RUN/ferryd.log):" >&2
        tail -n 30 "$RUN/ferryd.log" >&2 || true
        BROKER_PID=""
        exit 1
    fi
    sleep 0.1
done
if [ ! -s "$RUN/ready" ]; then
    echo "demo: ferryd did not become ready within 20 s; its log ($RUN/ferryd.log):" >&2
    tail -n 30 "$RUN/ferryd.log" >&2 || true
    exit 1
fi
echo "broker ready at $(cat "$RUN/ready") (pid $BROKER_PID, log ${RUN#"$ROOT"/}/ferryd.log)"

# Every client below connects over TLS and verifies the broker against the development CA.
TLS=(--brokers "$BROKERS" --ca "$CERTS/ca.crt")
failed=0

bold "The cluster, seen by ferryctl"
show "$FERRYCTL" cluster info "${TLS[@]}"

bold "Create the orders topic: 3 partitions, so up to 3 consumers could share the work"
show "$FERRYCTL" topic create orders --partitions 3 "${TLS[@]}"

bold "The order service publishes $EVENTS OrderPlaced events (client/examples/order_service.c)"
echo "key = order id (one order's events stay in order, in one partition);"
echo "headers: event-id, event-type=OrderPlaced, source=order-service, correlation-id"
if ! show "$SERVICE" "${TLS[@]}" --topic orders --count "$EVENTS"; then
    echo "demo: the order service failed" >&2
    failed=1
fi

bold "Three independent readers, each reading every partition from the start (client/examples/order_reader.c)"
declare -A reader_pid
for r in "${READERS[@]}"; do
    "$READER" --name "$r" "${TLS[@]}" --topic orders --expect "$EVENTS" >"$RUN/reader-$r.out" 2>&1 &
    reader_pid[$r]=$!
    printf '$ %s --name %s --brokers %s --ca %s --topic orders --expect %s &\n' "${READER#"$ROOT"/}" "$r" \
        "$BROKERS" "${CERTS#"$ROOT"/}/ca.crt" "$EVENTS"
done
for r in "${READERS[@]}"; do
    rc=0
    wait "${reader_pid[$r]}" || rc=$?
    echo
    cat "$RUN/reader-$r.out"
    got=$(sed -n "s/^$r: received \([0-9]*\) events$/\1/p" "$RUN/reader-$r.out")
    if [ "$rc" -ne 0 ] || [ "${got:-0}" -ne "$EVENTS" ]; then
        echo "CHECK FAILED: $r received ${got:-0} of $EVENTS events (exit $rc)" >&2
        failed=1
    else
        echo "check: $r received all $EVENTS events"
    fi
done

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
    bold "The demonstration FAILED (see above); broker log: ${RUN#"$ROOT"/}/ferryd.log"
else
    bold "All ${#READERS[@]} readers received all $EVENTS events"
fi

if [ "${CI:-}" = "true" ] || [ "${DEMO_EXIT:-}" = "1" ]; then
    stop_broker
    exit "$failed"
fi

cat <<USAGE

The broker keeps running on $BROKERS (TLS; data in ${RUN#"$ROOT"/}/data). In another terminal:

  source ${ENVFILE#"$ROOT"/}        # sets FERRY_BROKERS, FERRYCTL_CA and PATH
  ferryctl cluster info
  ferryctl topic list
  printf 'order-2001\t{"total_cents": 990}\n' | ferryctl produce orders --key-sep \$'\\t' -H event-type=OrderPlaced
  ferryctl consume orders --from start --timeout 2000 --format json
  ferryctl consume orders --from end          # follow new events; Ctrl-C to stop
  ferryctl topic describe orders --format json

or without the env file, with every flag spelled out:

  ${FERRYCTL#"$ROOT"/} --brokers $BROKERS --ca ${CERTS#"$ROOT"/}/ca.crt topic list

More: ${FERRYCTL#"$ROOT"/} --help, docs/cli.md. Press Ctrl-C here to stop the broker.
USAGE

# Wait for the broker; Ctrl-C (SIGINT) or SIGTERM runs on_signal, which stops it and exits 0.
wait "$BROKER_PID" || true
echo "demo: the broker exited by itself; its log: ${RUN#"$ROOT"/}/ferryd.log" >&2
BROKER_PID=""
exit 1
