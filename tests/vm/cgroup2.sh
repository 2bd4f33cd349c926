#!/usr/bin/env bash
# Stage 1 of `make test-vm`, run by scripts/vmtest.sh in a VM with a pure cgroup v2
# hierarchy and an ext4 disk at /scratch:
#
#   tests/vm/cgroup2.sh DIR PKG...     DIR holds PKG's test binary as DIR/<PKG, / as _>.test
#
# Each package's real-job suite runs alone in a cgroup delegated as systemd's Delegate=yes
# leaves a service (its engines move into a supervisor leaf and put jobs in siblings), with
# the rootfs store and run directories on the disk, so io.max has a device to throttle.
# After each suite: nothing below that cgroup but the empty leaf, no mount on the disk and
# no run directory left (the rootfs stores in SANDBOXD_TEST_STATE are caches). The v2-only
# checks are sandbox/v2_test.go; they must run, not skip.
set -uo pipefail
dir=$(realpath "$1")
shift
export SANDBOXD_ROOTFS=$PWD/build/rootfs.tar.zst SANDBOXD_BIN=$PWD/bin/sandboxd
export SANDBOXD_TEST_STATE=/scratch/state TMPDIR=/scratch/tmp
mkdir -p "$SANDBOXD_TEST_STATE" "$TMPDIR"

# This script (and the shells that started it) leave its delegated cgroup for a leaf, so it
# can hand each suite a sibling cgroup of its own with every controller jobs use.
own=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)
mkdir "$own/stage"
for p in $(cat "$own/cgroup.procs"); do echo "$p" >"$own/stage/cgroup.procs" 2>/dev/null; done
echo "+cpu +memory +pids +io" >"$own/cgroup.subtree_control" || exit 1

# What cannot pass here, per package. Under TCG emulation (no KVM) a job's start (runc
# init, then Python) takes ~0.5 s of CPU on 2 vCPUs at once, which breaks assertions about
# start-up cost and makes a busy job's 10 s of CPU come before its 10 s wall clock (the v2
# tests measure cpu.max inside the job instead). TestUnderSystemd (and TestJobsSurviveSIGKILL, TestClosedLogStreamDoesNotKill) start sandboxd in the
# test's own cgroup, which v2 forbids (the daemon rightly refuses); stage 2 runs the real
# systemd instead.
tcg=$(grep -q 'QEMU TCG' /proc/cpuinfo && echo 1)
# The attack suite skips its timing-bound cases itself, by name in the log, when told so.
[[ -n $tcg ]] && export SANDBOXD_TEST_SLOW_CPU=1
skips() {
  case $1 in
    sandbox) [[ -n $tcg ]] && echo '^TestLimitsAndFigures$/^(cpu_time_is_summed_over_processes|sleeping_is_not_charged_cpu|cpus_quota_throttles)$' ;;
    server) [[ -n $tcg ]] && echo '^TestSeedExamples$/^submit_code_timeout$' ;;
    cmd/sandboxd) echo '^(TestUnderSystemd|TestJobsSurviveSIGKILL|TestClosedLogStreamDoesNotKill)$' ;;
  esac
}

# As make test does, the engine and API suites run a second time on warm containers, whose
# limits are set on the running container's cgroup (libcontainer's Set on v2).
runs=("$@")
for pkg in "$@"; do [[ $pkg == sandbox || $pkg == server ]] && runs+=("$pkg pool"); done

fail=0
t00=$SECONDS
for run in "${runs[@]}"; do
  pkg=${run% pool}
  pool=$([[ $run == *" pool" ]] && echo 2)
  bin=$dir/${pkg//\//_}.test
  cg=$own/${pkg//\//_}${pool:+-pool}.service
  mkdir "$cg"
  skip=$(skips "$pkg")
  echo "=== suite $run${skip:+ (skipping $skip)}"
  t0=$SECONDS
  (cd "$pkg" && SANDBOXD_TEST_POOL=$pool sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" \
    "$bin" -test.v -test.count=1 -test.timeout=15m ${skip:+-test.skip="$skip"}) 2>&1 |
    grep -v '^=== \(RUN\|PAUSE\|CONT\|NAME\)' | tee /tmp/suite.log
  rc=${PIPESTATUS[0]}
  echo "=== suite $run: exit $rc in $((SECONDS - t0)) s"
  ((rc == 0)) || fail=1
  if grep -E -- '--- SKIP: (TestV2|TestIOReadThrottle)' /tmp/suite.log; then
    echo "cgroup2: FAIL: a v2 check skipped in a v2 VM"
    fail=1
  fi
  left=$(find "$cg" -mindepth 1 -type d ! -path "$cg/supervisor"; cat "$cg/supervisor/cgroup.procs" 2>/dev/null
    awk '$5 ~ "^/scratch/" {print "mount " $5}' /proc/self/mountinfo
    find "$TMPDIR" -mindepth 1 -maxdepth 1)
  if [[ -n $left ]]; then
    echo "cgroup2: FAIL: $run left behind:"$'\n'"$left"
    fail=1
  fi
  rmdir "$cg/supervisor" "$cg" 2>/dev/null
done
echo "cgroup2 stage: $( ((fail)) && echo FAIL || echo PASS) in $((SECONDS - t00)) s"
exit $fail
