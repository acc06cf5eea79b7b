package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal pair: what we type goes into master,
// cim passwd reads the slave as its terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	// Non-blocking, so that os.NewFile puts it in the poller and read
	// deadlines work.
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skip("no /dev/ptmx:", err)
	}
	m := os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// syncBuffer is a bytes.Buffer safe to poll while another goroutine writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// typeWhenSilent waits until the prompt is shown and the terminal's echo is
// off, then types line.
func typeWhenSilent(t *testing.T, master, slave *os.File, stderr *syncBuffer, prompt, line string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(stderr.String(), prompt) && tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q prompt with echo off; stderr %q", prompt, stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := master.WriteString(line + "\r"); err != nil {
		t.Fatal(err)
	}
}

func TestPasswdPromptsOnTerminal(t *testing.T) {
	for _, c := range []struct {
		first, second string
		code          int
	}{{"s3cret pass", "s3cret pass", 0}, {"one", "two", 2}} {
		master, slave := openPTY(t)
		var out, stderr syncBuffer
		done := make(chan int, 1)
		go func() { done <- runPasswd([]string{"--cost", "4", "alice"}, slave, &out, &stderr) }()
		typeWhenSilent(t, master, slave, &stderr, "Password for alice: ", c.first)
		typeWhenSilent(t, master, slave, &stderr, "Retype password: ", c.second)
		var code int
		select {
		case code = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("cim passwd did not finish")
		}
		if code != c.code {
			t.Fatalf("exit %d, want %d: %s", code, c.code, stderr.String())
		}
		// Nothing typed came back as echo on the terminal.
		_ = master.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		echo := make([]byte, 4096)
		n, _ := master.Read(echo)
		if bytes.Contains(echo[:n], []byte(c.first)) {
			t.Fatalf("the password was echoed: %q", echo[:n])
		}
		if c.code != 0 {
			if !strings.Contains(stderr.String(), "the passwords differ") || out.String() != "" {
				t.Fatalf("mismatch: out %q err %q", out.String(), stderr.String())
			}
			continue
		}
		user, hash, _ := strings.Cut(strings.TrimSpace(out.String()), ":")
		if user != "alice" || bcrypt.CompareHashAndPassword([]byte(hash), []byte(c.first)) != nil {
			t.Fatalf("line %q does not hold the typed password", out.String())
		}
	}
}
