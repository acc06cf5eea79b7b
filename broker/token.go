package broker

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Login tokens of the native protocol: a login with a password is answered
// with a signed, expiring token (a JWT, HMAC-SHA256 with the node's token
// key, Options.TokenKey, which `cim server` keeps in the data dir), and a
// later login may present the token instead of the password. The token
// names the user by id and name; it cannot be refreshed past its expiry
// without the password.

var (
	errTokenInvalid = errors.New("broker: invalid token")
	errTokenExpired = errors.New("broker: token expired")
)

type tokenSigner struct {
	key []byte
	ttl time.Duration
}

func newTokenSigner(key []byte, ttl time.Duration) tokenSigner {
	if len(key) == 0 {
		key = make([]byte, 32)
		_, _ = rand.Read(key) // tokens then last as long as the process
	}
	return tokenSigner{key: key, ttl: ttl}
}

// sign makes a token for user, valid until now + ttl.
func (t tokenSigner) sign(user uint64, name string, now time.Time) (string, time.Time) {
	exp := now.Add(t.ttl)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": strconv.FormatUint(user, 10), "name": name, "iat": now.Unix(), "exp": exp.Unix(), "aud": "cim-native",
	})
	s, err := tok.SignedString(t.key)
	if err != nil {
		return "", time.Time{} // HMAC signing does not fail
	}
	return s, exp
}

// verify checks a token at now and returns the user id it names.
func (t tokenSigner) verify(s string, now time.Time) (uint64, error) {
	tok, err := jwt.Parse(s, func(*jwt.Token) (any, error) { return t.key, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithAudience("cim-native"), jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithExpirationRequired())
	if errors.Is(err, jwt.ErrTokenExpired) {
		return 0, errTokenExpired
	}
	if err != nil || !tok.Valid {
		return 0, fmt.Errorf("%w: %v", errTokenInvalid, err)
	}
	sub, err := tok.Claims.GetSubject()
	if err != nil {
		return 0, errTokenInvalid
	}
	id, err := strconv.ParseUint(sub, 10, 64)
	if err != nil {
		return 0, errTokenInvalid
	}
	return id, nil
}
