package cluster

import (
	"errors"
	"fmt"
)

// Errors returned by this package, wrapped with %w; test with errors.Is.
var (
	// ErrInvalidOptions wraps every Options.Validate failure.
	ErrInvalidOptions = errors.New("cluster: invalid options")
	// ErrClosed: the Cluster was closed (or never started).
	ErrClosed = errors.New("cluster: closed")
	// ErrUnknownPeer: no peer link exists for that node name (it is not a
	// live member advertising a peer address, and never connected to us).
	ErrUnknownPeer = errors.New("cluster: unknown peer")
	// ErrSelf: a frame addressed to this node itself.
	ErrSelf = errors.New("cluster: peer is this node")
	// ErrQueueFull: the peer link's bounded queue is full (back-pressure);
	// the frame was not queued. Counted in LinkStats.Refused.
	ErrQueueFull = errors.New("cluster: peer link queue full")
	// ErrPeerGone: the peer was declared dead or left; frames queued or
	// unacknowledged for it, and requests waiting on it, were dropped.
	ErrPeerGone = errors.New("cluster: peer left the cluster")
	// ErrLinkDown: a request was written but its connection died before the
	// answer came; whether the peer acted on it is unknown.
	ErrLinkDown = errors.New("cluster: peer link lost")
	// ErrTimeout: a request got no answer in time.
	ErrTimeout = errors.New("cluster: request timed out")
	// ErrNoLiveNode: Pick found no live member.
	ErrNoLiveNode = errors.New("cluster: no live node")
	// ErrAuth: a peer-link handshake failed (wrong cluster, wrong secret,
	// wrong node name or protocol version).
	ErrAuth = errors.New("cluster: peer authentication failed")
	// ErrIncomplete: the buffer holds less than one whole frame (not a
	// failure: read more and decode again).
	ErrIncomplete = errors.New("cluster: incomplete frame")
	// ErrFrameTooLarge: a frame's declared length exceeds the limit.
	ErrFrameTooLarge = errors.New("cluster: frame too large")
	// ErrMalformed: bytes that are not a valid frame, broadcast or state.
	ErrMalformed = errors.New("cluster: malformed message")
	// ErrTooLarge: metadata or a key/filter over its size limit.
	ErrTooLarge = errors.New("cluster: value too large")
)

// RemoteError is the error a peer's RequestDelegate answered with
// (Reply.Fail); Msg is its text.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return fmt.Sprintf("cluster: remote error: %s", e.Msg) }
