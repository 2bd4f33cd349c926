package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/docker/go-units"

	"github.com/sandboxd/sandboxd/sandbox"
)

// DefaultConfigFile is read when no --config is given; it may be absent.
const DefaultConfigFile = "/etc/sandboxd/config.toml"

// Config is every setting of sandboxd. The TOML keys are the field tags; the flags are
// the same names with dashes. Default() is the documented default of each.
type Config struct {
	// Listen: "unix:/path" or "host:port", each served. Empty means
	// unix:<run_dir>/sandboxd.sock and 127.0.0.1:8000. Sockets passed by systemd
	// (sandboxd.socket) replace the whole list.
	Listen      []string `toml:"listen"`
	SocketGroup string   `toml:"socket_group"` // group of the unix socket (mode 0660); "" keeps root's
	StateDir    string   `toml:"state_dir"`    // unpacked root filesystems
	RunDir      string   `toml:"run_dir"`      // per-job state and mounts; a tmpfs
	// Rootfs is the tarball jobs run on, or "sha256:<hex>" naming an image already in
	// the store (see sandboxctl rootfs import).
	Rootfs string `toml:"rootfs"`
	// ImagesDir holds the other runtimes' images, <image>.tar.zst (scripts/mkrootfs.sh
	// builds them); a runtime whose image is absent is not offered. "" looks nowhere.
	ImagesDir string `toml:"images_dir"`
	// RuntimesDir holds runtime definitions (*.toml) added to the shipped ones, or
	// replacing one of the same name; a missing directory adds nothing.
	RuntimesDir string `toml:"runtimes_dir"`
	CgroupName  string `toml:"cgroup_name"` // the cgroup below the daemon's own that holds jobs

	MaxJobs  int `toml:"max_jobs"`  // jobs running at once
	MaxQueue int `toml:"max_queue"` // requests waiting for a slot; more get 429
	PoolSize int `toml:"pool_size"` // warm python containers kept ready; 0 disables the pool
	// PoolSizes sets the pool of each runtime with a warm bootstrap, by name (python's
	// overrides pool_size).
	PoolSizes map[string]int `toml:"pool_sizes"`
	// ForkServer makes python's pool_size fork servers, each forking one job at a time
	// into fresh namespaces, cgroup and tmpfs, instead of single-use warm containers.
	ForkServer    bool     `toml:"fork_server"`
	OutputLimit   Size     `toml:"output_limit"`   // kept of each of stdout and stderr
	MaxBody       Size     `toml:"max_body"`       // a request body; more get 413
	MaxCode       Size     `toml:"max_code"`       // the code field; more get 413
	ShutdownGrace Duration `toml:"shutdown_grace"` // running jobs' time to finish on stop, then killed

	// Code-interpreter sessions (/v1/sessions): how many live at once (0 turns them
	// off), their default idle TTL, their default and maximum lifetime, and how many
	// started kernels are kept ready.
	SessionMax      int      `toml:"session_max"`
	SessionTTL      Duration `toml:"session_ttl"`
	SessionLifetime Duration `toml:"session_lifetime"`
	SessionPool     int      `toml:"session_pool"`

	// Async jobs (POST /v1/jobs): their queue, how long and how many finished ones the
	// store under state_dir/jobs keeps, the bytes of results it keeps at most, and
	// whether callbacks may go to other hosts than this one.
	MaxAsyncQueue     int      `toml:"max_async_queue"`
	JobRetention      Duration `toml:"job_retention"`
	JobRetentionCount int      `toml:"job_retention_count"`
	JobStoreMax       Size     `toml:"job_store_max"`
	CallbacksOffHost  bool     `toml:"callbacks_off_host"`
	// Cluster shares async jobs with other daemons through NATS JetStream (cluster.go).
	Cluster ClusterConfig `toml:"cluster"`

	APITokenFile   string `toml:"api_token_file"`   // bearer token for TCP clients; "" = none
	AdminTokenFile string `toml:"admin_token_file"` // bearer token for /v1/admin on TCP; "" = socket only
	// Judge0AuthTokenFile holds the token Judge0 clients send as X-Auth-Token (Judge0's
	// AUTHN_TOKEN); "" = the Judge0 front asks for none.
	Judge0AuthTokenFile string `toml:"judge0_auth_token_file"`

	LogFormat string `toml:"log_format"` // text or json
	LogLevel  string `toml:"log_level"`  // debug, info, warn or error
	LogCode   bool   `toml:"log_code"`   // put each job's code in its log line

	Limits struct {
		Default LimitSet `toml:"default"` // what a job gets when it asks for nothing
		Max     LimitSet `toml:"max"`     // the most a job may ask for
	} `toml:"limits"`
}

// LimitSet is one job's limits in the config file, named as in a request's "limits".
// The io ones are unlimited at 0; as maximums, 0 lets a request ask for any.
type LimitSet struct {
	CPUs        float64  `toml:"cpus"`
	CPUTime     Duration `toml:"cpu_time"`
	Memory      Size     `toml:"memory"`
	Storage     Size     `toml:"storage"`
	Pids        int64    `toml:"pids"`
	Timeout     Duration `toml:"timeout"`
	OpenFiles   int64    `toml:"open_files"`
	FileSize    Size     `toml:"file_size"`
	Stack       Size     `toml:"stack"`
	IOReadBPS   Size     `toml:"io_read_bps"`
	IOWriteBPS  Size     `toml:"io_write_bps"`
	IOReadIOPS  int64    `toml:"io_read_iops"`
	IOWriteIOPS int64    `toml:"io_write_iops"`
	IOWeight    int64    `toml:"io_weight"`
}

// Default returns the configuration of a daemon given no file and no flags.
func Default() Config {
	c := Config{
		StateDir:      "/var/lib/sandboxd",
		RunDir:        "/run/sandboxd",
		Rootfs:        "/usr/local/share/sandboxd/rootfs.tar.zst",
		ImagesDir:     "/usr/local/share/sandboxd/images",
		RuntimesDir:   "/etc/sandboxd/runtimes",
		CgroupName:    sandbox.DefaultCgroupName,
		MaxJobs:       4,
		MaxQueue:      64,
		PoolSize:      2,
		PoolSizes:     map[string]int{},
		OutputLimit:   1 << 20,
		MaxBody:       2 << 20,
		MaxCode:       512 << 10,
		ShutdownGrace: Duration(30 * time.Second),

		MaxAsyncQueue:     256,
		JobRetention:      Duration(24 * time.Hour),
		JobRetentionCount: 10000,
		JobStoreMax:       1 << 30,
		Cluster:           defaultCluster(),
		SessionMax:        8,
		SessionTTL:        Duration(10 * time.Minute),
		SessionLifetime:   Duration(time.Hour),
		SessionPool:       1,
		LogFormat:         "text",
		LogLevel:          "info",
	}
	p := sandbox.DefaultPolicy()
	c.Limits.Default, c.Limits.Max = limitSet(p.Default), limitSet(p.Max)
	return c
}

func limitSet(l sandbox.Limits) LimitSet {
	return LimitSet{CPUs: l.CPUs, CPUTime: Duration(l.CPUTime), Memory: Size(l.Memory), Storage: Size(l.Storage),
		Pids: l.Pids, Timeout: Duration(l.Timeout), OpenFiles: l.OpenFiles, FileSize: Size(l.FileSize), Stack: Size(l.Stack),
		IOReadBPS: Size(l.IOReadBPS), IOWriteBPS: Size(l.IOWriteBPS), IOReadIOPS: l.IOReadIOPS, IOWriteIOPS: l.IOWriteIOPS,
		IOWeight: l.IOWeight}
}

func (l LimitSet) limits() sandbox.Limits {
	return sandbox.Limits{CPUs: l.CPUs, CPUTime: time.Duration(l.CPUTime), Memory: int64(l.Memory), Storage: int64(l.Storage),
		Pids: l.Pids, Timeout: time.Duration(l.Timeout), OpenFiles: l.OpenFiles, FileSize: int64(l.FileSize), Stack: int64(l.Stack),
		IOReadBPS: int64(l.IOReadBPS), IOWriteBPS: int64(l.IOWriteBPS), IOReadIOPS: l.IOReadIOPS, IOWriteIOPS: l.IOWriteIOPS,
		IOWeight: l.IOWeight}
}

// Policy is the limits' defaults and maximums as the engine takes them.
func (c *Config) Policy() sandbox.Policy {
	return sandbox.Policy{Default: c.Limits.Default.limits(), Max: c.Limits.Max.limits()}
}

// JobsDir is where the async jobs' store lives: state_dir/jobs/<run_dir, '/' as '_'>.
// Daemons may share a state dir (its rootfs cache) but never a run dir (each locks its
// own), so the run dir names a daemon's store: two daemons never share one, and a
// restart with the same run_dir finds its jobs again.
func (c *Config) JobsDir() string {
	name := strings.ReplaceAll(strings.Trim(filepath.Clean(c.RunDir), "/"), "/", "_")
	if name == "" {
		name = "root"
	}
	return filepath.Join(c.StateDir, "jobs", name)
}

// ListenAddrs is Listen with its default filled in.
func (c *Config) ListenAddrs() []string {
	if len(c.Listen) > 0 {
		return c.Listen
	}
	return []string{"unix:" + filepath.Join(c.RunDir, "sandboxd.sock"), "127.0.0.1:8000"}
}

// LoadFile reads a TOML file over c. Keys it does not know are errors, so a typo is
// not silently a default. A missing file's error is fs.ErrNotExist.
func (c *Config) LoadFile(path string) error {
	md, err := toml.DecodeFile(path, c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			if pe.LastKey != "" {
				return fmt.Errorf("%s: line %d: %s: %s", path, pe.Position.Line, pe.LastKey, pe.Message)
			}
			return fmt.Errorf("%s: line %d: %s", path, pe.Position.Line, pe.Message)
		}
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if keys := md.Undecoded(); len(keys) > 0 {
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = k.String()
		}
		return fmt.Errorf("%s: unknown setting %s", path, strings.Join(names, ", "))
	}
	return nil
}

// Validate checks every setting and names the ones that are wrong. It also makes the
// directories absolute, as the daemon chdirs nowhere but its jobs' paths must not move.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	for _, d := range []struct {
		key string
		p   *string
	}{{"state_dir", &c.StateDir}, {"run_dir", &c.RunDir}} {
		if *d.p == "" {
			bad(d.key, "must be set")
			continue
		}
		abs, err := filepath.Abs(*d.p)
		if err != nil {
			bad(d.key, "%v", err)
		}
		*d.p = abs
	}
	for _, addr := range c.ListenAddrs() {
		if path, ok := strings.CutPrefix(addr, "unix:"); ok {
			if !filepath.IsAbs(path) {
				bad("listen", "%q: a unix socket path must be absolute", addr)
			}
			continue
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			bad("listen", "%q: want unix:/path or host:port", addr)
			continue
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			bad("listen", "%q: bad port", addr)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) && c.APITokenFile == "" {
			bad("listen", "%q is not loopback: set api_token_file so that remote clients need a token", addr)
		}
	}
	if c.SocketGroup != "" {
		if _, err := user.LookupGroup(c.SocketGroup); err != nil {
			bad("socket_group", "%v", err)
		}
	}
	if c.Rootfs == "" {
		bad("rootfs", "must be set (build one with scripts/mkrootfs.sh)")
	} else if !strings.HasPrefix(c.Rootfs, "sha256:") {
		if fi, err := os.Stat(c.Rootfs); err != nil {
			bad("rootfs", "%v", err)
		} else if !fi.Mode().IsRegular() {
			bad("rootfs", "%s is not a file", c.Rootfs)
		}
	}
	if c.CgroupName == "" || strings.Contains(c.CgroupName, "/") || c.CgroupName == "." || c.CgroupName == ".." {
		bad("cgroup_name", "%q must be a single path element", c.CgroupName)
	}
	if c.PoolSize < 0 {
		bad("pool_size", "must not be negative")
	}
	for name, n := range c.PoolSizes {
		if n < 0 {
			bad("pool_sizes."+name, "must not be negative")
		}
	}
	if c.MaxJobs < 1 {
		bad("max_jobs", "must be at least 1, not %d", c.MaxJobs)
	}
	if c.MaxQueue < 0 {
		bad("max_queue", "must not be negative")
	}
	for _, s := range []struct {
		key string
		v   Size
	}{{"output_limit", c.OutputLimit}, {"max_body", c.MaxBody}, {"max_code", c.MaxCode}} {
		if s.v <= 0 {
			bad(s.key, "must be positive")
		}
	}
	if c.MaxCode > c.MaxBody {
		bad("max_code", "%s exceeds max_body %s", c.MaxCode, c.MaxBody)
	}
	if c.SessionMax < 0 || c.SessionPool < 0 {
		bad("session_max", "session_max and session_pool must not be negative")
	}
	if c.SessionTTL < 0 || c.SessionLifetime < 0 || c.SessionTTL > c.SessionLifetime {
		bad("session_ttl", "session_ttl and session_lifetime must not be negative, and the TTL at most the lifetime")
	}
	if c.ShutdownGrace < 0 {
		bad("shutdown_grace", "must not be negative")
	}
	if c.MaxAsyncQueue < 1 {
		bad("max_async_queue", "must be at least 1, not %d", c.MaxAsyncQueue)
	}
	if c.JobRetention <= 0 {
		bad("job_retention", "must be positive")
	}
	if c.JobRetentionCount < 1 {
		bad("job_retention_count", "must be at least 1, not %d", c.JobRetentionCount)
	}
	if c.JobStoreMax < 1<<20 {
		bad("job_store_max", "must be at least 1MB")
	}
	for _, f := range []struct{ key, path string }{{"api_token_file", c.APITokenFile}, {"admin_token_file", c.AdminTokenFile},
		{"judge0_auth_token_file", c.Judge0AuthTokenFile}} {
		if f.path != "" {
			if _, err := readToken(f.path); err != nil {
				bad(f.key, "%v", err)
			}
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("log_format", "%q: want text or json", c.LogFormat)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("log_level", "%v", err)
	}
	c.Cluster.validate(bad)
	errs = append(errs, c.validateLimits()...)
	return errors.Join(errs...)
}

// validateLimits names the config key of a limit that is out of range: the engine's own
// check names the request field ("limits.memory"), which here is the default's.
func (c *Config) validateLimits() []error {
	var errs []error
	mx := c.Limits.Max
	for _, l := range []struct {
		name string
		ok   bool
	}{{"cpus", mx.CPUs > 0}, {"cpu_time", mx.CPUTime > 0}, {"memory", mx.Memory > 0}, {"storage", mx.Storage > 0},
		{"pids", mx.Pids > 0}, {"timeout", mx.Timeout > 0}, {"open_files", mx.OpenFiles > 0}, {"file_size", mx.FileSize > 0},
		{"stack", mx.Stack > 0}, {"io_read_bps", mx.IOReadBPS >= 0}, {"io_write_bps", mx.IOWriteBPS >= 0},
		{"io_read_iops", mx.IOReadIOPS >= 0}, {"io_write_iops", mx.IOWriteIOPS >= 0}, {"io_weight", mx.IOWeight >= 0}} {
		if !l.ok {
			errs = append(errs, fmt.Errorf("limits.max.%s: must be positive (io ones: 0 or more)", l.name))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	p := c.Policy()
	if _, err := p.Resolve(p.Default); err != nil {
		var fe *sandbox.FieldError
		if errors.As(err, &fe) {
			name := strings.TrimPrefix(fe.Field, "limits.")
			return []error{fmt.Errorf("limits.default.%s: %s (limits.max.%s bounds it)", name, fe.Message, name)}
		}
		return []error{fmt.Errorf("limits: %w", err)}
	}
	return nil
}

// Tokens reads the token files; an unset file gives "".
func (c *Config) Tokens() (api, admin string, err error) {
	if c.APITokenFile != "" {
		if api, err = readToken(c.APITokenFile); err != nil {
			return "", "", fmt.Errorf("api_token_file: %w", err)
		}
	}
	if c.AdminTokenFile != "" {
		if admin, err = readToken(c.AdminTokenFile); err != nil {
			return "", "", fmt.Errorf("admin_token_file: %w", err)
		}
	}
	return api, admin, nil
}

// Judge0Token reads judge0_auth_token_file; unset gives "".
func (c *Config) Judge0Token() (string, error) {
	if c.Judge0AuthTokenFile == "" {
		return "", nil
	}
	tok, err := readToken(c.Judge0AuthTokenFile)
	if err != nil {
		return "", fmt.Errorf("judge0_auth_token_file: %w", err)
	}
	return tok, nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("%s: a token is one line without spaces", path)
	}
	return tok, nil
}

// Size is a number of bytes, written as a number or with a unit as Docker's --memory
// is: "512MB", "512m", "1GB" (binary units: MB is MiB).
type Size int64

func (s *Size) UnmarshalText(b []byte) error {
	v, err := units.RAMInBytes(strings.TrimSpace(string(b)))
	if err != nil || v < 0 {
		return fmt.Errorf("cannot parse size %q (use e.g. \"512MB\", \"1GB\" or a number of bytes)", b)
	}
	*s = Size(v)
	return nil
}

// MarshalText writes the largest unit that keeps the value exact.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s Size) String() string {
	for _, u := range []struct {
		n    int64
		name string
	}{{1 << 40, "TB"}, {1 << 30, "GB"}, {1 << 20, "MB"}, {1 << 10, "KB"}} {
		if s != 0 && int64(s)%u.n == 0 {
			return strconv.FormatInt(int64(s)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// Set makes Size a flag.Value.
func (s *Size) Set(v string) error { return s.UnmarshalText([]byte(v)) }

// Duration is a Go duration ("10s", "1m30s") or a number of seconds.
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error {
	t := strings.TrimSpace(string(b))
	if v, err := time.ParseDuration(t); err == nil {
		*d = Duration(v)
		return nil
	}
	if n, err := strconv.ParseFloat(t, 64); err == nil && n >= 0 && n < 1e9 {
		*d = Duration(n * float64(time.Second))
		return nil
	}
	return fmt.Errorf("cannot parse duration %q (use e.g. \"10s\", \"2m\" or a number of seconds)", b)
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
func (d Duration) String() string               { return time.Duration(d).String() }
func (d *Duration) Set(v string) error          { return d.UnmarshalText([]byte(v)) }
