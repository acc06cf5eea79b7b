package main

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestPasswd(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runPasswd([]string{"--cost", "4", "alice"}, strings.NewReader("s3cret\n"), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	user, hash, ok := strings.Cut(strings.TrimSpace(out.String()), ":")
	if !ok || user != "alice" {
		t.Fatalf("line %q", out.String())
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{}, {"a:b"}, {"x", "y"}} {
		if code := runPasswd(args, strings.NewReader("p\n"), &out, &errb); code != 2 {
			t.Errorf("args %q: exit %d, want 2", args, code)
		}
	}
	if code := runPasswd([]string{"bob"}, strings.NewReader("\n"), &out, &errb); code != 2 {
		t.Errorf("empty password: exit %d, want 2", code)
	}
}
