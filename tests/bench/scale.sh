# scale.sh: the scale section of `make bench`, sourced by cluster.sh (uses its start_cluster, stop_cluster,
# stop_broker, $dir, $nodes, $build, $bench, $certs): 3 fresh TLS brokers, one RF 3 topic of 1,000 partitions,
# then prints (never asserts) the time from create to every partition having a leader and to every replica
# started on all 3 brokers, each broker's idle CPU, RSS, open fds, threads and disk, the RSS and disk per
# partition (with 1,000 partitions minus with none, divided), the machine's AIO contexts, the graceful stop
# time, and the time from a cold start of all 3 brokers to every partition led and every replica started.
# See docs/replication.md, "Scale: start-up, idle cost and memory per partition".
#
# Environment: BENCH_SCALE_PARTITIONS (default 1000), BENCH_SCALE_IDLE_SECONDS (default 30),
# BENCH_SCALE_WAIT_SECONDS (default 150: the longest wait for all leaders, after a create or a restart),
# BENCH_SCALE_LOGS (a directory: the brokers' logs are copied there before the cleanup).

scale_parts=${BENCH_SCALE_PARTITIONS:-1000}
scale_idle=${BENCH_SCALE_IDLE_SECONDS:-30}
scale_wait=${BENCH_SCALE_WAIT_SECONDS:-150}
scale_t0=$(date +%s)
hz=$(getconf CLK_TCK)

rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
threads() { awk '$1 == "Threads:" { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
nfds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'; } # utime + stime
disk_kb() { du -sk "$1" 2>/dev/null | awk '{ print $1 }'; }
apparent_kb() { du -sk --apparent-size "$1" 2>/dev/null | awk '{ print $1 }'; }
aio_nr() { cat /proc/sys/fs/aio-nr; }
now_ms() { date +%s%3N; }
# started PID: Raft groups of broker PID that are started (raft_uv keeps prepared open-N segments open in each).
started() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null | sed -n 's|/open-[0-9]*$||p' |
    sort -u | wc -l; }
# all_started T0_MS: waits until every broker has started all its groups (partitions + controller); prints the
# milliseconds since T0_MS, or "-" after BENCH_SCALE_WAIT_SECONDS
all_started() {
    local i ok
    while [ $(($(now_ms) - $1)) -lt $((scale_wait * 1000)) ]; do
        ok=1
        for i in $(seq 0 $((nodes - 1))); do
            [ "$(started "${pids[$i]}")" -ge $((scale_parts + 1)) ] || { ok=0; break; }
        done
        [ "$ok" = 1 ] && { echo $(($(now_ms) - $1)); return; }
        sleep 0.5
    done
    echo "-"
}
# sample TAG: records RSS, fds, threads, disk (allocated and apparent) of every broker as TAG_rss_I etc.
sample() {
    local i
    for i in $(seq 0 $((nodes - 1))); do
        eval "$1_rss_$i=$(rss_kb "${pids[$i]}")"
        eval "$1_fds_$i=$(nfds "${pids[$i]}")"
        eval "$1_thr_$i=$(threads "${pids[$i]}")"
        eval "$1_disk_$i=$(disk_kb "$dir/data-$i")"
        eval "$1_app_$i=$(apparent_kb "$dir/data-$i")"
    done
    eval "$1_aio=$(aio_nr)"
}
v() { eval "echo \${$1:-0}"; }
per_part() { awk -v a="$1" -v b="$2" -v n="$scale_parts" 'BEGIN { printf "%.1f", (a - b) / n }'; }
scale_leaders() { # scale_leaders LABEL ARGS...: runs ferry_bench leaders, keeps its RESULT line as LABEL
    local label=$1 out
    shift
    if ! out=$("$bench" leaders --topic bench-scale --partitions "$scale_parts" --replicas 3 --seconds "$scale_wait" \
        --brokers "$brokers" --ca "$certs/ca.crt" "$@" 2>&1); then
        echo "$out" >&3
        echo "cluster.sh: scale: $label failed" >&3
        for i in $(seq 0 $((nodes - 1))); do echo "-- broker $i log:" >&3; tail -n 10 "$dir/ferryd-$i.log" >&3; done
        exit 1
    fi
    echo "$out" | grep -v '^RESULT' | sed 's/^/  /'
    echo "$out" | grep '^RESULT' | sed "s/^RESULT/$label/" >>"$dir/scale"
}
sget() { grep "^$1 " "$dir/scale" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

echo
start_cluster
: >"$dir/scale"
echo "ferry bench, scale: 3 ferryd on $brokers (TLS clients and peers), one topic of $scale_parts partitions, RF 3"
sleep 2
sample base

t_create=$(now_ms)
scale_leaders create --create 1
create_started_ms=$(all_started "$t_create")
sleep 3
sample full

declare -a cpu0 cpu1
for i in $(seq 0 $((nodes - 1))); do cpu0[$i]=$(cpu_ticks "${pids[$i]}"); done
sleep "$scale_idle"
for i in $(seq 0 $((nodes - 1))); do cpu1[$i]=$(cpu_ticks "${pids[$i]}"); done

# Cold start: a graceful stop of all three (leadership hand-off, then every group closes), then all three
# start at once; the clock runs from their launch to every partition having a leader.
t_stop=$(now_ms)
for i in $(seq 0 $((nodes - 1))); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
for i in $(seq 0 $((nodes - 1))); do stop_broker "$i" TERM; done
stop_ms=$(($(now_ms) - t_stop))
t_start=$(now_ms)
for i in $(seq 0 $((nodes - 1))); do
    rm -f "$dir/ready-$i"
    "$build/ferryd" --config "$dir/ferryd-$i.conf" >>"$dir/ferryd-$i.log" 2>&1 &
    pids[$i]=$!
done
scale_leaders restart
restart_started_ms=$(all_started "$t_start")
sleep 3
sample again

scale_t1=$(date +%s)
echo
echo "Ferry scale: $scale_parts partitions, RF 3, on 3 brokers ($(nproc) cores; $((scale_t1 - scale_t0)) s)"
printf '%-56s %s\n' "create -> every partition has a leader" "$(sget create leaders_ms) ms"
printf '%-56s %s\n' "create -> every replica started on all 3 brokers" "$create_started_ms ms"
printf '%-56s %s\n' "graceful stop of the 3 brokers (SIGTERM, in parallel)" "$stop_ms ms"
printf '%-56s %s\n' "cold start of the 3 brokers -> every partition led" "$(sget restart leaders_ms) ms"
printf '%-56s %s\n' "cold start of the 3 brokers -> every replica started" "$restart_started_ms ms"
printf '%-56s %s\n' "AIO contexts of the machine (aio-nr), none / $scale_parts" \
    "$(v base_aio) / $(v full_aio) (aio-max-nr $(cat /proc/sys/fs/aio-max-nr))"
echo
printf '%-10s %12s %12s %12s %14s %9s %9s %14s %14s\n' "broker" "idle CPU %" "RSS none MB" "RSS full MB" \
    "RSS/part KiB" "fds" "threads" "disk MB" "disk/part KiB"
for i in $(seq 0 $((nodes - 1))); do
    cpu=$(awk -v a="${cpu0[$i]:-0}" -v b="${cpu1[$i]:-0}" -v hz="$hz" -v s="$scale_idle" \
        'BEGIN { printf "%.1f", (b - a) / hz / s * 100 }')
    printf '%-10s %12s %12s %12s %14s %9s %9s %14s %14s\n' "$i" "$cpu" \
        "$(awk -v k="$(v "base_rss_$i")" 'BEGIN { printf "%.1f", k / 1024 }')" \
        "$(awk -v k="$(v "full_rss_$i")" 'BEGIN { printf "%.1f", k / 1024 }')" \
        "$(per_part "$(v "full_rss_$i")" "$(v "base_rss_$i")")" \
        "$(v "base_fds_$i") -> $(v "full_fds_$i")" "$(v "base_thr_$i") -> $(v "full_thr_$i")" \
        "$(awk -v k="$(v "full_disk_$i")" -v a="$(v "full_app_$i")" 'BEGIN { printf "%.0f (%.0f)", k / 1024, a / 1024 }')" \
        "$(per_part "$(v "full_disk_$i")" "$(v "base_disk_$i")")"
done
printf '%-56s %s\n' "after the cold start, RSS MB per broker" \
    "$(for i in $(seq 0 $((nodes - 1))); do awk -v k="$(v "again_rss_$i")" 'BEGIN { printf "%.1f ", k / 1024 }'; done)"
echo
echo "Notes: each broker replicates every partition (RF 3 on 3 brokers), so per partition = per replica. RSS and"
echo "disk per partition = (with $scale_parts - with none) / $scale_parts; disk is allocated blocks (apparent size in"
echo "parentheses). Idle CPU over ${scale_idle} s from /proc/PID/stat (utime + stime). Nothing here is asserted."
if [ -n "${BENCH_SCALE_LOGS:-}" ]; then # keep the brokers' logs (a directory) for a look afterwards
    mkdir -p "$BENCH_SCALE_LOGS" && cp "$dir"/ferryd-*.log "$BENCH_SCALE_LOGS"/
fi
stop_cluster
