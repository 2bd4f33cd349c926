package sandbox

import (
	"strconv"
	"strings"
)

// bootstrap is what a pooled container's python runs while it waits: it reads
// "<length>\n<main>\0<arg>\0<arg>..." from stdin (byte-exact, with os.read, so what
// follows stays for the job's own sys.stdin), and runs /work/<main>, which the daemon
// has written with the job's other files, as python3 <main> <args> would: module
// __main__ with __file__, sys.argv [main, args...], sys.path[0] its directory,
// tracebacks and SyntaxErrors naming main.py without a frame of the bootstrap, exit code
// 1 for an uncaught exception, SystemExit's codes and messages, KeyboardInterrupt's
// SIGINT. It imports nothing python's start-up had not.
//
// It then ends the way Py_FinalizeEx does, in its order — wait for non-daemon threads,
// atexit handlers, flush the standard streams, clear __main__ (so __del__ methods run),
// collect garbage, flush again — and skips only the teardown of the interpreter's own
// modules, which nothing outside the process can see and which costs ~3 ms.
//
// Before it waits it does two things a job would otherwise pay for on its clock: one
// compile() (python makes its ~120 AST types on the first, ~1.6 ms; exec of a string
// does not), and gc.freeze(), so the final collection walks the job's objects and not
// start-up's ~6,600 (~0.6 ms); gc then leaves sys.modules again. What a job can see of
// the freeze: gc.get_objects() and gc.get_referrers() leave out the objects that
// existed before it, and gc.get_freeze_count() is not 0.
const pythonBootstrap = `import os, sys
compile("", "", "exec")
import gc
gc.freeze()
del gc, sys.modules["gc"]
os.write(2, b"\0sbx-ready\n")
` + pythonBootstrapDefs + `_sbx_exit(*_sbx_run())
`

// pythonBootstrapDefs are the bootstrap's functions, which a fork server's jobs run too.
const pythonBootstrapDefs = `def _sbx_read():
    head = b""
    while not head.endswith(b"\n"):
        c = os.read(0, 1)
        if not c:
            os._exit(0)
        head += c
    n, code = int(head), []
    while n > 0:
        c = os.read(0, min(n, 1 << 20))
        if not c:
            os._exit(0)
        code.append(c)
        n -= len(c)
    return b"".join(code)
def _sbx_flush():
    for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            f.flush()
        except Exception:
            pass
def _sbx_run():
    argv = _sbx_read().decode("utf-8", "surrogateescape").split("\0")
    path = "/work/" + argv[0]
    with open(path, "rb") as f:
        code = f.read()
    main = type(sys)("__main__")
    main.__file__ = path
    main.__cached__ = None
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    sys.argv[:] = argv
    sys.path[0] = os.path.dirname(path)
    try:
        exec(compile(code, path, "exec", dont_inherit=True), main.__dict__)
    except SystemExit as e:
        c = e.code
        if c is None:
            return 0, False, main
        if isinstance(c, int):
            return c, False, main
        _sbx_flush()
        print(c, file=sys.stderr)
        return 1, False, main
    except BaseException as e:
        e.__traceback__ = e.__traceback__.tb_next  # drop the bootstrap's frame
        sys.excepthook(type(e), e, e.__traceback__)
        return 1, isinstance(e, KeyboardInterrupt), main
    return 0, False, main
def _sbx_exit(status, sigint, main):
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()
    import atexit, gc
    atexit._run_exitfuncs()
    _sbx_flush()
    d = main.__dict__
    for k in [k for k in d if k.startswith("_") and k != "__builtins__"] + [k for k in d if not k.startswith("_")]:
        d[k] = None
    del d, main
    sys.modules.pop("__main__", None)
    gc.collect()
    _sbx_flush()
    if sigint:
        import signal
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status & 0xff)
`

// readyMarker is what the bootstrap writes to stderr once python is up and about to wait
// for code; the daemon reads it before it captures the job's output, so no job sees it.
const readyMarker = "\x00sbx-ready\n"

// nodeBootstrap is what a pooled container's node runs while it waits: it reads the
// same header as the python one with fs.readSync on fd 0 (so the rest of stdin stays for
// process.stdin), sets process.argv as node <main> <args> would and runs the main file
// with Module.runMain, which is what node itself does for a script.
const nodeBootstrap = `"use strict";
const fs = require("fs");
fs.writeSync(2, "\0sbx-ready\n");
function read(n) {
  const b = Buffer.alloc(n);
  for (let o = 0; o < n; ) {
    let r;
    try { r = fs.readSync(0, b, o, n - o, null); } catch (e) { if (e.code === "EAGAIN") continue; throw e; }
    if (r === 0) process.exit(0);
    o += r;
  }
  return b;
}
let head = "";
for (;;) { const c = read(1)[0]; if (c === 10) break; head += String.fromCharCode(c); }
const argv = read(parseInt(head, 10)).toString("utf8").split("\0");
process.argv = [process.execPath, "/work/" + argv[0], ...argv.slice(1)];
require("module").runMain();
`

// bootstraps are the warm bootstraps by name: the argv a pooled container starts with.
var bootstraps = map[string][]string{
	"python": {"python3", "-c", pythonBootstrap},
	"node":   {"node", "-e", nodeBootstrap},
}

// bootstrapInput is what a pooled container reads on stdin: its header (the main
// file and args), then the job's stdin.
func bootstrapInput(main string, args []string, stdin []byte) []byte {
	argv := strings.Join(append([]string{main}, args...), "\x00")
	head := strconv.Itoa(len(argv)) + "\n"
	in := make([]byte, 0, len(head)+len(argv)+len(stdin))
	in = append(in, head...)
	in = append(in, argv...)
	return append(in, stdin...)
}
