#!/usr/bin/env bash
# vmtest.sh: run a command as root in a throwaway VM with a pure cgroup v2 hierarchy, so
# any Linux host (cgroup v1 or hybrid too) can test sandboxd's v2 and systemd paths.
#
#   scripts/vmtest.sh [options] [--] COMMAND [ARG...]     exit status is COMMAND's
#
# The guest boots Debian bookworm's kernel under qemu (KVM where it works, else TCG: slow,
# so build on the host). Its root is the host's /, read-only under a tmpfs overlay: the
# checkout and every host binary are there, and nothing written survives the VM. COMMAND
# runs in the host's current directory, in the cgroup /vmtest.slice/cmd.service, delegated
# as systemd's Delegate=yes does (controllers enabled above it, none inside it).
#
#   --disk SIZE      attach a fresh ext4 virtio disk (a real block device for io.max)
#   --disk-at PATH   where the guest mounts it (default /scratch)
#   --systemd        boot systemd as PID 1; COMMAND runs as a oneshot unit after basic.target
#   --mem SIZE       guest memory (default 3G)     --cpus N   guest CPUs (default: nproc, <= 4)
#   --timeout S      stop the VM after S seconds (default 900; exit 124)
#   --prepare        only install packages and build the kernel cache, then exit
# COMMAND's stdout and stderr come back on stdout (the serial console). Needs root; installs
# qemu-system-x86, busybox-static, cpio, kmod, e2fsprogs (and systemd, dbus for --systemd)
# from Debian's packages. The kernel and initramfs are cached in VMTEST_CACHE
# (default /var/cache/sandboxd-vmtest).
set -euo pipefail

mem=3G cpus=$(nproc) disk= disk_at=/scratch systemd= timeout=900 prepare=
((cpus > 4)) && cpus=4
while (($#)); do
  case $1 in
    --disk) disk=$2; shift 2 ;;
    --disk-at) disk_at=$2; shift 2 ;;
    --systemd) systemd=1; shift ;;
    --mem) mem=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --prepare) prepare=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "vmtest: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[[ -n $prepare || $# -gt 0 ]] || { echo "vmtest: no command (see --help)" >&2; exit 2; }
log() { echo "vmtest: $*" >&2; }
[[ $(id -u) == 0 ]] || { log "needs root (apt-get, and qemu reads all of / for the guest)"; exit 2; }
cache=${VMTEST_CACHE:-/var/cache/sandboxd-vmtest}

pkgs=()
command -v qemu-system-x86_64 >/dev/null || pkgs+=(qemu-system-x86)
[[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1 || pkgs+=(busybox-static) # the initramfs needs a static one
command -v cpio >/dev/null || pkgs+=(cpio)
command -v depmod >/dev/null || pkgs+=(kmod)
command -v mkfs.ext4 >/dev/null || pkgs+=(e2fsprogs)
[[ -z $systemd || -x /lib/systemd/systemd ]] || pkgs+=(systemd dbus)
if ((${#pkgs[@]})); then
  log "installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

# The kernel: Debian's linux-image-amd64 of the host's release, unpacked once; a busybox
# initramfs loads the drivers, mounts the host's / over 9p under a tmpfs overlay and
# hands over to /vmtest/boot (written per run below).
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [[ ! -s $cache/initrd.cpio.gz ]]; then
  log "preparing the kernel and initramfs in $cache"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }
  pkg=$(kpkg) || true
  [[ -n $pkg ]] || { apt-get update -qq >/dev/null; pkg=$(kpkg); }
  # Stale package lists name a kernel the mirror no longer has: update and ask again.
  (cd "$work" && apt-get download "$pkg" >/dev/null 2>&1) ||
    { apt-get update -qq >/dev/null; pkg=$(kpkg); (cd "$work" && apt-get download "$pkg" >/dev/null); }
  dpkg -x "$work/$pkg"_*.deb "$work/k"
  kver=${pkg#linux-image-}
  depmod -b "$work/k" "$kver"
  ir=$work/ir
  mkdir -p "$ir"/{bin,dev,proc,sys,host,rw,root,modules}
  cp /bin/busybox "$ir/bin/"
  for a in $(/bin/busybox --list); do [[ -e $ir/bin/$a ]] || ln -s busybox "$ir/bin/$a"; done
  for m in virtio_pci 9pnet_virtio 9p overlay virtio_blk ext4 crc32c_generic; do
    modprobe -d "$work/k" -S "$kver" --show-depends "$m"
  done | awk '$1=="insmod" && !seen[$2]++ {print $2}' | while read -r ko; do
    cp "$ko" "$ir/modules/"
    basename "$ko" >>"$ir/modules/order"
  done
  cat >"$ir/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
while read -r m; do insmod /modules/$m 2>/dev/null; done </modules/order
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /host
mount -t tmpfs -o mode=755 rw /rw; mkdir -p /rw/up /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/up,workdir=/rw/work root /root ||
  { echo "vmtest: no overlay root"; echo o >/proc/sysrq-trigger; }
mkdir -p /root/vmtest
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 vmtestctl /root/vmtest
umount /proc /sys; mount --move /dev /root/dev
exec switch_root /root /bin/sh /vmtest/boot
INIT
  chmod +x "$ir/init"
  cp "$work/k/boot/vmlinuz-$kver" "$cache/vmlinuz"
  (cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) >"$cache/initrd.cpio.gz.tmp"
  mv "$cache/initrd.cpio.gz.tmp" "$cache/initrd.cpio.gz"
fi
flock -u 9
[[ -n $prepare ]] && { log "ready: $cache"; exit 0; }

ctl=$(mktemp -d)
trap 'rm -rf "$ctl"' EXIT
printf '%q ' "$@" >"$ctl/cmd"
guest_path=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# PID 1 in the overlay root. Without --systemd it builds the v2 hierarchy itself.
cat >"$ctl/boot" <<BOOT
rm -f /.dockerenv /run/.containerenv   # the guest is a VM, whatever the host is
export HOME=/root PATH=$guest_path TERM=dumb
mount -t proc proc /proc
if [ -n "$disk" ]; then mkdir -p $disk_at; mount /dev/vda $disk_at; fi
[ -n "$systemd" ] && { umount /proc; exec /bin/sh /vmtest/boot-systemd; }
mount -t sysfs sys /sys
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
ip link set lo up 2>/dev/null || busybox ip link set lo up
hostname vmtest
cg=/sys/fs/cgroup
for c in \$(cat \$cg/cgroup.controllers); do echo +\$c >\$cg/cgroup.subtree_control; done
mkdir -p \$cg/vmtest.slice/cmd.service
for c in \$(cat \$cg/vmtest.slice/cgroup.controllers); do echo +\$c >\$cg/vmtest.slice/cgroup.subtree_control; done
echo \$\$ >\$cg/vmtest.slice/cmd.service/cgroup.procs
cd $(printf %q "$PWD")
echo "vmtest: kernel \$(uname -r), cgroup2 controllers: \$(cat \$cg/cgroup.subtree_control)"
( eval "\$(cat /vmtest/cmd)" ) </dev/null
echo \$? >/vmtest/rc
sync; echo o >/proc/sysrq-trigger; sleep 10
BOOT
# With --systemd: COMMAND is a oneshot unit (in a delegated cgroup) that powers off after.
cat >"$ctl/boot-systemd" <<BOOT
mkdir -p /etc/systemd/system
cat >/etc/systemd/system/vmtest.service <<UNIT
[Unit]
Wants=basic.target
After=basic.target
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
Delegate=yes
WorkingDirectory=$(printf %q "$PWD")
Environment=HOME=/root PATH=$guest_path TERM=dumb
ExecStart=/bin/sh -c '(eval "\\\$(cat /vmtest/cmd)") </dev/null; echo \\\$? >/vmtest/rc; sync'
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
UNIT
for u in getty.target serial-getty@ttyS0.service console-getty.service systemd-firstboot.service \
         systemd-remount-fs.service systemd-tmpfiles-setup.service apt-daily.timer apt-daily-upgrade.timer man-db.timer \
         e2scrub_all.timer dpkg-db-backup.timer systemd-tmpfiles-clean.timer; do
  ln -sf /dev/null /etc/systemd/system/\$u
done
[ -s /etc/machine-id ] || : >/etc/machine-id
exec /lib/systemd/systemd --unit=vmtest.service
BOOT

accel=(-accel tcg,thread=multi -cpu max)
if [[ -w /dev/kvm ]] && qemu-system-x86_64 -accel kvm -machine q35 -display none -monitor none \
  -serial none -kernel /dev/null </dev/null 2>&1 | grep -qv 'failed to initialize kvm'; then
  accel=(-accel kvm -cpu host)
fi
drive=()
if [[ -n $disk ]]; then
  truncate -s "$disk" "$ctl/disk.img"
  mkfs.ext4 -q -F "$ctl/disk.img"
  drive=(-drive "file=$ctl/disk.img,format=raw,if=virtio,cache=unsafe")
fi
set +e
timeout --foreground -k 5 "$timeout" qemu-system-x86_64 "${accel[@]}" -machine q35 -smp "$cpus" -m "$mem" \
  -display none -monitor none -serial stdio -no-reboot \
  -kernel "$cache/vmlinuz" -initrd "$cache/initrd.cpio.gz" \
  -append "console=ttyS0 panic=-1 rdinit=/init quiet loglevel=0 systemd.show_status=false" \
  -fsdev local,id=hr,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=hr,mount_tag=hostroot \
  -fsdev local,id=ct,path="$ctl",security_model=none -device virtio-9p-pci,fsdev=ct,mount_tag=vmtestctl \
  "${drive[@]}" </dev/null | tr -d '\r' | sed -u '/sysrq: Power Off/d'
qrc=${PIPESTATUS[0]}
set -e
((qrc != 124)) || { log "timed out after ${timeout}s"; exit 124; }
[[ -s $ctl/rc ]] || { log "the VM stopped without COMMAND's exit status (qemu exit $qrc)"; exit 125; }
exit "$(cat "$ctl/rc")"
