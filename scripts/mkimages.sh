#!/usr/bin/env bash
# mkimages.sh — builds several images with scripts/mkrootfs.sh, N at a time.
#
#   scripts/mkimages.sh [-j N] [--force] OUTDIR NAME...|all     OUTDIR/NAME.tar.zst per image
#
# "all" is every images/*.packages. Each build's output goes to OUTDIR/NAME.log (shown when
# it fails); up-to-date and cached images take no time. -j defaults to 2: mmdebstrap waits
# on the mirror and on dpkg's fsyncs, so two builds at once beat one after the other even on
# 2 cores (README, Images); more only adds contention.
set -euo pipefail
jobs=2 force=
while (($#)); do
  case $1 in
    -j) jobs=$2; shift 2 ;;
    --force) force=--force; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "mkimages: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
out=${1:?usage: mkimages.sh [-j N] OUTDIR NAME...|all}; shift
here=$(cd "$(dirname "$0")" && pwd)
names=()
for n in "$@"; do
  if [[ $n == all ]]; then
    for f in "$here"/../images/*.packages; do names+=("$(basename "$f" .packages)"); done
  else
    names+=("$n")
  fi
done
((${#names[@]})) || { echo "mkimages: no image named" >&2; exit 2; }
# Each name once, in order.
mapfile -t names < <(printf '%s\n' "${names[@]}" | awk '!seen[$0]++')
"$here/deps.sh" # once, before the parallel builds (apt-get does not run twice at once)
mkdir -p "$out"
build() {
  local n=$1 t0=$SECONDS
  if "$here/mkrootfs.sh" $force --image "$n" "$out/$n.tar.zst" >"$out/$n.log" 2>&1; then
    echo "mkimages: $n: $(tail -1 "$out/$n.log" | sed 's/^mkrootfs: //') [$((SECONDS - t0)) s]"
  else
    echo "mkimages: $n FAILED (log: $out/$n.log):" >&2
    tail -20 "$out/$n.log" | sed 's/^/  /' >&2
    return 1
  fi
}
export -f build
export here out force
t0=$SECONDS
rc=0
printf '%s\n' "${names[@]}" | xargs -P "$jobs" -I{} bash -c 'build "$1"' _ {} || rc=1
echo "mkimages: ${#names[@]} image(s) in $((SECONDS - t0)) s$( ((rc)) && echo ', some FAILED')"
exit $rc
