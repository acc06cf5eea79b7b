package client

// State is where a Client is in its life:
//
//	Initialized ─► Connecting ─► Ready ◄──► Reconnecting
//	                   │           │             │
//	                   ▼           ▼             ▼
//	                 Failed      Closed        Failed
//
// Connecting is Dial's first attempt(s); Reconnecting follows a lost
// connection; Failed is final (retries exhausted, wrong credentials, taken
// over or kicked: Client.Err says why); Closed is final (Close was called,
// from any state but Failed).
type State int32

const (
	Initialized State = iota
	Connecting
	Ready
	Reconnecting
	Closed
	Failed
)

func (s State) String() string {
	switch s {
	case Initialized:
		return "initialized"
	case Connecting:
		return "connecting"
	case Ready:
		return "ready"
	case Reconnecting:
		return "reconnecting"
	case Closed:
		return "closed"
	case Failed:
		return "failed"
	}
	return "unknown"
}
