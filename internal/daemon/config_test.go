package daemon

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// validBase is a configuration that passes Validate on any host.
func validBase(t *testing.T) Config {
	c := Default()
	c.Rootfs = filepath.Join(t.TempDir(), "rootfs.tar.zst")
	if err := os.WriteFile(c.Rootfs, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultIsValid(t *testing.T) {
	c := validBase(t)
	if err := c.Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	want := []string{"unix:/run/sandboxd/sandboxd.sock", "127.0.0.1:8000"}
	if got := c.ListenAddrs(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("default listen %v, want %v", got, want)
	}
}

func TestLoadFile(t *testing.T) {
	c := validBase(t)
	path := writeFile(t, "config.toml", `
listen = ["unix:/tmp/x.sock"]
max_jobs = 12
output_limit = "64KB"
max_body = 3145728
shutdown_grace = "1m30s"
log_format = "json"
log_code = true

[limits.default]
memory = "256MB"
timeout = 5
io_write_bps = "1MB"

[limits.max]
memory = "8g"
timeout = "10m"
io_write_bps = "10MB"
`)
	if err := c.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen[0], "unix:/tmp/x.sock"},
		{"max_jobs", c.MaxJobs, 12},
		{"max_queue kept its default", c.MaxQueue, 64},
		{"output_limit", c.OutputLimit, Size(64 << 10)},
		{"max_body as a number", c.MaxBody, Size(3 << 20)},
		{"shutdown_grace", c.ShutdownGrace, Duration(90 * time.Second)},
		{"log_format", c.LogFormat, "json"},
		{"log_code", c.LogCode, true},
		{"limits.default.memory", c.Limits.Default.Memory, Size(256 << 20)},
		{"limits.default.timeout in seconds", c.Limits.Default.Timeout, Duration(5 * time.Second)},
		{"limits.default.cpus kept", c.Limits.Default.CPUs, 1.0},
		{"limits.max.memory", c.Limits.Max.Memory, Size(8 << 30)},
		{"limits.max.timeout", c.Limits.Max.Timeout, Duration(10 * time.Minute)},
		{"limits.max.io_write_bps", c.Limits.Max.IOWriteBPS, Size(10 << 20)},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if p := c.Policy(); p.Max.Memory != 8<<30 || p.Default.Timeout != 5*time.Second {
		t.Errorf("policy %+v", p)
	}
}

func TestLoadFileErrorsNameTheSetting(t *testing.T) {
	cases := []struct{ name, file, want string }{
		{"unknown key", "max_jobz = 3\n", "unknown setting max_jobz"},
		{"unknown nested key", "[limits.default]\nmemroy = \"1GB\"\n", "unknown setting limits.default.memroy"},
		{"bad size", "[limits.max]\nmemory = \"lots\"\n", `line 2: limits.max.memory: cannot parse size "lots"`},
		{"bad duration", "shutdown_grace = \"soon\"\n", `shutdown_grace: cannot parse duration "soon"`},
		{"wrong type", "max_jobs = \"four\"\n", "max_jobs"},
		{"syntax", "max_jobs = = 3\n", "line 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			err := cfg.LoadFile(writeFile(t, "c.toml", c.file))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one saying %q", err, c.want)
			}
		})
	}
	cfg := Default()
	if err := cfg.LoadFile(filepath.Join(t.TempDir(), "absent.toml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent file: %v, want fs.ErrNotExist", err)
	}
}

func TestValidate(t *testing.T) {
	empty := writeFile(t, "empty-token", "\n")
	good := writeFile(t, "token", "s3cret\n")
	cases := []struct {
		name   string
		change func(*Config)
		want   string // "" means valid
	}{
		{"zero jobs", func(c *Config) { c.MaxJobs = 0 }, "max_jobs: must be at least 1"},
		{"negative queue", func(c *Config) { c.MaxQueue = -1 }, "max_queue"},
		{"no rootfs", func(c *Config) { c.Rootfs = "" }, "rootfs: must be set"},
		{"missing rootfs", func(c *Config) { c.Rootfs = "/nonexistent/r.tar" }, "rootfs: stat /nonexistent/r.tar"},
		{"rootfs digest is not checked here", func(c *Config) { c.Rootfs = "sha256:00" }, ""},
		{"relative socket", func(c *Config) { c.Listen = []string{"unix:rel.sock"} }, "listen: \"unix:rel.sock\""},
		{"bad address", func(c *Config) { c.Listen = []string{"localhost"} }, "listen: \"localhost\": want"},
		{"public TCP without token", func(c *Config) { c.Listen = []string{"0.0.0.0:8000"} }, "listen: \"0.0.0.0:8000\" is not loopback"},
		{"public TCP with token", func(c *Config) { c.Listen = []string{"0.0.0.0:8000"}; c.APITokenFile = good }, ""},
		{"empty token file", func(c *Config) { c.APITokenFile = empty }, "api_token_file: " + empty + " is empty"},
		{"missing admin token file", func(c *Config) { c.AdminTokenFile = "/nonexistent" }, "admin_token_file: open /nonexistent"},
		{"unknown group", func(c *Config) { c.SocketGroup = "no-such-group-xyz" }, "socket_group"},
		{"cgroup name with a slash", func(c *Config) { c.CgroupName = "a/b" }, "cgroup_name"},
		{"code larger than body", func(c *Config) { c.MaxCode = 4 << 20 }, "max_code: 4MB exceeds max_body 2MB"},
		{"log format", func(c *Config) { c.LogFormat = "xml" }, "log_format"},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "log_level"},
		{"default over max", func(c *Config) { c.Limits.Default.Memory = 8 << 30 }, "limits.default.memory: 8GiB is outside"},
		{"default under the floor", func(c *Config) { c.Limits.Default.Pids = 1 }, "limits.default.pids"},
		{"zero max", func(c *Config) { c.Limits.Max.Timeout = 0 }, "limits.max.timeout: must be positive"},
		{"state dir made absolute", func(c *Config) { c.StateDir = "rel" }, ""},
		{"cluster", func(c *Config) {
			c.Cluster.NATSURL, c.Cluster.Node = "nats://127.0.0.1:4222,nats://10.0.0.2:4222", "n1"
		}, ""},
		{"cluster node defaults to the host name", func(c *Config) { c.Cluster.NATSURL = "nats://127.0.0.1:4222" }, ""},
		{"cluster URL scheme", func(c *Config) { c.Cluster.NATSURL = "http://127.0.0.1:4222" }, "cluster.nats_url: \"http://127.0.0.1:4222\": want nats://"},
		{"cluster URL without host", func(c *Config) { c.Cluster.NATSURL = "nats://" }, "cluster.nats_url: \"nats://\" has no host"},
		{"cluster URL with a password", func(c *Config) { c.Cluster.NATSURL = "nats://u:p@h:4222" }, "cluster.nats_url: \"nats://u:p@h:4222\" holds credentials"},
		{"cluster node", func(c *Config) { c.Cluster.NATSURL, c.Cluster.Node = "nats://h:4222", "a b" }, "cluster.node: \"a b\""},
		{"cluster stream", func(c *Config) { c.Cluster.NATSURL, c.Cluster.Stream = "nats://h:4222", "a.b" }, "cluster.stream: \"a.b\""},
		{"cluster bucket", func(c *Config) { c.Cluster.NATSURL, c.Cluster.Bucket = "nats://h:4222", "" }, "cluster.bucket"},
		{"cluster creds", func(c *Config) { c.Cluster.NATSURL, c.Cluster.CredsFile = "nats://h:4222", "/nonexistent.creds" }, "cluster.credentials_file: stat /nonexistent.creds"},
		{"cluster ack wait", func(c *Config) { c.Cluster.NATSURL, c.Cluster.AckWait = "nats://h:4222", Duration(time.Millisecond) }, "cluster.ack_wait: must be from 1s to 10m, not 1ms"},
		{"cluster replicas", func(c *Config) { c.Cluster.NATSURL, c.Cluster.Replicas = "nats://h:4222", 7 }, "cluster.replicas: must be from 1 to 5, not 7"},
		{"cluster settings unchecked while off", func(c *Config) { c.Cluster.Replicas = 7 }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validBase(t)
			tc.change(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("want valid, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
			if !filepath.IsAbs(c.StateDir) || !filepath.IsAbs(c.RunDir) {
				t.Errorf("dirs not made absolute: %q %q", c.StateDir, c.RunDir)
			}
		})
	}
	t.Run("every error at once", func(t *testing.T) {
		c := validBase(t)
		c.MaxJobs, c.LogFormat = 0, "xml"
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "max_jobs") || !strings.Contains(err.Error(), "log_format") {
			t.Errorf("error %v, want both settings named", err)
		}
	})
}

func TestTokens(t *testing.T) {
	c := Default()
	c.APITokenFile = writeFile(t, "api", "  abc\n")
	api, admin, err := c.Tokens()
	if err != nil || api != "abc" || admin != "" {
		t.Errorf("Tokens() = %q, %q, %v", api, admin, err)
	}
	c.AdminTokenFile = writeFile(t, "admin", "two words")
	if _, _, err := c.Tokens(); err == nil || !strings.Contains(err.Error(), "admin_token_file") {
		t.Errorf("a token with a space: %v", err)
	}
}

// What --check-config prints reads back as the same configuration.
func TestRoundTrip(t *testing.T) {
	c := Default()
	c.Limits.Max.Memory = 1536 << 20
	c.OutputLimit = 1000
	c.ShutdownGrace = Duration(1500 * time.Millisecond)
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		t.Fatal(err)
	}
	var back Config
	if _, err := toml.Decode(buf.String(), &back); err != nil {
		t.Fatalf("%v in:\n%s", err, buf.String())
	}
	if back.Limits != c.Limits || back.OutputLimit != c.OutputLimit || back.ShutdownGrace != c.ShutdownGrace {
		t.Errorf("round trip changed the config:\n%s", buf.String())
	}
}

func TestRestartOnly(t *testing.T) {
	a := Default()
	b := a
	b.Limits.Default.CPUs, b.LogLevel, b.ShutdownGrace = 2, "debug", 0
	if got := restartOnly(a, b); len(got) != 0 {
		t.Errorf("reloadable changes reported as needing a restart: %v", got)
	}
	b.MaxJobs, b.Listen = 9, []string{"127.0.0.1:1"}
	if got := strings.Join(restartOnly(a, b), ","); got != "listen,max_jobs" {
		t.Errorf("restartOnly = %s, want listen,max_jobs", got)
	}
}

// The example config installed to /etc/sandboxd documents every setting with its
// default: uncommented, it must load, and every value must be Default()'s.
func TestExampleConfig(t *testing.T) {
	b, err := os.ReadFile("../../scripts/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	setting := regexp.MustCompile(`^# ([a-z0-9_]+ = .*)$`)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		lines = append(lines, setting.ReplaceAllString(l, "$1"))
	}
	path := writeFile(t, "config.toml", strings.Join(lines, "\n"))
	got := Default()
	md, err := toml.DecodeFile(path, &got)
	if err != nil || len(md.Undecoded()) > 0 {
		t.Fatalf("the example, uncommented: %v, unknown %v", err, md.Undecoded())
	}
	want := Default()
	want.SocketGroup = "sandboxd"
	want.Listen = want.ListenAddrs()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the example's values are not the defaults:\n%+v\n%+v", got, want)
	}
	// Every setting is there: the keys decoded are all the fields.
	documented := map[string]bool{}
	for _, k := range md.Keys() {
		documented[k.String()] = true
	}
	var all func(prefix string, v reflect.Value)
	all = func(prefix string, v reflect.Value) {
		for i := range v.NumField() {
			key := prefix + v.Type().Field(i).Tag.Get("toml")
			if v.Field(i).Kind() == reflect.Struct {
				all(key+".", v.Field(i))
			} else if !documented[key] {
				t.Errorf("the example does not document %s", key)
			}
		}
	}
	all("", reflect.ValueOf(want))
}

// Each run dir has a job store of its own under the state dir; the same run dir, the same store.
func TestJobsDir(t *testing.T) {
	c := Default()
	if got := c.JobsDir(); got != "/var/lib/sandboxd/jobs/run_sandboxd" {
		t.Errorf("default: %s", got)
	}
	c.RunDir = "/tmp/sandboxd-test-1/"
	other := Default()
	other.RunDir = "/tmp/sandboxd-test-2"
	if c.JobsDir() == other.JobsDir() || c.JobsDir() != "/var/lib/sandboxd/jobs/tmp_sandboxd-test-1" {
		t.Errorf("%s %s", c.JobsDir(), other.JobsDir())
	}
}
