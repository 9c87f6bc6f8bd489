#!/usr/bin/env bash
# netns.sh up|down|status|selftest|cut|heal: the Jepsen testbed: one network namespace per node on a private bridge.
#
# Topology (needs root; nothing is routed to or from the root namespace):
#   PREFIX-sw    holds the bridge br0 and nothing else (no uplink): every test packet stays on it
#   PREFIX-nI    node I (I = 0..N-1, the broker's node.id), eth0 = 10.77.0.(10+I)/24
#   PREFIX-ctl   the control namespace where the workload clients run, eth0 = 10.77.0.100/24
# PREFIX is $JEPSEN_NS_PREFIX (default "fj"). Each node hangs off the bridge by a veth pair; the bridge
# namespace carries one nft table (`table bridge jepsen`) whose chains the nemesis fills: `partition`
# (drops between address pairs) and `links` (loss, NFQUEUE delay), both jumped to from the forward hook.
#
#   netns.sh up [N]        create the control namespace and N nodes (default 3); idempotent (an existing
#                          testbed of another size is torn down first)
#   netns.sh down          delete every namespace named PREFIX-* (their veths and nft rules go with them);
#                          idempotent, also after a half-made `up`
#   netns.sh status        list our namespaces, addresses and the bridge's nft ruleset
#   netns.sh cut A B       drop every packet between nodes A and B (both ways); A/B = node index or "ctl"
#   netns.sh heal          remove every partition and link rule
#   netns.sh selftest      up 3 (prefix fjst), ping between nodes, a cut blocks, heal restores, down leaves
#                          nothing; exit 0 on success
set -euo pipefail

PREFIX=${JEPSEN_NS_PREFIX:-fj}
SUBNET=10.77.0
CTL_HOST=100

die() { echo "netns.sh: $*" >&2; exit 1; }
node_addr() { # node_addr I|ctl: the address of node I or of the control namespace
    if [ "$1" = ctl ]; then echo "$SUBNET.$CTL_HOST"; else echo "$SUBNET.$((10 + $1))"; fi
}
node_ns() { if [ "$1" = ctl ]; then echo "$PREFIX-ctl"; else echo "$PREFIX-n$1"; fi; }
our_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX-(sw|ctl|n[0-9]+)\$" || true; }
node_count() { our_namespaces | grep -cE "^$PREFIX-n[0-9]+\$" || true; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces and nft)"
    command -v ip >/dev/null || die "ip (iproute2) not found: make deps"
    command -v nft >/dev/null || die "nft not found: make deps"
}

# attach NAME I|ctl: a namespace with eth0 on the bridge and its address; loopback up.
attach() {
    local who=$1 ns addr sw
    ns=$(node_ns "$who")
    addr=$(node_addr "$who")
    sw="$PREFIX-s$who"
    ip netns add "$ns"
    ip link add "$PREFIX-e$who" type veth peer name "$sw"
    ip link set "$PREFIX-e$who" netns "$ns"
    ip link set "$sw" netns "$PREFIX-sw"
    ip -n "$ns" link set "$PREFIX-e$who" name eth0
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$PREFIX-sw" link set "$sw" master br0
    ip -n "$PREFIX-sw" link set "$sw" up
}

nft_base() { # the bridge's filter table: empty partition and links chains behind the forward hook
    ip netns exec "$PREFIX-sw" nft -f - <<NFT
table bridge jepsen {
    chain partition { }
    chain links { }
    chain forward_filter {
        type filter hook forward priority 0; policy accept;
        jump partition
        jump links
    }
}
NFT
}

cmd_down() {
    local ns
    for ns in $(our_namespaces); do
        ip netns del "$ns" 2>/dev/null || true
    done
    # a veth whose namespace went first can linger in the root namespace for a moment
    for _ in 1 2 3 4 5; do
        [ -z "$(our_namespaces)" ] && break
        sleep 0.1
    done
    [ -z "$(our_namespaces)" ] || die "namespaces left: $(our_namespaces | tr '\n' ' ')"
}

cmd_up() {
    local n=${1:-3} i
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 9 ] || die "node count must be 1..9 (got $n)"
    if [ -n "$(our_namespaces)" ]; then
        if [ "$(node_count)" -eq "$n" ] && ip netns list | grep -q "^$PREFIX-ctl\b" &&
            ip netns exec "$PREFIX-sw" nft list table bridge jepsen >/dev/null 2>&1; then
            cmd_heal
            return 0
        fi
        cmd_down
    fi
    trap 'cmd_down' ERR
    ip netns add "$PREFIX-sw"
    ip -n "$PREFIX-sw" link add br0 type bridge
    ip -n "$PREFIX-sw" link set br0 up
    ip -n "$PREFIX-sw" link set lo up
    for i in $(seq 0 $((n - 1))); do attach "$i"; done
    attach ctl
    nft_base
    trap - ERR
}

cmd_status() {
    local ns
    if [ -z "$(our_namespaces)" ]; then
        echo "no $PREFIX-* namespaces"
        return 0
    fi
    for ns in $(our_namespaces); do
        if [ "$ns" = "$PREFIX-sw" ]; then
            echo "$ns: bridge br0"
        else
            echo "$ns: $(ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')"
        fi
    done
    ip netns exec "$PREFIX-sw" nft list table bridge jepsen 2>/dev/null || echo "(no nft table)"
}

cmd_heal() {
    ip netns exec "$PREFIX-sw" nft -f - <<NFT
flush chain bridge jepsen partition
flush chain bridge jepsen links
NFT
}

cmd_cut() {
    local a b
    a=$(node_addr "$1")
    b=$(node_addr "$2")
    ip netns exec "$PREFIX-sw" nft -f - <<NFT
add rule bridge jepsen partition ip saddr $a ip daddr $b drop
add rule bridge jepsen partition ip saddr $b ip daddr $a drop
NFT
}

# reach FROM TO: 0 if FROM's namespace gets an answer from TO's address (two pings, 1 s timeout).
reach() {
    ip netns exec "$(node_ns "$1")" ping -n -q -c 2 -i 0.2 -W 1 "$(node_addr "$2")" >/dev/null 2>&1
}

cmd_selftest() {
    PREFIX=fjst
    local fails=0 passes=0
    check() { # check DESCRIPTION COMMAND...: runs it, prints ok/FAIL
        if "${@:2}"; then echo "ok   $1"; passes=$((passes + 1)); else echo "FAIL $1"; fails=$((fails + 1)); fi
    }
    not() { ! "$@"; }
    no_root_link() { ! ip -o link show | grep -qE " $PREFIX-(s|e)[0-9c]"; }
    trap 'cmd_down' EXIT
    cmd_up 3
    check "up: 3 nodes and the control namespace exist" test "$(node_count)" -eq 3
    check "n0 reaches n1" reach 0 1
    check "n1 reaches n2" reach 1 2
    check "ctl reaches n2" reach ctl 2
    check "the root namespace holds no testbed link" no_root_link
    cmd_cut 0 1
    check "cut n0|n1: n0 no longer reaches n1" not reach 0 1
    check "cut n0|n1: n1 no longer reaches n0" not reach 1 0
    check "cut n0|n1: n0 still reaches n2" reach 0 2
    cmd_heal
    check "heal: n0 reaches n1 again" reach 0 1
    cmd_up 3
    check "up again (idempotent): n1 reaches n0" reach 1 0
    cmd_down
    cmd_down
    check "down (twice): no fjst-* namespace left" test -z "$(our_namespaces)"
    trap - EXIT
    echo "netns selftest: $passes passed, $fails failed"
    [ "$fails" -eq 0 ]
}

main() {
    [ $# -ge 1 ] || { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
    local cmd=$1
    shift
    require_root
    case "$cmd" in
        up) cmd_up "$@" ;;
        down) cmd_down ;;
        status) cmd_status ;;
        heal) cmd_heal ;;
        cut) [ $# -eq 2 ] || die "usage: netns.sh cut A B"; cmd_cut "$1" "$2" ;;
        selftest) cmd_selftest ;;
        *) die "unknown command $cmd (up|down|status|cut|heal|selftest)" ;;
    esac
}
main "$@"
