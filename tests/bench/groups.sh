# groups.sh: the consumer-group section of `make bench`, sourced by cluster.sh (uses its start_cluster,
# stop_cluster, $dir, $nodes, $build, $bench, $certs, $brokers): 3 fresh TLS brokers (RF 3, fsync before ack),
# then prints (never asserts) rebalance times of a group of 10 members over 100 partitions (a member joins,
# leaves with close, is killed with SIGKILL: reassigned after its session timeout), the consume throughput
# of a group of 3 against a single consumer over the same data, and the commit rate (sync one at a time,
# async with many in flight). Every figure is measured by tests/bench/ferry_bench.c (modes group-*).
#
# Environment: BENCH_GROUPS (default 1; 0 skips this section), BENCH_GROUPS_MEMBERS (default 10),
# BENCH_GROUPS_PARTITIONS (default 100), BENCH_GROUPS_SESSION_MS (default 10000: the killed member's session
# timeout), BENCH_GROUPS_CONSUME_BYTES (default 536870912), BENCH_GROUPS_COMMIT_SECONDS (default 5),
# BENCH_GROUPS_INFLIGHT (default 64).

groups_members=${BENCH_GROUPS_MEMBERS:-10}
groups_parts=${BENCH_GROUPS_PARTITIONS:-100}
groups_session=${BENCH_GROUPS_SESSION_MS:-10000}
groups_bytes=${BENCH_GROUPS_CONSUME_BYTES:-536870912}
groups_commit_s=${BENCH_GROUPS_COMMIT_SECONDS:-5}
groups_inflight=${BENCH_GROUPS_INFLIGHT:-64}
groups_t0=$(date +%s)

start_cluster
echo
echo "ferry bench, consumer groups: 3 ferryd on $brokers (TLS clients and peers, RF 3, fsync before ack)"
groups_results=$dir/groups-results
: >"$groups_results"
groups_run() { # groups_run LABEL ARGS...: runs one ferry_bench mode, keeps its RESULT line as LABEL
    local label=$1 out
    shift
    if ! out=$("$bench" "$@" --brokers "$brokers" --ca "$certs/ca.crt" --size "$size" --replicas 3 2>&1); then
        echo "$out" >&3
        echo "groups.sh: $label failed" >&3
        for i in $(seq 0 $((nodes - 1))); do echo "-- broker $i log:" >&3; tail -n 10 "$dir/ferryd-$i.log" >&3; done
        exit 1
    fi
    echo "$out" | grep -v '^RESULT' | sed 's/^/  /'
    echo "$out" | grep '^RESULT' | sed "s/^RESULT/$label/" >>"$groups_results"
}
groups_run rebalance group-rebalance --partitions "$groups_parts" --members "$groups_members" \
    --session "$groups_session"
groups_run consume group-consume --partitions 12 --bytes "$groups_bytes" --members 3
groups_run commit group-commit --partitions 12 --seconds "$groups_commit_s" --inflight "$groups_inflight"
groups_t1=$(date +%s)

gget() { grep "^$1 " "$groups_results" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
gratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2fx", a / b; else print "-" }'; }
echo
echo "Ferry consumer groups, 3-broker cluster, TLS, RF 3 (${size} B records; $((groups_t1 - groups_t0)) s)." \
    "Broker group.heartbeat.interval.ms=3000 (default), libferry defaults"
printf '%-64s %10s\n' "rebalance, $groups_members members, $groups_parts partitions: until in effect on every member" "ms"
printf '%-64s %10s\n' "  $groups_members members subscribe at once (first assignment)" "$(gget rebalance initial_ms)"
printf '%-64s %10s\n' "  member $((groups_members + 1)) joins" "$(gget rebalance join_ms)"
printf '%-64s %10s\n' "  that member leaves (ferry_consumer_close)" "$(gget rebalance leave_ms)"
printf '%-64s %10s\n' "  a member killed (SIGKILL), session.timeout.ms=$groups_session" "$(gget rebalance kill_ms)"
echo
printf '%-64s %12s %8s\n' "consume $(gget consume records) records, 12 partitions (first to last record)" "records/s" "MB/s"
printf '%-64s %12s %8s\n' "  1 consumer (a group of one)" "$(gget consume rps1)" "$(gget consume mbps1)"
printf '%-64s %12s %8s\n' "  group of 3 consumers (threads of one process)" "$(gget consume rpsn)" "$(gget consume mbpsn)"
printf '%-64s %12s\n' "  ratio, group of 3 / single" "$(gratio "$(gget consume rpsn)" "$(gget consume rps1)")"
echo
printf '%-64s %12s %8s\n' "commits, one partition's offset per commit" "commits/s" "ms each"
printf '%-64s %12s %8s\n' "  ferry_commit_sync, one at a time" "$(gget commit sync_rps)" "$(gget commit sync_ms)"
printf '%-64s %12s %8s\n' "  ferry_commit_async, up to $groups_inflight in flight" "$(gget commit async_rps)" "-"
printf '%-64s %12s\n' "  ratio, async / sync" "$(gratio "$(gget commit async_rps)" "$(gget commit sync_rps)")"
echo "Notes: a rebalance is paced by heartbeats: the coordinator hands out revocations and new partitions in"
echo "heartbeat answers, so a join or leave takes about one interval (3 s) until every member has its share. A"
echo "killed member is noticed a session timeout after its last heartbeat (up to one interval before the kill),"
echo "then the others learn at their next heartbeat. On 2 cores the group of 3 shares the CPUs with the 3"
echo "brokers; its ratio swings run to run (0.8x-1.7x seen)."
stop_cluster
