#!/usr/bin/env bash
# Stage 2 of `make test-vm`, run by scripts/vmtest.sh --systemd: systemd is PID 1 of a
# cgroup v2 VM and the state directory (/var/lib/sandboxd) is an ext4 disk. Installs
# sandboxd with scripts/install.sh from bin/ and build/rootfs.tar.zst, then drives the
# shipped unit, socket and config as an operator would. Exit status: the failures.
set -uo pipefail
sock=/run/sandboxd/sandboxd.sock
fails=0
t0=$SECONDS
step() { echo "--- $* ($((SECONDS - t0)) s)"; }
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# api PATH JSON: POST over the unix socket, the answer on stdout.
api() { curl -sS --max-time 120 --unix-socket "$sock" "http://sandboxd$1" -d "$2"; }
unitcg() { echo "/sys/fs/cgroup$(systemctl show -P ControlGroup sandboxd)"; }
journal() { journalctl -q -u sandboxd -o cat --no-pager; }
finish() {
  echo "--- journal of sandboxd"
  journal | tail -40
  echo "systemd stage: $fails failure(s) in $((SECONDS - t0)) s"
  exit $((fails > 0))
}

step "install.sh"
# The python image only: the other runtimes' images are tested on the host
# (tests/runtimes); unpacking them all under emulation would take most of the stage.
if ! IMAGES_DIR= scripts/install.sh; then fail "scripts/install.sh"; finish; fi

step "systemctl start sandboxd: activating until READY=1, then active and serving"
systemctl start --no-block sandboxd
seen=
for _ in $(seq 1200); do
  st=$(systemctl show -P ActiveState sandboxd)
  case $st in
    activating) seen=1 ;;
    active) break ;;
    failed) break ;;
  esac
  sleep 0.1
done
# The first start unpacks the rootfs; the unit must stay "activating" until the daemon
# says READY=1, and serve at once when systemd calls it active.
if [[ $st == active ]] && curl -sSf --max-time 5 --unix-socket "$sock" http://sandboxd/healthz >/dev/null; then
  ok "active and serving"
else
  fail "state $st, or not serving when active"; finish
fi
[[ -n $seen ]] && ok "was activating before READY=1" || fail "never seen activating (Type=notify?)"

step "sandboxctl status"
status=$(sandboxctl status)
echo "$status"
grep -Eq '^cgroup: +v2$' <<<"$status" && ok "cgroup v2" || fail "sandboxctl status does not say cgroup v2"
cg=$(unitcg)
[[ $(sed -n 's/^0:://p' "/proc/$(systemctl show -P MainPID sandboxd)/cgroup") == "${cg#/sys/fs/cgroup}/supervisor" ]] &&
  ok "daemon in $cg/supervisor" || fail "daemon not in the supervisor leaf of $cg"

step "/readyz: ready once the pools have filled, under systemd and cgroup v2"
for _ in $(seq 600); do
  ready=$(curl -s --max-time 5 http://127.0.0.1:8000/readyz)
  [[ $(jq -r .status <<<"$ready" 2>/dev/null) == ready ]] && break
  sleep 0.1
done
[[ $(jq -r .status <<<"$ready" 2>/dev/null) == ready ]] && ok "/readyz on TCP without a token: $ready" || fail "/readyz never ready: $ready"

step "the seeds' examples"
want='{"output":"Hello, World!\n"}'
req='{"task_type": "execute_code", "code": "print('"'"'Hello, World!'"'"')", "resources": {"cpu": "2", "gpu": "0", "ram": "512MB", "storage": "1GB"}}'
for url in "--unix-socket $sock http://sandboxd" "http://127.0.0.1:8000"; do
  got=$(curl -sS --max-time 60 -X POST $url/execute -H 'Content-Type: application/json' -d "$req")
  [[ $got == "$want" ]] && ok "/execute via ${url%% *}" || fail "/execute via $url: $got"
  got=$(curl -sS --max-time 60 -X POST $url/submit_code -H 'Content-Type: application/json' -d '{"code": "print(\"Hello from FastAPI!\")"}')
  [[ $got == '{"status":"success","output":"Hello from FastAPI!\n","error":"","return_code":0,"timeout":false}' ]] &&
    ok "/submit_code via ${url%% *}" || fail "/submit_code via $url: $got"
done
res=$(api /v1/execute '{"code": "import sys; print(sys.stdin.read().upper())", "stdin": "hi", "limits": {"memory": "64MB", "timeout": 2}}')
[[ $(jq -r '.status + " " + .stdout' <<<"$res") == "ok HI" ]] && ok "/v1/execute" || fail "/v1/execute: $res"
id=$(jq -r .id <<<"$res")
grep -q "job done.*job=$id" <<<"$(journal)" && ok "journalctl -u sandboxd has the job's log line" ||
  fail "no 'job done' line for $id in the journal"

step "systemctl reload applies a changed default"
pid=$(systemctl show -P MainPID sandboxd)
sed -i 's/^\[limits.default\]$/&\ntimeout = "7s"/' /etc/sandboxd/config.toml
systemctl reload sandboxd || fail "systemctl reload"
for _ in $(seq 50); do
  ms=$(api /v1/execute '{"code": "pass"}' | jq -r .limits.timeout_ms)
  [[ $ms == 7000 ]] && break
  sleep 0.2
done
[[ $ms == 7000 ]] && ok "default timeout 7 s after reload" || fail "default timeout_ms $ms after reload, want 7000"
[[ $(systemctl show -P MainPID sandboxd) == "$pid" ]] || fail "reload restarted the daemon"

step "systemctl stop while a job runs: the job's result reaches its client"
api /v1/execute '{"code": "import time; time.sleep(3); print(\"finished\")", "limits": {"timeout": 8}}' >/tmp/stopjob &
client=$!
# grep -q on a here-string, not a pipe: with pipefail, sandboxctl writing its second
# table after grep has quit (SIGPIPE) would fail a pipeline that matched.
for _ in $(seq 600); do grep -q 'timeout=8s' <<<"$(sandboxctl jobs 2>/dev/null)" && break; sleep 0.1; done
systemctl stop sandboxd
wait $client
res=$(cat /tmp/stopjob)
[[ $(jq -r '.status + " " + .stdout' <<<"$res" 2>/dev/null) == "ok finished" ]] &&
  ok "result before exit: $(jq -c '{status, stdout}' <<<"$res")" || fail "job during stop got: $res"
[[ $(systemctl show -P ActiveState sandboxd) == inactive ]] && ok "stopped cleanly" ||
  fail "after stop: $(systemctl show -P ActiveState,Result sandboxd)"

step "socket activation"
systemctl start sandboxd.socket
[[ $(systemctl show -P ActiveState sandboxd) == inactive ]] || fail "service started with the socket"
res=$(api /v1/execute '{"code": "print(6*7)"}')
[[ $(jq -r .stdout <<<"$res") == 42 ]] && ok "first connection started it and got its answer" || fail "via activation: $res"
[[ $(systemctl show -P ActiveState sandboxd) == active ]] || fail "service not active after a connection"

step "systemctl kill -s KILL mid-job, then restart: nothing stale, jobs run again"
# Under emulation a daemon just started by its socket also warms its pools (an IPython
# kernel among them), so the job may take a while to reach the engine.
# Look for this job by its own timeout: the last step's job can still be listed while
# its container is cleaned up after its answer went out.
api /v1/execute '{"code": "import time; time.sleep(60)", "limits": {"timeout": 90}}' >/dev/null 2>&1 &
for _ in $(seq 600); do grep -q 'timeout=1m30s' <<<"$(sandboxctl jobs 2>/dev/null)" && break; sleep 0.1; done
grep -q 'timeout=1m30s' <<<"$(sandboxctl jobs 2>&1)" || fail "the job to kill never ran: $(sandboxctl jobs 2>&1)"
# What the killed daemon had: the running job and its warm containers.
old=$(ls /run/sandboxd/containers /run/sandboxd/jobs | grep -o 'sbx-[0-9a-f]*' | sort -u)
echo "containers at the kill: $(echo $old)"
systemctl kill -s KILL sandboxd
wait
systemctl restart sandboxd || fail "restart after SIGKILL"
cg=$(unitcg)
pid=$(systemctl show -P MainPID sandboxd)
left=
for id in $old; do
  left+=$(find "$cg" -name "$id"; ls -d /run/sandboxd/containers/$id /run/sandboxd/jobs/$id* 2>/dev/null
    grep -h "$id" /proc/self/mountinfo "/proc/$pid/mountinfo")
done
res=$(api /v1/execute '{"code": "print(\"again\")"}')
[[ $(jq -r .stdout <<<"$res") == again ]] && ok "jobs run again" || fail "after restart: $res"
[[ -n $old && -z $left ]] && ok "nothing left of $(wc -w <<<"$old") killed containers" ||
  fail "stale after SIGKILL and restart:"$'\n'"$left"
[[ -z $(find "$cg" -mindepth 1 -maxdepth 1 -type d ! -name supervisor ! -name sandboxd-jobs) ]] ||
  fail "unexpected cgroups below $cg: $(find "$cg" -mindepth 1 -type d)"
finish
