package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/broker/topic"
)

// The admin API, under /v1/admin, behind the bearer token. Clients are
// named by id; ?protocol=native picks a native session (default mqtt).
//
//	GET    /v1/admin/clients                      every session
//	GET    /v1/admin/clients/{id}/subscriptions   one session's filters
//	POST   /v1/admin/clients/{id}/kick            close its connection (MQTT 5: DISCONNECT 0x98)
//	GET    /v1/admin/retained[?filter=F]          retained messages under F (default #)
//	DELETE /v1/admin/retained?topic=T             clear the retained message of T
//	POST   /v1/admin/publish                      {"topic","payload"|"payload_base64","qos","retain"}
func (a *API) adminRoutes() {
	a.HandleAdmin(http.MethodGet, "/v1/admin/clients", http.HandlerFunc(a.listClients))
	a.HandleAdmin(http.MethodGet, "/v1/admin/clients/{id}/subscriptions", http.HandlerFunc(a.listSubscriptions))
	a.HandleAdmin(http.MethodPost, "/v1/admin/clients/{id}/kick", http.HandlerFunc(a.kick))
	a.HandleAdmin(http.MethodGet, "/v1/admin/retained", http.HandlerFunc(a.listRetained))
	a.HandleAdmin(http.MethodDelete, "/v1/admin/retained", http.HandlerFunc(a.deleteRetained))
	a.HandleAdmin(http.MethodPost, "/v1/admin/publish", http.HandlerFunc(a.publish))
}

// Client is one entry of GET /v1/admin/clients.
type Client struct {
	Protocol      string     `json:"protocol"`
	ID            string     `json:"id"`
	User          string     `json:"user"`
	Connected     bool       `json:"connected"`
	Remote        string     `json:"remote,omitempty"`
	Transport     string     `json:"transport,omitempty"`
	Identity      string     `json:"identity,omitempty"`
	Since         *time.Time `json:"connected_since,omitempty"`
	Inflight      int        `json:"inflight"`
	Queued        int        `json:"queued"`
	Subscriptions int        `json:"subscriptions"`
}

// Clients is the body of GET /v1/admin/clients.
type Clients struct {
	Clients []Client `json:"clients"`
}

func (a *API) listClients(w http.ResponseWriter, r *http.Request) {
	out := Clients{Clients: []Client{}}
	for _, ci := range a.srv.Clients() {
		c := Client{Protocol: ci.Protocol, ID: ci.ID, User: ci.User, Connected: ci.Connected, Remote: ci.Remote,
			Transport: ci.Transport, Identity: ci.Identity, Inflight: ci.Inflight, Queued: ci.Queued, Subscriptions: ci.Subs}
		if ci.Connected {
			since := ci.Since.UTC()
			c.Since = &since
		}
		out.Clients = append(out.Clients, c)
	}
	writeJSON(w, http.StatusOK, out)
}

// Subscription is one filter of a session.
type Subscription struct {
	Filter            string `json:"filter"`
	QoS               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local,omitempty"`
	RetainAsPublished bool   `json:"retain_as_published,omitempty"`
	RetainHandling    byte   `json:"retain_handling,omitempty"`
	ID                uint32 `json:"subscription_id,omitempty"`
}

// Subscriptions is the body of GET /v1/admin/clients/{id}/subscriptions.
type Subscriptions struct {
	Protocol      string         `json:"protocol"`
	Client        string         `json:"client"`
	Subscriptions []Subscription `json:"subscriptions"`
}

// protocolOf reads ?protocol=, answering a bad one itself.
func protocolOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	p := r.URL.Query().Get("protocol")
	switch p {
	case "":
		return broker.ProtocolMQTT, true
	case broker.ProtocolMQTT, broker.ProtocolNative:
		return p, true
	}
	writeError(w, http.StatusBadRequest, "bad_request", `protocol: want "mqtt" or "native", got "`+p+`"`)
	return "", false
}

func (a *API) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	proto, ok := protocolOf(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	subs, err := a.srv.Subscriptions(proto, id)
	if errors.Is(err, broker.ErrNoSuchClient) {
		writeError(w, http.StatusNotFound, "no_such_client", "no "+proto+" session "+quote(id))
		return
	}
	out := Subscriptions{Protocol: proto, Client: id, Subscriptions: []Subscription{}}
	for _, s := range subs {
		out.Subscriptions = append(out.Subscriptions, Subscription{Filter: s.Filter, QoS: s.QoS, NoLocal: s.NoLocal,
			RetainAsPublished: s.RetainAsPublished, RetainHandling: s.RetainHandling, ID: s.ID})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) kick(w http.ResponseWriter, r *http.Request) {
	proto, ok := protocolOf(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if err := a.srv.Kick(proto, id); err != nil {
		writeError(w, http.StatusNotFound, "no_such_client", "no connected "+proto+" client "+quote(id))
		return
	}
	a.log.Info("client kicked", "protocol", proto, "client", id, "by", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]string{"kicked": id, "protocol": proto})
}

// Retained is one retained message. Payload is set when the payload is
// valid UTF-8; PayloadBase64 always.
type Retained struct {
	Topic         string    `json:"topic"`
	Payload       *string   `json:"payload,omitempty"`
	PayloadBase64 string    `json:"payload_base64"`
	Size          int       `json:"size"`
	QoS           byte      `json:"qos"`
	Created       time.Time `json:"created"`
}

// RetainedList is the body of GET /v1/admin/retained.
type RetainedList struct {
	Filter   string     `json:"filter"`
	Retained []Retained `json:"retained"`
}

func (a *API) listRetained(w http.ResponseWriter, r *http.Request) {
	filter := r.URL.Query().Get("filter")
	if filter == "" {
		filter = "#"
	}
	list, err := a.srv.Retained(filter)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "filter "+quote(filter)+": "+err.Error())
		return
	}
	out := RetainedList{Filter: filter, Retained: []Retained{}}
	for _, m := range list {
		e := Retained{Topic: m.Topic, PayloadBase64: base64.StdEncoding.EncodeToString(m.Payload), Size: len(m.Payload),
			QoS: m.QoS, Created: m.Created.UTC()}
		if utf8.Valid(m.Payload) {
			s := string(m.Payload)
			e.Payload = &s
		}
		out.Retained = append(out.Retained, e)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) deleteRetained(w http.ResponseWriter, r *http.Request) {
	topic := r.URL.Query().Get("topic")
	if topic == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "topic: missing (?topic=a/b)")
		return
	}
	if !a.srv.DeleteRetained(topic) {
		writeError(w, http.StatusNotFound, "no_such_retained", "no retained message on "+quote(topic))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"deleted": topic})
}

// PublishRequest is the body of POST /v1/admin/publish: Payload (text) or
// PayloadBase64 (bytes), not both.
type PublishRequest struct {
	Topic         string  `json:"topic"`
	Payload       *string `json:"payload,omitempty"`
	PayloadBase64 *string `json:"payload_base64,omitempty"`
	QoS           byte    `json:"qos"`
	Retain        bool    `json:"retain"`
}

// PublishResult is the answer to a publish: how many sessions it went to.
type PublishResult struct {
	Topic   string `json:"topic"`
	Matched int    `json:"matched"`
}

func (a *API) publish(w http.ResponseWriter, r *http.Request) {
	var req PublishRequest
	if !decodeBody(w, r, &req) {
		return
	}
	var payload []byte
	switch {
	case req.Payload != nil && req.PayloadBase64 != nil:
		writeError(w, http.StatusBadRequest, "bad_request", "payload and payload_base64: give one")
		return
	case req.Payload != nil:
		payload = []byte(*req.Payload)
	case req.PayloadBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*req.PayloadBase64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "payload_base64: "+err.Error())
			return
		}
		payload = b
	}
	if req.QoS > 2 {
		writeError(w, http.StatusBadRequest, "bad_request", "qos: want 0, 1 or 2")
		return
	}
	if err := topic.ValidName(req.Topic); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "topic "+quote(req.Topic)+": "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	n, err := a.srv.Publish(ctx, req.Topic, payload, broker.PublishOptions{QoS: req.QoS, Retain: req.Retain, From: "$admin"})
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, "timeout", "the message was not stored in time")
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "publish_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, PublishResult{Topic: req.Topic, Matched: n})
}

func quote(s string) string { return `"` + s + `"` }
