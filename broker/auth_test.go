package broker

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Lines written by mosquitto_passwd 2.0.11 (Debian bookworm):
//
//	mosquitto_passwd -c -b pw alice s3cret              ($7$, PBKDF2-SHA512, 101 rounds)
//	mosquitto_passwd -b -I 1000 pw bob hunter2          ($7$, 1000 rounds)
//	mosquitto_passwd -H sha512 -c -b pw6 carol p4ss     ($6$)
const mosquittoLines = `alice:$7$101$QOhJqz8L74jXr0ex$d9qmK+afwJomxzb1UTee0uaDPOMDMKGT4V2Hrn/CFxU09q+XNyKlcEKItL89fswku8FUUkAPOx53r5Sc59MPmw==
bob:$7$1000$IIzbZB/qD15UC+z1$6ZatXtuJn3o0PGx4ie/wPTeuccZiSXEN77sUjcLN21qjcxj/9tT3bPiwdUUIrAHP5FOkgZKwNoezgWd30pOIsA==
carol:$6$WqXnApX/MvjMOSdk$CpP/8Jh0ITdVouiPXaH9ElzH3nb+HSufGksmL12TsK23NRsjXiI+NvRznxsNpA3hs1xQXzqb9ZwD7rkHjKZXGQ==
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func bcryptLine(t *testing.T, user, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), 4)
	if err != nil {
		t.Fatal(err)
	}
	return user + ":" + string(h) + "\n"
}

func TestMosquittoHashesGolden(t *testing.T) {
	path := writeFile(t, "pw", "# mosquitto\n\n"+mosquittoLines+bcryptLine(t, "dave", "bcrypt!"))
	a, err := NewAuth(AuthOptions{PasswordFile: path})
	if err != nil {
		t.Fatal(err)
	}
	for user, pass := range map[string]string{"alice": "s3cret", "bob": "hunter2", "carol": "p4ss", "dave": "bcrypt!"} {
		id, err := a.Check([]byte(user), []byte(pass), time.Now())
		if err != nil || id.User != user || id.Method != AuthPassword {
			t.Errorf("%s: %+v, %v", user, id, err)
		}
		if _, err := a.Check([]byte(user), []byte(pass+"x"), time.Now()); !errors.Is(err, ErrAuth) {
			t.Errorf("%s with a wrong password: %v", user, err)
		}
	}
}

// TestMosquittoPasswdBinary makes the hashes with the real mosquitto_passwd
// (package mosquitto) in both of its formats.
func TestMosquittoPasswdBinary(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skip("mosquitto_passwd not installed (apt-get install mosquitto); the golden lines cover the format")
	}
	path := filepath.Join(t.TempDir(), "pw")
	for _, c := range [][]string{
		{"-c", "-b", path, "pbkdf2user", "pässwörd with spaces"},
		{"-H", "sha512", "-b", path, "sha512user", "second"},
		{"-I", "5000", "-b", path, "iteruser", "third"},
	} {
		if out, err := exec.Command(bin, c...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd %q: %v: %s", c, err, out)
		}
	}
	a, err := NewAuth(AuthOptions{PasswordFile: path})
	if err != nil {
		t.Fatal(err)
	}
	for user, pass := range map[string]string{"pbkdf2user": "pässwörd with spaces", "sha512user": "second", "iteruser": "third"} {
		if _, err := a.Check([]byte(user), []byte(pass), time.Now()); err != nil {
			t.Errorf("%s: %v", user, err)
		}
		if _, err := a.Check([]byte(user), []byte("wrong"), time.Now()); err == nil {
			t.Errorf("%s: wrong password accepted", user)
		}
	}
}

func TestPasswordFileErrors(t *testing.T) {
	for name, tc := range map[string]struct{ content, want string }{
		"no colon":       {"# c\nalice\n", "pw:2: want user:hash"},
		"empty user":     {":$2a$04$abc\n", "pw:1"},
		"plain text":     {"alice:s3cret\n", "pw:1: broker: password hash: unknown format"},
		"bad bcrypt":     {"alice:$2a$04$short\n", "pw:1: broker: password hash: bcrypt"},
		"bad $7$ fields": {"alice:$7$101$onlysalt\n", "want $7$iterations$salt$hash"},
		"huge $7$ work":  {"alice:$7$999999999$QOhJqz8L74jXr0ex$d9qmK+afwJomxzb1UTee0uaDPOMDMKGT4V2Hrn/CFxU09q+XNyKlcEKItL89fswku8FUUkAPOx53r5Sc59MPmw==\n", "iterations"},
		"bad base64":     {"alice:$6$!!!$abc\n", "salt is not base64"},
		"short digest":   {"alice:$6$c2FsdA==$YWJj\n", "not a base64 SHA-512 digest"},
		"duplicate":      {mosquittoLines + "alice:" + strings.Split(strings.Split(mosquittoLines, "\n")[1], ":")[1] + "\n", `pw:4: user "alice" already on line 1`},
	} {
		_, err := NewAuth(AuthOptions{PasswordFile: writeFile(t, "pw", tc.content)})
		if !errors.Is(err, ErrPasswordFile) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	if _, err := NewAuth(AuthOptions{PasswordFile: filepath.Join(t.TempDir(), "missing")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestAuthCacheAndErrors(t *testing.T) {
	a, err := NewAuth(AuthOptions{PasswordFile: writeFile(t, "pw", bcryptLine(t, "alice", "s3cret"))})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Required() {
		t.Fatal("a password file requires logins")
	}
	now := time.Now()
	if _, ok := a.Cached([]byte("alice"), []byte("s3cret"), now); ok {
		t.Fatal("cached before any check")
	}
	if _, err := a.Check([]byte("alice"), []byte("s3cret"), now); err != nil {
		t.Fatal(err)
	}
	if id, ok := a.Cached([]byte("alice"), []byte("s3cret"), now.Add(24*time.Hour)); !ok || id.User != "alice" {
		t.Fatalf("password logins stay cached: %+v %v", id, ok)
	}
	if _, ok := a.Cached([]byte("alice"), []byte("other"), now); ok {
		t.Fatal("a different password hit the cache")
	}
	for _, c := range []struct{ user, pass, why string }{
		{"mallory", "s3cret", `unknown user "mallory"`},
		{"alice", "guess-123", `wrong password for "alice"`},
	} {
		_, err := a.Check([]byte(c.user), []byte(c.pass), now)
		if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), c.why) || strings.Contains(err.Error(), c.pass) {
			t.Errorf("%s/%s: %v (want %q, without the password)", c.user, c.pass, err, c.why)
		}
	}
	// A fresh Auth (what a reload builds) has forgotten every login.
	b, err := NewAuth(AuthOptions{PasswordFile: writeFile(t, "pw", bcryptLine(t, "bob", "x"))})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Cached([]byte("alice"), []byte("s3cret"), now); ok {
		t.Fatal("a new Auth knows the old one's logins")
	}
	if _, err := b.Check([]byte("alice"), []byte("s3cret"), now); err == nil {
		t.Fatal("a user removed from the file still logs in")
	}
}

func TestAuthCacheBounded(t *testing.T) {
	c := successCache{max: 3, m: map[[32]byte]Identity{}}
	for i := range 10 {
		c.put(credKey([]byte(fmt.Sprint(i)), nil), Identity{User: fmt.Sprint(i)})
		if len(c.m) > 3 {
			t.Fatalf("%d entries, max 3", len(c.m))
		}
	}
}

func TestAnonymous(t *testing.T) {
	a, err := NewAuth(AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Required() {
		t.Fatal("no credentials configured: anonymous")
	}
	id, err := a.Check([]byte("anyone"), nil, time.Now())
	if err != nil || id.User != "anyone" || id.Method != AuthAnonymous {
		t.Fatalf("%+v %v", id, err)
	}
	if !a.Allowed(&id, "c1", "any/topic", AccessWrite) {
		t.Fatal("no ACL: everything allowed")
	}
}

func TestCovers(t *testing.T) {
	for _, c := range []struct {
		filter, deny string
		want         bool
	}{
		{"#", "#", true},
		{"a/#", "#", false},
		{"+/#", "#", false},
		{"a/b", "#", false},
		{"#", "a/#", true},
		{"+/#", "a/#", true},
		{"a/#", "a/#", true},
		{"a/+/#", "a/#", false}, // misses "a" itself
		{"a/+", "a/#", false},
		{"a/b", "a/#", false},
		{"a/+", "a/b", true},
		{"+/+", "a/b", true},
		{"a/b", "a/b", true},
		{"a/c", "a/b", false},
		{"a/b/c", "a/b", false},
		{"a", "a/b", false},
		{"a/#", "a", true},
		{"a/+", "a/+", true},
		{"a/b", "a/+", false},
		{"+/b", "+/+", false},
		{"#", "$SYS/#", false}, // [MQTT-4.7.2-1]
		{"+/#", "$SYS/x", false},
		{"$SYS/#", "$SYS/#", true},
		{"$SYS/+", "$SYS/uptime", true},
	} {
		if got := covers(c.filter, c.deny); got != c.want {
			t.Errorf("covers(%q, %q) = %v, want %v", c.filter, c.deny, got, c.want)
		}
	}
}

func TestDenied(t *testing.T) {
	a, err := NewAuth(AuthOptions{DenyFilters: []string{"#", "secret/#"}})
	if err != nil {
		t.Fatal(err)
	}
	for filter, want := range map[string]bool{
		"#": true, "$share/g/#": true, "secret/#": true, "+/#": true,
		"sensors/#": false, "secret/a": false, "$share/g/sensors/+": false,
	} {
		if got := a.Denied(filter); got != want {
			t.Errorf("Denied(%q) = %v, want %v", filter, got, want)
		}
	}
}

func TestAllowedACL(t *testing.T) {
	a, err := NewAuth(AuthOptions{ACL: []ACLRule{
		{User: "admin", Topic: "#", Access: "readwrite"},
		{Topic: "devices/%c/#", Access: "readwrite"},
		{Topic: "users/%u/inbox", Access: "read"},
		{Topic: "secret/#", Access: "deny"},
		{Topic: "public/#", Access: "read"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	alice := &Identity{User: "alice", Method: AuthPassword}
	admin := &Identity{User: "admin", Method: AuthPassword}
	plus := &Identity{User: "+"}
	for _, c := range []struct {
		id     *Identity
		client string
		name   string
		access Access
		want   bool
	}{
		{admin, "x", "secret/k", AccessWrite, true},
		{alice, "d1", "devices/d1/temp", AccessWrite, true},
		{alice, "d1", "devices/d2/temp", AccessWrite, false},
		{alice, "d1", "users/alice/inbox", AccessRead, true},
		{alice, "d1", "users/alice/inbox", AccessWrite, false},
		{alice, "d1", "secret/k", AccessRead, false},
		{alice, "d1", "public/news", AccessRead, true},
		{alice, "d1", "public/news", AccessWrite, false},
		{alice, "d1", "other", AccessRead, false}, // acl_default deny
		{nil, "d1", "devices/d1/x", AccessRead, true},
		{plus, "d1", "users/+/inbox", AccessRead, false},      // a wildcard user name widens nothing
		{alice, "+", "devices/+/temp", AccessRead, false},     // nor a wildcard client id
		{alice, "a/b", "devices/a/b/temp", AccessRead, false}, // nor a level separator
	} {
		if got := a.Allowed(c.id, c.client, c.name, c.access); got != c.want {
			t.Errorf("Allowed(%+v, %q, %q, %d) = %v, want %v", c.id, c.client, c.name, c.access, got, c.want)
		}
	}
}

func TestAuthOptionsValidate(t *testing.T) {
	for key, o := range map[string]AuthOptions{
		"acl_default":        {ACLDefault: "maybe"},
		"acl[1]":             {ACL: []ACLRule{{Topic: "a", Access: "read"}, {Topic: "a", Access: "all"}}},
		"acl[0]: topic":      {ACL: []ACLRule{{Topic: "a/#/b", Access: "read"}}},
		"deny_filters[0]":    {DenyFilters: []string{"a/#/b"}},
		"jwt.leeway":         {JWT: JWTOptions{Leeway: -time.Second}},
		"jwt.secret_file":    {JWT: JWTOptions{SecretFile: filepath.Join(t.TempDir(), "none")}},
		"jwt.public_keys[0]": {JWT: JWTOptions{PublicKeys: []string{filepath.Join(t.TempDir(), "none")}}},
	} {
		_, err := NewAuth(o)
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v", key, err)
		}
	}
}

// TestAuthConcurrent runs Check and Cached from many goroutines (for -race).
func TestAuthConcurrent(t *testing.T) {
	a, err := NewAuth(AuthOptions{PasswordFile: writeFile(t, "pw", mosquittoLines), CacheSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				user, pass := []byte("carol"), []byte("p4ss")
				if (g+i)%3 == 0 {
					pass = []byte(fmt.Sprint("wrong", i))
				}
				if _, ok := a.Cached(user, pass, time.Now()); !ok {
					_, _ = a.Check(user, pass, time.Now())
				}
			}
		}()
	}
	wg.Wait()
	if _, ok := a.Cached([]byte("carol"), []byte("wrong0"), time.Now()); ok {
		t.Fatal("a wrong password was cached")
	}
}
