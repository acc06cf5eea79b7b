package broker

import (
	"slices"

	"github.com/cimgo/cim/broker/topic"
)

// Retained messages: the last message published with retain on a topic is
// kept (in memory in an index for subscribe-time matching, and in the
// store) and sent to every new subscription whose filter matches it.

// retain stores m as its topic's retained message, or clears it when the
// payload is empty [MQTT-3.3.1-6] [MQTT-3.3.1-7]. Any goroutine.
func (srv *Server) retain(m *Message) {
	cn := srv.clusterNode() // cluster hook: tombstones of clears (cluster_sync.go)
	if len(m.Payload) == 0 {
		if _, ok := srv.retained.Get(m.Topic); ok {
			srv.retained.Delete(m.Topic)
			srv.stats.Retained.Add(-1)
		}
		if cn != nil {
			cn.cleared.note(m.Topic, m.ID, srv)
		}
		return
	}
	if _, ok := srv.retained.Get(m.Topic); !ok {
		srv.stats.Retained.Add(1)
	}
	srv.retained.Set(m.Topic, m)
	if cn != nil {
		cn.cleared.forget(m.Topic)
	}
}

// sendRetained delivers the retained messages matching filter to s, with the
// retain flag set [MQTT-3.3.1-8]. Any goroutine; never with a session lock held.
func (srv *Server) sendRetained(s *session, filter string, sub topic.Subscription) {
	now := srv.now()
	var ids []uint32
	if sub.ID != 0 {
		ids = []uint32{sub.ID}
	}
	lb := lazyBatch{db: srv.store}
	srv.retained.MatchFilter(filter, func(_ string, m *Message) bool {
		if m.expired(now) {
			return true
		}
		s.deliver(m, min(sub.QoS, m.QoS), true, slices.Clip(ids), now, &lb)
		return true
	})
	srv.commit(&lb, nil)
}
