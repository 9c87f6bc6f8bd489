#!/usr/bin/env bash
# run-all.sh BUILD_DIR BIN...: runs every Criterion test binary, bounded, and prints "N passed, N failed".
#
# Unit and raft binaries (path contains /unit/ or /raft/) run with --jobs=2, integration binaries
# with --jobs=1 (they start real brokers). Each binary is bounded by timeout(1): UNIT_TIMEOUT /
# INTEG_TIMEOUT seconds (defaults 300 / 900), multiplied by FERRY_TEST_TIMEOUT_MULT. It continues
# through failures, prints each binary's Criterion summary, then one line of totals parsed from the
#   [====] Synthesis: Tested: X | Passing: Y | Failing: Z | Crashing: W
# lines. Exit status: 0 only if every test passed and every binary ran to its summary.
set -u

if [ $# -lt 1 ]; then
    echo "usage: $0 BUILD_DIR BIN..." >&2
    exit 2
fi
build=$1
shift
export FERRY_BUILD=${FERRY_BUILD:-$(cd "$build" && pwd)}
# Leaks inside third-party libraries (never ours) are listed in tests/lsan.supp.
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "$0")" && pwd)/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

mult=${FERRY_TEST_TIMEOUT_MULT:-1}
scale() { awk -v s="$1" -v m="$mult" 'BEGIN { v = s * m; printf "%d\n", (v < 1 ? 1 : v) }'; }
unit_timeout=$(scale "${UNIT_TIMEOUT:-300}")
integ_timeout=$(scale "${INTEG_TIMEOUT:-900}")

passed=0
failed=0
broken=() # binaries that did not run to a summary
failing=() # binaries with failing or crashing tests
logdir=$(mktemp -d "${TMPDIR:-/tmp}/ferry-run-all.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

for bin in "$@"; do
    name=${bin#"$build"/}
    case $bin in
    */unit/* | */raft/*) jobs=2 limit=$unit_timeout ;;
    *) jobs=1 limit=$integ_timeout ;;
    esac
    echo "== $name (--jobs=$jobs, ${limit}s)"
    if [ ! -x "$bin" ]; then
        echo "   NOT BUILT: $bin"
        broken+=("$name (not built)")
        continue
    fi
    log="$logdir/$(basename "$bin").log"
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$bin" --jobs="$jobs" >"$log" 2>&1
    rc=$?
    echo "   ran $(($(date +%s) - t0))s"
    synth=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep 'Synthesis: Tested:' | tail -n 1)
    # Criterion's report: failures and crashes in full, then the synthesis line. Seeds are only
    # worth printing when something failed (they replay it).
    quiet='^ferrytest: seed='
    case $synth in *"Failing: 0 |"*) [ "$rc" -eq 0 ] || quiet='^$' ;; *) quiet='^$' ;; esac
    sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -v '^\[----\] *$' | grep -E -v '^\[RUN \]|^\[PASS\]' |
        grep -E -v "$quiet" | sed 's/^/   /'
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "   TIMED OUT after ${limit}s"
        broken+=("$name (timed out)")
    fi
    if [ -z "$synth" ]; then
        echo "   no Criterion summary (exit $rc)"
        [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] || broken+=("$name (exit $rc, no summary)")
        continue
    fi
    t=$(echo "$synth" | sed -n 's/.*Tested: *\([0-9]*\).*/\1/p')
    p=$(echo "$synth" | sed -n 's/.*Passing: *\([0-9]*\).*/\1/p')
    f=$(echo "$synth" | sed -n 's/.*Failing: *\([0-9]*\).*/\1/p')
    c=$(echo "$synth" | sed -n 's/.*Crashing: *\([0-9]*\).*/\1/p')
    : "${t:=0}" "${p:=0}" "${f:=0}" "${c:=0}"
    # Criterion 2.4 counts crashed tests among the failing ones (Crashing is a subset of Failing).
    bad=$((t - p))
    [ "$bad" -lt "$f" ] && bad=$f
    [ "$bad" -lt 0 ] && bad=0
    passed=$((passed + p))
    failed=$((failed + bad))
    if [ "$bad" -gt 0 ]; then
        failing+=("$name ($bad, $c crashed)")
    elif [ "$rc" -ne 0 ]; then
        broken+=("$name (exit $rc)")
    fi
done

echo
if [ ${#failing[@]} -gt 0 ]; then
    echo "failing: ${failing[*]}"
fi
if [ ${#broken[@]} -gt 0 ]; then
    echo "did not complete: ${broken[*]}"
fi
echo "$passed passed, $failed failed"
if [ "$failed" -gt 0 ] || [ ${#broken[@]} -gt 0 ]; then
    exit 1
fi
exit 0
