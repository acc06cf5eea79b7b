package cluster

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// PickStrategy chooses the node Pick answers for a user (cim's /login).
type PickStrategy int

const (
	// PickHash: rendezvous (highest random weight) hashing of the user id
	// over the live nodes: every node computes the same answer, a user
	// keeps its node while that node lives, and when a node joins or goes
	// only the users whose top choice it is move. The default.
	PickHash PickStrategy = iota
	// PickRoundRobin: the live nodes in name order, in turn.
	PickRoundRobin
	// PickRandom: a live node at random.
	PickRandom
)

func (s PickStrategy) String() string {
	switch s {
	case PickHash:
		return "hash"
	case PickRoundRobin:
		return "roundrobin"
	case PickRandom:
		return "random"
	}
	return fmt.Sprintf("PickStrategy(%d)", int(s))
}

// ParsePickStrategy reads "hash" (or "consistent-hash"), "roundrobin"
// (or "round-robin") or "random".
func ParsePickStrategy(s string) (PickStrategy, error) {
	switch strings.ToLower(s) {
	case "hash", "consistent-hash", "consistenthash", "":
		return PickHash, nil
	case "roundrobin", "round-robin", "rr":
		return PickRoundRobin, nil
	case "random":
		return PickRandom, nil
	}
	return 0, fmt.Errorf("%w: pick strategy %q: want hash, roundrobin or random", ErrInvalidOptions, s)
}

// Pick chooses a live node for userID with Options.Pick and returns it
// with its metadata. Alive nodes are preferred; suspect ones are used only
// when no node is alive. Safe from any goroutine; does not block.
func (c *Cluster) Pick(userID string) (Member, error) {
	return c.PickWith(c.opts.Pick, userID)
}

// PickWith is Pick with an explicit strategy.
func (c *Cluster) PickWith(s PickStrategy, userID string) (Member, error) {
	var alive, suspect []Member
	for _, m := range c.members.list() {
		if m.Meta.Leaving {
			continue
		}
		switch m.State {
		case StateAlive:
			alive = append(alive, m)
		case StateSuspect:
			suspect = append(suspect, m)
		}
	}
	cands := alive
	if len(cands) == 0 {
		cands = suspect
	}
	if len(cands) == 0 {
		return Member{}, ErrNoLiveNode
	}
	switch s {
	case PickRoundRobin:
		return cands[int((c.rr.Add(1)-1)%uint64(len(cands)))], nil
	case PickRandom:
		return cands[rand.IntN(len(cands))], nil
	default:
		best, bestScore := 0, uint64(0)
		for i, m := range cands {
			if sc := hrwScore(userID, m.Name); i == 0 || sc > bestScore {
				best, bestScore = i, sc
			}
		}
		return cands[best], nil
	}
}

// hrwScore is the rendezvous weight of (user, node): FNV-1a over both,
// finished with a splitmix64 mix so that near-identical names spread.
// It must stay the same across versions and nodes.
func hrwScore(user, node string) uint64 {
	const off, prime = 14695981039346656037, 1099511628211
	h := uint64(off)
	for i := 0; i < len(user); i++ {
		h = (h ^ uint64(user[i])) * prime
	}
	h = (h ^ 0xff) * prime
	for i := 0; i < len(node); i++ {
		h = (h ^ uint64(node[i])) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
