#!/usr/bin/env bash
# gpu-smoke.sh — the real-GPU check (run as root on a host with an NVIDIA GPU and driver).
#
#   scripts/gpu-smoke.sh [SANDBOXD_BIN] [ROOTFS_TARBALL]
#
# Starts sandboxd on a loopback port and checks, through the API, what /work/shared GPU.md
# lists: a job granted one UUID sees exactly it (nvidia-smi -L, env, /dev nodes), cuInit
# works through libcuda, an ungranted node cannot be opened or mknod-ed, driver files are
# read-only, two concurrent jobs get disjoint GPUs, an unmeetable request fails at once.
# Prints PASS/FAIL per check; exits non-zero if any failed.
set -uo pipefail
bin=${1:-bin/sandboxd}; rootfs=${2:-build/rootfs.tar.zst}
port=${PORT:-18777}; url=http://127.0.0.1:$port
work=$(mktemp -d); fails=0
cleanup() { [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
check() { if eval "$2"; then echo "PASS $1"; else echo "FAIL $1"; fails=$((fails+1)); fi; }
job() { curl -s -m 120 "$url/v1/execute" -d "$1"; }
py() { python3 -c 'import json,sys; print(json.dumps({"code": sys.stdin.read(), "limits": json.loads(sys.argv[1])}))' "$1"; }

echo "host: $(nvidia-smi -L 2>&1 | head -4)"
"$bin" --rootfs "$rootfs" --state-dir "$work/state" --run-dir "$work/run" --listen "127.0.0.1:$port" >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.2; done
gpus=$(curl -s "$url/v1/gpus"); echo "GET /v1/gpus: $gpus"
n=$(python3 -c 'import json,sys; print(len(json.load(sys.stdin)["gpus"]))' <<<"$gpus")
uuid=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["gpus"][0]["uuid"])' <<<"$gpus" 2>/dev/null)
check "daemon lists the host's GPUs ($n)" '[[ $n -ge 1 ]] && nvidia-smi -L | grep -q "$uuid"'

code=$(cat <<'PY'
import ctypes, glob, os, subprocess
print("SMI", subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip())
print("ENV", os.environ.get("NVIDIA_VISIBLE_DEVICES"), os.environ.get("CUDA_VISIBLE_DEVICES"))
print("DEV", sorted(glob.glob("/dev/nvidia[0-9]*")))
cuda = ctypes.CDLL("libcuda.so.1")
n = ctypes.c_int()
print("CU", cuda.cuInit(0), cuda.cuDeviceGetCount(ctypes.byref(n)), n.value)
ctx, dev, ptr = ctypes.c_void_p(), ctypes.c_int(), ctypes.c_void_p()
cuda.cuDeviceGet(ctypes.byref(dev), 0)
print("CTX", cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev), cuda.cuMemAlloc_v2(ctypes.byref(ptr), 1 << 20), cuda.cuMemFree_v2(ptr))
try:
    os.open("/dev/nvidia255", os.O_RDWR); print("OTHER opened")
except OSError as e:
    print("OTHER", e.errno)
try:
    os.mknod("/tmp/nv", 0o666 | 0o020000, os.makedev(195, 254)); print("MKNOD ok")
except OSError as e:
    print("MKNOD", e.errno)
try:
    open("/usr/local/nvidia/lib64/libcuda.so.1", "ab"); print("LIBRW yes")
except OSError as e:
    print("LIBRW", e.errno)
print("PARAMS", open("/proc/driver/nvidia/params").read().count("ModifyDeviceFiles: 0"))
PY
)
out=$(job "$(py '{"gpus": ["'"$uuid"'"], "timeout": 60, "memory": "2GB"}' <<<"$code")")
echo "job: $out"
stdout=$(python3 -c 'import json,sys; r=json.load(sys.stdin); print(r.get("stdout","")); print(r.get("stderr",""))' <<<"$out")
check "nvidia-smi -L in the job shows exactly the granted UUID" '[[ $(grep -c "^SMI\|^GPU " <<<"$stdout") -ge 1 && $(grep -o "GPU-[0-9a-f-]*" <<<"$(grep -A8 ^SMI <<<"$stdout" | grep -v ^ENV)" | sort -u) == "$uuid" ]]'
check "NVIDIA_VISIBLE_DEVICES=uuid, CUDA_VISIBLE_DEVICES=0" 'grep -q "^ENV $uuid 0$" <<<"$stdout"'
check "one /dev/nvidiaN node" '[[ $(grep ^DEV <<<"$stdout" | grep -o "/dev/nvidia[0-9]*" | wc -l) == 1 ]]'
check "cuInit, one device, alloc/free through libcuda" 'grep -q "^CU 0 0 1$" <<<"$stdout" && grep -q "^CTX 0 0 0$" <<<"$stdout"'
check "an ungranted node cannot be opened" 'grep -Eq "^OTHER (1|2|13)$" <<<"$stdout"'
check "mknod of a GPU node fails with EPERM" 'grep -q "^MKNOD 1$" <<<"$stdout"'
check "driver libraries are read-only" 'grep -q "^LIBRW 30$" <<<"$stdout"'
check "ModifyDeviceFiles: 0" 'grep -q "^PARAMS 1$" <<<"$stdout"'

if ((n >= 2)); then
  sleep_job=$(py '{"gpus": 1, "timeout": 30}' <<<'import os, time; print(os.environ["NVIDIA_VISIBLE_DEVICES"]); time.sleep(2)')
  job "$sleep_job" >"$work/a" & job "$sleep_job" >"$work/b"
  wait %1
  a=$(cat "$work/a"); b=$(cat "$work/b")
  check "two concurrent jobs get disjoint GPUs" '[[ -n $a && -n $b && $(python3 -c "import json,sys; print(json.loads(sys.argv[1])[\"gpus\"] != json.loads(sys.argv[2])[\"gpus\"])" "$a" "$b") == True ]]'
fi
over=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/execute" -d '{"code": "1", "limits": {"gpus": '$((n+1))'}}')
check "count above the host's GPUs fails at once with 400" '[[ $over == 400 ]]'
echo "daemon log:"; tail -5 "$work/log"
echo "$((fails)) failed"
exit $((fails > 0))
