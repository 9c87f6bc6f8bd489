#!/usr/bin/env bash
# figure8_on_0.15.sh: runs tests/raft/test_figure8.c against Debian 12's libraft-dev 0.15.0 to show
# the safety violation that made us choose cowsql/raft 0.22 (docs/raft-choice.md). Not a CI test:
# it expects the test to FAIL, and exits 0 only if it fails with a replaced committed entry.
#
# Usage: tests/raft/figure8_on_0.15.sh [WORKDIR]   (default: build/third_party/raft-0.15; no root needed)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-build/third_party/raft-0.15}

RAFT_SUITE=bookworm RAFT_UPSTREAM=0.15. ops/raft-lib.sh "$WORK/lib015"
mkdir -p "$WORK/obj"
for f in cluster test_figure8; do
  cc -std=gnu11 -O1 -g -Wall -Wextra -Werror -D_GNU_SOURCE -isystem "$WORK/lib015/include" \
     -Itests/raft -c "tests/raft/$f.c" -o "$WORK/obj/$f.o"
done
cc -o "$WORK/test_figure8" "$WORK/obj/test_figure8.o" "$WORK/obj/cluster.o" \
   "$WORK/lib015/lib/libraft.a" -luv -llz4 -lcriterion

set +e
"$WORK/test_figure8" --color=never > "$WORK/run.log" 2>&1
rc=$?
set -e
grep -v '^\[ *[0-9]*\] [0-9]:' "$WORK/run.log" || true
if [ "$rc" -ne 0 ] && grep -q 'a committed entry was replaced' "$WORK/run.log"; then
  echo "figure8_on_0.15.sh: libraft $(cat "$WORK/lib015/VERSION") violates Raft safety (as expected)"
  exit 0
fi
echo "figure8_on_0.15.sh: expected a safety violation on 0.15.0, got exit $rc" >&2
exit 1
