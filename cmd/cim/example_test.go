package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

const exampleConfig = "../../cim.example.yaml"

// TestExampleConfigChecks: the shipped example passes --check-config as is.
func TestExampleConfigChecks(t *testing.T) {
	code, out := serverRun(t, "--config", exampleConfig, "--check-config")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
}

// TestExampleConfigRuns starts a server on the shipped example (only the
// address and data dir replaced, by flags) and sends a message through it.
func TestExampleConfigRuns(t *testing.T) {
	addr := freeAddr(t)
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	var errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runServer(ctx, []string{"--config", exampleConfig, "--mqtt-addr", addr, "--native-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", dir}, &errb, &errb)
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("exit %d: %s", code, errb.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("server did not stop")
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errb.String(), "mqtt listening") {
		if time.Now().After(deadline) {
			t.Fatalf("not listening: %s", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := make(chan string, 1)
	sub := client(addr, "example-sub", true)
	must(t, sub.Connect())
	defer sub.Disconnect(100)
	must(t, sub.Subscribe("sensors/#", 1, func(_ mqtt3.Client, m mqtt3.Message) { got <- string(m.Payload()) }))
	pub := client(addr, "example-pub", true)
	must(t, pub.Connect())
	defer pub.Disconnect(100)
	must(t, pub.Publish("sensors/t1", 1, false, "21.5"))
	select {
	case v := <-got:
		if v != "21.5" {
			t.Fatalf("got %q", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message through the example config")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the example's durable store was not used: %v", err)
	}
}

// TestExampleConfigCommentedKeysAreKeys: every key shown commented out in
// the example is a real key (so uncommenting one never gives "unknown key").
func TestExampleConfigCommentedKeysAreKeys(t *testing.T) {
	b, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	// "# key: value", "#   sub_key: value" and "#   - item" lines.
	commented := regexp.MustCompile(`^# ( *)([a-z_]+:|- )`)
	var uncommented []string
	for _, line := range strings.Split(string(b), "\n") {
		if commented.MatchString(line) {
			uncommented = append(uncommented, strings.TrimPrefix(line, "# "))
		}
	}
	if len(uncommented) < 10 {
		t.Fatalf("found only %d commented keys", len(uncommented))
	}
	// Parse them (unsupported ones decode fine; loadConfig does not refuse
	// them, unsupported() does).
	path := yamlFile(t, strings.Join(uncommented, "\n")+"\n")
	cfg, _, err := loadConfig(path, nil, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(uncommented, "\n"))
	}
	if cfg.JWT.UserClaim != "sub" || len(cfg.ACL) != 3 || cfg.ACL[0].User != "admin" || cfg.TLSAddr != ":8883" {
		t.Errorf("decoded %+v", cfg)
	}
}
