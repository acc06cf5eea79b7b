package httpapi

import (
	"net/http"
	"reflect"

	"github.com/cimgo/cim/broker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// statMetric exports one field of broker.StatsSnapshot.
type statMetric struct {
	field  string // StatsSnapshot field
	name   string
	help   string
	gauge  bool     // a level (connected clients), not a count
	labels []string // constant label pairs: name, value
}

// statMetrics exports every field of broker.StatsSnapshot (a test checks
// that none is missing) and with them what $SYS publishes.
var statMetrics = []statMetric{
	{field: "ClientsConnected", name: "cim_clients_connected", help: "MQTT/native clients logged in now ($SYS clients/connected).", gauge: true},
	{field: "ClientsTotal", name: "cim_connections_accepted_total", help: "Sockets accepted since start ($SYS clients/total)."},
	{field: "MessagesIn", name: "cim_messages_received_total", help: "PUBLISH packets (and server publishes) received ($SYS messages/received)."},
	{field: "MessagesOut", name: "cim_messages_sent_total", help: "PUBLISH packets sent ($SYS messages/sent)."},
	{field: "BytesIn", name: "cim_bytes_received_total", help: "Bytes read from clients ($SYS bytes/received)."},
	{field: "BytesOut", name: "cim_bytes_sent_total", help: "Bytes written to clients ($SYS bytes/sent)."},
	{field: "Dropped", name: "cim_messages_dropped_total", help: "Messages dropped ($SYS messages/dropped is the sum over reasons).", labels: []string{"reason", "outbound_full_or_too_large"}},
	{field: "QueueDropped", name: "cim_messages_dropped_total", help: "Messages dropped ($SYS messages/dropped is the sum over reasons).", labels: []string{"reason", "session_queue_full"}},
	{field: "QueueRejected", name: "cim_messages_rejected_total", help: "QoS 1/2 publishes refused (PUBACK 0x97) because a receiver's stored queue was full (queue_full_policy reject-new)."},
	{field: "Expired", name: "cim_messages_expired_total", help: "Messages whose expiry passed before delivery."},
	{field: "Retained", name: "cim_retained_messages", help: "Retained messages held ($SYS retained messages/count).", gauge: true},
	{field: "Sessions", name: "cim_sessions", help: "Sessions held, online or not ($SYS sessions/count).", gauge: true},
	{field: "Subscriptions", name: "cim_subscriptions", help: "Subscriptions held ($SYS subscriptions/count).", gauge: true},
	{field: "ProtocolErrors", name: "cim_protocol_errors_total", help: "Connections closed for bad input."},
	{field: "InputTimeouts", name: "cim_input_timeouts_total", help: "Connections closed for not finishing a packet in time."},
	{field: "InputShed", name: "cim_input_shed_total", help: "Connections closed because unfinished input passed the broker-wide bound."},
	{field: "StoreErrors", name: "cim_store_errors_total", help: "Writes the store refused or failed."},
	{field: "RefusedConnections", name: "cim_refusals_total", help: "Requests refused by a guard rail ($SYS refused/...).", labels: []string{"limit", "max_connections"}},
	{field: "RefusedConnectionsPerIP", name: "cim_refusals_total", help: "Requests refused by a guard rail ($SYS refused/...).", labels: []string{"limit", "max_connections_per_ip"}},
	{field: "RefusedSubscriptions", name: "cim_refusals_total", help: "Requests refused by a guard rail ($SYS refused/...).", labels: []string{"limit", "max_subscriptions_per_client"}},
	{field: "RateLimited", name: "cim_refusals_total", help: "Requests refused by a guard rail ($SYS refused/...).", labels: []string{"limit", "max_publish_rate"}},
	{field: "AuthFailures", name: "cim_auth_failures_total", help: "Logins refused for bad credentials ($SYS refused/auth)."},
	{field: "TLSHandshakeErrors", name: "cim_tls_handshake_errors_total", help: "TLS connections that failed their handshake."},
	{field: "LogsSuppressed", name: "cim_log_lines_suppressed_total", help: "Info log lines dropped by log_rate."},
}

// brokerCollector reads the broker's counters at each scrape.
type brokerCollector struct {
	srv   *broker.Server
	stats []*prometheus.Desc // parallel to statMetrics
	index []int              // StatsSnapshot field index, parallel to statMetrics
	conns *prometheus.Desc
	up    *prometheus.Desc
	build *prometheus.Desc
	store storageDescs
}

func newBrokerCollector(srv *broker.Server) *brokerCollector {
	c := &brokerCollector{srv: srv}
	t := reflect.TypeOf(broker.StatsSnapshot{})
	for _, m := range statMetrics {
		var constLabels prometheus.Labels
		if len(m.labels) == 2 {
			constLabels = prometheus.Labels{m.labels[0]: m.labels[1]}
		}
		c.stats = append(c.stats, prometheus.NewDesc(m.name, m.help, nil, constLabels))
		f, ok := t.FieldByName(m.field)
		if !ok {
			panic("httpapi: StatsSnapshot has no field " + m.field)
		}
		c.index = append(c.index, f.Index[0])
	}
	c.conns = prometheus.NewDesc("cim_connections", "Open client sockets per protocol and transport (listener).", []string{"protocol", "transport"}, nil)
	c.up = prometheus.NewDesc("cim_uptime_seconds", "Seconds since the broker started ($SYS uptime).", nil, nil)
	c.build = prometheus.NewDesc("cim_build_info", "The broker's version ($SYS version), always 1.", []string{"version"}, nil)
	c.store = newStorageDescs()
	return c
}

func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.stats {
		ch <- d
	}
	ch <- c.conns
	ch <- c.up
	ch <- c.build
	c.store.describe(ch)
}

func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	st := reflect.ValueOf(c.srv.Stats())
	for i, m := range statMetrics {
		v := float64(st.Field(c.index[i]).Int())
		typ := prometheus.CounterValue
		if m.gauge {
			typ = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(c.stats[i], typ, v)
	}
	for _, cc := range c.srv.ConnectionCounts() {
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(cc.Open), cc.Protocol, cc.Transport)
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, c.srv.Uptime().Seconds())
	ch <- prometheus.MustNewConstMetric(c.build, prometheus.GaugeValue, 1, broker.Version)
	if db := c.srv.Store(); db != nil {
		c.store.collect(ch, db)
	}
}

func (a *API) metricsRoutes() {
	a.reg = a.opts.Registry
	if a.reg == nil {
		a.reg = prometheus.NewRegistry()
		a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	a.reg.MustRegister(newBrokerCollector(a.srv))
	a.Handle(http.MethodGet, "/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{
		ErrorLog:      slogPrinter{a},
		ErrorHandling: promhttp.ContinueOnError,
	}))
}

// slogPrinter routes promhttp's error log to slog.
type slogPrinter struct{ a *API }

func (p slogPrinter) Println(v ...any) { p.a.log.Error("metrics", "err", v) }
