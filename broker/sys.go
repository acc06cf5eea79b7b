package broker

import (
	"strconv"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Version is the broker version reported in $SYS/broker/version.
var Version = "dev"

var errServerShuttingDown = packets.ErrServerShuttingDown

// publishSys publishes retained $SYS/broker/... topics every SysInterval
// until Shutdown.
func (s *Server) publishSys() {
	t := time.NewTicker(s.opts.SysInterval)
	defer t.Stop()
	s.sysOnce()
	for {
		select {
		case <-s.sysStop:
			return
		case <-t.C:
			s.sysOnce()
		}
	}
}

func (s *Server) sysOnce() {
	st := s.stats.Snapshot()
	now := time.Now()
	for _, kv := range []struct {
		name string
		v    int64
	}{
		{"uptime", int64(now.Sub(s.started).Seconds())},
		{"clients/connected", st.ClientsConnected},
		{"clients/total", st.ClientsTotal},
		{"sessions/count", st.Sessions},
		{"subscriptions/count", st.Subscriptions},
		{"retained messages/count", st.Retained},
		{"messages/received", st.MessagesIn},
		{"messages/sent", st.MessagesOut},
		{"messages/dropped", st.Dropped + st.QueueDropped},
		{"bytes/received", st.BytesIn},
		{"bytes/sent", st.BytesOut},
		// Refusals of the guard rails (limits.go).
		{"refused/connections", st.RefusedConnections},
		{"refused/connections_per_ip", st.RefusedConnectionsPerIP},
		{"refused/subscriptions", st.RefusedSubscriptions},
		{"refused/publish_rate", st.RateLimited},
		{"refused/auth", st.AuthFailures},
	} {
		s.publishInternal("$SYS/broker/"+kv.name, []byte(strconv.FormatInt(kv.v, 10)), now.Unix())
	}
	s.publishInternal("$SYS/broker/version", []byte("cim "+Version), now.Unix())
}

// publishInternal routes a retained QoS 0 message from the broker itself.
func (s *Server) publishInternal(topic string, payload []byte, now int64) {
	s.route(&Message{ID: s.newID(), Topic: topic, Payload: payload, Created: now, Retain: true}, nil, nil)
}
