package httpapi

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cimgo/cim/broker"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure an API. The zero value serves everything but the
// admin API and pprof.
type Options struct {
	// Addr is the address the API is served on; cim's /login answers
	// with its port.
	Addr string
	// AdminToken is the bearer token of /v1/admin; "" disables the admin
	// API (403). SetAdminToken changes it at run time.
	AdminToken string
	// Pprof mounts Go's /debug/pprof/ handlers (behind the admin token
	// when one is set). Default off.
	Pprof bool
	// MaxBodyBytes bounds a request body. Default 1 MiB.
	MaxBodyBytes int64
	// WebSocketIdentityAsUser logs a WSS client with a verified certificate
	// in as the certificate's identity (broker.BridgeInfo.IdentityAsUser).
	WebSocketIdentityAsUser bool
	// TrustedProxies are reverse proxies in front of the listener: a
	// WebSocket whose TCP peer is one is known by the rightmost address of
	// X-Forwarded-For that is not one (what the nearest untrusted hop
	// said). Without them, X-Forwarded-For is ignored: a client could
	// name any address.
	TrustedProxies []netip.Prefix
	// ReadyChecks are more conditions of /readyz (beyond the broker's
	// Ready); each returns nil when ready.
	ReadyChecks []func() error
	// Registry receives the metrics. Default: a new registry with the Go
	// and process collectors.
	Registry *prometheus.Registry
	// Logger receives the API's logs. Default slog.Default().
	Logger *slog.Logger
}

// ErrOptions is wrapped by Options.Validate errors.
var ErrOptions = errors.New("httpapi: invalid options")

// EnsureDefaults fills unset fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports the first bad field.
func (o *Options) Validate() error {
	if o.MaxBodyBytes < 0 {
		return fmt.Errorf("%w: MaxBodyBytes: negative", ErrOptions)
	}
	return nil
}

// API is the HTTP handler of one broker node.
type API struct {
	srv   *broker.Server
	opts  Options
	log   *slog.Logger
	mux   *http.ServeMux
	reg   *prometheus.Registry
	token atomic.Pointer[string]

	mu      sync.Mutex
	methods map[string][]string // REQUIRES: mu held. path pattern -> its methods, for 405's Allow
	paths   *http.ServeMux      // REQUIRES: mu held. every path pattern without its method: which one a request's path matches
}

// concerns are the files of routes; each registers its own. A new concern
// is a new file and a line here.
var concerns = []func(*API){
	(*API).healthRoutes,
	(*API).metricsRoutes,
	(*API).adminRoutes,
	(*API).webSocketRoutes,
	(*API).imRoutes,
	(*API).pprofRoutes,
}

// New builds the API of srv.
func New(srv *broker.Server, opts Options) (*API, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	a := &API{srv: srv, opts: opts, log: opts.Logger, mux: http.NewServeMux(), paths: http.NewServeMux(), methods: map[string][]string{}}
	a.SetAdminToken(opts.AdminToken)
	a.mux.HandleFunc("/", a.notFound)
	for _, c := range concerns {
		c(a)
	}
	return a, nil
}

// Handler is the API's http.Handler.
func (a *API) Handler() http.Handler { return a.mux }

// Handle routes method + path (a net/http pattern path such as
// "/v1/admin/clients/{id}") to h, with the body size bound; the path
// answers 405 with Allow for other methods. Call it before serving (or
// from a concern).
func (a *API) Handle(method, path string, h http.Handler) {
	a.mux.Handle(method+" "+path, a.limitBody(h))
	a.mu.Lock()
	defer a.mu.Unlock()
	ms, seen := a.methods[path]
	a.methods[path] = append(ms, method)
	if !seen {
		a.paths.Handle(path, http.NotFoundHandler()) // only asked for its pattern
	}
}

// notFound answers what no route took: 405 with Allow when the path has
// routes for other methods, else 404.
func (a *API) notFound(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	_, path := a.paths.Handler(r)
	allow := slices.Clone(a.methods[path])
	a.mu.Unlock()
	if path == "" || len(allow) == 0 {
		writeError(w, http.StatusNotFound, "not_found", "no route for "+r.Method+" "+r.URL.Path)
		return
	}
	if slices.Contains(allow, http.MethodGet) && !slices.Contains(allow, http.MethodHead) {
		allow = append(allow, http.MethodHead)
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" not allowed on "+r.URL.Path+"; allowed: "+strings.Join(allow, ", "))
}

// HandleAdmin is Handle behind the admin bearer token.
func (a *API) HandleAdmin(method, path string, h http.Handler) {
	a.Handle(method, path, a.requireAdmin(h))
}

// SetAdminToken replaces the admin token ("" disables the admin API).
// Any goroutine.
func (a *API) SetAdminToken(token string) { a.token.Store(&token) }

// Registry is where the API's metrics are registered; more collectors may
// be added to it.
func (a *API) Registry() *prometheus.Registry { return a.reg }

func (a *API) limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > a.opts.MaxBodyBytes {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body of %d bytes; at most %d", r.ContentLength, a.opts.MaxBodyBytes))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, a.opts.MaxBodyBytes)
		h.ServeHTTP(w, r)
	})
}

func (a *API) requireAdmin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := *a.token.Load()
		if want == "" {
			writeError(w, http.StatusForbidden, "admin_disabled", "the admin API is disabled: set admin_token (--admin-token)")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cim admin"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
			return
		}
		h.ServeHTTP(w, r)
	})
}
