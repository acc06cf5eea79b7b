package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/broker/wire"
)

// cim's route API, kept as a compatibility surface for cim's clients
// (paths, field names, codes): every answer is HTTP 200 with the envelope
// {"code": "9000", "message": ..., "reqNo": ..., "dataBody": ...}. Unlike
// cim, a message sent here travels like one sent over a native connection
// (same routing, storage, ids, offline handling and MQTT visibility)
// instead of one HTTP call per receiver.
//
//	POST /registerAccount   {userName[, password]}            -> {userId, userName}
//	POST /login             {userId, userName}                -> {ip, cimServerPort, httpPort}
//	POST /groupRoute        {userId, msg}                     -> null (to everyone but the sender)
//	POST /p2pRoute          {userId, receiveUserId, msg[, batchMsg]} -> null; 7000: stored for an offline receiver
//	POST /offLine           {userId}                          -> null (logs the user out)
//	GET  /onlineUser                                          -> [{userId, userName}]
//	POST /fetchOfflineMsgs  {receiveUserId}                   -> null (offline messages are pushed at every login anyway)

// cimEnvelope is cim's answer.
type cimEnvelope struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	ReqNo    any    `json:"reqNo"`
	DataBody any    `json:"dataBody"`
}

// cimRequest is the part every cim request may carry.
type cimRequest struct {
	ReqNo     any      `json:"reqNo"`
	TimeStamp any      `json:"timeStamp"`
	UserID    uint64   `json:"userId"`
	UserName  string   `json:"userName"`
	Password  string   `json:"password"`
	ReceiveID uint64   `json:"receiveUserId"`
	Msg       *string  `json:"msg"` // nil: absent (3000), "": empty (3006)
	BatchMsg  []string `json:"batchMsg"`
}

// imHandlers are the IM API's handlers: cim's routes and /v1.
type imHandlers struct {
	srv *broker.Server
	// httpPort is the port this API listens on, for cim's /login answer.
	httpPort string
}

// imRoutes serves the IM server's HTTP API: cim's route API and /v1.
func (a *API) imRoutes() {
	_, port, _ := net.SplitHostPort(a.opts.Addr)
	r := &imHandlers{srv: a.srv, httpPort: port}
	a.Handle(http.MethodPost, "/registerAccount", r.cim(r.registerAccount))
	a.Handle(http.MethodPost, "/login", r.cim(r.login))
	a.Handle(http.MethodPost, "/groupRoute", r.cim(r.groupRoute))
	a.Handle(http.MethodPost, "/p2pRoute", r.cim(r.p2pRoute))
	a.Handle(http.MethodPost, "/offLine", r.cim(r.offLine))
	a.Handle(http.MethodGet, "/onlineUser", r.cim(r.onlineUser))
	a.Handle(http.MethodPost, "/fetchOfflineMsgs", r.cim(r.fetchOfflineMsgs))
	r.v1Routes(a)
}

// imError is a refusal with its code (cim's numbers).
type imError struct {
	code wire.Code
	msg  string
}

func (e *imError) Error() string { return e.msg }

func badArg(format string, a ...any) error {
	return &imError{wire.CodeBadArgument, fmt.Sprintf(format, a...)}
}

// bodiesOf is a send's bodies from its one-body field and its batch
// (named oneKey and batchKey in the errors): 3000 when both are absent,
// 3006 when all there is is empty.
func bodiesOf(one *string, batch []string, oneKey, batchKey string) ([][]byte, error) {
	if one == nil && batch == nil {
		return nil, badArg("%s or %s is required", oneKey, batchKey)
	}
	var bodies [][]byte
	if one != nil && *one != "" {
		bodies = append(bodies, []byte(*one))
	}
	for _, b := range batch {
		bodies = append(bodies, []byte(b))
	}
	if len(bodies) == 0 {
		return nil, &imError{wire.CodeEmptyBody, oneKey + " and " + batchKey + ": empty"}
	}
	return bodies, nil
}

// codeOf maps an error of the broker's IM API to cim's codes.
func codeOf(err error) wire.Code {
	var ie *imError
	switch {
	case errors.As(err, &ie):
		return ie.code
	case errors.Is(err, broker.ErrBadName):
		return wire.CodeBadArgument
	case errors.Is(err, broker.ErrNoSuchUser):
		return wire.CodeAccountMismatch
	case errors.Is(err, broker.ErrNoSuchGroup):
		return wire.CodeUnknownGroup
	case errors.Is(err, broker.ErrGroupExists):
		return wire.CodeGroupExists
	case errors.Is(err, broker.ErrNotMember):
		return wire.CodeNotMember
	}
	if c := wire.CodeOf(err); c != wire.CodeOK && c != wire.CodeFailure {
		return c
	}
	return wire.CodeFailure
}

// messageOf is err's text for an envelope that already carries code c:
// "bad argument: target ..." rather than "wire: 3000 bad argument: ...".
func messageOf(err error, c wire.Code) string {
	return strings.TrimPrefix(err.Error(), "wire: "+strconv.Itoa(int(c))+" ")
}

// decodeJSON reads a JSON body into v, naming the field at fault. The
// API bounds the body (Options.MaxBodyBytes): a body of a known larger
// length got 413 before this, a longer chunked one fails here.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		var me *http.MaxBytesError
		switch {
		case errors.As(err, &te):
			return badArg("%s: want %s, got %s", te.Field, te.Type, te.Value)
		case errors.As(err, &se):
			return badArg("bad JSON at byte %d: %v", se.Offset, err)
		case errors.As(err, &me):
			return &imError{wire.CodeBadArgument, fmt.Sprintf("body over %d bytes", me.Limit)}
		default:
			return badArg("bad JSON: %v", err)
		}
	}
	return nil
}

// cim wraps a handler of cim's API: it decodes the request, calls h and
// writes the envelope.
func (rt *imHandlers) cim(h func(r *http.Request, req *cimRequest) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req := new(cimRequest)
		var err error
		if r.Method == http.MethodPost {
			err = decodeJSON(w, r, req)
		}
		var data any
		if err == nil {
			data, err = h(r, req)
		}
		env := cimEnvelope{Code: strconv.Itoa(int(wire.CodeOK)), Message: "success", ReqNo: req.ReqNo, DataBody: data}
		if err != nil {
			c := codeOf(err)
			env.Code, env.Message = strconv.Itoa(int(c)), messageOf(err, c)
			if c == wire.CodeOffline {
				env.DataBody = data
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(env)
	}
}

type cimUser struct {
	UserID   uint64 `json:"userId"`
	UserName string `json:"userName"`
}

func (rt *imHandlers) registerAccount(r *http.Request, req *cimRequest) (any, error) {
	if req.UserName == "" {
		return nil, badArg("userName is required")
	}
	a, _, err := rt.srv.Register(r.Context(), req.UserName, req.Password)
	if err != nil {
		return nil, err
	}
	return cimUser{a.ID, a.Name}, nil
}

// login answers which node a user should connect to: this one (a cluster
// picks a live node by consistent hash of the user id).
func (rt *imHandlers) login(r *http.Request, req *cimRequest) (any, error) {
	if req.UserID == 0 && req.UserName == "" {
		return nil, badArg("userId or userName is required")
	}
	a, ok := rt.srv.LookupAccount(req.UserID, req.UserName)
	if !ok {
		return nil, &imError{wire.CodeAccountMismatch, "no such account, or userId and userName disagree"}
	}
	t := rt.nodeFor(r, a.ID)
	return map[string]any{"ip": t.host, "cimServerPort": t.port, "httpPort": t.httpPort, "userId": a.ID, "userName": a.Name}, nil
}

// nodeTarget is where /login sends a user.
type nodeTarget struct {
	host           string
	port, httpPort int
	node           string
}

// nodeFor is the node a user should connect to: the live node a cluster
// picks for the user (Server.PickNode: the cluster's strategy, consistent
// hash on the user id by default), else this one.
func (rt *imHandlers) nodeFor(r *http.Request, user uint64) nodeTarget {
	if m, err := rt.srv.PickNode(user); err == nil && !m.Self && m.Native != "" {
		t := nodeTarget{node: m.Name}
		var p string
		t.host, p, _ = net.SplitHostPort(m.Native)
		t.port, _ = strconv.Atoi(p)
		if _, hp, err := net.SplitHostPort(m.HTTP); err == nil {
			t.httpPort, _ = strconv.Atoi(hp)
		}
		return t
	}
	host, port := rt.nativeAddrFor(r)
	return nodeTarget{host: host, port: port, httpPort: rt.httpPortNum(), node: rt.srv.NodeName()}
}

// nativeAddrFor is this node's native listener (host empty when it
// listens on every interface: the client then uses the API's own host).
func (rt *imHandlers) nativeAddrFor(r *http.Request) (string, int) {
	addr := rt.srv.ListenerAddr(broker.ProtocolNative)
	if addr == nil {
		return "", 0
	}
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host, _, _ = net.SplitHostPort(r.Host)
		if host == "" {
			host = r.Host
		}
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

func (rt *imHandlers) httpPortNum() int {
	p, _ := strconv.Atoi(rt.httpPort)
	return p
}

func (rt *imHandlers) groupRoute(r *http.Request, req *cimRequest) (any, error) {
	if req.UserID == 0 {
		return nil, badArg("userId is required")
	}
	switch {
	case req.Msg == nil:
		return nil, badArg("msg is required")
	case strings.TrimSpace(*req.Msg) == "":
		return nil, &imError{wire.CodeEmptyBody, "msg: empty"}
	}
	res, err := rt.srv.Send(r.Context(), req.UserID, wire.ToAll(), [][]byte{[]byte(*req.Msg)}, broker.SendOptions{QoS: 1})
	if err != nil {
		return nil, err
	}
	return nil, resultErr(res)
}

func (rt *imHandlers) p2pRoute(r *http.Request, req *cimRequest) (any, error) {
	switch {
	case req.UserID == 0:
		return nil, badArg("userId is required")
	case req.ReceiveID == 0:
		return nil, badArg("receiveUserId is required")
	}
	bodies, err := bodiesOf(req.Msg, req.BatchMsg, "msg", "batchMsg")
	if err != nil {
		return nil, err
	}
	res, err := rt.srv.Send(r.Context(), req.UserID, wire.ToUser(req.ReceiveID), bodies, broker.SendOptions{QoS: 1})
	if err != nil {
		return nil, err
	}
	return nil, resultErr(res)
}

// resultErr is the first refusal of a send, or CodeOffline if the receiver
// was offline (cim's 7000: stored), or nil.
func resultErr(res []broker.SendResult) error {
	offline := false
	for _, r := range res {
		switch r.Code {
		case wire.CodeOK:
		case wire.CodeOffline:
			offline = true
		default:
			return &imError{r.Code, r.Text}
		}
	}
	if offline {
		return &imError{wire.CodeOffline, "receiver offline: the message is stored and delivered at its next login"}
	}
	return nil
}

func (rt *imHandlers) offLine(r *http.Request, req *cimRequest) (any, error) {
	if req.UserID == 0 {
		return nil, badArg("userId is required")
	}
	if _, ok := rt.srv.LookupAccount(req.UserID, ""); !ok {
		return nil, &imError{wire.CodeAccountMismatch, "no such account"}
	}
	_ = rt.srv.Kick(broker.ProtocolNative, strconv.FormatUint(req.UserID, 10)) // not connected: already offline
	return nil, nil
}

func (rt *imHandlers) onlineUser(r *http.Request, _ *cimRequest) (any, error) {
	users, _ := rt.srv.OnlineUsers("", 0)
	out := make([]cimUser, 0, len(users))
	for _, u := range users {
		out = append(out, cimUser{u.ID, u.Name})
	}
	return out, nil
}

// fetchOfflineMsgs: offline messages are delivered at every login (and
// again until acknowledged), so there is nothing to fetch; it checks the
// user and succeeds.
func (rt *imHandlers) fetchOfflineMsgs(r *http.Request, req *cimRequest) (any, error) {
	id := req.ReceiveID
	if id == 0 {
		id = req.UserID
	}
	if id == 0 {
		return nil, badArg("receiveUserId is required")
	}
	if _, ok := rt.srv.LookupAccount(id, ""); !ok {
		return nil, &imError{wire.CodeAccountMismatch, "no such account"}
	}
	return nil, nil
}
