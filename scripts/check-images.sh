#!/usr/bin/env bash
# check-images.sh — runs every runtime of runtimes/*.toml for real on its image, without
# the daemon: each step in a chroot of the unpacked image, as uid 1000, read-only root,
# /work (HOME) and /tmp on tmpfs, no network (own net namespace), own pid namespace, the
# runtime's limits as cgroup memory/pids limits (v1 or v2, where the host has them) and
# rlimits. Placeholders of the compile and run templates are substituted as the daemon does.
#
#   scripts/check-images.sh [--images DIR] [--keep] [RUNTIME...]     default: every runtime
#
# Per runtime: hello world, stdin, args, an exit code, a compile error (compiled runtimes),
# multi-file programs; python: numpy, pandas, scipy, a matplotlib PNG saved to /work,
# ipykernel. The compile step's /work/.out is handed to the run step read-only, in a fresh
# container, as the daemon does. Prints each case and the cold hello-world times; exits
# non-zero if any case fails. Needs root; images from `make rootfs RUNTIMES=all` (DIR,
# default build/images).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ $(id -u) == 0 ]] || { echo "check-images: needs root (chroot, mounts, cgroups)" >&2; exit 2; }
"$here/deps.sh" # zstd
export CHECK_ROOT=$(dirname "$here")
exec python3 - "$@" <<'PY'
import base64, glob, os, re, shutil, subprocess, sys, tempfile, time, tomllib, resource

root_dir = os.environ["CHECK_ROOT"]
args = sys.argv[1:]
images_dir = os.path.join(root_dir, "build/images")
keep = False
only = []
while args:
    a = args.pop(0)
    if a == "--images":
        images_dir = args.pop(0)
    elif a == "--keep":
        keep = True
    elif a.startswith("-"):
        sys.exit(f"check-images: unknown option {a}")
    else:
        only.append(a)

# The daemon's defaults (README, Limits), and what this check assumes for compile steps.
RUN_DEFAULTS = dict(memory="512MB", storage="64MB", pids=64, timeout="10s", open_files=1024,
                    file_size="64MB", stack="8MB")
COMPILE_DEFAULTS = dict(memory="1GB", storage="256MB", pids=256, timeout="30s", open_files=1024,
                        file_size="256MB", stack="8MB")
FIXED_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/work",
             "LANG=C.UTF-8", "TMPDIR=/tmp"]

def size(v):
    if isinstance(v, int):
        return v
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)", str(v).strip().lower())
    if not m:
        raise ValueError(f"bad size {v!r}")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))

def duration(v):
    if isinstance(v, (int, float)):
        return float(v)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", str(v).strip())
    if not m:
        raise ValueError(f"bad duration {v!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]

# --- the programs -------------------------------------------------------------------------
# Each case: files (name -> text; the first is the main file), stdin, args, and what to
# expect: "out" (exact stdout), "exit" (run's exit code), "compile_fail" (compile must fail).
HELLO = "Hello, World!\n"
P = {
 "python": {
  "hello": 'print("Hello, World!")\n',
  "stdin": 'import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))\n',
  "args": 'import sys\nprint(",".join(sys.argv[1:]))\n',
  "exit": 'import sys\nsys.exit(3)\n',
  "multi": {"main.py": "from lib.util import twice\nprint(twice(21))\n", "lib/util.py": "def twice(x):\n    return 2 * x\n"},
 },
 "bash": {
  "hello": 'echo "Hello, World!"\n',
  "stdin": 's=0; for x in $(cat); do s=$((s + x)); done; echo $s\n',
  "args": 'IFS=,; echo "$*"\n',
  "exit": 'exit 3\n',
 },
 "javascript": {
  "hello": 'console.log("Hello, World!");\n',
  "stdin": 'const s = require("fs").readFileSync(0, "utf8");\nconsole.log(s.split(/\\s+/).filter(Boolean).map(Number).reduce((a, b) => a + b, 0));\n',
  "args": 'console.log(process.argv.slice(2).join(","));\n',
  "exit": 'process.exit(3);\n',
  "multi": {"main.js": 'const { twice } = require("./lib/util");\nconsole.log(twice(21));\n', "lib/util.js": "exports.twice = (x) => 2 * x;\n"},
 },
 "typescript": {
  "hello": 'const greeting: string = "Hello, World!";\nconsole.log(greeting);\n',
  "stdin": 'import * as fs from "fs";\nconst s: string = fs.readFileSync(0, "utf8");\nconsole.log(s.split(/\\s+/).filter(Boolean).map(Number).reduce((a: number, b: number) => a + b, 0));\n',
  "args": 'console.log(process.argv.slice(2).join(","));\n',
  "exit": 'if (require.main === module) process.exit(3);\n',
  "compile_error": 'const x: number = "not a number";\nconsole.log(x);\n',
  "multi": {"main.ts": 'import { twice } from "./lib/util";\nconsole.log(twice(21));\n', "lib/util.ts": "export function twice(x: number): number { return 2 * x; }\n"},
 },
 "c": {
  "hello": '#include <stdio.h>\nint main(void) { puts("Hello, World!"); return 0; }\n',
  "stdin": '#include <stdio.h>\nint main(void) { long s = 0, x; while (scanf("%ld", &x) == 1) s += x; printf("%ld\\n", s); return 0; }\n',
  "args": '#include <stdio.h>\nint main(int argc, char **argv) { for (int i = 1; i < argc; i++) printf("%s%s", i > 1 ? "," : "", argv[i]); puts(""); return 0; }\n',
  "exit": '#include <math.h>\nint main(void) { return (int)sqrt(9.0); }\n',
  "compile_error": 'int main(void) { return undefined_name; }\n',
  "multi": {"main.c": '#include <stdio.h>\n#include "util.h"\nint main(void) { printf("%d\\n", twice(21)); return 0; }\n', "util.c": '#include "util.h"\nint twice(int x) { return 2 * x; }\n', "util.h": "int twice(int x);\n"},
 },
 "c++": {
  "hello": '#include <iostream>\nint main() { std::cout << "Hello, World!" << std::endl; }\n',
  "stdin": '#include <iostream>\nint main() { long s = 0, x; while (std::cin >> x) s += x; std::cout << s << "\\n"; }\n',
  "args": '#include <iostream>\n#include <vector>\n#include <string>\nint main(int argc, char **argv) { std::vector<std::string> a(argv + 1, argv + argc); for (size_t i = 0; i < a.size(); i++) std::cout << (i ? "," : "") << a[i]; std::cout << "\\n"; }\n',
  "exit": 'int main() { return 3; }\n',
  "compile_error": 'int main() { return undefined_name; }\n',
  "multi": {"main.cpp": '#include <iostream>\n#include "util.hpp"\nint main() { std::cout << twice(21) << "\\n"; }\n', "util.cpp": '#include "util.hpp"\nint twice(int x) { return 2 * x; }\n', "util.hpp": "int twice(int x);\n"},
 },
 "java": {
  "hello": 'public class Main {\n  public static void main(String[] args) {\n    System.out.println("Hello, World!");\n  }\n}\n',
  "stdin": 'import java.util.Scanner;\npublic class Main {\n  public static void main(String[] args) {\n    Scanner in = new Scanner(System.in);\n    long s = 0;\n    while (in.hasNextLong()) s += in.nextLong();\n    System.out.println(s);\n  }\n}\n',
  "args": 'public class Main {\n  public static void main(String[] args) {\n    System.out.println(String.join(",", args));\n  }\n}\n',
  "exit": 'public class Main {\n  public static void main(String[] args) {\n    System.exit(3);\n  }\n}\n',
  "compile_error": 'public class Main {\n  public static void main(String[] args) {\n    int x = "no";\n  }\n}\n',
  "multi": {"Main.java": 'public class Main {\n  public static void main(String[] args) {\n    System.out.println(Util.twice(21));\n  }\n}\n', "Util.java": "class Util {\n  static int twice(int x) { return 2 * x; }\n}\n"},
 },
 "go": {
  "hello": 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("Hello, World!")\n}\n',
  "stdin": 'package main\n\nimport (\n\t"bufio"\n\t"fmt"\n\t"os"\n)\n\nfunc main() {\n\tin := bufio.NewReader(os.Stdin)\n\tvar s, x int64\n\tfor {\n\t\tif _, err := fmt.Fscan(in, &x); err != nil {\n\t\t\tbreak\n\t\t}\n\t\ts += x\n\t}\n\tfmt.Println(s)\n}\n',
  "args": 'package main\n\nimport (\n\t"fmt"\n\t"os"\n\t"strings"\n)\n\nfunc main() {\n\tfmt.Println(strings.Join(os.Args[1:], ","))\n}\n',
  "exit": 'package main\n\nimport "os"\n\nfunc main() {\n\tos.Exit(3)\n}\n',
  "compile_error": 'package main\n\nfunc main() {\n\tvar x int = "no"\n}\n',
  "multi": {"main.go": 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println(twice(21))\n}\n', "util.go": "package main\n\nfunc twice(x int) int { return 2 * x }\n"},
  "net_http": 'package main\n\nimport (\n\t"fmt"\n\t"net/http"\n)\n\nfunc main() {\n\tfmt.Println(http.StatusOK)\n}\n',
 },
 "rust": {
  "hello": 'fn main() {\n    println!("Hello, World!");\n}\n',
  "stdin": 'use std::io::Read;\nfn main() {\n    let mut s = String::new();\n    std::io::stdin().read_to_string(&mut s).unwrap();\n    let t: i64 = s.split_whitespace().map(|x| x.parse::<i64>().unwrap()).sum();\n    println!("{}", t);\n}\n',
  "args": 'fn main() {\n    let a: Vec<String> = std::env::args().skip(1).collect();\n    println!("{}", a.join(","));\n}\n',
  "exit": 'fn main() {\n    std::process::exit(3);\n}\n',
  "compile_error": 'fn main() {\n    let x: i32 = "no";\n}\n',
  "multi": {"main.rs": 'mod util;\nfn main() {\n    println!("{}", util::twice(21));\n}\n', "util.rs": "pub fn twice(x: i32) -> i32 { 2 * x }\n"},
 },
 "ruby": {
  "hello": 'puts "Hello, World!"\n',
  "stdin": 'puts STDIN.read.split.map(&:to_i).sum\n',
  "args": 'puts ARGV.join(",")\n',
  "exit": 'exit 3\n',
  "multi": {"main.rb": 'require_relative "lib/util"\nputs twice(21)\n', "lib/util.rb": "def twice(x) = 2 * x\n"},
 },
}
# The command that prints each runtime's version: the TOML's version must be in its output.
VERSION_CMD = {"python": ["python3", "--version"], "bash": ["bash", "--version"],
  "javascript": ["node", "--version"], "typescript": ["tsc", "--version"],
  "c": ["gcc", "-dumpfullversion"], "c++": ["g++", "-dumpfullversion"],
  "java": ["java", "-XX:+UseSerialGC", "-version"], "go": ["go", "version"],
  "rust": ["rustc", "--version"], "ruby": ["ruby", "--version"]}
PY_SCI = '''import numpy as np, pandas as pd, scipy, scipy.optimize, scipy.stats, PIL
import matplotlib
import matplotlib.pyplot as plt
df = pd.DataFrame({"x": np.arange(10), "y": np.arange(10) ** 2})
assert df["y"].sum() == 285
r = scipy.optimize.minimize_scalar(lambda x: (x - 2) ** 2)
assert abs(r.x - 2) < 1e-6
plt.plot(df["x"], df["y"])
plt.title("sandboxd")
plt.savefig("/work/x.png")
with open("/work/x.png", "rb") as f:
    assert f.read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
print(matplotlib.get_backend(), np.__version__, pd.__version__, scipy.__version__, matplotlib.__version__, PIL.__version__)
'''
PY_KERNEL = '''import ipykernel, IPython, jupyter_client
from ipykernel.kernelapp import IPKernelApp
print("ipykernel", ipykernel.__version__, "IPython", IPython.__version__)
'''
# The font cache is seeded, not rebuilt: matplotlib logs "generated new fontManager" at INFO.
PY_FONTS = '''import logging, os
logging.basicConfig(level=logging.INFO)
import matplotlib.pyplot
print(sorted(os.listdir(os.environ["MPLCONFIGDIR"])))
'''

ISOLATION = '''import os, socket
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    print("network!")
except OSError:
    print("no network")
try:
    open("/usr/x", "w")
    print("writable /usr!")
except OSError:
    print("read-only /usr")
print("uid", os.getuid())
'''

def cases(rt):
    p = P[rt["name"]]
    main = rt["main"]
    ext = os.path.splitext(main)[1]
    def one(src):
        return {main: src} if isinstance(src, str) else src
    cs = [
        ("hello", dict(files=one(p["hello"]), out=HELLO)),
        ("stdin", dict(files=one(p["stdin"]), stdin="1 2 3\n4\n", out="10\n")),
        ("args", dict(files=one(p["args"]), args=["a", "b c", "-x"], out="a,b c,-x\n")),
        ("exit", dict(files=one(p["exit"]), exit=3)),
    ]
    if "compile_error" in p:
        cs.append(("compile_error", dict(files=one(p["compile_error"]), compile_fail=True)))
    if "multi" in p:
        cs.append(("multi_file", dict(files=p["multi"], out="42\n")))
    if "net_http" in p:
        cs.append(("net_http", dict(files=one(p["net_http"]), out="200\n")))
    if rt["name"] == "python":
        cs.append(("numpy_pandas_scipy_matplotlib", dict(files=one(PY_SCI), out_re=r"agg \S+ \S+ \S+ \S+ \S+\n", collect="x.png")))
        cs.append(("ipykernel", dict(files=one(PY_KERNEL), out_re=r"ipykernel \S+ IPython \S+\n")))
        # The harness itself: no network, read-only root, the memory limit.
        cs.append(("harness_isolation", dict(files=one(ISOLATION), out="no network\nread-only /usr\nuid 1000\n")))
        cs.append(("harness_memory_limit", dict(files=one("x = bytearray(1 << 30)\nprint(len(x))\n"), exit=137)))
        cs.append(("matplotlib_font_cache_seeded", dict(files=one(PY_FONTS), out="['fontlist-v330.json']\n", err_not="generated new fontManager")))
    return cs

# --- the container ------------------------------------------------------------------------
INNER = r'''
set -eu
mnt=$1 root=$2 work=$3 outdir=$4 outro=$5 storage=$6 cg=$7; shift 7
mount --make-rprivate /
mount --bind "$root" "$mnt"
mount -o remount,bind,ro "$mnt"
mount -t tmpfs -o size="$storage",mode=0755,uid=1000,gid=1000 work "$mnt/work"
mount -t tmpfs -o size="$storage",mode=1777 tmp "$mnt/tmp"
cp -a "$work/." "$mnt/work/" && chown -R 1000:1000 "$mnt/work"
if [ -n "$outdir" ]; then
  mkdir -p "$mnt/work/.out" && chown 1000:1000 "$mnt/work/.out"
  if [ "$outro" = ro ]; then mount --bind "$outdir" "$mnt/work/.out"; mount -o remount,bind,ro "$mnt/work/.out"
  else mount --bind "$outdir" "$mnt/work/.out"; fi
fi
mount -t proc proc "$mnt/proc"
mount -t tmpfs -o size=1m,mode=0755 dev "$mnt/dev"
for d in null zero full random urandom tty; do touch "$mnt/dev/$d"; mount --bind "/dev/$d" "$mnt/dev/$d"; done
mkdir "$mnt/dev/shm" "$mnt/dev/pts" && mount -t tmpfs -o size="$storage",mode=1777 shm "$mnt/dev/shm"
ln -s /proc/self/fd "$mnt/dev/fd"; ln -s fd/0 "$mnt/dev/stdin"; ln -s fd/1 "$mnt/dev/stdout"; ln -s fd/2 "$mnt/dev/stderr"
for f in $cg; do echo $$ >"$f"; done
# Not exec: when the job is killed by a signal, unshare fails to re-raise it (exit 1), so
# this shell reports 128 + the signal.
set +e
chroot --userspec=1000:1000 --groups=1000 "$mnt" "$@"
rc=$?
exit $rc
'''

class Cgroup:
    """Memory (swap off) and pids limits, v2 or v1, where the host lets us make them."""
    n = 0
    def __init__(self, memory, pids):
        Cgroup.n += 1
        name = f"sandboxd-check-{os.getpid()}-{Cgroup.n}"
        self.dirs, self.procs = [], []
        try:
            if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                ctl = open("/sys/fs/cgroup/cgroup.subtree_control").read().split()
                if "memory" in ctl and "pids" in ctl:
                    d = f"/sys/fs/cgroup/{name}"
                    os.mkdir(d); self.dirs.append(d)
                    self._w(d, "memory.max", memory); self._w(d, "memory.swap.max", 0)
                    self._w(d, "pids.max", pids)
                    self.procs.append(d + "/cgroup.procs")
            elif os.path.isdir("/sys/fs/cgroup/memory") and os.path.isdir("/sys/fs/cgroup/pids"):
                m, p = f"/sys/fs/cgroup/memory/{name}", f"/sys/fs/cgroup/pids/{name}"
                os.mkdir(m); self.dirs.append(m)
                self._w(m, "memory.limit_in_bytes", memory)
                if os.path.exists(m + "/memory.memsw.limit_in_bytes"):
                    self._w(m, "memory.memsw.limit_in_bytes", memory)
                os.mkdir(p); self.dirs.append(p)
                self._w(p, "pids.max", pids)
                self.procs += [m + "/cgroup.procs", p + "/cgroup.procs"]
        except OSError as e:
            print(f"check-images: no cgroup limits ({e}); rlimits only", file=sys.stderr)
            self.close(); self.procs = []
    @staticmethod
    def _w(d, f, v):
        with open(os.path.join(d, f), "w") as fh:
            fh.write(str(v))
    def peak(self):
        for d in self.dirs:
            for f in ("memory.peak", "memory.max_usage_in_bytes"):
                try:
                    return int(open(os.path.join(d, f)).read())
                except OSError:
                    pass
        return None
    def close(self):
        for d in reversed(self.dirs):
            for _ in range(50):
                try:
                    os.rmdir(d); break
                except OSError:
                    time.sleep(0.05)
        self.dirs = []

def expand(template, rt, files, job_args):
    main = rt["main"]
    ext = os.path.splitext(main)[1]
    out = []
    for el in template:
        if el == "{main}": out.append(main)
        elif el == "{stem}": out.append(os.path.splitext(os.path.basename(main))[0])
        elif el == "{sources}": out += [f for f in files if os.path.splitext(f)[1] == ext]
        elif el == "{args}": out += job_args
        elif el == "{outdir}": out.append("/work/.out")
        elif el == "{out}": out.append("/work/.out/main")
        elif re.search(r"\{(main|stem|sources|args|outdir|out)\}", el):
            raise ValueError(f"{rt['name']}: placeholder inside an element: {el!r}")
        else: out.append(el)
    return out

def limits_of(rt, key, defaults):
    lim = dict(defaults)
    lim.update(rt.get(key, {}))
    return lim

def run_step(rt, image_root, tmp, files, argv, stdin, lim, outdir, outro):
    work = tempfile.mkdtemp(dir=tmp)
    for name, text in files.items():
        path = os.path.join(work, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    mnt = tempfile.mkdtemp(dir=tmp)
    env = FIXED_ENV + rt.get("env", [])
    cg = Cgroup(size(lim["memory"]), int(lim["pids"]))
    def rlimits():
        os.setsid()
        for r, v in ((resource.RLIMIT_NOFILE, int(lim["open_files"])),
                     (resource.RLIMIT_FSIZE, size(lim["file_size"])),
                     (resource.RLIMIT_STACK, size(lim["stack"])),
                     (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(r, (v, v))
    cmd = ["unshare", "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
           "sh", "-c", INNER, "inner", mnt, image_root, work, outdir or "", outro,
           str(size(lim["storage"])), " ".join(cg.procs),
           "/usr/bin/env", "-i", "-C", "/work"] + env + argv
    t0 = time.monotonic()
    status = "ok"
    try:
        p = subprocess.run(cmd, input=stdin.encode(), capture_output=True,
                           timeout=duration(lim["timeout"]), preexec_fn=rlimits)
        code, out, err = p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        status, code = "timeout", None
        out = (e.stdout or b"").decode(errors="replace"); err = (e.stderr or b"").decode(errors="replace")
    wall = time.monotonic() - t0
    peak = cg.peak()
    cg.close()
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
        os.rmdir(mnt)
    return dict(status=status, code=code, out=out, err=err, wall=wall, peak=peak)

def main():
    rts = []
    for f in sorted(glob.glob(os.path.join(root_dir, "runtimes/*.toml"))):
        with open(f, "rb") as fh:
            rt = tomllib.load(fh)
        for k in ("name", "version", "image", "main", "run"):
            if k not in rt:
                sys.exit(f"check-images: {f}: no {k}")
        rts.append(rt)
    names = {r["name"] for r in rts} | {a for r in rts for a in r.get("aliases", [])}
    if len(names) != len(rts) + sum(len(r.get("aliases", [])) for r in rts):
        sys.exit("check-images: a name or alias is used twice")
    if only:
        unknown = set(only) - {r["name"] for r in rts}
        if unknown:
            sys.exit(f"check-images: no runtime {sorted(unknown)}")
        rts = [r for r in rts if r["name"] in only]
    tmp = tempfile.mkdtemp(prefix="check-images.")
    unpacked = {}
    failed, summary = [], []
    try:
        for rt in rts:
            img = rt["image"]
            if img not in unpacked:
                tarball = os.path.join(images_dir, img + ".tar.zst")
                if not os.path.exists(tarball):
                    print(f"FAIL {rt['name']}: no image {tarball} (make rootfs RUNTIMES=all)")
                    failed.append(rt["name"]); continue
                d = os.path.join(tmp, "image-" + img)
                os.mkdir(d)
                subprocess.run(["tar", "--zstd", "-xf", tarball, "-C", d], check=True)
                unpacked[img] = d
            image_root = unpacked[img]
            if rt["name"] not in P:
                print(f"FAIL {rt['name']}: check-images.sh has no programs for it")
                failed.append(rt["name"]); continue
            compiled = bool(rt.get("compile"))
            run_lim = limits_of(rt, "limits", RUN_DEFAULTS)
            comp_lim = limits_of(rt, "compile_limits", COMPILE_DEFAULTS)
            vc = VERSION_CMD.get(rt["name"])
            if vc:
                r = run_step(rt, image_root, tmp, {}, vc, "", run_lim, None, "ro")
                have = r["out"] + r["err"]
                ok = r["status"] == "ok" and r["code"] == 0 and re.search(r"(^|[^0-9.])" + re.escape(rt["version"]) + r"($|[^0-9])", have)
                report(rt, "version", None if ok else f"version {rt['version']!r} not in {' '.join(vc)}: {have.strip()[:200]!r}", r, None, None, failed, [])
            else:
                print(f"FAIL {rt['name']}: no version command"); failed.append(rt["name"] + "/version")
            for cname, c in cases(rt):
                files = c["files"]
                job_args = c.get("args", [])
                why = None
                outdir = None
                ctime = None
                if compiled:
                    outdir = tempfile.mkdtemp(dir=tmp)
                    os.chown(outdir, 1000, 1000)
                    r = run_step(rt, image_root, tmp, files, expand(rt["compile"], rt, files, job_args), "", comp_lim, outdir, "rw")
                    ctime = r["wall"]
                    if c.get("compile_fail"):
                        why = None if (r["status"] == "ok" and r["code"] != 0 and (r["err"] + r["out"]).strip()) else f"compile did not fail: {r}"
                        report(rt, cname, why, r, ctime, None, failed, summary)
                        continue
                    if r["status"] != "ok" or r["code"] != 0:
                        report(rt, cname, f"compile failed: {r['status']} exit {r['code']}\n{r['out']}{r['err']}", r, ctime, None, failed, summary)
                        continue
                r = run_step(rt, image_root, tmp, files, expand(rt["run"], rt, files, job_args), c.get("stdin", ""), run_lim, outdir, "ro")
                if outdir and not keep:
                    shutil.rmtree(outdir, ignore_errors=True)
                if r["status"] != "ok":
                    why = f"run: {r['status']}"
                elif r["code"] not in (lambda e: e if isinstance(e, tuple) else (e,))(c.get("exit", 0)):
                    why = f"run: exit {r['code']}, want {c.get('exit', 0)}"
                elif "out" in c and r["out"] != c["out"]:
                    why = f"stdout {r['out']!r}, want {c['out']!r}"
                elif "out_re" in c and not re.fullmatch(c["out_re"], r["out"]):
                    why = f"stdout {r['out']!r}, want /{c['out_re']}/"
                elif "err_not" in c and c["err_not"] in r["err"]:
                    why = f"stderr has {c['err_not']!r}"
                report(rt, cname, why, r, ctime, r["wall"], failed, summary)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"check-images: kept {tmp}")
    print("\nhello world, cold (chroot, no daemon):")
    print(f"  {'runtime':<11} {'version':<9} {'compile s':>9} {'run s':>6} {'run peak MB':>11}")
    for name, version, ct, rt_, peak in summary:
        print(f"  {name:<11} {version:<9} {('%.2f' % ct) if ct is not None else '-':>9} {rt_:>6.2f} {('%.0f' % (peak / 2**20)) if peak else '?':>11}")
    if failed:
        print(f"check-images: FAIL: {', '.join(failed)}")
        sys.exit(1)
    print(f"check-images: PASS ({len(rts)} runtimes)")

def report(rt, cname, why, r, ctime, rtime, failed, summary):
    t = " ".join(x for x in (f"compile {ctime:.2f}s" if ctime is not None else "", f"run {rtime:.2f}s" if rtime is not None else "") if x)
    if why:
        print(f"FAIL {rt['name']} {cname} ({t}): {why}")
        if r.get("err"):
            print("  stderr: " + r["err"][-2000:].replace("\n", "\n  "))
        failed.append(f"{rt['name']}/{cname}")
    else:
        print(f"ok   {rt['name']} {cname} ({t})")
        if cname == "hello":
            summary.append((rt["name"], rt["version"], ctime, rtime, r.get("peak")))

main()
PY
