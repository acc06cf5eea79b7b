package httpapi

import (
	"net/http"
	"net/http/pprof"
)

// Go's profiler, only with Options.Pprof, behind the admin token when one
// is set (a profile shows a lot about the process).
func (a *API) pprofRoutes() {
	if !a.opts.Pprof {
		return
	}
	handle := a.Handle
	if *a.token.Load() != "" {
		handle = a.HandleAdmin
	}
	handle(http.MethodGet, "/debug/pprof/", http.HandlerFunc(pprof.Index))
	handle(http.MethodGet, "/debug/pprof/cmdline", http.HandlerFunc(pprof.Cmdline))
	handle(http.MethodGet, "/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	handle(http.MethodGet, "/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
	handle(http.MethodPost, "/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
	handle(http.MethodGet, "/debug/pprof/trace", http.HandlerFunc(pprof.Trace))
}
