package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/broker/httpapi"
	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/storage"
	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
	yamlv3 "go.yaml.in/yaml/v3"
)

// Config is what `cim server` runs with: the YAML file named by --config,
// then the flags that were given on top (flags win). A key is the yaml tag;
// its flag, where there is one, is the key with dashes (--mqtt-addr sets
// mqtt_addr). The zero value of a field means its default.
//
// Fields marked "not supported yet" are parsed and validated, but setting
// one makes `cim server` exit 2 until the feature lands (see unsupported).
type Config struct {
	DataDir    string `yaml:"data_dir"`   // default ./data
	Durability string `yaml:"durability"` // sync (default) or async
	Memory     bool   `yaml:"memory"`     // no store: nothing survives a restart
	LogLevel   string `yaml:"log_level"`  // debug, info (default), warn, error
	LogFormat  string `yaml:"log_format"` // text (default) or json
	Pprof      string `yaml:"pprof"`      // host:port serving /debug/pprof; default off

	// The store's caps on one session's queue (what is kept for a client
	// that is away): messages (default 100000), bytes (default 64 MiB), what
	// happens at the cap (drop-oldest, the default, or reject-new: the
	// publisher gets PUBACK 0x97), and how long a queued message is kept
	// (default 7 days).
	StoreMaxQueued      int           `yaml:"store_max_queued"`
	StoreMaxQueuedBytes int64         `yaml:"store_max_queued_bytes"`
	QueueFullPolicy     string        `yaml:"queue_full_policy"`
	QueueTTL            time.Duration `yaml:"queue_ttl"`
	// HistoryTTL is how long the IM server keeps conversation history
	// (default 30 days).
	HistoryTTL time.Duration `yaml:"history_ttl"`

	// The cluster (docs/cluster.md): setting any of these makes the node
	// clustered; the other cluster keys are in ClusterConfig.
	ClusterAddr string   `yaml:"cluster_addr"` // gossip, tcp+udp (default :7946 once clustered)
	PeerAddr    string   `yaml:"peer_addr"`    // peer links (default :7947 once clustered)
	Join        []string `yaml:"join"`         // host:port of nodes to join

	// The HTTP listener: /metrics, /healthz, /readyz, /v1/admin, /mqtt (WebSocket).
	HTTPAddr  string `yaml:"http_addr"`  // default :8083
	HTTPPprof bool   `yaml:"http_pprof"` // /debug/pprof on the HTTP listener (behind admin_token if set)
	// TrustedProxies are the addresses (IPs or CIDRs) of reverse proxies in
	// front of the HTTP listener: a WebSocket client coming through one is
	// known by the X-Forwarded-For address the proxies appended (for the
	// per-IP limit, the admin API and the logs).
	TrustedProxies []string `yaml:"trusted_proxies"`
	AdminToken     string   `yaml:"admin_token"`      // bearer token of /v1/admin; none: the admin API is off
	AdminTokenFile string   `yaml:"admin_token_file"` // or read it from this file (first line)

	// TLS: MQTT over TLS on tls_addr, the native protocol over TLS on
	// native_tls_addr and WebSocket over TLS on wss_addr, all on when
	// tls_cert is set. Files are re-read on SIGHUP.
	TLSAddr               string `yaml:"tls_addr"`                 // default :8883
	NativeTLSAddr         string `yaml:"native_tls_addr"`          // default :9443
	WSSAddr               string `yaml:"wss_addr"`                 // HTTPS with /mqtt and /ws; default :8084
	TLSCert               string `yaml:"tls_cert"`                 // PEM certificate chain file
	TLSKey                string `yaml:"tls_key"`                  // PEM private key file
	TLSClientCA           string `yaml:"tls_client_ca"`            // PEM CA file for client certificates (mTLS)
	TLSClientAuth         string `yaml:"tls_client_auth"`          // required (default with a CA) or optional
	TLSIdentityAsUsername bool   `yaml:"tls_identity_as_username"` // a client certificate's CN (or SAN) is the user name, no password

	// Guard rails: max_connections, max_connections_per_ip,
	// max_subscriptions_per_client, max_publish_rate,
	// max_publish_bytes_rate, log_rate (all reloadable).
	broker.Limits `yaml:",inline"`

	// JWT accepts signed tokens as passwords (broker.NewAuth).
	JWT broker.JWTOptions `yaml:"jwt"`

	// The rest of the cluster's keys (cluster.go): secret, name, advertise
	// addresses, node choice, timing.
	ClusterConfig `yaml:",inline"`

	// The broker's own options: node_name, mqtt_addr, loops, connect_timeout,
	// max_keepalive, ..., password_file, acl, acl_default, deny_filters.
	broker.Options `yaml:",inline"`
}

// authOptions is the part of the config broker.NewAuth builds an Auth from.
func (c *Config) authOptions() broker.AuthOptions {
	return broker.AuthOptions{PasswordFile: c.PasswordFile, JWT: c.JWT, ACL: c.ACL,
		ACLDefault: c.ACLDefault, DenyFilters: c.DenyFilters}
}

// storageOptions is what storage.Open gets. The store's caps per session
// are its own keys: max_queued is only the broker's in-memory window (what
// does not fit waits on disk), not a limit on what is kept.
func (c *Config) storageOptions() storage.Options {
	return storage.Options{Durability: storage.Durability(c.Durability),
		MaxQueuedPerSession: c.StoreMaxQueued, MaxQueuedBytesPerSession: c.StoreMaxQueuedBytes,
		QueueFullPolicy: storage.QueueFullPolicy(c.QueueFullPolicy), QueueTTL: c.QueueTTL, HistoryTTL: c.HistoryTTL}
}

// errConfig is wrapped by every configuration error (exit status 2).
var errConfig = errors.New("cim: config")

// configError lists every problem found, one per line, each naming the key
// (and the file line or the flag it came from).
type configError struct{ problems []string }

func (e *configError) Error() string { return strings.Join(e.problems, "\n") }
func (e *configError) Unwrap() error { return errConfig }

// keyHints say what a key's number means, for error messages.
var keyHints = map[string]string{
	"max_keepalive":       "seconds",
	"max_session_expiry":  "seconds",
	"max_packet_size":     "bytes",
	"max_outbound_bytes":  "bytes",
	"max_queued":          "messages",
	"receive_maximum":     "messages",
	"max_inflight":        "messages",
	"topic_alias_maximum": "aliases",
	"loops":               "event loops",

	"max_connections":              "connections",
	"max_connections_per_ip":       "connections",
	"max_subscriptions_per_client": "filters",
	"max_publish_rate":             "messages per second",
	"max_publish_bytes_rate":       "bytes per second",
	"log_rate":                     "lines per second",
}

// wantError is a value of the wrong type or range; the key is added later.
type wantError struct {
	want string
	got  any
}

func (e *wantError) Error() string { return "want " + e.want + ", got " + showValue(e.got) }

func showValue(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	}
	return fmt.Sprint(v)
}

var durationType = reflect.TypeOf(time.Duration(0))

// strictHook converts one YAML or flag value to its field's type, or says
// what it wanted. YAML gives native types; flags give strings, parsed here.
func strictHook(_ reflect.Type, to reflect.Type, data any) (any, error) {
	if data == nil {
		return nil, nil
	}
	switch {
	case to == durationType:
		switch v := data.(type) {
		case string:
			d, err := time.ParseDuration(v)
			if err != nil {
				return nil, &wantError{"a duration such as 10s, 500ms or 1m30s", v}
			}
			return d, nil
		case int:
			if v == 0 {
				return time.Duration(0), nil // zero in any unit
			}
		}
		return nil, &wantError{"a duration such as 10s", data}
	case to.Kind() == reflect.String:
		if s, ok := data.(string); ok {
			return s, nil
		}
		return nil, &wantError{"a string", data}
	case to.Kind() == reflect.Float64 || to.Kind() == reflect.Float32:
		switch v := data.(type) {
		case int:
			return float64(v), nil
		case float64:
			return v, nil
		case string:
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f, nil
			}
		}
		return nil, &wantError{"a number", data}
	case to.Kind() == reflect.Bool:
		switch v := data.(type) {
		case bool:
			return v, nil
		case string:
			if b, err := strconv.ParseBool(v); err == nil {
				return b, nil
			}
		}
		return nil, &wantError{"true or false", data}
	case to.Kind() >= reflect.Int && to.Kind() <= reflect.Int64:
		lo, hi := int64(-1)<<(to.Bits()-1), int64(1)<<(to.Bits()-1)-1
		n, ok := integer(data)
		if !ok || n < lo || n > hi {
			if to.Bits() == 64 {
				return nil, &wantError{"an integer", data} // the key's own range is checked later
			}
			return nil, &wantError{fmt.Sprintf("an integer from %d to %d", lo, hi), data}
		}
		return reflect.ValueOf(n).Convert(to).Interface(), nil
	case to.Kind() >= reflect.Uint && to.Kind() <= reflect.Uint64:
		hi := uint64(1)<<to.Bits() - 1
		n, ok := integer(data)
		if !ok || n < 0 || uint64(n) > hi {
			return nil, &wantError{fmt.Sprintf("an integer from 0 to %d", hi), data}
		}
		return reflect.ValueOf(n).Convert(to).Interface(), nil
	case to.Kind() == reflect.Slice:
		if k := reflect.TypeOf(data).Kind(); k != reflect.Slice {
			return nil, &wantError{"a list such as [a, b]", data}
		}
	case to.Kind() == reflect.Struct:
		if _, ok := data.(map[string]any); !ok {
			return nil, &wantError{"a mapping of keys", data}
		}
	}
	return data, nil
}

// integer reads a YAML integer or a flag's decimal string.
func integer(v any) (int64, bool) {
	switch v := v.(type) {
	case int:
		return int64(v), true
	case int64:
		return v, true
	case uint64:
		if v <= 1<<63-1 {
			return int64(v), true
		}
	case float64:
		if v == float64(int64(v)) {
			return int64(v), true
		}
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// configSource remembers where each key came from, for messages.
type configSource struct {
	path  string
	lines map[string]int    // key path ("acl[0].access") -> line in path
	flags map[string]string // key -> flag name, for keys set by a flag
}

// line is the file line a key was read from; 0 for flags or unknown.
func (s *configSource) line(key string) int {
	if _, ok := s.flags[rootKey(key)]; ok {
		return 0
	}
	for k := key; k != ""; k = parentKey(k) {
		if n, ok := s.lines[k]; ok {
			return n
		}
	}
	return 0
}

// errorOf formats problems in file order, each with where it came from.
func (s *configSource) errorOf(ps []problem) error {
	sort.SliceStable(ps, func(i, j int) bool {
		li, lj := s.line(ps[i].key), s.line(ps[j].key)
		return li < lj || li == lj && ps[i].key < ps[j].key
	})
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = s.where(p.key) + ": " + p.msg
	}
	return &configError{lines}
}

func (s *configSource) where(key string) string {
	if f, ok := s.flags[rootKey(key)]; ok {
		return "--" + f + " (" + key + ")"
	}
	if s.path == "" {
		return key
	}
	for k := key; k != ""; k = parentKey(k) {
		if n, ok := s.lines[k]; ok {
			return fmt.Sprintf("%s:%d: %s", s.path, n, key)
		}
	}
	return s.path + ": " + key
}

func rootKey(k string) string {
	if i := strings.IndexAny(k, ".["); i >= 0 {
		return k[:i]
	}
	return k
}

func parentKey(k string) string {
	if i := strings.LastIndexAny(k, ".["); i >= 0 {
		return k[:i]
	}
	return ""
}

// loadConfig reads the YAML file at path (none if ""), lays the given flag
// values over it and decodes the result into a Config, then checks every
// value. Every problem is reported, each naming its key; the error wraps
// errConfig.
func loadConfig(path string, flagValues map[string]any, flagNames map[string]string) (Config, *configSource, error) {
	var cfg Config
	src := &configSource{path: path, lines: map[string]int{}, flags: map[string]string{}}
	for k := range flagValues {
		src.flags[k] = flagNames[k]
	}
	k := koanf.New(".")
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, src, fmt.Errorf("%w: %w", errConfig, err)
		}
		if err := yamlLines(b, src.lines); err != nil {
			return cfg, src, fmt.Errorf("%w: %s: %w", errConfig, path, err)
		}
		if err := k.Load(rawbytes.Provider(b), yaml.Parser()); err != nil {
			return cfg, src, fmt.Errorf("%w: %s: %w", errConfig, path, err)
		}
	}
	if err := k.Load(confmap.Provider(flagValues, "."), nil); err != nil {
		return cfg, src, fmt.Errorf("%w: flags: %w", errConfig, err)
	}
	var problems []problem
	unknownKeys(k.Raw(), reflect.TypeOf(cfg), "", &problems)
	if len(problems) > 0 {
		return cfg, src, src.errorOf(problems)
	}
	err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{Tag: "yaml", DecoderConfig: &mapstructure.DecoderConfig{
		DecodeHook:  strictHook,
		Squash:      true,
		ErrorUnused: true,
	}})
	reported := map[string]bool{}
	if err != nil {
		for _, e := range decodeErrors(err) {
			problems = append(problems, problem{e.key, e.err.Error()})
			reported[rootKey(e.key)] = true
		}
	}
	// Also check what did decode, so one run lists every problem.
	for _, p := range checkConfig(&cfg) {
		if !reported[rootKey(p.key)] {
			problems = append(problems, p)
			reported[rootKey(p.key)] = true
		}
	}
	if len(problems) > 0 {
		return cfg, src, src.errorOf(problems)
	}
	if k.Exists("max_keepalive") && cfg.MaxKeepalive == 0 {
		cfg.MaxKeepalive = -1 // max_keepalive: 0 means no maximum (the broker's 0 is its default)
	}
	return cfg, src, nil
}

// yamlLines records the line of every key, for messages. It also rejects
// a file that is not a mapping at the top.
func yamlLines(b []byte, lines map[string]int) error {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(b, &doc); err != nil {
		return err
	}
	if len(doc.Content) == 0 {
		return nil // empty file: all defaults
	}
	root := doc.Content[0]
	if root.Kind != yamlv3.MappingNode {
		return fmt.Errorf("line %d: want a mapping of keys (key: value) at the top", root.Line)
	}
	var walk func(n *yamlv3.Node, prefix string)
	walk = func(n *yamlv3.Node, prefix string) {
		switch n.Kind {
		case yamlv3.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				key := n.Content[i].Value
				if prefix != "" {
					key = prefix + "." + key
				}
				lines[key] = n.Content[i].Line
				walk(n.Content[i+1], key)
			}
		case yamlv3.SequenceNode:
			for i, c := range n.Content {
				key := fmt.Sprintf("%s[%d]", prefix, i)
				lines[key] = c.Line
				walk(c, key)
			}
		}
	}
	walk(root, "")
	return nil
}

// keysOf lists the keys of a config struct (embedded structs inlined).
func keysOf(t reflect.Type) map[string]reflect.Type {
	keys := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-" || !f.IsExported():
		case f.Anonymous && f.Type.Kind() == reflect.Struct:
			for k, v := range keysOf(f.Type) {
				keys[k] = v
			}
		case name != "":
			keys[name] = f.Type
		}
	}
	return keys
}

// unknownKeys reports keys of raw that t does not have, with a suggestion.
func unknownKeys(raw map[string]any, t reflect.Type, prefix string, problems *[]problem) {
	known := keysOf(t)
	names := make([]string, 0, len(raw))
	for k := range raw {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		full := k
		if prefix != "" {
			full = prefix + "." + k
		}
		ft, ok := known[k]
		if !ok {
			msg := "unknown key"
			if s := suggest(k, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			*problems = append(*problems, problem{full, msg})
			continue
		}
		switch v := raw[k].(type) {
		case map[string]any:
			if ft.Kind() == reflect.Struct {
				unknownKeys(v, ft, full, problems)
			}
		case []any:
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				for i, e := range v {
					if m, ok := e.(map[string]any); ok {
						unknownKeys(m, ft.Elem(), fmt.Sprintf("%s[%d]", full, i), problems)
					}
				}
			}
		}
	}
}

// suggest returns the known key closest to k, if it is close enough.
func suggest(k string, known map[string]reflect.Type) string {
	norm := func(s string) string { return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s)) }
	best, bestD := "", 1<<30
	for c := range known {
		d := editDistance(k, c)
		if norm(k) == norm(c) {
			d = 0
		}
		if d < bestD || d == bestD && c < best {
			best, bestD = c, d
		}
	}
	if bestD <= max(2, len(k)/3) {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

type keyErr struct {
	key string
	err error
}

// decodeErrors flattens mapstructure's joined and wrapped errors to one
// per key.
func decodeErrors(err error) []keyErr {
	switch e := err.(type) {
	case *mapstructure.DecodeError:
		inner := e.Unwrap()
		if sub := decodeErrors(inner); len(sub) > 1 || len(sub) == 1 && sub[0].key != "" {
			return sub // a struct or list: its fields have their own names
		}
		key := e.Name()
		var we *wantError
		if errors.As(inner, &we) {
			switch h := keyHints[key]; {
			case h != "":
				we = &wantError{we.want + " (" + h + ")", we.got}
			case strings.HasSuffix(key, "_addr") && we.want == "a string":
				we = &wantError{`host:port such as ":1883"`, we.got}
			}
			return []keyErr{{key, we}}
		}
		return []keyErr{{key, inner}}
	case interface{ Unwrap() []error }:
		var out []keyErr
		for _, x := range e.Unwrap() {
			out = append(out, decodeErrors(x)...)
		}
		return out
	case interface{ Unwrap() error }:
		if inner := e.Unwrap(); inner != nil {
			return decodeErrors(inner)
		}
	}
	return []keyErr{{"", err}}
}

type problem struct{ key, msg string }

// checkConfig checks the values the types alone do not: enumerations,
// addresses, ranges, and what broker and storage Validate would refuse
// (named by key, never by Go field).
func checkConfig(c *Config) []problem {
	var ps []problem
	add := func(key, format string, args ...any) { ps = append(ps, problem{key, fmt.Sprintf(format, args...)}) }
	oneOf := func(key, v string, allowed ...string) {
		if v == "" || slices.Contains(allowed, v) {
			return
		}
		add(key, "want %s, got %q", strings.Join(allowed, " or "), v)
	}
	oneOf("durability", c.Durability, "sync", "async")
	oneOf("log_level", strings.ToLower(c.LogLevel), "debug", "info", "warn", "error")
	oneOf("log_format", c.LogFormat, "text", "json")
	oneOf("acl_default", c.ACLDefault, "allow", "deny")
	oneOf("queue_full_policy", c.QueueFullPolicy, "drop-oldest", "reject-new")
	for key, v := range map[string]string{"mqtt_addr": c.MQTTAddr, "native_addr": c.NativeAddr, "http_addr": c.HTTPAddr,
		"cluster_addr": c.ClusterAddr, "peer_addr": c.PeerAddr, "tls_addr": c.TLSAddr, "native_tls_addr": c.NativeTLSAddr, "wss_addr": c.WSSAddr, "pprof": c.Pprof} {
		if v != "" {
			if err := checkAddr(v); err != nil {
				add(key, "%v", err)
			}
		}
	}
	for i, v := range c.Join {
		if err := checkAddr(v); err != nil {
			add(fmt.Sprintf("join[%d]", i), "%v", err)
		}
	}
	if _, err := parsePrefixes(c.TrustedProxies); err != nil {
		add("trusted_proxies", "%v", err)
	}
	for key, d := range map[string]time.Duration{"connect_timeout": c.ConnectTimeout, "slow_consumer_timeout": c.SlowConsumerTimeout} {
		if d < 0 {
			add(key, "want a positive duration such as 10s, got %s", d)
		}
	}
	for key, n := range map[string]int{"loops": c.Loops, "max_outbound_bytes": c.MaxOutboundBytes, "max_queued": c.MaxQueued} {
		if n < 0 {
			add(key, "want 0 (the default) or more, got %d", n)
		}
	}
	if c.MaxKeepalive < 0 || c.MaxKeepalive > 65535 {
		add("max_keepalive", "want an integer from 0 to 65535 (seconds), got %d", c.MaxKeepalive)
	}
	if c.MaxPacketSize != 0 && c.MaxPacketSize < 16 {
		add("max_packet_size", "want at least 16 (bytes), got %d", c.MaxPacketSize)
	}
	for i, f := range c.DenyFilters {
		if err := topic.ValidFilter(f); err != nil {
			add(fmt.Sprintf("deny_filters[%d]", i), "%q is not a topic filter: %v", f, err)
		}
	}
	ps = append(ps, checkTLS(c)...)
	if c.AdminToken != "" && c.AdminTokenFile != "" {
		add("admin_token_file", "give admin_token or admin_token_file, not both")
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		add("admin_token", "want at least 16 characters, got %d", len(c.AdminToken))
	}
	if err := c.Limits.Validate(); err != nil {
		key, msg := splitKeyed(strings.TrimPrefix(err.Error(), broker.ErrLimits.Error()+": "))
		add(key, "%s", msg)
	}
	// What the components' own Validate refuse beyond the above (the
	// caller keeps the first problem of each key).
	ao := c.authOptions()
	ao.EnsureDefaults()
	if err := ao.Validate(); err != nil {
		key, msg := splitKeyed(strings.TrimPrefix(err.Error(), broker.ErrAuthOptions.Error()+": "))
		add(key, "%s", msg)
	}
	bo := c.Options
	bo.EnsureDefaults()
	if err := bo.Validate(); err != nil {
		key, msg := splitKeyed(goNamesToKeys(strings.TrimPrefix(err.Error(), broker.ErrOptions.Error()+": ")))
		add(key, "%s", msg)
	}
	so := c.storageOptions()
	so.EnsureDefaults()
	if err := so.Validate(); err != nil && !c.Memory {
		key, msg := splitKeyed(goNamesToKeys(strings.TrimPrefix(err.Error(), storage.ErrOptions.Error()+": ")))
		add(key, "%s", msg)
	}
	return append(ps, checkCluster(c)...)
}

// checkAddr accepts host:port with a numeric port (host may be empty).
func checkAddr(v string) error {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("want host:port such as \":1883\" or \"127.0.0.1:1883\", got %q", v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("want a port from 0 to 65535, got %q", port)
	}
	return nil
}

// splitKeyed splits "key: message" (or "key message").
func splitKeyed(s string) (string, string) {
	if k, m, ok := strings.Cut(s, ": "); ok && !strings.Contains(k, " ") {
		return k, m
	}
	if k, m, ok := strings.Cut(s, " "); ok {
		return k, m
	}
	return "", s
}

// goFieldKeys maps Go field names of the options structs to their keys,
// so that a Validate message never speaks Go ("ACLDefault").
var goFieldKeys = func() map[string]string {
	m := map[string]string{"Durability": "durability", "MaxQueuedPerSession": "store_max_queued",
		"MaxQueuedBytesPerSession": "store_max_queued_bytes", "QueueFullPolicy": "queue_full_policy", "QueueTTL": "queue_ttl",
		"HistoryTTL": "history_ttl"}
	t := reflect.TypeOf(broker.Options{})
	for i := range t.NumField() {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name != "" && name != "-" {
			m[f.Name] = name
		}
	}
	return m
}()

func goNamesToKeys(s string) string {
	i := 0
	for i < len(s) && (s[i] >= 'A' && s[i] <= 'Z' || s[i] >= 'a' && s[i] <= 'z') {
		i++
	}
	if k, ok := goFieldKeys[s[:i]]; ok {
		return k + s[i:] // "ACL[3]: ..." -> "acl[3]: ..."
	}
	return s
}

// unsupported lists the options that are set but that this server cannot
// honour yet; each makes `cim server` refuse to start (exit 2) rather than
// run without what was asked for. Remove a line when its feature lands.
func unsupported(c *Config) []problem {
	var ps []problem
	for _, o := range []struct {
		key string
		set bool
		why string
	}{
		// (none now: the cluster, TLS, HTTP and admin keys are all built)
	} {
		if o.set {
			ps = append(ps, problem{o.key, "not supported yet (" + o.why + " is not built)"})
		}
	}
	return ps
}

var configType = reflect.TypeOf(Config{})

// checkTLS checks that the TLS keys go together; the files themselves are
// read by tlsFiles' caller (httpapi.ReadTLS).
func checkTLS(c *Config) []problem {
	var ps []problem
	add := func(key, msg string) { ps = append(ps, problem{key, msg}) }
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		add("tls_key", "missing: tls_cert needs its private key")
	case c.TLSKey != "" && c.TLSCert == "":
		add("tls_cert", "missing: tls_key needs its certificate")
	}
	if c.TLSCert == "" {
		for key, set := range map[string]bool{"tls_addr": c.TLSAddr != "", "native_tls_addr": c.NativeTLSAddr != "", "wss_addr": c.WSSAddr != "",
			"tls_client_ca": c.TLSClientCA != "", "tls_client_auth": c.TLSClientAuth != "", "tls_identity_as_username": c.TLSIdentityAsUsername} {
			if set {
				add(key, "needs tls_cert and tls_key")
			}
		}
	}
	switch c.TLSClientAuth {
	case "", "required", "optional":
		if c.TLSClientAuth != "" && c.TLSClientCA == "" && c.TLSCert != "" {
			add("tls_client_auth", "needs tls_client_ca (the CA client certificates are checked against)")
		}
	default:
		add("tls_client_auth", fmt.Sprintf("want required or optional, got %q", c.TLSClientAuth))
	}
	if c.TLSIdentityAsUsername && c.TLSClientCA == "" && c.TLSCert != "" {
		add("tls_identity_as_username", "needs tls_client_ca: only a verified certificate has an identity")
	}
	return ps
}

// tlsFiles are the TLS files of the config, nil when TLS is off.
func (c *Config) tlsFiles() *httpapi.TLSFiles {
	if c.TLSCert == "" {
		return nil
	}
	return &httpapi.TLSFiles{CertFile: c.TLSCert, KeyFile: c.TLSKey, ClientCAFile: c.TLSClientCA, ClientAuth: c.TLSClientAuth}
}

// adminToken is admin_token, or the first line of admin_token_file.
func (c *Config) adminToken() (string, error) {
	if c.AdminTokenFile == "" {
		return c.AdminToken, nil
	}
	b, err := os.ReadFile(c.AdminTokenFile)
	if err != nil {
		return "", fmt.Errorf("admin_token_file: %w", err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	tok = strings.TrimSpace(tok)
	if len(tok) < 16 {
		return "", fmt.Errorf("admin_token_file %s: want a token of at least 16 characters on its first line", c.AdminTokenFile)
	}
	return tok, nil
}

// Defaults of the listeners of this file.
const (
	defaultHTTPAddr      = ":8083"
	defaultTLSAddr       = ":8883"
	defaultNativeTLSAddr = ":9443"
	defaultWSSAddr       = ":8084"
)

// parsePrefixes reads IPs and CIDRs (an IP is a /32 or /128).
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range list {
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("want an IP or a CIDR such as 10.0.0.0/8, got %q", v)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
