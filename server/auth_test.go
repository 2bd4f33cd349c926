package server

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// serveBoth serves h on TCP and on a unix socket, as the daemon does, with client info.
func serveBoth(t *testing.T, h http.Handler) (tcp, unix *http.Client, tcpURL string) {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ConnContext = ConnContext
	ts.Start()
	t.Cleanup(ts.Close)
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ConnContext: ConnContext}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	unix = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	return ts.Client(), unix, ts.URL
}

func TestAuth(t *testing.T) {
	var auth Auth
	var seen Client
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = ClientFrom(r.Context())
		w.WriteHeader(http.StatusOK)
	})
	tcp, unix, base := serveBoth(t, auth.Wrap(ok))
	call := func(c *http.Client, url, path, tok string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", tok)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	cases := []struct {
		name       string
		api, admin string // configured tokens
		unix       bool
		path, tok  string
		want       int
	}{
		{"no tokens: API open on loopback TCP", "", "", false, "/v1/execute", "", 200},
		{"no tokens: admin refused on TCP", "", "", false, "/v1/admin/status", "", 403},
		{"no tokens: admin token sent, still refused", "", "", false, "/v1/admin/status", "Bearer x", 403},
		{"healthz open without token", "api", "adm", false, "/healthz", "", 200},
		{"readyz open without token", "api", "adm", false, "/readyz", "", 200},
		{"metrics need the token", "api", "adm", false, "/metrics", "", 401},
		{"API needs the token", "api", "adm", false, "/v1/execute", "", 401},
		{"wrong token", "api", "adm", false, "/v1/execute", "Bearer apx", 401},
		{"prefix of the token", "api", "adm", false, "/v1/execute", "Bearer ap", 401},
		{"token and more", "api", "adm", false, "/v1/execute", "Bearer apii", 401},
		{"not a bearer", "api", "adm", false, "/v1/execute", "Basic api", 401},
		{"API token", "api", "adm", false, "/v1/execute", "Bearer api", 200},
		{"scheme in any case", "api", "adm", false, "/metrics", "bearer api", 200},
		{"admin token works for the API", "api", "adm", false, "/v1/execute", "Bearer adm", 200},
		{"API token is not admin", "api", "adm", false, "/v1/admin/status", "Bearer api", 401},
		{"admin token", "api", "adm", false, "/v1/admin/jobs", "Bearer adm", 200},
		{"admin token only: API open", "", "adm", false, "/v1/execute", "", 200},
		{"unix socket: API without token", "api", "adm", true, "/v1/execute", "", 200},
		{"unix socket: admin without token", "api", "adm", true, "/v1/admin/drain", "", 200},
		{"unix socket, no admin token configured", "", "", true, "/v1/admin/status", "", 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			auth.SetTokens(c.api, c.admin)
			cl, url := tcp, base
			if c.unix {
				cl, url = unix, "http://sandboxd"
			}
			if got := call(cl, url, c.path, c.tok); got != c.want {
				t.Errorf("%s with %q: %d, want %d", c.path, c.tok, got, c.want)
			}
		})
	}

	t.Run("reload replaces tokens", func(t *testing.T) {
		auth.SetTokens("old", "")
		if got := call(tcp, base, "/v1/execute", "Bearer old"); got != 200 {
			t.Fatalf("old token before reload: %d", got)
		}
		auth.SetTokens("new", "")
		if got := call(tcp, base, "/v1/execute", "Bearer old"); got != 401 {
			t.Errorf("old token after reload: %d, want 401", got)
		}
		if got := call(tcp, base, "/v1/execute", "Bearer new"); got != 200 {
			t.Errorf("new token after reload: %d, want 200", got)
		}
	})

	t.Run("peer credentials on the socket", func(t *testing.T) {
		call(unix, "http://sandboxd", "/healthz", "")
		if !seen.Unix || seen.UID != os.Getuid() || seen.PID != os.Getpid() {
			t.Errorf("unix client %+v, want uid %d pid %d", seen, os.Getuid(), os.Getpid())
		}
		call(tcp, base, "/healthz", "")
		if seen.Unix || seen.UID != -1 || seen.Addr == "" {
			t.Errorf("TCP client %+v, want a remote address", seen)
		}
	})
}

// A request that bypassed ConnContext must not pass for a trusted socket peer.
func TestAuthWithoutConnInfoIsRemote(t *testing.T) {
	var auth Auth
	auth.SetTokens("api", "")
	h := auth.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for path, want := range map[string]int{"/v1/execute": 401, "/v1/admin/status": 403, "/healthz": 200} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", path, rec.Code, want)
		}
	}
}

// The session fronts' credentials on TCP with an API token: Jupyter's "token" scheme,
// the E2B SDK's X-API-KEY on its control plane, and its data plane left to the
// per-sandbox token the handler checks.
func TestAuthSessionFronts(t *testing.T) {
	var auth Auth
	auth.SetTokens("api-tok", "")
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	tcp, _, base := serveBoth(t, auth.Wrap(ok))
	for _, c := range []struct {
		name, path string
		header     [2]string
		want       int
	}{
		{"jupyter token scheme", "/api/kernels", [2]string{"Authorization", "token api-tok"}, 200},
		{"jupyter wrong token", "/api/kernels", [2]string{"Authorization", "token nope"}, 401},
		{"e2b api key", "/e2b/api/v2/sandboxes", [2]string{"X-API-KEY", "api-tok"}, 200},
		{"e2b wrong api key", "/e2b/api/v2/sandboxes", [2]string{"X-API-KEY", "nope"}, 401},
		{"x-api-key elsewhere is no token", "/v1/sessions", [2]string{"X-API-KEY", "api-tok"}, 401},
		{"e2b data plane: the handler checks", "/e2b/sandbox/execute", [2]string{}, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, base+c.path, nil)
			if c.header[0] != "" {
				req.Header.Set(c.header[0], c.header[1])
			}
			resp, err := tcp.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("%d, want %d", resp.StatusCode, c.want)
			}
		})
	}
}
