#!/usr/bin/env bash
# Installs every Debian package Ferry's build, tests, demo, benchmark and jepsen/ suite need. Idempotent: does
# nothing (and needs no root) when all are present; otherwise apt-get as root or through sudo.
set -euo pipefail
PKGS=(build-essential pkg-config openssl libssl-dev libuv1-dev libmsgpack-dev libcriterion-dev
      liblz4-dev libzstd-dev procps debian-archive-keyring
      iproute2 nftables libnetfilter-queue-dev faketime libfaketime gnuplot-nox python3 iputils-ping iptables)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "ops/deps.sh: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
