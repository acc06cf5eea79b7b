package broker

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWTOptions let clients log in with a signed JSON Web Token as their MQTT
// password, so a fleet needs no password-file line per device. A token is
// accepted when its signature checks against one of the configured keys,
// it carries an expiry ("exp") that has not passed, and issuer/audience
// match when set. Claims used (names configurable):
//
//	{
//	  "sub": "device-17",                        user name (UserClaim)
//	  "exp": 1767225600,                         expiry, required
//	  "acl": {                                   optional (ACLClaim); when present it
//	    "publish":   ["devices/%u/#"],           replaces the configured ACL for
//	    "subscribe": ["cmd/%u/#", "public/#"]    this client; %u and %c are substituted
//	  }
//	}
//
// The zero value disables JWT logins.
type JWTOptions struct {
	// SecretFile holds the shared secret for HS256, HS384 and HS512 tokens
	// (the file's bytes, without a trailing newline).
	SecretFile string `yaml:"secret_file"`
	// PublicKeys are PEM files with RSA, ECDSA or Ed25519 public keys
	// ("PUBLIC KEY", "RSA PUBLIC KEY" or "CERTIFICATE" blocks, several per
	// file allowed) for RS*, PS*, ES* and EdDSA tokens.
	PublicKeys []string `yaml:"public_keys"`
	// UserClaim names the claim holding the user name. Default "sub".
	UserClaim string `yaml:"user_claim"`
	// ACLClaim names the claim holding the client's ACL. Default "acl".
	ACLClaim string `yaml:"acl_claim"`
	// Issuer, if set, must equal the token's "iss".
	Issuer string `yaml:"issuer"`
	// Audience, if set, must be among the token's "aud".
	Audience string `yaml:"audience"`
	// Leeway tolerates clock skew on exp, nbf and iat. Default 0.
	Leeway time.Duration `yaml:"leeway"`
}

// Enabled reports whether any key is configured.
func (o *JWTOptions) Enabled() bool { return o.SecretFile != "" || len(o.PublicKeys) > 0 }

// EnsureDefaults fills unset fields with their defaults.
func (o *JWTOptions) EnsureDefaults() {
	if o.UserClaim == "" {
		o.UserClaim = "sub"
	}
	if o.ACLClaim == "" {
		o.ACLClaim = "acl"
	}
}

// ErrJWTKey is wrapped by errors loading a JWT key file.
var ErrJWTKey = errors.New("broker: jwt key")

// jwtVerifier checks tokens; read-only after newJWTVerifier.
type jwtVerifier struct {
	opts    JWTOptions
	secret  []byte
	rsa     []jwt.VerificationKey
	ecdsa   []jwt.VerificationKey
	ed25519 []jwt.VerificationKey
	methods []string
}

func newJWTVerifier(o JWTOptions) (*jwtVerifier, error) {
	o.EnsureDefaults()
	v := &jwtVerifier{opts: o}
	if o.SecretFile != "" {
		b, err := os.ReadFile(o.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("%w: jwt.secret_file: %w", ErrJWTKey, err)
		}
		v.secret = bytes.TrimRight(b, "\r\n")
		if len(v.secret) < 32 {
			// RFC 7518 §3.2: an HS256 key must be at least as long as the hash.
			return nil, fmt.Errorf("%w: jwt.secret_file: %s: %d bytes, want at least 32", ErrJWTKey, o.SecretFile, len(v.secret))
		}
		v.methods = append(v.methods, "HS256", "HS384", "HS512")
	}
	for i, path := range o.PublicKeys {
		if err := v.loadPEM(path); err != nil {
			return nil, fmt.Errorf("%w: jwt.public_keys[%d]: %s: %w", ErrJWTKey, i, path, err)
		}
	}
	if len(v.rsa) > 0 {
		v.methods = append(v.methods, "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
	}
	if len(v.ecdsa) > 0 {
		v.methods = append(v.methods, "ES256", "ES384", "ES512")
	}
	if len(v.ed25519) > 0 {
		v.methods = append(v.methods, "EdDSA")
	}
	return v, nil
}

func (v *jwtVerifier) loadPEM(path string) error {
	rest, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var key any
		switch b.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(b.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(b.Bytes); err == nil {
				key = c.PublicKey
			}
		default:
			return fmt.Errorf("PEM block %q: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE (never a private key)", b.Type)
		}
		if err != nil {
			return fmt.Errorf("PEM block %q: %w", b.Type, err)
		}
		switch k := key.(type) {
		case *rsa.PublicKey:
			v.rsa = append(v.rsa, k)
		case *ecdsa.PublicKey:
			v.ecdsa = append(v.ecdsa, k)
		case ed25519.PublicKey:
			v.ed25519 = append(v.ed25519, k)
		default:
			return fmt.Errorf("unsupported public key type %T", key)
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM public key found")
	}
	return nil
}

// keyFor hands the parser only keys of the token's algorithm family, so an
// RSA public key can never be used as an HMAC secret (algorithm confusion).
func (v *jwtVerifier) keyFor(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if v.secret != nil {
			return v.secret, nil
		}
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		return jwt.VerificationKeySet{Keys: v.rsa}, nil
	case *jwt.SigningMethodECDSA:
		return jwt.VerificationKeySet{Keys: v.ecdsa}, nil
	case *jwt.SigningMethodEd25519:
		return jwt.VerificationKeySet{Keys: v.ed25519}, nil
	}
	return nil, fmt.Errorf("no key for %s", t.Method.Alg())
}

// looksLikeJWT tells a compact JWS ("header.payload.signature", the header
// being base64url JSON and so starting with "eyJ") from a password.
func looksLikeJWT(p []byte) bool {
	return bytes.HasPrefix(p, []byte("eyJ")) && bytes.Count(p, []byte(".")) == 2
}

// verify checks a token at time now. user, if not empty, must equal the
// token's user claim. It never blocks on I/O.
func (v *jwtVerifier) verify(user, token []byte, now time.Time) (Identity, error) {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.opts.Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	}
	if v.opts.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.opts.Issuer))
	}
	if v.opts.Audience != "" {
		opts = append(opts, jwt.WithAudience(v.opts.Audience))
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.NewParser(opts...).ParseWithClaims(string(token), claims, v.keyFor); err != nil {
		return Identity{}, fmt.Errorf("%w: token: %w", ErrAuth, err)
	}
	name, _ := claims[v.opts.UserClaim].(string)
	if name == "" {
		return Identity{}, fmt.Errorf("%w: token: no %q claim", ErrAuth, v.opts.UserClaim)
	}
	if len(user) > 0 && string(user) != name {
		return Identity{}, fmt.Errorf("%w: token: user name %q does not match the token's %q", ErrAuth, user, name)
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return Identity{}, fmt.Errorf("%w: token: no expiry", ErrAuth) // unreachable: WithExpirationRequired
	}
	id := Identity{User: name, Method: AuthJWT, Expires: exp.Time.Add(v.opts.Leeway)}
	if raw, ok := claims[v.opts.ACLClaim]; ok {
		acl, err := parseTokenACL(raw)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: token: claim %q: %w", ErrAuth, v.opts.ACLClaim, err)
		}
		id.ACL = acl
	}
	return id, nil
}

// parseTokenACL reads {"publish": [...], "subscribe": [...]} from decoded JSON.
func parseTokenACL(raw any) (*TokenACL, error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, errors.New(`want an object {"publish": [...], "subscribe": [...]}`)
	}
	acl := &TokenACL{}
	for k, v := range m {
		var dst *[]string
		switch k {
		case "publish":
			dst = &acl.Publish
		case "subscribe":
			dst = &acl.Subscribe
		default:
			return nil, fmt.Errorf("unknown key %q (want publish or subscribe)", k)
		}
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: want a list of topic patterns", k)
		}
		for _, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s: want a list of topic patterns", k)
			}
			if err := validFilterProbe(s); err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			*dst = append(*dst, s)
		}
	}
	return acl, nil
}
