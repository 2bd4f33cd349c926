#!/usr/bin/env bash
# Builds go-judge (github.com/criyle/go-judge), pinned, for make bench's comparison row,
# and prints the binary's path. Idempotent: a binary built before is reused without the
# network; the first build needs the Go module proxy. go-judge is never a dependency of
# sandboxd's go.mod: it is built in a scratch module of its own under the cache dir.
#   scripts/go-judge.sh [OUT]   (OUT defaults to build/go-judge; a link to the cached binary)
# `go install ...@v1.12.2` is refused here (the proxy does not list go-judge's versions),
# while `go get` of the exact version in a module, then `go build`, works.
set -euo pipefail
VERSION=v1.12.2
CACHE=${SANDBOXD_BENCH_CACHE:-/var/cache/sandboxd-bench}
OUT=${1:-build/go-judge}
dir=$CACHE/go-judge-$VERSION
bin=$dir/go-judge

if [ ! -x "$bin" ]; then
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (
    cd "$tmp"
    export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
    go mod init sandboxd-bench/go-judge >/dev/null 2>&1
    timeout 300 go get "github.com/criyle/go-judge/cmd/go-judge@$VERSION" >&2
    # As go-judge's own release builds (.goreleaser.yaml): static, these tags.
    go build -trimpath -tags nomsgpack,grpcnotrace -o go-judge github.com/criyle/go-judge/cmd/go-judge
  ) || { echo "go-judge.sh: could not build go-judge $VERSION (is the Go module proxy reachable?)" >&2; exit 1; }
  # Only a build of exactly this version is kept.
  info=$(go version -m "$tmp/go-judge")
  grep -Eq "(mod|dep)[[:space:]]+github.com/criyle/go-judge[[:space:]]+$VERSION[[:space:]]" <<<"$info" ||
    { echo "go-judge.sh: the binary is not go-judge $VERSION" >&2; exit 1; }
  mv "$tmp/go-judge" "$bin"
fi
mkdir -p "$(dirname "$OUT")"
ln -sf "$bin" "$OUT"
echo "$OUT"
