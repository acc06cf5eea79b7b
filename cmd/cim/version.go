package main

import (
	"runtime"
	"runtime/debug"
)

// version is stamped at build time by `make build`:
//
//	go build -ldflags "-X main.version=$(git describe --tags --always --dirty)"
//
// Left empty (plain go build / go install), buildVersion falls back to what
// the Go toolchain recorded.
var version string

// buildVersion is the version cim reports: the stamped one; else the module
// version `go install ...@v1.2.3` records; else the VCS revision go build
// records (with -buildvcs); else "dev".
func buildVersion() string {
	info, _ := debug.ReadBuildInfo()
	return versionFrom(version, info)
}

func versionFrom(stamped string, info *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if info == nil {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		return "dev-" + rev + dirty
	}
	return "dev"
}

// versionLine is what `cim version` prints.
func versionLine() string {
	return "cim " + buildVersion() + " (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}
