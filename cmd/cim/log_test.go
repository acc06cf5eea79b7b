package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cimgo/cim/storage"
)

// jsonKeys returns the top-level keys of one JSON object in order,
// duplicates included (encoding/json would silently keep the last).
func jsonKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %q", line)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func noDuplicates(t *testing.T, line string) {
	t.Helper()
	seen := map[string]bool{}
	for _, k := range jsonKeys(t, line) {
		if seen[k] {
			t.Errorf("key %q twice in %s", k, line)
		}
		seen[k] = true
	}
}

// TestJSONLogKeysOnce: storage's logger is Logger.With("component",
// "storage") and its pebble logger adds With("component", "pebble") on top,
// which slog's JSON handler writes as two "component" keys.
func TestJSONLogKeysOnce(t *testing.T) {
	var buf bytes.Buffer
	log, _, err := newLogger("debug", "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.With("node", "n1").With("component", "storage").With("component", "pebble").Info("x", "k", 1, "k", 2)
	line := strings.TrimSpace(buf.String())
	noDuplicates(t, line)
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	if m["component"] != "pebble" || m["node"] != "n1" || m["k"] != 2.0 {
		t.Errorf("the later value wins: %s", line)
	}
	// Groups keep their own keys.
	buf.Reset()
	log.With("a", 1).WithGroup("g").With("a", 2).Info("y", "a", 3)
	if got := strings.TrimSpace(buf.String()); !strings.Contains(got, `"a":1,"g":{"a":3}`) {
		t.Errorf("group: %s", got)
	}
}

// TestStorageLogsThroughOurLogger opens a real store with the process
// logger and checks its lines: one component key, durations in ms.
func TestStorageLogsThroughOurLogger(t *testing.T) {
	var buf bytes.Buffer
	log, _, err := newLogger("info", "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(t.TempDir(), storage.Options{Logger: log.With("node", "n1"), SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		noDuplicates(t, line)
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m["msg"] == "storage opened" {
			found = true
			if _, ok := m["open_ms"].(float64); !ok {
				t.Errorf("open is not a number of ms: %s", line)
			}
			if _, ok := m["open"]; ok {
				t.Errorf("bare duration key left: %s", line)
			}
		}
	}
	if !found {
		t.Fatalf("no storage opened line in %s", buf.String())
	}
}

func TestDurationsInMilliseconds(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log, _, err := newLogger("", format, &buf)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("done", "took", 12500*time.Microsecond, "wait_ms", 3*time.Millisecond, "n", 7)
		out := buf.String()
		for _, want := range map[string][]string{
			"json": {`"took_ms":12.5`, `"wait_ms":3`, `"n":7`},
			"text": {"took_ms=12.5", "wait_ms=3 ", "n=7"},
		}[format] {
			if !strings.Contains(out, want) {
				t.Errorf("%s: %q lacks %q", format, out, want)
			}
		}
	}
}

func TestLogLevelFromConfig(t *testing.T) {
	var buf bytes.Buffer
	log, lv, err := newLogger("warn", "text", &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown")
	lv.Set(slog.LevelDebug) // what a reload does
	log.Debug("now shown")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "shown") || !strings.Contains(out, "now shown") {
		t.Errorf("levels: %s", out)
	}
	for _, bad := range [][2]string{{"loud", "text"}, {"info", "xml"}} {
		if _, _, err := newLogger(bad[0], bad[1], io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	// log_level in the file reaches the server: warn hides its info lines.
	code, out := serverRun(t, "--memory", "--mqtt-addr", "127.0.0.1:0", "--native-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--config", yamlFile(t, "log_level: warn\n"))
	if code != 0 || strings.Contains(out, "mqtt listening") {
		t.Errorf("exit %d, log_level warn ignored: %s", code, out)
	}
}
