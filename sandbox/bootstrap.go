package sandbox

import "strconv"

// bootstrap is what a pooled container's python runs while it waits: it reads
// "<length>\n<code>" from stdin (byte-exact, with os.read, so what follows stays for the
// job's own sys.stdin), writes the code to /work/main.py and runs it as python3 main.py
// would: module __main__ with __file__, sys.argv ["main.py"], sys.path[0] "/work",
// tracebacks and SyntaxErrors naming main.py without a frame of the bootstrap, exit code
// 1 for an uncaught exception, SystemExit's codes and messages, KeyboardInterrupt's
// SIGINT. It imports nothing python's start-up had not.
//
// It then ends the way Py_FinalizeEx does, in its order — wait for non-daemon threads,
// atexit handlers, flush the standard streams, clear __main__ (so __del__ methods run),
// collect garbage, flush again — and skips only the teardown of the interpreter's own
// modules, which nothing outside the process can see and which costs ~3 ms.
const bootstrap = `import os, sys
os.write(2, b"\0sbx-ready\n")
def _sbx_read():
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
    code = _sbx_read()
    with open("/work/main.py", "wb") as f:
        f.write(code)
    main = type(sys)("__main__")
    main.__file__ = "/work/main.py"
    main.__cached__ = None
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    sys.argv[:] = ["main.py"]
    sys.path[0] = "/work"
    try:
        exec(compile(code, "/work/main.py", "exec", dont_inherit=True), main.__dict__)
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
_sbx_exit(*_sbx_run())
`

// readyMarker is what the bootstrap writes to stderr once python is up and about to wait
// for code; the daemon reads it before it captures the job's output, so no job sees it.
const readyMarker = "\x00sbx-ready\n"

// bootstrapInput is what a pooled container reads on stdin: the code, then the job's stdin.
func bootstrapInput(req Request) []byte {
	head := strconv.Itoa(len(req.Code)) + "\n"
	in := make([]byte, 0, len(head)+len(req.Code)+len(req.Stdin))
	in = append(in, head...)
	in = append(in, req.Code...)
	return append(in, req.Stdin...)
}
