package main

import (
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionFrom(t *testing.T) {
	mod := func(v string, settings ...debug.BuildSetting) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Path: "github.com/cimgo/cim", Version: v}, Settings: settings}
	}
	for _, c := range []struct {
		stamped string
		info    *debug.BuildInfo
		want    string
	}{
		{"v1.2.3-4-gabcdef-dirty", mod("v9.9.9"), "v1.2.3-4-gabcdef-dirty"}, // make build wins
		{"", mod("v1.4.0"), "v1.4.0"},                                       // go install ...@v1.4.0
		{"", mod("(devel)", debug.BuildSetting{Key: "vcs.revision", Value: "0123456789abcdef0123"},
			debug.BuildSetting{Key: "vcs.modified", Value: "true"}), "dev-0123456789ab-dirty"},
		{"", mod("(devel)"), "dev"},
		{"", nil, "dev"},
	} {
		if got := versionFrom(c.stamped, c.info); got != c.want {
			t.Errorf("versionFrom(%q, %+v) = %q, want %q", c.stamped, c.info, got, c.want)
		}
	}
}

// TestVersionStamped builds cim the way `make build` does and runs
// `cim version`.
func TestVersionStamped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "cim")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v0.0.0-test-stamp", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "cim v0.0.0-test-stamp (go") {
		t.Fatalf("cim version: %q", out)
	}
}
