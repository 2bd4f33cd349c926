package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"sync/atomic"
)

// AdminPrefix is where the admin endpoints live.
const AdminPrefix = "/v1/admin/"

// Auth decides who may call what. On the unix socket its permissions (mode 0660, the
// configured group) are the credential: a peer that can connect may do anything, as with
// docker.sock. On TCP, /healthz and /readyz are open (probes carry no token); the admin endpoints need the admin token and are
// refused when none is configured; everything else needs the API token when one is
// configured (the admin token works there too). Tokens can be replaced at run time.
type Auth struct {
	api, admin atomic.Pointer[[sha256.Size]byte] // digests; nil when not configured
}

// SetTokens replaces the tokens; an empty one is not configured.
func (a *Auth) SetTokens(api, admin string) {
	a.api.Store(digest(api))
	a.admin.Store(digest(admin))
}

// HasAPIToken reports whether TCP requests must carry the API token.
func (a *Auth) HasAPIToken() bool { return a.api.Load() != nil }

func digest(tok string) *[sha256.Size]byte {
	if tok == "" {
		return nil
	}
	d := sha256.Sum256([]byte(tok))
	return &d
}

// matches compares in constant time; hashing first hides the token's length too.
func matches(got string, want *[sha256.Size]byte) bool {
	if want == nil || got == "" {
		return false
	}
	d := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(d[:], want[:]) == 1
}

// bearer is the request's API token: "Authorization: Bearer <token>", Jupyter's
// "Authorization: token <token>" (what Jupyter clients send a gateway), or, for the E2B
// control plane, the SDK's X-API-KEY (E2B_API_KEY).
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	if len(h) > 6 && strings.EqualFold(h[:6], "token ") {
		return strings.TrimSpace(h[6:])
	}
	if strings.HasPrefix(r.URL.Path, e2bAPIPrefix) {
		return r.Header.Get("X-API-KEY")
	}
	return ""
}

// Wrap puts next behind the checks above.
func (a *Auth) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The E2B data plane carries no API token: each request carries its sandbox's own
		// token, which only the creator (who had the API token) was given; it checks that.
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || ClientFrom(r.Context()).Unix || strings.HasPrefix(r.URL.Path, e2bSandboxPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		tok, admin := bearer(r), a.admin.Load()
		if strings.HasPrefix(r.URL.Path, AdminPrefix) {
			switch {
			case admin == nil:
				writeError(w, http.StatusForbidden, "", "admin endpoints are served on the unix socket only: no admin token is configured")
			case !matches(tok, admin):
				unauthorized(w, "admin endpoints need the admin token")
			default:
				next.ServeHTTP(w, r)
			}
			return
		}
		if api := a.api.Load(); api != nil && !matches(tok, api) && !matches(tok, admin) {
			unauthorized(w, "missing or wrong API token (Authorization: Bearer <token>)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="sandboxd"`)
	writeError(w, http.StatusUnauthorized, "", msg)
}
