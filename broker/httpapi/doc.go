// Package httpapi is cim's HTTP listener: one http.Handler serving
// Prometheus /metrics, the /healthz and /readyz probes, the bearer-token
// admin API under /v1/admin, MQTT over WebSocket at /mqtt, and (behind a
// flag) Go's pprof. It uses only broker's exported API; broker never
// imports it.
//
//	             ┌ /healthz, /readyz        health.go
//	             ├ /metrics                 metrics.go, metrics_storage.go
//	request ─ mux┼ /v1/admin/...  (bearer)  admin.go
//	             ├ /mqtt  (WebSocket)       ws.go ── broker.Server.Bridge
//	             ├ /debug/pprof/ (flag)     pprof.go
//	             └ anything else            404 {"code":"not_found",...}
//
// Every error is JSON, {"code": "...", "message": "..."}, with the HTTP
// status that fits: 400 bad input, 401 no or wrong token, 403 admin API
// disabled, 404 unknown route or client, 405 wrong method (with Allow),
// 413 body too large, 503 not ready.
//
// Adding a concern (the cim-compatible route API, the native /ws) is one
// file: a method func (a *API) xRoutes() that calls a.Handle or
// a.HandleAdmin for each route, listed in concerns (api.go). Another
// package can add routes to an API with the same two methods before it
// serves.
//
// tls.go holds the certificates of the TLS listeners (MQTT over TLS, WSS),
// re-read on a reload.
package httpapi
