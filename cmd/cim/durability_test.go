package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// TestMain lets a test re-run this binary as `cim server` in a child process
// it can SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv("CIM_TEST_SERVER") == "1" {
		os.Exit(runServer(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// startChild runs `cim server` on dataDir and waits until it accepts.
func startChild(t *testing.T, addr, dataDir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "--mqtt-addr", addr, "--native-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "CIM_TEST_SERVER=1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("server on %s did not start: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func client(addr, id string, clean bool) mqtt3.Client {
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true).SetMaxResumePubInFlight(200)
	return mqtt3.NewClient(o)
}

func must(t *testing.T, tok mqtt3.Token) {
	t.Helper()
	if !tok.WaitTimeout(20 * time.Second) {
		t.Fatal("timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatal(err)
	}
}

// TestKill9KeepsAcknowledgedMessages: a persistent subscriber goes away,
// 10,000 QoS 1 messages are published and acknowledged, the broker is
// SIGKILLed and restarted on the same data dir; the subscriber comes back
// and gets all of them, in order.
func TestKill9KeepsAcknowledgedMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a broker process")
	}
	const n = 10000
	addr, dir := freeAddr(t), t.TempDir()
	srv := startChild(t, addr, dir)

	sub := client(addr, "durable-sub", false)
	must(t, sub.Connect())
	must(t, sub.Subscribe("orders/#", 1, nil))
	sub.Disconnect(100)

	pub := client(addr, "durable-pub", true)
	must(t, pub.Connect())
	toks := make([]mqtt3.Token, 0, n)
	for i := range n {
		toks = append(toks, pub.Publish("orders/"+strconv.Itoa(i%10), 1, false, strconv.Itoa(i)))
	}
	for _, tok := range toks {
		must(t, tok) // every PUBACK is in before the kill
	}

	if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = srv.Wait()
	startChild(t, addr, dir)

	got := make(chan int, n)
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("durable-sub").SetCleanSession(false).
		SetAutoReconnect(false).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) {
			v, err := strconv.Atoi(string(m.Payload()))
			if err != nil {
				v = -1
			}
			got <- v
		})
	sub = mqtt3.NewClient(o)
	must(t, sub.Connect())
	defer sub.Disconnect(100)
	for want := 0; want < n; want++ {
		select {
		case v := <-got:
			if v != want {
				t.Fatalf("message %d: got %d (out of order or missing)", want, v)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of %d messages after restart", want, n)
		}
	}
	select {
	case v := <-got:
		t.Fatalf("extra message %d after all %d", v, n)
	case <-time.After(200 * time.Millisecond):
	}
	fmt.Fprintf(os.Stderr, "all %d messages survived SIGKILL\n", n)
}
