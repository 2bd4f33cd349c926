#!/usr/bin/env bash
# runtime-images.sh — the images that runtimes need, from runtimes/*.toml.
#
#   scripts/runtime-images.sh NAME...      NAME: a runtime's name or alias, or "all"
#
# Prints each image name once (the Makefile's RUNTIMES= maps to IMAGES this way); an
# unknown name is an error that lists the runtimes.
set -euo pipefail
dir=$(cd "$(dirname "$0")/.." && pwd)/runtimes
# One line per runtime: image name alias...
table=$(for f in "$dir"/*.toml; do
  awk -F'"' '
    /^name *=/ {name=$2}
    /^image *=/ {image=$2}
    /^aliases *=/ {for (i = 2; i <= NF; i += 2) aliases = aliases " " $i}
    END {print image, name aliases}' "$f"
done)
for want in "$@"; do
  if [[ $want == all ]]; then awk '{print $1}' <<<"$table"; continue; fi
  img=$(awk -v w="$want" '{for (i = 2; i <= NF; i++) if ($i == w) {print $1; exit}}' <<<"$table")
  [[ -n $img ]] || { echo "runtime-images: no runtime '$want' (have: $(awk '{printf "%s ", $2}' <<<"$table"))" >&2; exit 2; }
  echo "$img"
done | awk '!seen[$0]++'
