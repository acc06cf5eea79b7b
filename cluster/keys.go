package cluster

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
)

// Both keys come from the one cluster secret, salted with the cluster name
// so that two clusters sharing a secret still cannot read each other, and
// separated by purpose so the gossip key never doubles as the link MAC key.
//
//	gossip key (AES-256-GCM, memberlist keyring) = HKDF-SHA256(secret, salt=name, "cim cluster gossip v1")
//	link key   (HMAC-SHA256, peer-link hello)     = HKDF-SHA256(secret, salt=name, "cim cluster peer link v1")
//
// HKDF is not a password hash: a short or guessable secret can be found
// offline from captured gossip. docs/cluster.md asks for 32 random bytes.
const (
	infoGossip = "cim cluster gossip v1"
	infoLink   = "cim cluster peer link v1"
)

func deriveKey(secret, cluster, info string) []byte {
	k, err := hkdf.Key(sha256.New, []byte(secret), []byte(cluster), info, 32)
	if err != nil { // only for lengths sha256 cannot produce
		panic(err)
	}
	return k
}

// linkMAC proves knowledge of the link key: the MAC binds the role, both
// nonces and both node names, so it cannot be replayed on another
// connection or reflected back to its sender.
func linkMAC(key []byte, role string, myNonce, theirNonce []byte, me, them string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(role))
	m.Write([]byte{0})
	m.Write(theirNonce)
	m.Write(myNonce)
	m.Write([]byte(me))
	m.Write([]byte{0})
	m.Write([]byte(them))
	return m.Sum(nil)
}
