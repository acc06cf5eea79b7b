package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serverRun runs `cim server args...` in this process and returns its exit
// status and output; ctx is cancelled at once, so a server that starts
// stops again.
func serverRun(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code := runServer(ctx, args, &out, &errb)
	return code, out.String() + errb.String()
}

func yamlFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cim.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigTraps: each case is a config that used to be reported in Go's
// words (or not at all, or as something else); now the message names the
// key as written in the file and what it wants, and the exit status is 2.
func TestConfigTraps(t *testing.T) {
	for name, c := range map[string]struct {
		yaml  string
		flags []string
		want  []string // all in the output
	}{
		"duration as a bare number": {yaml: "connect_timeout: 10\n",
			want: []string{"cim.yaml:1: connect_timeout: want a duration such as 10s, got 10"}},
		"duration unparsable": {yaml: "slow_consumer_timeout: soon\n",
			want: []string{`slow_consumer_timeout: want a duration such as 10s, 500ms or 1m30s, got "soon"`}},
		"integer out of range, with its unit": {yaml: "max_keepalive: 70000\n",
			want: []string{"max_keepalive: want an integer from 0 to 65535 (seconds), got 70000"}},
		"negative size": {yaml: "max_packet_size: -1\n",
			want: []string{"max_packet_size: want an integer from 0 to 4294967295 (bytes), got -1"}},
		"address as a number": {yaml: "mqtt_addr: 1883\n",
			want: []string{`mqtt_addr: want host:port such as ":1883", got 1883`}},
		"bad address": {yaml: "mqtt_addr: localhost\n",
			want: []string{`mqtt_addr: want host:port`}},
		"unknown key with a suggestion": {yaml: "log_level: info\nconect_timeout: 5s\n",
			want: []string{"cim.yaml:2: conect_timeout: unknown key (did you mean connect_timeout?)"}},
		"Go field name as a key": {yaml: "ACLDefault: allow\n",
			want: []string{"ACLDefault: unknown key (did you mean acl_default?)"}},
		"bad acl_default never speaks Go": {yaml: "acl_default: maybe\n",
			want: []string{`acl_default: want allow or deny, got "maybe"`}},
		"nested unknown key": {yaml: "acl:\n  - {topic: \"a/#\", acces: read}\n",
			want: []string{"cim.yaml:2: acl[0].acces: unknown key (did you mean access?)"}},
		"bad acl access": {yaml: "acl:\n  - {topic: \"a/#\", access: all}\n",
			want: []string{`acl[0]: access "all" is not read, write, readwrite or deny`}},
		"list given as a string": {yaml: "deny_filters: \"#\"\n",
			want: []string{`deny_filters: want a list such as [a, b], got "#"`}},
		"bad deny filter": {yaml: "deny_filters: [\"a/#/b\"]\n",
			want: []string{`deny_filters[0]: "a/#/b" is not a topic filter`}},
		"bad durability is not a data dir error": {yaml: "durability: sometimes\n",
			want: []string{`durability: want sync or async, got "sometimes"`}},
		"bad bool":                {yaml: "memory: maybe\n", want: []string{`memory: want true or false, got "maybe"`}},
		"bad log level":           {yaml: "log_level: loud\n", want: []string{`log_level: want debug or info or warn or error, got "loud"`}},
		"top level not a mapping": {yaml: "- a\n- b\n", want: []string{"want a mapping of keys"}},
		"yaml syntax":             {yaml: "a: [\n", want: []string{"cim.yaml: yaml: line"}},
		"several problems at once": {yaml: "connect_timeout: 10\ndurability: x\nmqtt_addr: 1\n",
			want: []string{"cim.yaml:1: connect_timeout", "cim.yaml:2: durability", "cim.yaml:3: mqtt_addr"}},
		"bad flag value names flag and key": {flags: []string{"--max-keepalive", "ten"},
			want: []string{`--max-keepalive (max_keepalive): want an integer (seconds), got "ten"`}},
		"negative loops": {flags: []string{"--loops", "-2"}, want: []string{"--loops (loops): want 0 (the default) or more, got -2"}},
		"missing password file": {flags: []string{"--password-file", "/nonexistent/pw"},
			want: []string{"--password-file (password_file): ", "no such file"}},
		"missing config file": {flags: []string{"--config", "/nonexistent/cim.yaml"}, want: []string{"no such file"}},
		"unexpected argument": {flags: []string{"extra"}, want: []string{`unexpected argument "extra"`}},
		"unknown flag":        {flags: []string{"--no-such-flag"}, want: []string{"flag provided but not defined"}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			args := append([]string{"--data-dir", dir}, c.flags...)
			if !strings.Contains(c.yaml, "mqtt_addr") {
				args = append(args, "--mqtt-addr", "127.0.0.1:0") // if it ever started
			}
			if c.yaml != "" {
				args = append(args, "--config", yamlFile(t, c.yaml))
			}
			code, out := serverRun(t, args...)
			if code != 2 {
				t.Errorf("exit %d, want 2\n%s", code, out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, goSpeak := range []string{"!!int", "time.Duration", "unmarshal", "ACLDefault:", "cannot open data dir", "mapstructure", "decoding failed"} {
				if strings.Contains(out, goSpeak) && !strings.Contains(c.yaml, goSpeak) {
					t.Errorf("output speaks Go (%q):\n%s", goSpeak, out)
				}
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("a bad config opened the data dir")
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	// The port is busy and the data dir does not exist: --check-config
	// opens neither.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := filepath.Join(t.TempDir(), "data")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("alice:$6$WqXnApX/MvjMOSdk$CpP/8Jh0ITdVouiPXaH9ElzH3nb+HSufGksmL12TsK23NRsjXiI+NvRznxsNpA3hs1xQXzqb9ZwD7rkHjKZXGQ==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := yamlFile(t, "mqtt_addr: "+l.Addr().String()+"\ndata_dir: "+dir+"\nconnect_timeout: 5s\npassword_file: "+pw+"\n")
	code, out := serverRun(t, "--config", cfg, "--check-config")
	if code != 0 || !strings.Contains(out, "configuration ok") {
		t.Fatalf("exit %d: %s", code, out)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("--check-config created the data dir")
	}
	// A bad password-file line is a config error too.
	if err := os.WriteFile(pw, []byte("alice:plaintext\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = serverRun(t, "--config", cfg, "--check-config")
	if code != 2 || !strings.Contains(out, "password_file: "+pw+":1:") {
		t.Fatalf("bad password file: exit %d: %s", code, out)
	}
}

func TestFlagsWinOverFile(t *testing.T) {
	path := yamlFile(t, "mqtt_addr: \":1111\"\nmemory: true\nmax_keepalive: 100\nlog_level: debug\nconnect_timeout: 3s\njoin: [a:1]\n")
	names := map[string]string{}
	for _, f := range serverFlags {
		names[strings.ReplaceAll(f.name, "-", "_")] = f.name
	}
	cfg, _, err := loadConfig(path, map[string]any{"mqtt_addr": ":2222", "memory": false, "max_keepalive": "0",
		"join": []string{"b:2", "c:3"}}, names)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTTAddr != ":2222" || cfg.Memory || cfg.MaxKeepalive != -1 /* 0 given: no maximum */ || len(cfg.Join) != 2 || cfg.Join[1] != "c:3" {
		t.Errorf("flags did not win: %+v", cfg)
	}
	if cfg.LogLevel != "debug" || cfg.ConnectTimeout != 3*time.Second {
		t.Errorf("file values lost: %+v", cfg)
	}
}

func TestFlagParsing(t *testing.T) {
	var f flagValue
	f.kind = flagList
	_ = f.Set("a:1, b:2")
	_ = f.Set("c:3")
	if got := f.value().([]string); len(got) != 3 || got[1] != "b:2" {
		t.Errorf("list flag: %q", got)
	}
	// Every flag keeps working and maps to a key the config knows.
	keys := keysOf(configType)
	for _, sf := range serverFlags {
		if _, ok := keys[strings.ReplaceAll(sf.name, "-", "_")]; !ok {
			t.Errorf("--%s has no config key", sf.name)
		}
	}
}

func TestUnsupportedOptionsRefused(t *testing.T) {
	// Nothing is refused as unsupported any more (TLS, the HTTP listener,
	// the admin token, the native listener and the cluster are built): a
	// cluster key without the secret names the missing secret instead.
	t.Setenv(clusterSecretEnv, "")
	for _, args := range [][]string{
		{"--cluster-addr", "127.0.0.1:0"}, {"--peer-addr", "127.0.0.1:0"}, {"--join", "a:7946,b:7946"},
	} {
		code, out := serverRun(t, append(args, "--memory")...)
		if code != 2 || strings.Contains(out, "not supported yet") || !strings.Contains(out, "cluster_secret") {
			t.Errorf("%v: exit %d: %s", args, code, out)
		}
	}
	code, out := serverRun(t, "--memory", "--config", yamlFile(t, "jwt:\n  secret_file: /etc/cim/jwt\n"))
	if code != 2 || !strings.Contains(out, "jwt.secret_file: open /etc/cim/jwt") { // supported now: the missing key file is the error
		t.Errorf("jwt: exit %d: %s", code, out)
	}
	code, out = serverRun(t, "--memory", "--config", yamlFile(t, "jwt:\n  secret_fil: x\n"))
	if code != 2 || !strings.Contains(out, "jwt.secret_fil: unknown key (did you mean secret_file?)") {
		t.Errorf("jwt typo: exit %d: %s", code, out)
	}
}

func TestPortInUseNamesTheAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, out := serverRun(t, "--memory", "--mqtt-addr", l.Addr().String(), "--native-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error")
	if code != 1 || !strings.Contains(out, "cannot listen on "+l.Addr().String()) {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestSuggest(t *testing.T) {
	keys := keysOf(configType)
	for in, want := range map[string]string{
		"conect_timeout": "connect_timeout", "connect-timeout": "connect_timeout", "MaxKeepalive": "max_keepalive",
		"datadir": "data_dir", "passwordfile": "password_file", "zzzzzz": "",
	} {
		if got := suggest(in, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
