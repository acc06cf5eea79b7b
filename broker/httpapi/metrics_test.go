package httpapi

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/cimgo/cim/broker"
	"github.com/eclipse/paho.golang/paho"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape GETs /metrics and parses it with the Prometheus text parser.
func (e *env) scrape() map[string]*dto.MetricFamily {
	e.t.Helper()
	resp, err := http.Get(e.web.URL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		e.t.Fatalf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		e.t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value is the value of the series of name whose labels include labels
// (pairs); -1 if there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return -1
}

func TestMetricsAfterKnownTraffic(t *testing.T) {
	e := newEnv(t, Options{})
	if err := e.srv.SetLimits(broker.Limits{MaxSubscriptionsPerClient: 1}); err != nil {
		t.Fatal(err)
	}
	sub := dialTCP(t, e.srv, "sub")
	sub.subscribe(t, "m/#", 1)
	pub := dialTCP(t, e.srv, "pub")
	for i := 0; i < 3; i++ {
		pub.publish(t, "m/q1", "one", 1, false)
	}
	pub.publish(t, "m/q0", "zero", 0, false)
	pub.publish(t, "m/r", "kept", 1, true)
	for i := 0; i < 3; i++ {
		sub.expect(t, "m/q1", "one")
	}
	sub.expect(t, "m/q0", "zero")
	sub.expect(t, "m/r", "kept")
	// Refused: max_subscriptions_per_client 1.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	sa, _ := sub.cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "other"}}})
	if sa == nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 0x97 {
		t.Fatalf("SUBACK %+v, want 0x97", sa)
	}

	fams := e.scrape()
	st := e.srv.Stats()
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"cim_messages_received_total", nil, 5},
		{"cim_messages_sent_total", nil, 5},
		{"cim_clients_connected", nil, 2},
		{"cim_connections_accepted_total", nil, 2},
		{"cim_sessions", nil, 2},
		{"cim_subscriptions", nil, 1},
		{"cim_retained_messages", nil, 1},
		{"cim_connections", []string{"protocol", "mqtt", "transport", "tcp"}, 2},
		{"cim_connections", []string{"protocol", "mqtt", "transport", "tls"}, 0},
		{"cim_refusals_total", []string{"limit", "max_subscriptions_per_client"}, 1},
		{"cim_refusals_total", []string{"limit", "max_connections"}, 0},
		{"cim_messages_dropped_total", []string{"reason", "session_queue_full"}, 0},
		{"cim_bytes_received_total", nil, float64(st.BytesIn)},
		{"cim_bytes_sent_total", nil, float64(st.BytesOut)},
		{"cim_build_info", []string{"version", broker.Version}, 1},
		{"cim_storage_write_failed", nil, 0},
		{"cim_storage_sessions", nil, 0},
	} {
		if got := value(fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if st.BytesIn == 0 || st.BytesOut == 0 {
		t.Fatalf("no bytes counted: %+v", st)
	}
	if value(fams, "cim_storage_commit_batches_total") < 1 {
		t.Error("the retained message was not committed, or not counted")
	}
	if value(fams, "go_goroutines") <= 0 || value(fams, "cim_uptime_seconds") < 0 {
		t.Error("Go or uptime metrics missing")
	}
	if fams["cim_messages_received_total"].GetType() != dto.MetricType_COUNTER || fams["cim_clients_connected"].GetType() != dto.MetricType_GAUGE {
		t.Error("metric types")
	}
}

// Every counter of StatsSnapshot is exported: a field added to broker
// without a line in statMetrics fails here.
func TestMetricsCoverStats(t *testing.T) {
	have := map[string]bool{}
	for _, m := range statMetrics {
		have[m.field] = true
		if !strings.HasPrefix(m.name, "cim_") {
			t.Errorf("%s: name %q", m.field, m.name)
		}
		if !m.gauge && !strings.HasSuffix(m.name, "_total") {
			t.Errorf("counter %s without _total", m.name)
		}
	}
	typ := reflect.TypeOf(broker.StatsSnapshot{})
	for i := range typ.NumField() {
		if f := typ.Field(i); !have[f.Name] {
			t.Errorf("StatsSnapshot.%s has no metric in statMetrics", f.Name)
		}
	}
}
