package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Flags after a command's arguments move before them; nothing else changes.
func TestFlagsFirst(t *testing.T) {
	app := newApp(nil, io.Discard, io.Discard)
	for _, c := range []struct{ in, want string }{
		{"status --json", "status --json"},
		{"--json status", "--json status"},
		{"run hello.py --json", "run --json hello.py"},
		{"run hello.py --timeout 30s --json", "run --timeout 30s --json hello.py"},
		{"run hello.py --timeout=30s", "run --timeout=30s hello.py"},
		{"run - --memory 1GB", "run --memory 1GB -"},
		{"--socket /s run a.py --socket /t", "--socket /s run --socket /t a.py"},
		{"kill sbx-1 --json", "kill --json sbx-1"},
		{"rootfs import img.tar --json", "rootfs import --json img.tar"},
		{"rootfs ls --json", "rootfs ls --json"},
		{"run a.py -- --json", "run a.py -- --json"},
		{"run --gpu 0 a.py", "run --gpu 0 a.py"},
		{"run status", "run status"}, // a file named like a command stays an argument
		{"run a.py --nope", "run --nope a.py"},
	} {
		got := flagsFirst(app, append([]string{"sandboxctl"}, strings.Fields(c.in)...))
		if want := append([]string{"sandboxctl"}, strings.Fields(c.want)...); !slices.Equal(got, want) {
			t.Errorf("%q: got %q, want %q", c.in, got[1:], want[1:])
		}
	}
}

// The common flags work before the command, after it and after its arguments, against a
// stand-in daemon on a unix socket (no root needed).
func TestCommonFlagsAnywhere(t *testing.T) {
	var mu sync.Mutex
	var auth []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/admin/status", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		io.WriteString(w, `{"version":"fake","state":"serving","jobs":{"running":0,"queued":0}}`)
	})
	mux.HandleFunc("POST /v1/execute", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"id":"sbx-1","status":"ok","exit_code":0,"stdout":"hi\n","stderr":""}`)
	})
	mux.HandleFunc("POST /v1/admin/jobs/{id}/kill", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"killed":"`+r.PathValue("id")+`"}`)
	})
	mux.HandleFunc("POST /v1/admin/drain", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"draining":true,"running":0,"queued":0}`)
	})
	sock := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	tcp := httptest.NewServer(mux)
	defer tcp.Close()
	py := file(t, "hello.py", "print('hi')")

	isJSON := func(s string, key, want string) bool {
		var m map[string]any
		return json.Unmarshal([]byte(s), &m) == nil && m[key] == want
	}
	for _, c := range []struct {
		name string
		args []string
		json string // key whose value the JSON answer must have, or "" for text
		want string
	}{
		{"json before the command", []string{"--socket", sock, "--json", "status"}, "version", "fake"},
		{"json after the command", []string{"--socket", sock, "status", "--json"}, "version", "fake"},
		{"socket after the command", []string{"status", "--socket", sock, "--json"}, "version", "fake"},
		{"text without json", []string{"status", "--socket", sock}, "", "state:"},
		{"json after FILE", []string{"--socket", sock, "run", py, "--json"}, "stdout", "hi\n"},
		{"socket after FILE", []string{"run", py, "--socket", sock}, "", "hi\n"},
		{"kill json after ID", []string{"kill", "sbx-9", "--socket", sock, "--json"}, "killed", "sbx-9"},
		{"kill text", []string{"kill", "sbx-9", "--socket", sock}, "", "killed sbx-9"},
		{"drain json", []string{"drain", "--json", "--socket", sock}, "", `"draining": true`},
		{"url and token after the command", []string{"status", "--url", tcp.URL, "--token", "t-after"}, "", "version:"},
		{"url and token before it", []string{"--url", tcp.URL, "--token", "t-before", "status"}, "", "version:"},
		{"token-file after the command", []string{"status", "--url", tcp.URL, "--token-file", file(t, "tok", "t-file\n")}, "", "version:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := ctl(t, nil, "", c.args...)
			if o.code != 0 {
				t.Fatalf("exit %d: %s%s", o.code, o.stdout, o.stderr)
			}
			if c.json != "" && !isJSON(o.stdout, c.json, c.want) {
				t.Errorf("stdout %q, want JSON with %s=%q", o.stdout, c.json, c.want)
			}
			if c.json == "" && !strings.Contains(o.stdout, c.want) {
				t.Errorf("stdout %q, want %q", o.stdout, c.want)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"Bearer t-after", "Bearer t-before", "Bearer t-file"} {
		if !slices.Contains(auth, want) {
			t.Errorf("the daemon never got %q: %q", want, auth)
		}
	}
	if o := ctl(t, nil, "", "status", "--bogus"); o.code == 0 || !strings.Contains(o.stderr, "bogus") {
		t.Errorf("an unknown flag: %+v", o)
	}
}
