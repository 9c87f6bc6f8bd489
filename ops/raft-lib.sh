#!/usr/bin/env bash
# Fetches the Raft library (cowsql/raft 0.22.x, Debian package libraft-dev from suite trixie) into DEST.
#
# Usage: ops/raft-lib.sh [DEST]          (default DEST: build/third_party/raft)
#
# Result (nothing else is touched):
#   DEST/include/raft.h, DEST/include/raft/{uv,fixture}.h
#   DEST/lib/libraft.a                    static library; link with -luv -llz4 and raft/compat_glibc.c
#   DEST/VERSION                          Debian version of the package that was unpacked
#   DEST/copyright                        the package's licence (LGPL-3 with a static linking exception)
#   DEST/deb/libraft-dev_*.deb            the package as downloaded (its signature chain was checked by apt)
#
# How: a private apt configuration under DEST/.apt (its own sources.list naming only trixie/main on the
# same mirror host as this system's Debian sources, its own lists and cache directories, the system's
# sources.list.d and update hooks ignored), `apt-get update` + `apt-get download libraft-dev`, then
# `dpkg -x`. The system's apt sources, lists and installed packages are never changed, so no root is
# needed. Idempotent: exits at once when DEST already holds the expected version.
#
# Why not Debian 12's own libraft-dev 0.15.0: it commits entries of earlier terms by counting replicas
# (the Raft paper's Figure 8); see docs/raft-choice.md. libraft0 (the shared library, glibc >= 2.38) is
# deliberately not fetched: we link libraft.a statically.
set -euo pipefail

DEST=${1:-build/third_party/raft}
SUITE=${RAFT_SUITE:-trixie}
WANT_UPSTREAM=${RAFT_UPSTREAM:-0.22.}          # accepted upstream version prefix (API checked against it)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
say() { echo "ops/raft-lib.sh: $*"; }
die() { echo "ops/raft-lib.sh: error: $*" >&2; exit 1; }

if [ -f "$DEST/lib/libraft.a" ] && [ -f "$DEST/include/raft.h" ] && [ -f "$DEST/VERSION" ] &&
   [[ "$(cat "$DEST/VERSION")" == "$WANT_UPSTREAM"* ]]; then
  say "libraft $(cat "$DEST/VERSION") already in $DEST (nothing to do)"
  exit 0
fi

for tool in apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || die "$tool not found (this script needs a Debian system)"
done
[ -r "$KEYRING" ] || die "$KEYRING missing (install debian-archive-keyring)"

# The mirror host: the URI this system already uses for Debian's main archive (not -security).
mirror_uri() {
  local f uri
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; exit } }' "$f" |
          grep -E '/debian/?$' | head -n1 || true)
    [ -n "$uri" ] && { echo "${uri%/}"; return; }
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    uri=$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f" |
          grep -E '^https?://.*/debian/?$' | head -n1 || true)
    [ -n "$uri" ] && { echo "${uri%/}"; return; }
  done
  echo "http://deb.debian.org/debian"
}
MIRROR=$(mirror_uri)

mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
APTDIR="$DEST/.apt"
rm -rf "$APTDIR"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$DEST/deb"

echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" > "$APTDIR/sources.list"
# Read after the system's configuration: clears the hooks that would act on the system (appstream,
# packagekit) and points every path apt writes to inside DEST.
{
  echo '#clear APT::Update::Pre-Invoke;'
  echo '#clear APT::Update::Post-Invoke;'
  echo '#clear APT::Update::Post-Invoke-Success;'
  echo '#clear DPkg::Pre-Invoke;'
  echo '#clear DPkg::Post-Invoke;'
  echo "Dir::Etc::SourceList \"$APTDIR/sources.list\";"
  echo 'Dir::Etc::SourceParts "-";'
  echo "Dir::State::Lists \"$APTDIR/lists\";"
  echo "Dir::Cache \"$APTDIR/cache\";"
  echo 'Dir::Cache::pkgcache "";'
  echo 'Dir::Cache::srcpkgcache "";'
  echo 'Acquire::Languages "none";'
  # As root apt would drop to _apt, which cannot write into a root-owned build tree; the files
  # are still verified against the signed Release file.
  [ "$(id -u)" -eq 0 ] && echo 'APT::Sandbox::User "root";'
} > "$APTDIR/apt.conf"
APT=(apt-get -q -c "$APTDIR/apt.conf")

say "fetching libraft-dev from $MIRROR $SUITE/main (private apt state in $APTDIR)"
"${APT[@]}" update >"$APTDIR/update.log" 2>&1 || { cat "$APTDIR/update.log" >&2; die "apt-get update failed"; }
rm -f "$DEST"/deb/libraft-dev_*.deb
(cd "$DEST/deb" && "${APT[@]}" download libraft-dev) >"$APTDIR/download.log" 2>&1 ||
  { cat "$APTDIR/download.log" >&2; die "apt-get download libraft-dev failed"; }
DEB=$(ls "$DEST"/deb/libraft-dev_*.deb)
VERSION=$(dpkg-deb -f "$DEB" Version)
[[ "$VERSION" == "$WANT_UPSTREAM"* ]] ||
  die "$SUITE offers libraft-dev $VERSION, expected $WANT_UPSTREAM*: check the API and update RAFT_UPSTREAM"
say "downloaded $(basename "$DEB") (sha256 $(sha256sum "$DEB" | cut -c1-16)...)"

STAGE="$APTDIR/unpacked"
dpkg-deb -x "$DEB" "$STAGE"
LIBA=$(find "$STAGE/usr/lib" -name libraft.a | head -n1)
[ -n "$LIBA" ] && [ -f "$STAGE/usr/include/raft.h" ] || die "$DEB has no libraft.a or raft.h"
rm -rf "$DEST/include" "$DEST/lib"
mkdir -p "$DEST/include" "$DEST/lib"
cp -R "$STAGE/usr/include/." "$DEST/include/"
cp "$LIBA" "$DEST/lib/libraft.a"
cp "$STAGE/usr/share/doc/libraft-dev/copyright" "$DEST/copyright"
echo "$VERSION" > "$DEST/VERSION"
rm -rf "$APTDIR"        # ~20 MB of trixie package lists; the next run does not need them

# libraft.a needs libuv and liblz4 at link time (Debian 12's libuv1-dev and liblz4-dev; see ops/deps.sh).
for p in libuv1-dev liblz4-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
    say "warning: $p is not installed; run 'make deps' before linking libraft.a"
done
say "installed libraft $VERSION into $DEST (include/, lib/libraft.a; link: -luv -llz4 + raft/compat_glibc.c)"
