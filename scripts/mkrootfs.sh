#!/usr/bin/env bash
# mkrootfs.sh OUT.tar.zst — builds the jobs' root filesystem: Debian bookworm (minbase) with
# Python 3, packed as a zstd tarball. Idempotent: an OUT built by this recipe is kept
# unless --force.
#
#   scripts/mkrootfs.sh [--force] [--level N] [--packages "pkg ..."] OUT.tar.zst
#
# Needs root (mmdebstrap, installed by scripts/deps.sh if missing) and Debian's apt mirror.
set -euo pipefail
force=; level=3; extra=
while (($#)); do
  case $1 in
    --force) force=1; shift ;;
    --level) level=$2; shift 2 ;;
    --packages) extra=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "mkrootfs: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
out=${1:?usage: mkrootfs.sh [--force] OUT.tar.zst}
# The recipe (this script and its options) is stamped beside the tarball: an image built
# by an older recipe is rebuilt, an up-to-date one kept.
recipe=$( { sha256sum <"$0"; echo "level=$level packages=$extra"; } | sha256sum | cut -c1-16)
if [[ -s $out && -z $force && "$(cat "$out.recipe" 2>/dev/null)" == "$recipe" ]]; then
  echo "mkrootfs: $out is up to date ($(du -h "$out" | cut -f1)); --force rebuilds it"
  exit 0
fi
here=$(cd "$(dirname "$0")" && pwd)
"$here/deps.sh"
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# python3 (not python3-minimal): jobs expect json, ctypes and the rest of the standard library.
pkgs="python3${extra:+,${extra// /,}}"
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mmdebstrap --variant=minbase --include="$pkgs" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  --customize-hook='mkdir -p "$1"/work && chmod 0755 "$1"/work' \
  --customize-hook='printf "sandbox\n" >"$1"/etc/hostname' \
  --customize-hook='printf "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n" >"$1"/etc/hosts' \
  --customize-hook=': >"$1"/etc/resolv.conf' \
  --customize-hook='chmod 0644 "$1"/etc/hostname "$1"/etc/hosts "$1"/etc/resolv.conf' \
  --format=tar bookworm "$tmp/rootfs.tar" ${mirror:-http://deb.debian.org/debian} >&2
zstd -q -T0 -"$level" ${level:+$( ((level > 19)) && echo --ultra)} "$tmp/rootfs.tar" -o "$tmp/out.tar.zst"
mv "$tmp/out.tar.zst" "$out"
echo "$recipe" >"$out.recipe"
echo "mkrootfs: wrote $out ($(du -h "$out" | cut -f1))"
