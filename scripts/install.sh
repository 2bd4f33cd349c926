#!/bin/sh
# Install sandboxd as a systemd service, idempotently: run it again after a rebuild to
# upgrade. Build first (make build rootfs), then, as root:
#
#   scripts/install.sh                   # then: systemctl enable --now sandboxd
#
# It installs
#   $PREFIX/bin/sandboxd, $PREFIX/bin/sandboxctl        (PREFIX=/usr/local)
#   $PREFIX/share/sandboxd/rootfs.tar.zst               the python image, the default runtime's
#   $PREFIX/share/sandboxd/images/<image>.tar.zst       the other runtimes' images in $IMAGES_DIR
#                                                       (build/images; IMAGES_DIR= installs none)
#   $PREFIX/share/doc/sandboxd/README.md
#   /etc/systemd/system/sandboxd.service, sandboxd.socket
#   /etc/sandboxd/config.toml                           only if there is none yet
# creates the group sandboxd (members may use the socket), checks the configuration
# with the new binary, and reloads systemd if it runs. A running daemon keeps running
# the old binary until `systemctl restart sandboxd`. DESTDIR=/some/dir stages the files
# there instead and touches nothing else on the host (packaging, tests).
set -eu

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BIN_DIR=${BIN_DIR:-bin}
ROOTFS=${ROOTFS:-build/rootfs.tar.zst}
IMAGES_DIR=${IMAGES_DIR-build/images}
UNIT_DIR=/etc/systemd/system
CONF=/etc/sandboxd/config.toml

cd "$(dirname "$0")/.."
die() { echo "install.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || [ -n "$DESTDIR" ] || die "run as root"
for f in "$BIN_DIR/sandboxd" "$BIN_DIR/sandboxctl" "$ROOTFS"; do
	[ -f "$f" ] || die "$f is missing: run make build rootfs first"
done

put() { # mode src dst
	if cmp -s "$2" "$DESTDIR$3"; then
		chmod "$1" "$DESTDIR$3"
		echo "unchanged $3"
	else
		install -D -m "$1" "$2" "$DESTDIR$3"
		echo "installed $3"
	fi
}
# The unit files and config name /usr/local; follow PREFIX.
put_edited() { # mode src dst
	tmp=$(mktemp)
	sed "s|/usr/local|$PREFIX|g" "$2" >"$tmp"
	put "$1" "$tmp" "$3"
	rm -f "$tmp"
}

put 0755 "$BIN_DIR/sandboxd" "$PREFIX/bin/sandboxd"
put 0755 "$BIN_DIR/sandboxctl" "$PREFIX/bin/sandboxctl"
put 0644 "$ROOTFS" "$PREFIX/share/sandboxd/rootfs.tar.zst"
if [ -n "$IMAGES_DIR" ] && [ -d "$IMAGES_DIR" ]; then
	for img in "$IMAGES_DIR"/*.tar.zst; do
		[ -f "$img" ] || continue
		case $(basename "$img") in python.tar.zst) continue ;; esac # the rootfs
		put 0644 "$img" "$PREFIX/share/sandboxd/images/$(basename "$img")"
	done
fi
put 0644 README.md "$PREFIX/share/doc/sandboxd/README.md"
put_edited 0644 scripts/sandboxd.service "$UNIT_DIR/sandboxd.service"
put_edited 0644 scripts/sandboxd.socket "$UNIT_DIR/sandboxd.socket"
if [ -e "$DESTDIR$CONF" ]; then
	echo "kept $CONF (the example is $PREFIX/share/doc/sandboxd/config.toml)"
else
	put_edited 0644 scripts/config.toml "$CONF"
fi
put_edited 0644 scripts/config.toml "$PREFIX/share/doc/sandboxd/config.toml"

[ -z "$DESTDIR" ] || exit 0

if ! getent group sandboxd >/dev/null; then
	groupadd --system sandboxd
	echo "created group sandboxd: add the users who may run jobs (usermod -aG sandboxd NAME)"
fi
"$PREFIX/bin/sandboxd" --config "$CONF" --check-config >/dev/null ||
	die "$CONF does not validate (see above); fix it, then run install.sh again"
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	echo "systemd reloaded. Start it:  systemctl enable --now sandboxd"
	echo "                         or: systemctl enable --now sandboxd.socket"
else
	echo "systemd is not running here: start $PREFIX/bin/sandboxd --config $CONF yourself"
fi
