package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestOptionsDefaults(t *testing.T) {
	o := Options{Secret: testSecret}
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if o.BindAddr != "0.0.0.0:7946" || o.PeerAddr != "0.0.0.0:7947" || o.ClusterName != "cim" {
		t.Fatalf("unexpected defaults: %+v", o)
	}
	if o.Timing != LANTiming() {
		t.Fatalf("timing %+v, want LANTiming", o.Timing)
	}
	if o.NodeName == "" {
		t.Fatal("no default node name")
	}
}

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		field string
		mod   func(*Options)
	}{
		{"Secret", func(o *Options) { o.Secret = "short" }},
		{"NodeName", func(o *Options) { o.NodeName = "a b" }},
		{"ClusterName", func(o *Options) { o.ClusterName = "bad/name" }},
		{"BindAddr", func(o *Options) { o.BindAddr = "nope" }},
		{"AdvertiseAddr", func(o *Options) { o.AdvertiseAddr = "0.0.0.0:1" }},
		{"Join[1]", func(o *Options) { o.Join = []string{"127.0.0.1:1", "x"} }},
		{"PeerAddr", func(o *Options) { o.PeerAddr = "1.2.3.4:99999" }},
		{"MQTTAddr", func(o *Options) { o.MQTTAddr = "localhost" }},
		{"Timing.ProbeTimeout", func(o *Options) { o.Timing.ProbeTimeout = time.Hour }},
		{"Timing.UDPBufferSize", func(o *Options) { o.Timing.UDPBufferSize = 100 }},
		{"Link.MaxFrameSize", func(o *Options) { o.Link.MaxFrameSize = 10 }},
		{"Link.BackoffMax", func(o *Options) { o.Link.BackoffMin, o.Link.BackoffMax = time.Second, time.Millisecond }},
		{"Pick", func(o *Options) { o.Pick = 9 }},
	}
	for _, tc := range cases {
		o := testOptions("n1")
		o.EnsureDefaults()
		tc.mod(&o)
		err := o.Validate()
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("%s: got %v", tc.field, err)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	o := testOptions("n1")
	o.Secret = ""
	if _, err := New(o); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("New without secret: %v", err)
	}
}

func TestParsePickStrategy(t *testing.T) {
	for in, want := range map[string]PickStrategy{"hash": PickHash, "round-robin": PickRoundRobin, "random": PickRandom} {
		got, err := ParsePickStrategy(in)
		if err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	if _, err := ParsePickStrategy("fastest"); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("bad strategy: %v", err)
	}
}
