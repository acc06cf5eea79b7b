package broker

import (
	"crypto/pbkdf2"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// A password-file hash is one of:
//
//	$2a$10$<53 chars>                 bcrypt (what `cim passwd` writes; $2b$, $2y$ too)
//	$7$<iterations>$<salt>$<sum>      PBKDF2-HMAC-SHA512, what mosquitto_passwd writes
//	                                  (2.0 default; salt 12 bytes, sum 64 bytes, base64)
//	$6$<salt>$<sum>                   one round of SHA-512 over password+salt
//	                                  (mosquitto_passwd -H sha512; Mosquitto 1.6 default)
//
// All three are verified in constant time with respect to the stored sum.

// ErrHash is wrapped by errors parsing a stored password hash.
var ErrHash = errors.New("broker: password hash")

// maxPBKDF2Iterations bounds a $7$ hash's work so that one bad line cannot
// make every login take minutes. mosquitto_passwd writes 101 by default.
const maxPBKDF2Iterations = 10_000_000

// passwordHash is a parsed stored hash; read-only once parsed.
type passwordHash struct {
	bcrypt []byte // bcrypt hash, or nil
	iter   int    // $7$ iterations; 0 for $6$
	salt   []byte // $6$ / $7$ salt
	sum    []byte // $6$ / $7$ digest
}

// parseHash checks a stored hash and keeps what verify needs.
func parseHash(s string) (passwordHash, error) {
	switch {
	case strings.HasPrefix(s, "$2"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return passwordHash{}, fmt.Errorf("%w: bcrypt: %w", ErrHash, err)
		}
		return passwordHash{bcrypt: []byte(s)}, nil
	case strings.HasPrefix(s, "$7$"):
		parts := strings.Split(s, "$") // "", "7", iter, salt, sum
		if len(parts) != 5 {
			return passwordHash{}, fmt.Errorf("%w: $7$: want $7$iterations$salt$hash", ErrHash)
		}
		iter, err := strconv.Atoi(parts[2])
		if err != nil || iter < 1 || iter > maxPBKDF2Iterations {
			return passwordHash{}, fmt.Errorf("%w: $7$: iterations %q: want 1 to %d", ErrHash, parts[2], maxPBKDF2Iterations)
		}
		h, err := saltAndSum(parts[3], parts[4])
		if err != nil {
			return passwordHash{}, fmt.Errorf("%w: $7$: %w", ErrHash, err)
		}
		h.iter = iter
		return h, nil
	case strings.HasPrefix(s, "$6$"):
		parts := strings.Split(s, "$") // "", "6", salt, sum
		if len(parts) != 4 {
			return passwordHash{}, fmt.Errorf("%w: $6$: want $6$salt$hash", ErrHash)
		}
		h, err := saltAndSum(parts[2], parts[3])
		if err != nil {
			return passwordHash{}, fmt.Errorf("%w: $6$: %w", ErrHash, err)
		}
		return h, nil
	}
	return passwordHash{}, fmt.Errorf("%w: unknown format (want bcrypt $2a$, or mosquitto_passwd $7$ or $6$)", ErrHash)
}

func saltAndSum(salt, sum string) (passwordHash, error) {
	s, err := base64.StdEncoding.DecodeString(salt)
	if err != nil || len(s) == 0 {
		return passwordHash{}, fmt.Errorf("salt is not base64")
	}
	d, err := base64.StdEncoding.DecodeString(sum)
	if err != nil || len(d) != sha512.Size {
		return passwordHash{}, fmt.Errorf("hash is not a base64 SHA-512 digest")
	}
	return passwordHash{salt: s, sum: d}, nil
}

// verify reports whether password matches. bcrypt and PBKDF2 take
// milliseconds on purpose: never call it on an event loop.
func (h passwordHash) verify(password []byte) bool {
	switch {
	case h.bcrypt != nil:
		return bcrypt.CompareHashAndPassword(h.bcrypt, password) == nil
	case h.iter > 0:
		got, err := pbkdf2.Key(sha512.New, string(password), h.salt, h.iter, len(h.sum))
		return err == nil && subtle.ConstantTimeCompare(got, h.sum) == 1
	case h.sum != nil:
		d := sha512.New()
		d.Write(password)
		d.Write(h.salt)
		return subtle.ConstantTimeCompare(d.Sum(nil), h.sum) == 1
	}
	return false
}
