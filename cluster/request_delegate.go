package cluster

// RequestDelegate answers requests other nodes send with Request or Call
// (session hand-off "give me session X", and other broker RPCs; the body
// is the broker's own encoding).
//
// HandleRequest is called on the peer link's reader goroutine; it must not
// block (nothing more is read from that peer meanwhile). It owns body. It
// answers through r, now or later, from any goroutine, exactly once:
// r.Respond(resp) or r.Fail(err). An unanswered request times out at the
// sender.
type RequestDelegate interface {
	HandleRequest(from string, body []byte, r Reply)
}
