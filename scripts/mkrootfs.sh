#!/usr/bin/env bash
# mkrootfs.sh — builds a job image: Debian bookworm (minbase) plus the packages of
# images/NAME.packages, packed as a zstd tarball. Idempotent: an OUT built by the current
# recipe is kept, and a recipe already built on this machine is taken from the cache.
#
#   scripts/mkrootfs.sh [--image NAME] [--force] [--no-cache] [--level N] [--packages "pkg ..."] OUT.tar.zst
#
# --image NAME   build images/NAME.packages (default: python, the image build/rootfs.tar.zst
#                always was); images/NAME.hook, if present, runs as a customize hook (sh,
#                the root directory as $1) after the packages are installed
# --packages     extra Debian packages on top of the image's
# --force        rebuild even when OUT or the cache has this recipe (the cache is refreshed)
# --no-cache     neither read nor write the cache
# The cache, $SANDBOXD_IMAGE_CACHE (default /var/cache/sandboxd-images), keeps one tarball
# per recipe, <recipe>.tar.zst, where the recipe hashes this script, the image's .packages
# and .hook files and the options. OUT gets a hard link to it (a copy across filesystems).
# OUT.recipe stamps the recipe, OUT.manifest lists the installed packages with versions.
# Needs root (mmdebstrap, installed by scripts/deps.sh if missing) and Debian's apt mirror.
set -euo pipefail
force=; level=3; extra=; image=python; usecache=1
while (($#)); do
  case $1 in
    --image) image=$2; shift 2 ;;
    --force) force=1; shift ;;
    --no-cache) usecache=; shift ;;
    --level) level=$2; shift 2 ;;
    --packages) extra=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "mkrootfs: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
out=${1:?usage: mkrootfs.sh [--image NAME] [--force] OUT.tar.zst}
here=$(cd "$(dirname "$0")" && pwd)
images=$(dirname "$here")/images
[[ $image =~ ^[a-z0-9][a-z0-9_-]*$ ]] || { echo "mkrootfs: bad image name '$image'" >&2; exit 2; }
list=$images/$image.packages hook=$images/$image.hook
[[ -f $list ]] || { echo "mkrootfs: no image '$image' ($list missing; have: $(cd "$images" && ls *.packages | sed 's/\.packages$//' | tr '\n' ' '))" >&2; exit 2; }
[[ -f $hook ]] || hook=
# The package list: whitespace-separated names, # comments. A name with a leading "-" is a
# stub: an empty package of that name (built here with dpkg-deb) stands in for the real one,
# for a hard dependency the image's programs do not need at run time.
words=$(sed 's/#.*//' "$list" | tr -s ' \t\n' '\n' | grep -v '^$' || true)
pkgs=$(echo $(grep -v '^-' <<<"$words") $extra | tr ' ' ',')
stubs=$(sed -n 's/^-//p' <<<"$words" | tr '\n' ' ')

# The recipe: everything the image's bytes depend on that lives here. (The mirror's state is
# not in it: a rebuild with --force picks up what the mirror has today.)
recipe=$( { sha256sum <"$0"; sha256sum <"$list"; [[ -n $hook ]] && sha256sum <"$hook"
  echo "image=$image level=$level packages=$pkgs stubs=$stubs"; } | sha256sum | cut -c1-32)
if [[ -s $out && -z $force && "$(cat "$out.recipe" 2>/dev/null)" == "$recipe" ]]; then
  echo "mkrootfs: $out ($image) is up to date ($(du -hL "$out" | cut -f1)); --force rebuilds it"
  exit 0
fi
mkdir -p "$(dirname "$out")"
outdir=$(cd "$(dirname "$out")" && pwd)

# place SRC: OUT (and its stamps) becomes SRC, atomically: a hard link, else a copy, renamed over.
place() {
  local src=$1 t=$outdir/.$(basename "$out").$$
  ln -f "$src" "$t" 2>/dev/null || cp "$src" "$t"
  cp "${src%.tar.zst}.manifest" "$t.manifest" 2>/dev/null || true
  echo "$recipe" >"$t.recipe"
  mv -f "$t" "$out"
  if [[ -f $t.manifest ]]; then mv -f "$t.manifest" "$out.manifest"; else rm -f "$out.manifest"; fi
  mv -f "$t.recipe" "$out.recipe"
}

cache=${SANDBOXD_IMAGE_CACHE:-/var/cache/sandboxd-images}
if [[ -n $usecache ]]; then
  mkdir -p "$cache"
  # One build per recipe at a time: a second build of the same recipe waits for the first
  # and then finds it in the cache.
  exec 9>"$cache/$recipe.lock"
  flock 9
  if [[ -z $force && -s $cache/$recipe.tar.zst ]]; then
    place "$cache/$recipe.tar.zst"
    echo "mkrootfs: $out ($image) from the cache, $cache/$recipe.tar.zst ($(du -h "$out" | cut -f1))"
    exit 0
  fi
fi

"$here/deps.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
for s in $stubs; do
  mkdir -p "$tmp/stub/$s/DEBIAN"
  printf '%s\n' "Package: $s" "Version: 0~sandboxd.stub" "Architecture: all" "Multi-Arch: foreign" \
    "Maintainer: sandboxd <root@localhost>" "Priority: optional" \
    "Description: empty stand-in for $s (sandboxd's mkrootfs.sh, images/$image.packages)" \
    >"$tmp/stub/$s/DEBIAN/control"
  dpkg-deb --root-owner-group -b "$tmp/stub/$s" "$tmp/$s.stub.deb" >/dev/null
  pkgs+=",$tmp/$s.stub.deb"
done
# dpkg under eatmydata (no fsync: the tarball is what is kept), and merged-/usr the debootstrap way (symlinks, then the usr-is-merged package): otherwise
# bookworm's init-system-helpers pulls usrmerge, and with it perl (~50 MB).
# /usr/share/man/man1: update-alternatives (openjdk's postinst) links man pages there, and
# fails if the directory is missing; path-exclude keeps it empty.
hookargs=(--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --essential-hook='mkdir -p "$1"/usr/share/man/man1')
# dpkg inside the chroot must see the stubs' .deb files at the same path: mmdebstrap's hook.
[[ -n $stubs ]] && hookargs+=(--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount)
[[ -n $hook ]] && hookargs+=(--customize-hook="sh $(printf %q "$hook") \"\$1\"")
t0=$SECONDS
# Recommends are not installed (mmdebstrap's default); nor are docs, man pages, locales.
mmdebstrap --variant=minbase --include="$pkgs" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  "${hookargs[@]}" \
  --customize-hook="chroot \"\$1\" dpkg-query -W -f='\${Package} \${Version}\n' >$tmp/manifest" \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  --customize-hook='mkdir -p "$1"/work && chmod 0755 "$1"/work' \
  --customize-hook='printf "sandbox\n" >"$1"/etc/hostname' \
  --customize-hook='printf "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n" >"$1"/etc/hosts' \
  --customize-hook=': >"$1"/etc/resolv.conf' \
  --customize-hook='chmod 0644 "$1"/etc/hostname "$1"/etc/hosts "$1"/etc/resolv.conf' \
  --format=tar bookworm "$tmp/rootfs.tar" ${mirror:-http://deb.debian.org/debian} >&2
zstd -q -T0 -"$level" $( ((level > 19)) && echo --ultra) "$tmp/rootfs.tar" -o "$tmp/out.tar.zst"
if [[ -n $usecache ]]; then
  # Into the cache under a temporary name, then renamed: a reader never sees half a file.
  ct=$cache/.$recipe.$$
  cp "$tmp/manifest" "$ct.manifest" && mv -f "$ct.manifest" "$cache/$recipe.manifest"
  mv "$tmp/out.tar.zst" "$ct" && mv -f "$ct" "$cache/$recipe.tar.zst"
  place "$cache/$recipe.tar.zst"
else
  mv "$tmp/manifest" "${tmp}/out.manifest"
  place "$tmp/out.tar.zst"
fi
echo "mkrootfs: wrote $out ($image, $(du -h "$out" | cut -f1), $((SECONDS - t0)) s)"
