package broker

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cimgo/cim/broker/topic"
)

// Authentication and authorisation. An Auth is built whole from
// AuthOptions by NewAuth and is read-only afterwards (but for its success
// cache), so a reload (SIGHUP) builds a new one and swaps a pointer: a
// client is judged entirely by the old state or entirely by the new.
//
//	CONNECT user, password
//	   │ Cached (loop, never blocks) ── hit ──► Identity
//	   │ miss: Check (off the loop: bcrypt / PBKDF2 take milliseconds)
//	   ├─ JWT configured and password looks like a JWT ─► verify signature, exp, iss, aud
//	   ├─ password file ─► bcrypt, mosquitto $7$ (PBKDF2-SHA512) or $6$
//	   └─ neither configured ─► anonymous
//	SUBSCRIBE / PUBLISH: Denied (deny filters) then Allowed (the token's ACL
//	if it carried one, else the configured ACL rules)

// ErrAuth is wrapped by every refused login; the message says why (unknown
// user, wrong password, expired token ...) and never holds the password.
var ErrAuth = errors.New("broker: authentication failed")

// ErrPasswordFile is wrapped by errors reading the password file.
var ErrPasswordFile = errors.New("broker: password file")

// ErrAuthOptions is wrapped by AuthOptions.Validate errors; the message
// names the YAML key.
var ErrAuthOptions = errors.New("broker: invalid auth options")

// AuthOptions configure an Auth. The zero value lets everyone in anonymously.
type AuthOptions struct {
	// PasswordFile, if set, requires a user name and password listed in it:
	// lines "user:hash" with bcrypt hashes (`cim passwd`) or mosquitto_passwd's
	// $7$ / $6$ hashes; blank lines and # comments are skipped.
	PasswordFile string `yaml:"password_file"`
	// JWT, if it has keys, accepts signed tokens as passwords.
	JWT JWTOptions `yaml:"jwt"`
	// ACL rules, first match wins. With no rules everything is allowed.
	ACL []ACLRule `yaml:"acl"`
	// ACLDefault is the access when rules exist and none matches: "allow"
	// or "deny". Default "deny".
	ACLDefault string `yaml:"acl_default"`
	// DenyFilters refuse a subscription to a filter equal to or broader than
	// one of them: with "#" nobody subscribes to "#" (but "a/#" is fine);
	// with "a/#" nobody subscribes to "a/#", "+/#" or "#".
	DenyFilters []string `yaml:"deny_filters"`
	// CacheSize bounds the remembered successful logins. Default 100,000.
	CacheSize int `yaml:"-"`
}

// EnsureDefaults fills unset fields with their defaults.
func (o *AuthOptions) EnsureDefaults() {
	if o.ACLDefault == "" {
		o.ACLDefault = "deny"
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 100_000
	}
	o.JWT.EnsureDefaults()
}

// Validate reports the first bad field, by its YAML key. It reads no file.
func (o *AuthOptions) Validate() error {
	bad := func(key, why string) error { return fmt.Errorf("%w: %s: %s", ErrAuthOptions, key, why) }
	if o.ACLDefault != "allow" && o.ACLDefault != "deny" {
		return bad("acl_default", fmt.Sprintf("want allow or deny, got %q", o.ACLDefault))
	}
	for i, r := range o.ACL {
		if err := r.validate(); err != nil {
			return bad(fmt.Sprintf("acl[%d]", i), err.Error())
		}
	}
	for i, f := range o.DenyFilters {
		if err := topic.ValidFilter(f); err != nil {
			return bad(fmt.Sprintf("deny_filters[%d]", i), fmt.Sprintf("%q: %v", f, err))
		}
	}
	if o.JWT.Leeway < 0 {
		return bad("jwt.leeway", "negative")
	}
	return nil
}

// AuthMethod says how a client proved who it is.
type AuthMethod uint8

// How a client logged in.
const (
	AuthAnonymous   AuthMethod = iota // no credentials configured
	AuthPassword                      // a password-file line
	AuthJWT                           // a signed token
	AuthCertificate                   // a verified TLS client certificate (BridgeInfo.IdentityAsUser)
)

func (m AuthMethod) String() string {
	switch m {
	case AuthPassword:
		return "password"
	case AuthJWT:
		return "jwt"
	case AuthCertificate:
		return "certificate"
	}
	return "anonymous"
}

// Identity is who a client is once logged in. Read-only; it may be shared
// between connections through the cache.
type Identity struct {
	// User is the user name: the CONNECT's, or the token's user claim.
	User   string
	Method AuthMethod
	// ACL, if not nil, came with the token and replaces the configured ACL.
	ACL *TokenACL
	// Expires is when the credentials stop being valid (a token's exp plus
	// leeway); zero for passwords. The connection may be closed then.
	Expires time.Time
}

// TokenACL is a token's own permissions: topic patterns (with %u and %c) a
// client may publish to and subscribe to; anything else is refused.
type TokenACL struct {
	Publish   []string
	Subscribe []string
}

// Access is what a client wants to do with a topic.
type Access uint8

// Kinds of access.
const (
	AccessRead  Access = accessRead  // subscribe
	AccessWrite Access = accessWrite // publish
)

// Auth is the whole authentication and authorisation state; see NewAuth.
// All methods are safe for concurrent use.
type Auth struct {
	hashes     map[string]passwordHash // nil: no password file; read-only
	jwt        *jwtVerifier            // nil: no JWT keys; read-only
	acl        []ACLRule
	aclDefault bool // allow when no rule matches
	deny       []string
	cache      successCache
}

// NewAuth validates o and reads the password file and JWT keys. It blocks
// on file reads only; the result is immutable, fit for an atomic swap.
func NewAuth(o AuthOptions) (*Auth, error) {
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	a := &Auth{
		acl:        append([]ACLRule(nil), o.ACL...),
		aclDefault: o.ACLDefault == "allow",
		deny:       append([]string(nil), o.DenyFilters...),
		cache:      successCache{max: o.CacheSize, m: map[[32]byte]Identity{}},
	}
	if o.PasswordFile != "" {
		h, err := readPasswordFile(o.PasswordFile)
		if err != nil {
			return nil, err
		}
		a.hashes = h
	}
	if o.JWT.Enabled() {
		v, err := newJWTVerifier(o.JWT)
		if err != nil {
			return nil, err
		}
		a.jwt = v
	}
	return a, nil
}

// Required reports whether clients must log in (a password file or JWT keys
// are configured). Never blocks.
func (a *Auth) Required() bool { return a.hashes != nil || a.jwt != nil }

// Cached returns the identity of a user/password pair that passed Check
// before and has not expired at now. It never blocks long: call it on the
// loop and go off the loop to Check only on a miss.
func (a *Auth) Cached(user, password []byte, now time.Time) (Identity, bool) {
	if !a.Required() {
		return Identity{User: string(user)}, true
	}
	return a.cache.get(credKey(user, password), now)
}

// Check verifies a login at time now. It may take tens of milliseconds
// (bcrypt, PBKDF2): never call it on an event loop. The error wraps ErrAuth
// and is fit for a log line. user and password are only read.
func (a *Auth) Check(user, password []byte, now time.Time) (Identity, error) {
	if !a.Required() {
		return Identity{User: string(user)}, nil
	}
	var id Identity
	switch {
	case a.jwt != nil && looksLikeJWT(password):
		var err error
		if id, err = a.jwt.verify(user, password, now); err != nil {
			return Identity{}, err
		}
	case a.hashes != nil:
		h, ok := a.hashes[string(user)]
		if !ok {
			return Identity{}, fmt.Errorf("%w: unknown user %q", ErrAuth, user)
		}
		if !h.verify(password) {
			return Identity{}, fmt.Errorf("%w: wrong password for %q", ErrAuth, user)
		}
		id = Identity{User: string(user), Method: AuthPassword}
	default:
		return Identity{}, fmt.Errorf("%w: not a valid token", ErrAuth) // JWT only, and a plain password
	}
	a.cache.put(credKey(user, password), id)
	return id, nil
}

// Denied reports whether a subscription to filter is refused by a deny
// filter: filter is equal to or broader than one of them (it would receive
// every message the deny filter would). A $share/<group>/ prefix is judged
// by its inner filter. Never blocks.
func (a *Auth) Denied(filter string) bool {
	if _, inner, shared := topic.ParseShare(filter); shared {
		filter = inner
	}
	for _, d := range a.deny {
		if covers(filter, d) {
			return true
		}
	}
	return false
}

// covers reports whether filter f matches every topic name filter d
// matches. Both are valid filters.
func covers(f, d string) bool {
	if f == d {
		return true
	}
	fl, dl := strings.Split(f, "/"), strings.Split(d, "/")
	if len(dl) > 0 && strings.HasPrefix(dl[0], "$") && len(fl) > 0 && (fl[0] == "#" || fl[0] == "+") {
		return false // [MQTT-4.7.2-1] a leading wildcard never matches $-topics
	}
	for i, fs := range fl {
		if fs == "#" {
			return true // also matches the parent level: "a/#" covers "a"
		}
		if i >= len(dl) {
			return false
		}
		switch ds := dl[i]; {
		case ds == "#":
			return false // d reaches any depth, f stops somewhere
		case fs == "+":
		case fs != ds: // a literal level covers only itself ("+" included)
			return false
		}
	}
	return len(fl) == len(dl)
}

// Restricts reports whether the ACL can refuse anything to id: without
// rules or a token ACL every check passes, and deliveries skip it.
func (a *Auth) Restricts(id *Identity) bool { return len(a.acl) > 0 || id != nil && id.ACL != nil }

// Allowed applies the ACL to one topic name (publish, AccessWrite) or
// filter (subscribe, AccessRead: the filter must fall inside a pattern,
// wildcards taken literally) for the client id logged in as id. A token's
// ACL replaces the configured rules. Never blocks.
func (a *Auth) Allowed(id *Identity, client, name string, access Access) bool {
	if id != nil && id.ACL != nil {
		patterns := id.ACL.Subscribe
		if access == AccessWrite {
			patterns = id.ACL.Publish
		}
		for _, p := range patterns {
			if matchPattern(p, id.User, client, name) {
				return true
			}
		}
		return false
	}
	user := ""
	if id != nil {
		user = id.User
	}
	return aclAllows(a.acl, a.aclDefault, user, client, name, int(access))
}

func matchPattern(pattern, user, client, name string) bool {
	if strings.Contains(pattern, "%") {
		// A user name or client id with a wildcard or a level separator
		// would widen the pattern ("devices/%u/#" with user "+"): no match.
		if strings.Contains(pattern, "%u") && strings.ContainsAny(user, "+#/") ||
			strings.Contains(pattern, "%c") && strings.ContainsAny(client, "+#/") {
			return false
		}
		pattern = strings.NewReplacer("%u", user, "%c", client).Replace(pattern)
	}
	return pattern == name || topic.Match(pattern, name)
}

// successCache remembers identities of logins that passed, by a hash of the
// credentials (never the password itself).
type successCache struct {
	max int
	mu  sync.Mutex
	m   map[[32]byte]Identity // REQUIRES: mu held
}

func (c *successCache) get(k [32]byte, now time.Time) (Identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.m[k]
	if ok && !id.Expires.IsZero() && !now.Before(id.Expires) {
		delete(c.m, k)
		return Identity{}, false
	}
	return id, ok
}

func (c *successCache) put(k [32]byte, id Identity) {
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m) // bound memory; entries are only a cache
	}
	c.m[k] = id
	c.mu.Unlock()
}

// readPasswordFile reads lines "user:hash"; blank lines and # comments are
// skipped; a user listed twice is an error.
func readPasswordFile(path string) (map[string]passwordHash, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPasswordFile, err)
	}
	defer f.Close()
	hashes := map[string]passwordHash{}
	first := map[string]int{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		user, hash, found := strings.Cut(line, ":")
		if !found || user == "" {
			return nil, fmt.Errorf("%w: %s:%d: want user:hash", ErrPasswordFile, path, n)
		}
		if at, dup := first[user]; dup {
			return nil, fmt.Errorf("%w: %s:%d: user %q already on line %d", ErrPasswordFile, path, n, user, at)
		}
		h, err := parseHash(hash)
		if err != nil {
			return nil, fmt.Errorf("%w: %s:%d: %w", ErrPasswordFile, path, n, err)
		}
		hashes[user], first[user] = h, n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrPasswordFile, path, err)
	}
	return hashes, nil
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
	return validFilterProbe(r.Topic)
}

// validFilterProbe checks a topic pattern whose %u and %c are yet to be
// substituted.
func validFilterProbe(pattern string) error {
	probe := strings.NewReplacer("%u", "u", "%c", "c").Replace(pattern)
	if err := topic.ValidFilter(probe); err != nil {
		return fmt.Errorf("topic %q: %w", pattern, err)
	}
	return nil
}

const (
	accessRead  = 1
	accessWrite = 2
)

// aclAllows: first matching rule wins; with no rules everything is allowed.
func aclAllows(rules []ACLRule, dflt bool, user, client, name string, access int) bool {
	if len(rules) == 0 {
		return true
	}
	for _, r := range rules {
		if !matchWho(r.User, user) || !matchWho(r.Client, client) {
			continue
		}
		if !matchPattern(r.Topic, user, client, name) {
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
	return dflt
}

func matchWho(rule, v string) bool { return rule == "" || rule == "*" || rule == v }
