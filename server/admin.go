package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/sandboxd/sandboxd/rootfs"
	"github.com/sandboxd/sandboxd/sandbox"
)

// AdminEngine is what the admin endpoints need of the engine.
type AdminEngine interface {
	Load() (running, queued int)
	Jobs() []sandbox.JobInfo
	Kill(id string) error
	CgroupMode() sandbox.CgroupMode
	Policy() sandbox.Policy
	PoolIdle() int
}

// RootfsStore is what the admin endpoints need of the rootfs store.
type RootfsStore interface {
	List() ([]rootfs.Image, error)
	Import(ctx context.Context, tarball string) (rootfs.Image, error)
}

// Admin serves /v1/admin/...: status, jobs, kill, drain and resume, and the rootfs
// store. Auth keeps it to the unix socket or the admin token.
type Admin struct {
	Engine   AdminEngine
	Gate     *Gate
	Store    RootfsStore
	GPUs     GPUSource // nil: no GPUs
	Rootfs   string    // digest of the image jobs run on
	Version  string
	Started  time.Time
	MaxJobs  int
	MaxQueue int
	// UploadDir stages uploaded tarballs; on the store's filesystem, so large ones fit.
	UploadDir string
	// MaxUpload bounds an uploaded tarball (default 8 GiB, the store's own bound).
	MaxUpload int64
}

// Register adds the admin endpoints to s.
func (a *Admin) Register(s *Server) {
	if a.MaxUpload == 0 {
		a.MaxUpload = 8 << 30
	}
	s.mux.HandleFunc("GET "+AdminPrefix+"status", a.status)
	s.mux.HandleFunc("GET "+AdminPrefix+"jobs", a.jobs)
	s.mux.HandleFunc("POST "+AdminPrefix+"jobs/{id}/kill", a.kill(s))
	s.mux.HandleFunc("POST "+AdminPrefix+"drain", a.drain(s, true))
	s.mux.HandleFunc("POST "+AdminPrefix+"resume", a.drain(s, false))
	s.mux.HandleFunc("GET "+AdminPrefix+"rootfs", a.rootfsList)
	s.mux.HandleFunc("POST "+AdminPrefix+"rootfs", a.rootfsImport(s))
}

// StatusView is GET /v1/admin/status's answer.
type StatusView struct {
	Version       string    `json:"version"`
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	CgroupMode    string    `json:"cgroup_mode"`
	Rootfs        string    `json:"rootfs"`
	State         string    `json:"state"` // "serving", or "draining": new jobs get 503 (an admin's drain, or shutdown)
	Draining      bool      `json:"draining"`
	Capacity      struct {
		MaxJobs  int `json:"max_jobs"`
		MaxQueue int `json:"max_queue"`
		PoolIdle int `json:"pool_idle"` // warm containers ready now
	} `json:"capacity"`
	Jobs struct {
		Running int `json:"running"`
		Queued  int `json:"queued"`
	} `json:"jobs"`
	GPUs struct {
		Total  int `json:"total"`
		Leased int `json:"leased"`
	} `json:"gpus"`
	Limits struct {
		Default sandbox.LimitsView `json:"default"`
		Max     sandbox.LimitsView `json:"max"`
	} `json:"limits"`
}

func (a *Admin) status(w http.ResponseWriter, _ *http.Request) {
	var v StatusView
	v.Version, v.Started, v.Rootfs = a.Version, a.Started.UTC(), a.Rootfs
	v.UptimeSeconds = time.Since(a.Started).Round(time.Second).Seconds()
	v.CgroupMode = string(a.Engine.CgroupMode())
	v.Draining = a.Gate.Draining()
	v.State = "serving"
	if v.Draining {
		v.State = "draining"
	}
	v.Capacity.MaxJobs, v.Capacity.MaxQueue, v.Capacity.PoolIdle = a.MaxJobs, a.MaxQueue, a.Engine.PoolIdle()
	v.Jobs.Running, v.Jobs.Queued = a.Engine.Load()
	if a.GPUs != nil {
		for _, g := range a.GPUs.List() {
			v.GPUs.Total++
			if g.LeasedBy != "" {
				v.GPUs.Leased++
			}
		}
	}
	p := a.Engine.Policy()
	v.Limits.Default, v.Limits.Max = p.Default.View(), p.Max.View()
	writeJSON(w, http.StatusOK, v)
}

func (a *Admin) jobs(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"jobs": a.Engine.Jobs()})
}

func (a *Admin) kill(s *Server) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := a.Engine.Kill(id); err != nil {
			if errors.Is(err, sandbox.ErrJobNotFound) {
				writeError(w, http.StatusNotFound, "", "no running job "+id)
				return
			}
			s.log.Error("kill job", "job", id, "err", err)
			writeError(w, http.StatusInternalServerError, "", "internal error")
			return
		}
		s.log.Info("job killed by admin", "job", id, "client", ClientFrom(r.Context()).String())
		writeJSON(w, http.StatusOK, map[string]string{"killed": id})
	}
}

func (a *Admin) drain(s *Server, on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		msg := "resumed: taking new jobs"
		if on {
			a.Gate.Drain()
			msg = "draining: new jobs get 503, running ones go on"
		} else {
			a.Gate.Resume()
		}
		s.log.Info(msg, "client", ClientFrom(r.Context()).String())
		running, queued := a.Engine.Load()
		writeJSON(w, http.StatusOK, map[string]any{"draining": on, "running": running, "queued": queued})
	}
}

// ImageView is one image in the store, as the admin endpoints show it.
type ImageView struct {
	rootfs.Image
	InUse bool `json:"in_use"`
}

func (a *Admin) rootfsList(w http.ResponseWriter, _ *http.Request) {
	imgs, err := a.Store.List()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", "cannot list the rootfs store")
		return
	}
	out := make([]ImageView, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, ImageView{Image: img, InUse: img.Digest == a.Rootfs})
	}
	writeJSON(w, http.StatusOK, map[string]any{"images": out})
}

// rootfsImport takes a tarball as the request body and unpacks it into the store. Jobs
// keep running on the image the daemon started with; the new one is for a restart with
// rootfs set to its digest.
func (a *Admin) rootfsImport(s *Server) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// A large upload outlasts the server's read timeout meant for JSON bodies.
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
		f, err := os.CreateTemp(a.UploadDir, ".upload-*")
		if err != nil {
			s.storageFault(w, "stage rootfs upload", err)
			return
		}
		defer os.Remove(f.Name())
		// Reading the body failing is the client's doing; writing the file failing
		// (a full disk, EIO) is ours.
		fw := &faultWriter{w: f}
		_, err = io.Copy(fw, http.MaxBytesReader(w, r.Body, a.MaxUpload))
		if cerr := f.Close(); cerr != nil && fw.err == nil {
			fw.err = cerr
		}
		var tooBig *http.MaxBytesError
		switch {
		case fw.err != nil:
			s.storageFault(w, "stage rootfs upload", fw.err)
			return
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, "", "the tarball is too large")
			return
		case err != nil:
			writeError(w, http.StatusBadRequest, "", "could not read the uploaded tarball")
			return
		}
		img, err := a.Store.Import(r.Context(), f.Name())
		switch {
		case isStorageFault(err):
			// Before the archive's own errors: a write that failed while unpacking is
			// the host's fault even where the unpacker calls the archive unreadable.
			s.storageFault(w, "import rootfs", err)
		case errors.Is(err, rootfs.ErrTooLarge):
			writeError(w, http.StatusRequestEntityTooLarge, "", "the archive unpacks to more than the store allows")
		case errors.Is(err, rootfs.ErrBadFormat):
			writeError(w, http.StatusBadRequest, "", "not a tar, tar.gz or tar.zst archive")
		case errors.Is(err, rootfs.ErrUnsafeEntry):
			writeError(w, http.StatusBadRequest, "", "the archive has an unsafe entry (absolute path, .. or through a symlink)")
		case err != nil:
			s.log.Error("import rootfs", "err", err)
			writeError(w, http.StatusInternalServerError, "", "internal error")
		default:
			s.log.Info("rootfs imported", "digest", img.Digest, "client", ClientFrom(r.Context()).String())
			writeJSON(w, http.StatusOK, ImageView{Image: img, InUse: img.Digest == a.Rootfs})
		}
	}
}

// faultWriter remembers the error of a failed write, so a copy's error can be told
// apart: the reader's (the client's) or the writer's (the host's).
type faultWriter struct {
	w   io.Writer
	err error
}

func (f *faultWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil && f.err == nil {
		f.err = err
	}
	return n, err
}

// isStorageFault says whether err is the host's disk failing, not the request.
func isStorageFault(err error) bool {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EIO, syscall.EROFS} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// storageFault logs a server fault and answers 507 for a full disk, 500 otherwise.
func (s *Server) storageFault(w http.ResponseWriter, what string, err error) {
	s.log.Error(what, "err", err)
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		writeError(w, http.StatusInsufficientStorage, "", "the daemon's disk is full; nothing was imported")
		return
	}
	writeError(w, http.StatusInternalServerError, "", "internal error")
}
