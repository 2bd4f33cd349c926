#!/usr/bin/env bash
# Installs the Debian packages sandboxd needs to build and test, only those missing.
# Idempotent; safe to run on every build.
set -euo pipefail
# One at a time: tests running in parallel may each ask for a package; the second waits
# and then finds it installed.
exec 9>/var/lock/sandboxd-deps.lock
flock 9
pkgs=(libseccomp-dev pkg-config mmdebstrap zstd ca-certificates "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >/dev/null
fi
