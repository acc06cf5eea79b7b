package broker

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"github.com/eclipse/paho.golang/paho"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testSecret = "0123456789abcdef0123456789abcdef-hmac"

type jwtKeys struct {
	rsa     *rsa.PrivateKey
	ec      *ecdsa.PrivateKey
	ed      ed25519.PrivateKey
	rsaPEM  string // file with the RSA public key
	ecPEM   string // file with EC and Ed25519 public keys
	secret  string // file with the HMAC secret
	rsaCert string // bytes of the RSA public key PEM (for the confusion attack)
}

func pemFile(t *testing.T, dir, name string, keys ...crypto.PublicKey) (string, string) {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b.String()
}

func newJWTKeys(t *testing.T) *jwtKeys {
	t.Helper()
	dir := t.TempDir()
	k := &jwtKeys{}
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	var edPub ed25519.PublicKey
	if edPub, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	k.rsaPEM, k.rsaCert = pemFile(t, dir, "rsa.pem", &k.rsa.PublicKey)
	k.ecPEM, _ = pemFile(t, dir, "ec.pem", &k.ec.PublicKey, edPub)
	k.secret = filepath.Join(dir, "secret")
	if err := os.WriteFile(k.secret, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) []byte {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}

func TestJWT(t *testing.T) {
	k := newJWTKeys(t)
	a, err := NewAuth(AuthOptions{JWT: JWTOptions{SecretFile: k.secret, PublicKeys: []string{k.rsaPEM, k.ecPEM}}})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Required() {
		t.Fatal("JWT keys require logins")
	}
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Hour)
	claims := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "device-17", "exp": exp.Unix(),
			"acl": map[string]any{"publish": []string{"devices/%u/#"}, "subscribe": []string{"cmd/%u/#", "public/#"}}}
	}
	for name, tok := range map[string][]byte{
		"HS256": sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims()),
		"HS512": sign(t, jwt.SigningMethodHS512, []byte(testSecret), claims()),
		"RS256": sign(t, jwt.SigningMethodRS256, k.rsa, claims()),
		"PS384": sign(t, jwt.SigningMethodPS384, k.rsa, claims()),
		"ES256": sign(t, jwt.SigningMethodES256, k.ec, claims()),
		"EdDSA": sign(t, jwt.SigningMethodEdDSA, k.ed, claims()),
	} {
		for _, user := range []string{"", "device-17"} { // the user name is optional
			id, err := a.Check([]byte(user), tok, now)
			if err != nil {
				t.Errorf("%s user %q: %v", name, user, err)
				continue
			}
			if id.User != "device-17" || id.Method != AuthJWT || !id.Expires.Equal(exp) || id.ACL == nil {
				t.Errorf("%s: identity %+v", name, id)
			}
		}
	}

	tok := sign(t, jwt.SigningMethodES256, k.ec, claims())
	id, err := a.Check(nil, tok, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		client, name string
		access       Access
		want         bool
	}{
		{"c1", "devices/device-17/temp", AccessWrite, true},
		{"c1", "devices/device-18/temp", AccessWrite, false},
		{"c1", "cmd/device-17/#", AccessRead, true},
		{"c1", "public/news", AccessRead, true},
		{"c1", "public/news", AccessWrite, false},
		{"c1", "devices/device-17/temp", AccessRead, false},
	} {
		if got := a.Allowed(&id, c.client, c.name, c.access); got != c.want {
			t.Errorf("token ACL: %q %d = %v, want %v", c.name, c.access, got, c.want)
		}
	}
	if id, ok := a.Cached(nil, tok, now.Add(time.Minute)); !ok || id.User != "device-17" {
		t.Fatalf("cached token: %+v %v", id, ok)
	}
	if _, ok := a.Cached(nil, tok, exp); ok {
		t.Fatal("a cached token outlived its exp")
	}

	// Without an acl claim the configured ACL applies (none here: allow).
	plain := sign(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"sub": "u", "exp": exp.Unix()})
	if id, err := a.Check(nil, plain, now); err != nil || id.ACL != nil || !a.Allowed(&id, "c", "x/y", AccessWrite) {
		t.Fatalf("token without acl: %+v %v", id, err)
	}
}

func TestJWTRefused(t *testing.T) {
	k := newJWTKeys(t)
	a, err := NewAuth(AuthOptions{JWT: JWTOptions{SecretFile: k.secret, PublicKeys: []string{k.rsaPEM},
		Issuer: "cim-test", Audience: "mqtt", Leeway: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "d1", "exp": now.Add(time.Hour).Unix(), "iss": "cim-test", "aud": "mqtt"}
	}
	with := func(k string, v any) jwt.MapClaims {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Check(nil, sign(t, jwt.SigningMethodRS256, k.rsa, good()), now); err != nil {
		t.Fatalf("the good token: %v", err)
	}
	if _, err := a.Check(nil, sign(t, jwt.SigningMethodHS256, []byte(testSecret), with("exp", now.Add(-3*time.Second).Unix())), now); err != nil {
		t.Fatalf("expired within the leeway: %v", err)
	}
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, good()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		user  string
		token []byte
		why   string
	}{
		"expired":        {"", sign(t, jwt.SigningMethodHS256, []byte(testSecret), with("exp", now.Add(-time.Minute).Unix())), "expired"},
		"no exp":         {"", sign(t, jwt.SigningMethodHS256, []byte(testSecret), with("exp", nil)), "exp claim is required"},
		"not yet valid":  {"", sign(t, jwt.SigningMethodHS256, []byte(testSecret), with("nbf", now.Add(time.Minute).Unix())), "not valid yet"},
		"wrong secret":   {"", sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), good()), "signature is invalid"},
		"unknown RSA":    {"", sign(t, jwt.SigningMethodRS256, otherRSA, good()), "signature is invalid"},
		"no EC key":      {"", sign(t, jwt.SigningMethodES256, k.ec, good()), "signing method ES256 is invalid"},
		"alg none":       {"", []byte(noneTok), "signing method none is invalid"},
		"alg confusion":  {"", sign(t, jwt.SigningMethodHS256, []byte(k.rsaCert), good()), "signature is invalid"},
		"wrong issuer":   {"", sign(t, jwt.SigningMethodHS256, []byte(testSecret), with("iss", "evil")), "invalid issuer"},
		"wrong audience": {"", sign(t, jwt.SigningMethodHS256, []byte(testSecret), with("aud", "web")), "invalid audience"},
		"no user claim":  {"", sign(t, jwt.SigningMethodHS256, []byte(testSecret), with("sub", nil)), `no "sub" claim`},
		"other user":     {"d2", sign(t, jwt.SigningMethodHS256, []byte(testSecret), good()), `user name "d2" does not match`},
		"bad acl":        {"", sign(t, jwt.SigningMethodHS256, []byte(testSecret), with("acl", "all")), `claim "acl"`},
		"acl bad key":    {"", sign(t, jwt.SigningMethodHS256, []byte(testSecret), with("acl", map[string]any{"pub": []string{"a"}})), `unknown key "pub"`},
		"acl bad topic":  {"", sign(t, jwt.SigningMethodHS256, []byte(testSecret), with("acl", map[string]any{"publish": []string{"a/#/b"}})), "publish: topic"},
		"garbage":        {"", []byte("eyJ.not.atoken"), "token"},
	} {
		id, err := a.Check([]byte(c.user), c.token, now)
		if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: %+v, %v (want %q)", name, id, err, c.why)
		}
		if _, ok := a.Cached([]byte(c.user), c.token, now); ok {
			t.Errorf("%s: a refused token was cached", name)
		}
	}
	// JWT only (no password file): a plain password is refused, not let in.
	if _, err := a.Check([]byte("d1"), []byte("hunter2"), now); !errors.Is(err, ErrAuth) {
		t.Errorf("plain password with JWT only: %v", err)
	}
}

func TestJWTKeyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	private := write("priv.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
	for name, o := range map[string]struct {
		opts JWTOptions
		want string
	}{
		"short secret": {JWTOptions{SecretFile: write("short", "tiny\n")}, "want at least 32"},
		"private key":  {JWTOptions{PublicKeys: []string{private}}, "never a private key"},
		"no PEM":       {JWTOptions{PublicKeys: []string{write("empty.pem", "hello")}}, "no PEM public key"},
		"bad DER":      {JWTOptions{PublicKeys: []string{write("bad.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2}})))}}, "PEM block"},
	} {
		_, err := NewAuth(AuthOptions{JWT: o.opts})
		if !errors.Is(err, ErrJWTKey) || !strings.Contains(err.Error(), o.want) {
			t.Errorf("%s: %v (want %q)", name, err, o.want)
		}
	}
}

func TestLooksLikeJWT(t *testing.T) {
	for s, want := range map[string]bool{
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig": true,
		"s3cret": false, "eyJ.only-one": false, "a.b.c": false, "": false,
	} {
		if looksLikeJWT([]byte(s)) != want {
			t.Errorf("looksLikeJWT(%q) != %v", s, want)
		}
	}
}

// A device logs in over MQTT with a token as its password: its token's ACL
// decides what it may publish and receive; an expired token is refused.
func TestJWTLoginEndToEnd(t *testing.T) {
	k := newJWTKeys(t)
	a, err := NewAuth(AuthOptions{JWT: JWTOptions{SecretFile: k.secret}})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, Options{Auth: a})
	tok := func(sub string, exp time.Duration) string {
		return string(sign(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"sub": sub, "exp": time.Now().Add(exp).Unix(),
			"acl": map[string]any{"publish": []string{"devices/%u/#"}, "subscribe": []string{"cmd/%u/#"}}}))
	}
	dev := connectV5(t, s, "dev-1", credentials("", tok("dev-1", time.Hour)))
	dev.subscribeOpts(paho.SubscribeOptions{Topic: "cmd/dev-1/#", QoS: 1}, 0, 1)
	dev.subscribeOpts(paho.SubscribeOptions{Topic: "cmd/dev-2/#", QoS: 1}, 0, 0x87)
	if rc := dev.publish("devices/dev-1/temp", "21", 1, false); rc >= 0x80 {
		t.Fatalf("own topic: reason %#x", rc)
	}
	if rc := dev.publish("devices/dev-2/temp", "forged", 1, false); rc != 0x87 {
		t.Fatalf("another device's topic: reason %#x, want 0x87", rc)
	}
	other := connectV5(t, s, "dev-2", credentials("dev-2", tok("dev-2", time.Hour)))
	if rc := other.publish("devices/dev-2/x", "y", 1, false); rc >= 0x80 {
		t.Fatalf("dev-2: reason %#x", rc)
	}
	if c, err := dialV5(t, s, "dev-3", credentials("", tok("dev-3", -time.Minute))); err == nil || c.ack == nil || c.ack.ReasonCode != 0x86 {
		t.Fatalf("expired token: %v %+v", err, c.ack)
	}
}
