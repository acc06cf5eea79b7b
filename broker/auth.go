package broker

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/cimgo/cim/broker/topic"
	"golang.org/x/crypto/bcrypt"
)

// ErrPasswordFile is wrapped by errors reading the password file.
var ErrPasswordFile = errors.New("broker: password file")

// passwords checks user names and passwords against bcrypt hashes. bcrypt is
// slow on purpose, so checks run off the event loops and successful ones are
// remembered (by a hash of the password, never the password itself).
type passwords struct {
	hashes map[string][]byte // user -> bcrypt hash; read-only after load

	mu sync.Mutex
	ok map[[32]byte]struct{} // REQUIRES: mu held. sha256(user, password) of checks that passed
}

// loadPasswords reads lines "user:hash"; blank lines and # comments are skipped.
func loadPasswords(path string) (*passwords, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPasswordFile, err)
	}
	defer f.Close()
	p := &passwords{hashes: map[string][]byte{}, ok: map[[32]byte]struct{}{}}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		user, hash, found := strings.Cut(line, ":")
		if !found || user == "" {
			return nil, fmt.Errorf("%w: %s:%d: want user:bcrypt-hash", ErrPasswordFile, path, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("%w: %s:%d: %w", ErrPasswordFile, path, n, err)
		}
		p.hashes[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPasswordFile, err)
	}
	return p, nil
}

func credKey(user, password []byte) [32]byte {
	h := sha256.New()
	h.Write(user)
	h.Write([]byte{0})
	h.Write(password)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// cached reports whether this pair passed a check before. Never blocks long.
func (p *passwords) cached(user, password []byte) bool {
	k := credKey(user, password)
	p.mu.Lock()
	_, ok := p.ok[k]
	p.mu.Unlock()
	return ok
}

// check runs bcrypt; it may take tens of milliseconds: never on a loop.
func (p *passwords) check(user, password []byte) bool {
	hash, ok := p.hashes[string(user)]
	if !ok || bcrypt.CompareHashAndPassword(hash, password) != nil {
		return false
	}
	p.mu.Lock()
	if len(p.ok) > 100000 {
		clear(p.ok) // bound memory; entries are only a cache
	}
	p.ok[credKey(user, password)] = struct{}{}
	p.mu.Unlock()
	return true
}

// ACLRule grants or denies access to topics matching Topic for clients
// matching User and Client ("" or "*" matches anyone). Topic may contain %u
// (user name) and %c (client id), substituted before matching.
type ACLRule struct {
	User   string `yaml:"user"`
	Client string `yaml:"client"`
	Topic  string `yaml:"topic"`
	// Access is "read" (subscribe), "write" (publish), "readwrite" or "deny".
	Access string `yaml:"access"`
}

func (r ACLRule) validate() error {
	switch r.Access {
	case "read", "write", "readwrite", "deny":
	default:
		return fmt.Errorf("access %q is not read, write, readwrite or deny", r.Access)
	}
	probe := strings.NewReplacer("%u", "u", "%c", "c").Replace(r.Topic)
	if err := topic.ValidFilter(probe); err != nil {
		return fmt.Errorf("topic %q: %w", r.Topic, err)
	}
	return nil
}

const (
	accessRead  = 1
	accessWrite = 2
)

// allowed applies the ACL to one topic name (publish) or filter (subscribe:
// the filter must fall inside a rule's pattern, wildcards taken literally).
func (s *Server) allowed(user, client, name string, access int) bool {
	if len(s.opts.ACL) == 0 {
		return true
	}
	for _, r := range s.opts.ACL {
		if !matchWho(r.User, user) || !matchWho(r.Client, client) {
			continue
		}
		pattern := r.Topic
		if strings.Contains(pattern, "%") {
			pattern = strings.NewReplacer("%u", user, "%c", client).Replace(pattern)
		}
		if pattern != name && !topic.Match(pattern, name) {
			continue
		}
		switch r.Access {
		case "deny":
			return false
		case "readwrite":
			return true
		case "read":
			if access == accessRead {
				return true
			}
		case "write":
			if access == accessWrite {
				return true
			}
		}
	}
	return s.opts.ACLDefault == "allow"
}

func matchWho(rule, v string) bool { return rule == "" || rule == "*" || rule == v }
