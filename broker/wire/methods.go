package wire

// Request methods: what a client asks over its connection. A Request
// carries the method's argument struct in Args (MarshalRaw), the Response
// its result struct in Result (on CodeOK; Raw.Unmarshal). A method the
// server does not know gets CodeUnknownMethod. All of them act for the
// logged-in user.
const (
	MethodOnline       = "online"        // OnlineArgs -> OnlineResult
	MethodHistory      = "history"       // HistoryArgs -> HistoryResult
	MethodGroupCreate  = "group.create"  // GroupArgs -> Group (the caller owns it and is its first member)
	MethodGroupJoin    = "group.join"    // GroupArgs -> Group
	MethodGroupLeave   = "group.leave"   // GroupArgs -> nothing
	MethodGroupMembers = "group.members" // GroupArgs -> UsersResult
	MethodGroupsMine   = "group.mine"    // nothing -> GroupsResult
	MethodDelayed      = "delayed"       // DelayedArgs -> DelayedResult (the caller's pending delayed messages)
)

// User is an account as others see it.
type User struct {
	ID   uint64 `msgpack:"i,omitempty"`
	Name string `msgpack:"n,omitempty"`
}

// OnlineArgs asks for the users online now, those whose name starts with
// Prefix (Unicode case folding) if it is set, at most Limit (0: the
// server's default), ordered by name.
type OnlineArgs struct {
	Prefix string `msgpack:"p,omitempty"`
	Limit  uint32 `msgpack:"l,omitempty"`
}

// OnlineResult lists online users; More says the limit cut the list.
type OnlineResult struct {
	Users []User `msgpack:"u,omitempty"`
	More  bool   `msgpack:"m,omitempty"`
}

// HistoryArgs pages through stored messages, newest first. Target names the
// conversation: KindUser with the other user's id, KindGroup with the group
// name; Kind 0 means every conversation of the caller (only with Keyword).
// Keyword, if set, keeps only messages whose body contains it (Unicode case
// folding). The page starts at Cursor (the Next of the previous page) or,
// without one, just before Before (unix ms; 0: now), and holds at most
// Limit messages (0: the server's default).
type HistoryArgs struct {
	Target
	Keyword string `msgpack:"q,omitempty"`
	Before  int64  `msgpack:"b,omitempty"`
	Cursor  []byte `msgpack:"c,omitempty"`
	Limit   uint32 `msgpack:"l,omitempty"`
}

// HistoryResult is one page of history, newest first, each message as it
// was delivered (sender, target, time, id). Next is the cursor of the next
// (older) page, empty on the last page.
type HistoryResult struct {
	Messages []Deliver `msgpack:"m,omitempty"`
	Next     []byte    `msgpack:"c,omitempty"`
}

// GroupArgs names a group.
type GroupArgs struct {
	Name string `msgpack:"n,omitempty"`
}

// Group describes a named group.
type Group struct {
	Name    string `msgpack:"n,omitempty"`
	Owner   uint64 `msgpack:"o,omitempty"`  // the user who created it
	Members uint32 `msgpack:"c,omitempty"`  // how many members it has
	Created int64  `msgpack:"ts,omitempty"` // unix ms
}

// UsersResult lists users (the members of a group).
type UsersResult struct {
	Users []User `msgpack:"u,omitempty"`
}

// GroupsResult lists groups (those the caller is a member of).
type GroupsResult struct {
	Groups []Group `msgpack:"g,omitempty"`
}

// DelayedArgs pages through the caller's delayed messages that are not due
// yet, soonest first.
type DelayedArgs struct {
	Cursor []byte `msgpack:"c,omitempty"`
	Limit  uint32 `msgpack:"l,omitempty"`
}

// Delayed is a message waiting for its time.
type Delayed struct {
	MsgID uint64 `msgpack:"i,omitempty"`
	Target
	QoS     uint8  `msgpack:"q,omitempty"`
	Body    []byte `msgpack:"b,omitempty"`
	Due     int64  `msgpack:"d,omitempty"`  // unix ms
	Created int64  `msgpack:"ts,omitempty"` // unix ms, when the server accepted it
}

// DelayedResult is one page of delayed messages; Next as in HistoryResult.
type DelayedResult struct {
	Messages []Delayed `msgpack:"m,omitempty"`
	Next     []byte    `msgpack:"c,omitempty"`
}
