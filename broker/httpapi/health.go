package httpapi

import "net/http"

// /healthz: the process serves HTTP (liveness). /readyz: the broker is
// recovered, listening and able to write its store, and every extra
// check passes (readiness); 503 with the reason otherwise.
func (a *API) healthRoutes() {
	a.Handle(http.MethodGet, "/healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	a.Handle(http.MethodGet, "/readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.ready(); err != nil {
			writeError(w, http.StatusServiceUnavailable, "not_ready", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}))
}

func (a *API) ready() error {
	if err := a.srv.Ready(); err != nil {
		return err
	}
	for _, c := range a.opts.ReadyChecks {
		if err := c(); err != nil {
			return err
		}
	}
	return nil
}
