package broker

// closeReason says why the broker ends a connection, in terms every
// protocol shares; each endpoint maps it to its own words (MQTT 5: a
// DISCONNECT reason code; MQTT 3: nothing, the socket just closes; native: a
// kick frame with a code).
type closeReason uint8

const (
	reasonProtocolError closeReason = iota // bad input; the endpoint's own code says which
	reasonTakenOver                        // a newer connection took the session
	reasonShutdown                         // the server is stopping
	reasonKeepalive                        // nothing received within the keepalive deadline
	reasonSlowConsumer                     // the client did not read its backlog in time
	reasonKicked                           // an administrator closed it
	reasonPacketTimeout                    // a started packet was not finished in time
	reasonInputBudget                      // too much unfinished input held broker-wide
	reasonQuota                            // a limit of the client's was exceeded
	reasonNotAuthorized                    // the client lost the right to stay connected
	reasonLoginTimeout                     // no login (MQTT CONNECT) in time
)

var reasonNames = [...]string{
	reasonProtocolError: "protocol error",
	reasonTakenOver:     "session taken over",
	reasonShutdown:      "server shutting down",
	reasonKeepalive:     "keepalive timeout",
	reasonSlowConsumer:  "slow consumer",
	reasonKicked:        "kicked by an administrator",
	reasonPacketTimeout: "packet not finished in time",
	reasonInputBudget:   "too much unfinished input",
	reasonQuota:         "quota exceeded",
	reasonNotAuthorized: "not authorized",
	reasonLoginTimeout:  "no login in time",
}

func (r closeReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}
