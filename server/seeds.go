package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/gpu"
	"github.com/sandboxd/sandboxd/sandbox"
)

// The seed projects' endpoints, as their READMEs document them, so their curl and
// Python examples work against sandboxd unchanged.

// seedTask is POST /execute's body (fastapi-docker-execute-code).
type seedTask struct {
	TaskType  string         `json:"task_type"`
	Code      *string        `json:"code"`
	Resources *seedResources `json:"resources"`
}

type seedResources struct {
	CPU     json.RawMessage `json:"cpu"`
	GPU     json.RawMessage `json:"gpu"`
	RAM     json.RawMessage `json:"ram"`
	Storage json.RawMessage `json:"storage"`
}

// seedFields names the engine's limits as POST /execute's client sent them.
var seedFields = map[string]string{
	"limits.cpus":    "resources.cpu",
	"limits.memory":  "resources.ram",
	"limits.storage": "resources.storage",
}

func (s *Server) seedExecute(w http.ResponseWriter, r *http.Request) {
	var task seedTask
	if err := s.decode(r, w, &task, false); err != nil {
		s.fail(w, err)
		return
	}
	if task.TaskType != "" && task.TaskType != "execute_code" {
		s.fail(w, fieldError("task_type", fmt.Sprintf("%q is not supported (only \"execute_code\")", task.TaskType)))
		return
	}
	if task.Code == nil {
		s.fail(w, fieldError("code", "is required"))
		return
	}
	var lim sandbox.Limits
	var gpus gpu.Request
	if rs := task.Resources; rs != nil {
		var err error
		if present(rs.CPU) {
			if lim.CPUs, err = parseCPUs("resources.cpu", rs.CPU); err != nil {
				s.fail(w, err)
				return
			}
		}
		if present(rs.RAM) {
			if lim.Memory, err = parseBytes("resources.ram", rs.RAM); err != nil {
				s.fail(w, err)
				return
			}
		}
		if present(rs.Storage) {
			if lim.Storage, err = parseBytes("resources.storage", rs.Storage); err != nil {
				s.fail(w, err)
				return
			}
		}
		if present(rs.GPU) {
			n, err := parseWhole("resources.gpu", rs.GPU) // the seed's README sends "0"
			if err != nil {
				s.fail(w, err)
				return
			}
			gpus.Count = int(n)
		}
	}
	res, err := s.runJobAs(r, sandbox.Request{Code: *task.Code, Limits: lim, GPUs: gpus}, "resources.gpu", seedFields)
	if err != nil {
		s.fail(w, err)
		return
	}
	if res.Status == sandbox.StatusInternalError {
		s.fail(w, &apiError{status: http.StatusInternalServerError, message: res.Error})
		return
	}
	// The seed returns the container's log: both streams together.
	writeJSON(w, http.StatusOK, map[string]any{"output": res.Stdout + res.Stderr})
}

// submitRequest is POST /submit_code's body (mixed-docker-execution).
type submitRequest struct {
	Code *string `json:"code"`
}

// submitResponse is the seed's documented answer.
type submitResponse struct {
	Status     string `json:"status"` // "success" or "failure"
	Output     string `json:"output"`
	Error      string `json:"error"`
	ReturnCode int    `json:"return_code"`
	Timeout    bool   `json:"timeout"`
}

func (s *Server) seedSubmitCode(w http.ResponseWriter, r *http.Request) {
	var req submitRequest
	if err := s.decode(r, w, &req, false); err != nil {
		s.fail(w, err)
		return
	}
	if req.Code == nil {
		s.fail(w, fieldError("code", "is required"))
		return
	}
	res, err := s.runJob(r, sandbox.Request{Code: *req.Code}, "")
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, submitResult(res))
}

// submitResult maps a result onto the seed's fields: return_code follows Python's
// subprocess (-N for a signal, -1 for a timeout), error is the exception line.
func submitResult(res *sandbox.Result) submitResponse {
	out := submitResponse{Status: "failure", Output: res.Stdout, ReturnCode: res.ExitCode}
	switch res.Status {
	case sandbox.StatusOK:
		out.Status = "success"
	case sandbox.StatusTimeout:
		out.Timeout = true
		out.ReturnCode = -1
		out.Error = fmt.Sprintf("TimeoutExpired: Command exceeded %g seconds.", float64(res.Limits.TimeoutMS)/1000)
	case sandbox.StatusCPULimit:
		out.Timeout = true
		out.ReturnCode = -1
		out.Error = fmt.Sprintf("TimeoutExpired: Command exceeded its CPU time of %g seconds.", float64(res.Limits.CPUTimeMS)/1000)
	case sandbox.StatusMemoryLimit:
		out.ReturnCode = -int(syscall.SIGKILL)
		out.Error = fmt.Sprintf("MemoryError: the job exceeded its memory limit of %d bytes", res.Limits.Memory)
	case sandbox.StatusSignaled:
		out.ReturnCode = -int(unix.SignalNum(res.Signal))
		out.Error = lastLine(res.Stderr)
		if out.Error == "" {
			out.Error = "Killed by " + res.Signal
		}
	case sandbox.StatusInternalError:
		out.Error = "InternalError: " + res.Error
	default:
		out.Error = lastLine(res.Stderr)
		if out.Error == "" {
			out.Error = fmt.Sprintf("exit code %d", res.ExitCode)
		}
	}
	return out
}

// lastLine is the last non-blank line of a traceback: "SyntaxError: ...".
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if t := strings.TrimSpace(lines[i]); t != "" {
			return t
		}
	}
	return ""
}
