package sandbox

import "strconv"

// bootstrap is what a pooled container's python runs while it waits: it reads
// "<length>\n<code>" from stdin (byte-exact, with os.read, so what follows stays for the
// job's own sys.stdin), writes the code to /work/main.py and runs it as python3 main.py
// would: module __main__ with __file__, sys.argv ["main.py"], sys.path[0] "/work",
// tracebacks and SyntaxErrors naming main.py without a frame of the bootstrap, exit code
// 1 for an uncaught exception, SystemExit as usual, and atexit and flushing by the
// normal interpreter exit. It imports nothing that python's start-up had not.
const bootstrap = `import os, sys
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
_sbx_code = _sbx_read()
with open("/work/main.py", "wb") as _sbx_f:
    _sbx_f.write(_sbx_code)
_sbx_main = type(sys)("__main__")
_sbx_main.__file__ = "/work/main.py"
_sbx_main.__cached__ = None
_sbx_main.__builtins__ = __builtins__
sys.modules["__main__"] = _sbx_main
sys.argv[:] = ["main.py"]
sys.path[0] = "/work"
del _sbx_read, _sbx_f
try:
    exec(compile(_sbx_code, "/work/main.py", "exec", dont_inherit=True), _sbx_main.__dict__)
except SystemExit:
    raise
except BaseException as _sbx_e:
    del _sbx_code, _sbx_main
    _sbx_e.__traceback__ = _sbx_e.__traceback__.tb_next  # drop the bootstrap's frame
    sys.excepthook(type(_sbx_e), _sbx_e, _sbx_e.__traceback__)
    sys.exit(1)
`

// bootstrapInput is what a pooled container reads on stdin: the code, then the job's stdin.
func bootstrapInput(req Request) []byte {
	head := strconv.Itoa(len(req.Code)) + "\n"
	in := make([]byte, 0, len(head)+len(req.Code)+len(req.Stdin))
	in = append(in, head...)
	in = append(in, req.Code...)
	return append(in, req.Stdin...)
}
