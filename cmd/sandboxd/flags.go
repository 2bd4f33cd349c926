package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/sandboxd/sandboxd/internal/daemon"
)

// cliOpts are the flags that are not settings.
type cliOpts struct {
	configPath  string
	checkConfig bool
	version     bool
}

// newFlagSet binds one flag to each setting of cfg: the setting's name with dashes.
func newFlagSet(cfg *daemon.Config, o *cliOpts) *flag.FlagSet {
	f := flag.NewFlagSet("sandboxd", flag.ContinueOnError)
	f.StringVar(&o.configPath, "config", "", "config file (TOML); default "+daemon.DefaultConfigFile+", if it exists")
	f.BoolVar(&o.checkConfig, "check-config", false, "validate the configuration, print it in effect and exit")
	f.BoolVar(&o.version, "version", false, "print the version and exit")
	f.Var(&listValue{p: &cfg.Listen}, "listen", "address to serve: host:port or unix:/path (repeatable; default unix:<run-dir>/sandboxd.sock and 127.0.0.1:8000)")
	f.StringVar(&cfg.SocketGroup, "socket-group", cfg.SocketGroup, "group owning the unix socket (mode 0660)")
	f.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "persistent state: the unpacked root filesystems")
	f.StringVar(&cfg.RunDir, "run-dir", cfg.RunDir, "runtime state: containers and job storage (a tmpfs)")
	f.StringVar(&cfg.Rootfs, "rootfs", cfg.Rootfs, "root filesystem tarball jobs run on (tar, tar.gz, tar.zst), or sha256:<hex> of an imported one")
	f.StringVar(&cfg.ImagesDir, "images-dir", cfg.ImagesDir, "directory of the other runtimes' images, <image>.tar.zst")
	f.StringVar(&cfg.RuntimesDir, "runtimes-dir", cfg.RuntimesDir, "directory of runtime definitions (*.toml) added to the shipped ones")
	f.StringVar(&cfg.CgroupName, "cgroup-name", cfg.CgroupName, "cgroup below the daemon's own that holds its jobs")
	f.IntVar(&cfg.MaxJobs, "max-jobs", cfg.MaxJobs, "jobs run at once")
	f.IntVar(&cfg.MaxQueue, "max-queue", cfg.MaxQueue, "requests that may wait for a job slot; more get 429")
	f.IntVar(&cfg.PoolSize, "pool-size", cfg.PoolSize, "warm containers kept ready for jobs of the default shape; 0 disables the pool")
	f.BoolVar(&cfg.ForkServer, "fork-server", cfg.ForkServer, "python's pool is fork servers (one job at a time each, in fresh namespaces) instead of single-use containers")
	f.Var(&cfg.OutputLimit, "output-limit", "kept of each of stdout and stderr")
	f.Var(&cfg.MaxBody, "max-body", "size of a request body; more get 413")
	f.Var(&cfg.MaxCode, "max-code", "size of the code field; more gets 413")
	f.IntVar(&cfg.SessionMax, "session-max", cfg.SessionMax, "code-interpreter sessions alive at once; 0 turns sessions off")
	f.IntVar(&cfg.SessionPool, "session-pool", cfg.SessionPool, "started kernels kept ready for sessions of the default shape")
	f.Var(&cfg.ShutdownGrace, "shutdown-grace", "on stop, how long running jobs may finish before they are killed")
	f.StringVar(&cfg.APITokenFile, "api-token-file", cfg.APITokenFile, "file holding the bearer token TCP clients must send")
	f.StringVar(&cfg.AdminTokenFile, "admin-token-file", cfg.AdminTokenFile, "file holding the bearer token for /v1/admin on TCP")
	f.StringVar(&cfg.Judge0AuthTokenFile, "judge0-auth-token-file", cfg.Judge0AuthTokenFile, "file holding the token Judge0 clients send as X-Auth-Token")
	f.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "log format: text or json")
	f.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log level: debug, info, warn or error")
	f.BoolVar(&cfg.LogCode, "log-code", cfg.LogCode, "put each job's code in its log line")
	for _, l := range []struct {
		name string
		set  *daemon.LimitSet
	}{{"default", &cfg.Limits.Default}, {"max", &cfg.Limits.Max}} {
		f.Float64Var(&l.set.CPUs, l.name+"-cpus", l.set.CPUs, "limits."+l.name+".cpus: CPU cores")
		f.Var(&l.set.CPUTime, l.name+"-cpu-time", "limits."+l.name+".cpu_time: CPU time of all processes, e.g. 10s")
		f.Var(&l.set.Memory, l.name+"-memory", "limits."+l.name+".memory: RAM, e.g. 512MB")
		f.Var(&l.set.Storage, l.name+"-storage", "limits."+l.name+".storage: the job's /work and /tmp")
		f.Int64Var(&l.set.Pids, l.name+"-pids", l.set.Pids, "limits."+l.name+".pids: processes and threads")
		f.Var(&l.set.Timeout, l.name+"-timeout", "limits."+l.name+".timeout: wall-clock time, e.g. 10s")
	}
	return f
}

// loadConfig builds the configuration: defaults, then the config file, then the flags
// given, which win; then validates it. Parsing the flags twice lets --config name the
// file whose values the other flags override.
func loadConfig(args []string, out io.Writer) (daemon.Config, cliOpts, error) {
	var o cliOpts
	scratch := daemon.Default()
	f := newFlagSet(&scratch, &o)
	f.SetOutput(out)
	if err := f.Parse(args); err != nil {
		return scratch, o, err
	}
	if f.NArg() > 0 {
		return scratch, o, fmt.Errorf("unexpected argument %q (settings are flags or in the config file)", f.Arg(0))
	}
	cfg := daemon.Default()
	path := o.configPath
	if path == "" {
		path = daemon.DefaultConfigFile
	}
	if err := cfg.LoadFile(path); err != nil && (o.configPath != "" || !errors.Is(err, fs.ErrNotExist)) {
		return cfg, o, err
	}
	if err := newFlagSet(&cfg, &cliOpts{}).Parse(args); err != nil {
		return cfg, o, err
	}
	return cfg, o, cfg.Validate()
}

// listValue is a repeatable flag; given at all, it replaces the file's list.
type listValue struct {
	p   *[]string
	set bool
}

func (l *listValue) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l *listValue) Set(v string) error {
	if !l.set {
		*l.p, l.set = nil, true
	}
	*l.p = append(*l.p, v)
	return nil
}
