package httpapi

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/broker/wire"
)

// The versioned IM API, JSON in and out, with cim's envelope and codes
// (bad JSON or a missing or invalid field: 3000 naming the field):
//
//	POST   /v1/accounts                    {name, password?}          -> {id, name, created}
//	POST   /v1/login                       {id? | name?}              -> {id, name, addr, node}
//	POST   /v1/messages                    {from, to, body | bodies, qos?, delayMs?, clientId?} -> [{msgId, code, text}]
//	GET    /v1/online?prefix=&limit=                                  -> {users: [{id, name}], more}
//	GET    /v1/history?user=&with=&q=&before=&limit=                  -> {messages: [...], next}
//	POST   /v1/groups                      {name, owner}              -> group
//	GET    /v1/groups/{name}/members                                  -> [{id, name}]
//	POST   /v1/groups/{name}/members       {user}                     -> group
//	DELETE /v1/groups/{name}/members/{user}                           -> null
//	GET    /v1/users/{id}/groups                                      -> [group]
//	GET    /v1/delayed?user=&limit=                                   -> [{msgId, to, body, due, created}]
//
// Targets ("to", "with") are "user:<id>", "group:<name>", "topic:<topic>"
// or "all". Bodies are strings; "bodies" sends several, in order. Like
// cim's API, it trusts its callers: serve it on a private network (or
// behind a proxy that authenticates).

func (rt *imHandlers) v1Routes(a *API) {
	a.Handle(http.MethodPost, "/v1/accounts", rt.v1(rt.v1Register))
	a.Handle(http.MethodPost, "/v1/login", rt.v1(rt.v1Login))
	a.Handle(http.MethodPost, "/v1/messages", rt.v1(rt.v1Send))
	a.Handle(http.MethodGet, "/v1/online", rt.v1(rt.v1Online))
	a.Handle(http.MethodGet, "/v1/history", rt.v1(rt.v1History))
	a.Handle(http.MethodPost, "/v1/groups", rt.v1(rt.v1CreateGroup))
	a.Handle(http.MethodGet, "/v1/groups/{name}/members", rt.v1(rt.v1Members))
	a.Handle(http.MethodPost, "/v1/groups/{name}/members", rt.v1(rt.v1Join))
	a.Handle(http.MethodDelete, "/v1/groups/{name}/members/{user}", rt.v1(rt.v1Leave))
	a.Handle(http.MethodGet, "/v1/users/{id}/groups", rt.v1(rt.v1UserGroups))
	a.Handle(http.MethodGet, "/v1/delayed", rt.v1(rt.v1Delayed))
}

// v1 wraps a /v1 handler: the envelope, and reqNo echoed from the query.
func (rt *imHandlers) v1(h func(w http.ResponseWriter, r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data, err := h(w, r)
		env := cimEnvelope{Code: strconv.Itoa(int(wire.CodeOK)), Message: "success", ReqNo: r.URL.Query().Get("reqNo"), DataBody: data}
		if env.ReqNo == "" {
			env.ReqNo = nil
		}
		if err != nil {
			c := codeOf(err)
			env.Code, env.Message = strconv.Itoa(int(c)), messageOf(err, c)
			if c != wire.CodeOffline {
				env.DataBody = nil
			}
		}
		writeJSONBody(w, env)
	}
}

func writeJSONBody(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

type v1User struct {
	ID      uint64 `json:"id"`
	Name    string `json:"name"`
	Created string `json:"created,omitempty"`
}

func (rt *imHandlers) v1Register(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return nil, err
	}
	if req.Name == "" {
		return nil, badArg("name is required")
	}
	a, _, err := rt.srv.Register(r.Context(), req.Name, req.Password)
	if err != nil {
		return nil, err
	}
	return v1User{a.ID, a.Name, a.Created.UTC().Format(time.RFC3339)}, nil
}

func (rt *imHandlers) v1Login(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		ID   uint64 `json:"id"`
		Name string `json:"name"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return nil, err
	}
	if req.ID == 0 && req.Name == "" {
		return nil, badArg("id or name is required")
	}
	a, ok := rt.srv.LookupAccount(req.ID, req.Name)
	if !ok {
		return nil, &imError{wire.CodeAccountMismatch, "no such account"}
	}
	t := rt.nodeFor(r, a.ID)
	return map[string]any{"id": a.ID, "name": a.Name, "addr": hostPort(t.host, t.port), "node": t.node}, nil
}

func hostPort(host string, port int) string {
	if host == "" {
		return ":" + strconv.Itoa(port)
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

type v1SendResult struct {
	MsgID uint64 `json:"msgId,string"`
	Code  string `json:"code"`
	Text  string `json:"text,omitempty"`
}

func (rt *imHandlers) v1Send(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		From     uint64   `json:"from"`
		To       string   `json:"to"`
		Body     *string  `json:"body"` // nil: absent (3000), "": empty (3006)
		Bodies   []string `json:"bodies"`
		QoS      *byte    `json:"qos"`
		DelayMs  int64    `json:"delayMs"`
		ClientID uint64   `json:"clientId"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return nil, err
	}
	switch {
	case req.From == 0:
		return nil, badArg("from is required")
	case req.To == "":
		return nil, badArg("to is required")
	case req.DelayMs < 0:
		return nil, badArg("delayMs: want 0 or more")
	}
	to, err := broker.TargetOf(req.To)
	if err != nil {
		return nil, err
	}
	bodies, err := bodiesOf(req.Body, req.Bodies, "body", "bodies")
	if err != nil {
		return nil, err
	}
	o := broker.SendOptions{QoS: 1, Delay: time.Duration(req.DelayMs) * time.Millisecond, ClientID: req.ClientID}
	if req.QoS != nil {
		if *req.QoS > 1 {
			return nil, badArg("qos: want 0 or 1")
		}
		o.QoS = *req.QoS
	}
	res, err := rt.srv.Send(r.Context(), req.From, to, bodies, o)
	if err != nil {
		return nil, err
	}
	out := make([]v1SendResult, len(res))
	for i, x := range res {
		out[i] = v1SendResult{x.MsgID, strconv.Itoa(int(x.Code)), x.Text}
	}
	return out, nil
}

func (rt *imHandlers) v1Online(w http.ResponseWriter, r *http.Request) (any, error) {
	limit, err := queryInt(r, "limit", 0)
	if err != nil {
		return nil, err
	}
	users, more := rt.srv.OnlineUsers(r.URL.Query().Get("prefix"), int(limit))
	out := make([]v1User, 0, len(users))
	for _, u := range users {
		out = append(out, v1User{ID: u.ID, Name: u.Name})
	}
	return map[string]any{"users": out, "more": more}, nil
}

type v1Message struct {
	MsgID    uint64 `json:"msgId,string"`
	From     uint64 `json:"from"`
	FromName string `json:"fromName"`
	To       string `json:"to"`
	Body     string `json:"body"`
	Time     string `json:"time"`
}

func targetString(t wire.Target) string {
	switch t.Kind {
	case wire.KindUser:
		return "user:" + strconv.FormatUint(t.User, 10)
	case wire.KindGroup:
		return "group:" + t.Name
	case wire.KindAll:
		return "all"
	}
	return "topic:" + t.Name
}

func (rt *imHandlers) v1History(w http.ResponseWriter, r *http.Request) (any, error) {
	user, err := queryInt(r, "user", 0)
	if err != nil || user == 0 {
		return nil, badArg("user: a user id is required")
	}
	q := broker.HistoryQuery{User: uint64(user), Keyword: r.URL.Query().Get("q")}
	if with := r.URL.Query().Get("with"); with != "" {
		if q.With, err = broker.TargetOf(with); err != nil {
			return nil, err
		}
	}
	before, err := queryInt(r, "before", 0)
	if err != nil {
		return nil, err
	}
	q.Before = uint64(before)
	limit, err := queryInt(r, "limit", 20)
	if err != nil {
		return nil, err
	}
	q.Limit = int(limit)
	page, err := rt.srv.History(q)
	if err != nil {
		return nil, err
	}
	msgs := make([]v1Message, 0, len(page.Messages))
	for _, m := range page.Messages {
		msgs = append(msgs, v1Message{MsgID: m.MsgID, From: m.From, FromName: m.FromName, To: targetString(m.Target),
			Body: string(m.Body), Time: time.UnixMilli(m.Time).UTC().Format(time.RFC3339Nano)})
	}
	return map[string]any{"messages": msgs, "next": strconv.FormatUint(page.Next, 10)}, nil
}

type v1Group struct {
	Name    string `json:"name"`
	Owner   uint64 `json:"owner"`
	Members int    `json:"members"`
	Created string `json:"created"`
}

func groupOf(g broker.GroupInfo) v1Group {
	return v1Group{g.Name, g.Owner, g.Members, g.Created.UTC().Format(time.RFC3339)}
}

func (rt *imHandlers) v1CreateGroup(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		Name  string `json:"name"`
		Owner uint64 `json:"owner"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return nil, err
	}
	switch {
	case req.Name == "":
		return nil, badArg("name is required")
	case req.Owner == 0:
		return nil, badArg("owner is required")
	}
	g, err := rt.srv.CreateGroup(r.Context(), req.Name, req.Owner)
	if err != nil {
		return nil, err
	}
	return groupOf(g), nil
}

func (rt *imHandlers) v1Members(w http.ResponseWriter, r *http.Request) (any, error) {
	members, err := rt.srv.GroupMembers(r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	out := make([]v1User, 0, len(members))
	for _, m := range members {
		out = append(out, v1User{ID: m.ID, Name: m.Name})
	}
	return out, nil
}

func (rt *imHandlers) v1Join(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		User uint64 `json:"user"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return nil, err
	}
	if req.User == 0 {
		return nil, badArg("user is required")
	}
	g, err := rt.srv.JoinGroup(r.Context(), r.PathValue("name"), req.User)
	if err != nil {
		return nil, err
	}
	return groupOf(g), nil
}

func (rt *imHandlers) v1Leave(w http.ResponseWriter, r *http.Request) (any, error) {
	user, err := strconv.ParseUint(r.PathValue("user"), 10, 64)
	if err != nil || user == 0 {
		return nil, badArg("user: want a user id in the path")
	}
	return nil, rt.srv.LeaveGroup(r.Context(), r.PathValue("name"), user)
}

func (rt *imHandlers) v1UserGroups(w http.ResponseWriter, r *http.Request) (any, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		return nil, badArg("id: want a user id in the path")
	}
	out := []v1Group{}
	for _, g := range rt.srv.UserGroups(id) {
		out = append(out, groupOf(g))
	}
	return out, nil
}

func (rt *imHandlers) v1Delayed(w http.ResponseWriter, r *http.Request) (any, error) {
	user, err := queryInt(r, "user", 0)
	if err != nil || user == 0 {
		return nil, badArg("user: a user id is required")
	}
	limit, err := queryInt(r, "limit", 100)
	if err != nil {
		return nil, err
	}
	list, err := rt.srv.Delayed(uint64(user), int(limit))
	if err != nil {
		return nil, err
	}
	type delayed struct {
		MsgID   uint64 `json:"msgId,string"`
		To      string `json:"to"`
		Body    string `json:"body"`
		Due     string `json:"due"`
		Created string `json:"created"`
	}
	out := make([]delayed, 0, len(list))
	for _, d := range list {
		out = append(out, delayed{MsgID: d.MsgID, To: targetString(d.Target), Body: string(d.Body),
			Due: d.Due.UTC().Format(time.RFC3339Nano), Created: d.Created.UTC().Format(time.RFC3339Nano)})
	}
	return out, nil
}

// queryInt reads an integer query parameter (dflt when absent).
func queryInt(r *http.Request, name string, dflt int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return dflt, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, badArg("%s: want a number of 0 or more, got %q", name, v)
	}
	return n, nil
}
