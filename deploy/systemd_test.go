package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// unitKeys reads a systemd unit file: section -> key -> values (a key may
// repeat). Continuation lines are not used in cim.service.
func unitKeys(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, "\\") {
				t.Fatalf("%s:%d: not key=value in a section: %q", path, n, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

func TestSystemdUnit(t *testing.T) {
	u := unitKeys(t, "cim.service")
	svc := u["Service"]
	one := func(k string) string {
		if len(svc[k]) != 1 {
			t.Errorf("[Service] %s: want one value, got %q", k, svc[k])
			return ""
		}
		return svc[k][0]
	}
	if v := one("ExecReload"); !regexp.MustCompile(`^/bin/kill -(HUP|s HUP) \$MAINPID$`).MatchString(v) {
		t.Errorf("ExecReload=%s: want /bin/kill -HUP $MAINPID", v)
	}
	if n, err := strconv.Atoi(one("LimitNOFILE")); err != nil || n < 65536 {
		t.Errorf("LimitNOFILE=%s: want at least 65536", svc["LimitNOFILE"])
	}
	if v := one("Restart"); v != "on-failure" && v != "always" {
		t.Errorf("Restart=%s", v)
	}
	if v := one("User"); v == "" || v == "root" || v == "nobody" {
		t.Errorf("User=%s: want a dedicated user", v)
	}
	if v := one("RestartPreventExitStatus"); v != "2" {
		t.Errorf("RestartPreventExitStatus=%s: a config error (exit 2) must not restart in a loop", v)
	}
	start := one("ExecStart")
	if !strings.Contains(start, "cim server") || !strings.Contains(start, "--data-dir /var/lib/cim") || one("StateDirectory") != "cim" {
		t.Errorf("ExecStart=%s with StateDirectory=%s: want the data dir in the state dir", start, svc["StateDirectory"])
	}
	if pre := one("ExecStartPre"); !strings.HasSuffix(pre, "--check-config") || !strings.HasPrefix(pre, start) {
		t.Errorf("ExecStartPre=%s: want ExecStart's command with --check-config", pre)
	}
	for k, v := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes", "MemoryDenyWriteExecute": "yes",
	} {
		if got := one(k); got != v {
			t.Errorf("%s=%s, want %s", k, got, v)
		}
	}
	if len(u["Install"]["WantedBy"]) == 0 {
		t.Error("[Install] WantedBy missing: systemctl enable would do nothing")
	}
}

// TestSystemdAnalyze has systemd check the unit, where systemd-analyze is
// installed: `verify` must print nothing (an unknown key or a bad value is
// only a warning there) and `security` must rate it OK or better.
func TestSystemdAnalyze(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	b, err := os.ReadFile("cim.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify insists the binary exists: point it at one that does.
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "cim.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/cim", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(sa, "security", "--offline=true", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for cim.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
		t.Errorf("exposure level %.1f, want 2.0 or less:\n%s", level, out)
	}
	t.Logf("systemd-analyze security: exposure %s", m[1])
}
