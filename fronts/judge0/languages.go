package judge0

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sandboxd/sandboxd/sandbox"
)

// language is a Judge0 CE language id (db/languages/active.rb) and the runtime that
// serves it. Its name is Judge0's, with the shipped runtime's version in it.
type language struct {
	ID         int
	Runtimes   []string // the sandboxd runtime's name or an alias, first match wins
	Name       string   // a format taking the runtime's version
	SourceFile string   // Judge0's name for the program (GET /languages/{id}); informative
}

// ceLanguages are the Judge0 CE ids for the languages sandboxd ships.
var ceLanguages = []language{
	{46, []string{"bash"}, "Bash (%s)", "script.sh"},
	{50, []string{"c"}, "C (GCC %s)", "main.c"},
	{54, []string{"c++", "cpp"}, "C++ (GCC %s)", "main.cpp"},
	{60, []string{"go", "golang"}, "Go (%s)", "main.go"},
	{62, []string{"java"}, "Java (OpenJDK %s)", "Main.java"},
	{63, []string{"javascript", "js", "node"}, "JavaScript (Node.js %s)", "script.js"},
	{71, []string{"python", "python3"}, "Python (%s)", "script.py"},
	{72, []string{"ruby"}, "Ruby (%s)", "script.rb"},
	{73, []string{"rust"}, "Rust (%s)", "main.rs"},
	{74, []string{"typescript", "ts"}, "TypeScript (%s)", "script.ts"},
}

// installed is a language whose runtime this daemon runs.
type installed struct {
	language
	rt sandbox.RuntimeInfo
}

func (l installed) name() string { return fmt.Sprintf(l.Name, l.rt.Version) }

// languages lists the CE languages whose runtime is installed, by id.
func (f *Front) languages() []installed {
	var rts []sandbox.RuntimeInfo
	if f.opts.Runtimes != nil {
		rts = f.opts.Runtimes()
	}
	var out []installed
	for _, l := range ceLanguages {
		if rt, ok := findRuntime(rts, l.Runtimes); ok {
			out = append(out, installed{l, rt})
		}
	}
	return out
}

func findRuntime(rts []sandbox.RuntimeInfo, names []string) (sandbox.RuntimeInfo, bool) {
	for _, n := range names {
		for _, rt := range rts {
			if strings.EqualFold(rt.Name, n) || slices.ContainsFunc(rt.Aliases, func(a string) bool { return strings.EqualFold(a, n) }) {
				return rt, true
			}
		}
	}
	return sandbox.RuntimeInfo{}, false
}

func (f *Front) language(id int) (installed, bool) {
	for _, l := range f.languages() {
		if l.ID == id {
			return l, true
		}
	}
	return installed{}, false
}

// Judge0's statuses (app/enumerations/status.rb).
const (
	statusQueue      = 1
	statusProcessing = 2
	statusAccepted   = 3
	statusWrong      = 4
	statusTLE        = 5
	statusCE         = 6
	statusSIGSEGV    = 7
	statusSIGXFSZ    = 8
	statusSIGFPE     = 9
	statusSIGABRT    = 10
	statusNZEC       = 11
	statusOther      = 12
	statusBoxErr     = 13
	statusExecErr    = 14
)

var statusNames = map[int]string{
	1: "In Queue", 2: "Processing", 3: "Accepted", 4: "Wrong Answer", 5: "Time Limit Exceeded",
	6: "Compilation Error", 7: "Runtime Error (SIGSEGV)", 8: "Runtime Error (SIGXFSZ)",
	9: "Runtime Error (SIGFPE)", 10: "Runtime Error (SIGABRT)", 11: "Runtime Error (NZEC)",
	12: "Runtime Error (Other)", 13: "Internal Error", 14: "Exec Format Error",
}

// runtimeErrorBySignal is Status.find_runtime_error_by_status_code.
func runtimeErrorBySignal(sig int) int {
	switch sig {
	case 11:
		return statusSIGSEGV
	case 25:
		return statusSIGXFSZ
	case 8:
		return statusSIGFPE
	case 6:
		return statusSIGABRT
	}
	return statusOther
}
