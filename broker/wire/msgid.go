package wire

// Server message ids carry the time the server made them: bits 63-23 are
// milliseconds since MsgIDEpoch (broker/ids.go draws the whole id; the
// other bits name the node and count within the millisecond). So a frame
// that has a message id leaves out its time (ts) when it is the id's time,
// and a decoder takes it from the id (doc.go, "Keys derived when absent").

// MsgIDEpoch is the unix millisecond a server message id's time counts
// from: 2025-01-01T00:00:00Z.
const MsgIDEpoch = 1735689600000

// MsgIDTimeShift is the bit the time field of a server message id starts at.
const MsgIDTimeShift = 23

// MsgIDTime is when the server made message id id, in unix milliseconds;
// 0 for id 0 (no id, no time). Any goroutine; it only computes.
func MsgIDTime(id uint64) int64 {
	if id == 0 {
		return 0
	}
	return int64(id>>MsgIDTimeShift) + MsgIDEpoch
}
