package main

import (
	"crypto/rand"
	"path/filepath"

	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"github.com/cockroachdb/pebble/vfs"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with --pprof
	"os"
	"os/signal"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/broker/httpapi"
	"github.com/cimgo/cim/storage"
	"github.com/cimgo/cim/web"
)

// serverFlags are `cim server`'s flags; each sets the config key named like
// it with underscores (--mqtt-addr sets mqtt_addr), over the file.
var serverFlags = []struct {
	name, usage string
	kind        int // flagString, flagBool or flagList
}{
	{"data-dir", "data `dir` (default ./data)", flagString},
	{"durability", "sync: ack QoS 1/2 after fsync (default); async: ack after write, may lose the last ms on a crash", flagString},
	{"memory", "keep nothing on disk: sessions, queues and retained messages die with the process", flagBool},
	{"mqtt-addr", "MQTT listener `host:port` (default :1883)", flagString},
	{"node-name", "node `name` (default: host name)", flagString},
	{"log-level", "debug, info, warn or error (default info)", flagString},
	{"log-format", "text or json (default text)", flagString},
	{"password-file", "require logins listed in `file` (lines user:hash; bcrypt or mosquitto_passwd)", flagString},
	{"max-keepalive", "cap on client keepalive `seconds` (default 600)", flagString},
	{"loops", "event loops (default: one per core)", flagString},
	{"pprof", "serve Go's /debug/pprof on `host:port` (off by default)", flagString},
	{"native-addr", "native protocol listener `host:port` (default :9000)", flagString},
	{"http-addr", "HTTP listener `host:port`: IM API, /metrics, /healthz, /readyz, /v1/admin, /mqtt and /ws WebSockets (default :8083)", flagString},
	{"http-pprof", "serve /debug/pprof on the HTTP listener (behind the admin token if set)", flagBool},
	{"trusted-proxies", "`ip|cidr,...` of reverse proxies in front of the HTTP listener: WebSocket clients through them are known by X-Forwarded-For", flagList},
	{"admin-token", "bearer `token` of /v1/admin (at least 16 characters; none: admin API off)", flagString},
	{"admin-token-file", "read the admin token from `file`", flagString},
	{"tls-addr", "MQTT over TLS listener `host:port` (default :8883 when --tls-cert is set)", flagString},
	{"native-tls-addr", "native protocol over TLS listener `host:port` (default :9443 when --tls-cert is set)", flagString},
	{"wss-addr", "secure WebSocket (HTTPS: /mqtt and /ws) `host:port` (default :8084 when --tls-cert is set)", flagString},
	{"tls-cert", "TLS certificate chain PEM `file` (re-read on SIGHUP)", flagString},
	{"tls-key", "TLS private key PEM `file`", flagString},
	{"tls-client-ca", "CA PEM `file` client certificates must chain to (mTLS)", flagString},
	{"tls-client-auth", "required (default with --tls-client-ca) or optional client certificates", flagString},
	{"tls-identity-as-username", "log a client with a verified certificate in as its CN (or first SAN), no password", flagBool},
	{"max-connections", "refuse CONNECTs past this many open sockets (default 0: no limit)", flagString},
	{"max-connections-per-ip", "refuse CONNECTs past this many sockets from one address (default 0: no limit)", flagString},
	{"max-subscriptions-per-client", "refuse filters past this many per session (default 0: no limit)", flagString},
	{"max-publish-rate", "disconnect a client publishing more messages per second (default 0: no limit)", flagString},
	{"max-publish-bytes-rate", "disconnect a client publishing more payload bytes per second (default 0: no limit)", flagString},
	{"log-rate", "connection log lines per second per kind before they are summarised (default 50)", flagString},
	{"cluster-addr", "gossip `host:port`, tcp and udp; setting it (or --peer-addr, --join) makes the node clustered (default :7946 then)", flagString},
	{"peer-addr", "peer link `host:port` (default :7947 when clustered)", flagString},
	{"join", "`host:port,...` gossip addresses of cluster nodes to join (retried until one answers)", flagList},
}

const (
	flagString = iota
	flagBool
	flagList
)

// flagValue records a flag's raw value; the config decoder parses it with
// the same rules and messages as a YAML value.
type flagValue struct {
	kind int
	str  string
	list []string
	b    bool
}

func (f *flagValue) String() string {
	if f == nil {
		return ""
	}
	return f.str
}

func (f *flagValue) Set(s string) error {
	switch f.kind {
	case flagBool:
		v, err := parseBool(s)
		if err != nil {
			return err
		}
		f.b = v
	case flagList:
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				f.list = append(f.list, e)
			}
		}
	}
	f.str = s
	return nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "1", "yes":
		return true, nil
	case "false", "0", "no":
		return false, nil
	}
	return false, errors.New("want true or false")
}

func (f *flagValue) IsBoolFlag() bool { return f.kind == flagBool }

func (f *flagValue) value() any {
	switch f.kind {
	case flagBool:
		return f.b
	case flagList:
		return f.list
	}
	return f.str
}

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cim server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: cim server [flags]\n\nRuns one broker node. Flags override the --config file; every flag is also a YAML key\n(--mqtt-addr is mqtt_addr). Exit status 2 for any configuration error.\n\n")
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "", "YAML config `file`")
	checkOnly := fs.Bool("check-config", false, "check the configuration (and the files it names) and exit: 0 ok, 2 bad")
	flagNames := map[string]string{} // key -> flag name
	for _, f := range serverFlags {
		fs.Var(&flagValue{kind: f.kind}, f.name, f.usage)
		flagNames[strings.ReplaceAll(f.name, "-", "_")] = f.name
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cim server: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	values := map[string]any{}
	fs.Visit(func(f *flag.Flag) {
		if v, ok := f.Value.(*flagValue); ok {
			values[strings.ReplaceAll(f.Name, "-", "_")] = v.value()
		}
	})
	cfg, src, err := loadConfig(*configPath, values, flagNames)
	if err != nil {
		printProblems(stderr, err)
		return 2
	}
	if ps := append(unsupported(&cfg), clusterMissing(&cfg)...); len(ps) > 0 {
		for _, p := range ps {
			fmt.Fprintf(stderr, "cim server: %s: %s\n", src.where(p.key), p.msg)
		}
		return 2
	}
	// Read the files the config names (password file, JWT keys) now, so
	// that a bad one is a config error and --check-config finds it.
	auth, err := broker.NewAuth(cfg.authOptions())
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), broker.ErrJWTKey.Error()+": ")
		if errors.Is(err, broker.ErrPasswordFile) {
			msg = src.where("password_file") + ": " + strings.TrimPrefix(err.Error(), broker.ErrPasswordFile.Error()+": ")
		}
		fmt.Fprintln(stderr, "cim server:", msg)
		return 2
	}
	var tlsMat *httpapi.TLSMaterial
	if f := cfg.tlsFiles(); f != nil {
		if tlsMat, err = httpapi.ReadTLS(*f); err != nil {
			fmt.Fprintln(stderr, "cim server:", strings.TrimPrefix(err.Error(), httpapi.ErrTLS.Error()+": "))
			return 2
		}
	}
	adminToken, err := cfg.adminToken()
	if err != nil {
		fmt.Fprintln(stderr, "cim server:", err)
		return 2
	}
	if *checkOnly {
		fmt.Fprintln(stdout, "cim server: configuration ok")
		return 0
	}
	loaded := cfg // what a reload compares with
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	if cfg.MQTTAddr == "" {
		cfg.MQTTAddr = ":1883"
	}
	if cfg.NativeAddr == "" {
		cfg.NativeAddr = ":9000"
	}
	if cfg.NodeName == "" {
		cfg.NodeName, _ = os.Hostname()
	}
	base, level, err := newLogger(cfg.LogLevel, cfg.LogFormat, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "cim server:", err) // unreachable: checked by loadConfig
		return 2
	}
	log := base.With("node", cfg.NodeName)
	cfg.Logger = log
	if os.Getenv("GOGC") == "" {
		// Most of a broker's heap is long-lived connection state; collecting
		// at +50% instead of +100% keeps RSS near it (measured: 1.2 -> 1.0 KB
		// per idle connection, no throughput change). GOGC overrides.
		debug.SetGCPercent(50)
	}
	if cfg.Pprof != "" {
		go func() {
			if err := http.ListenAndServe(cfg.Pprof, nil); err != nil {
				log.Error("pprof listener", "pprof", cfg.Pprof, "err", err)
			}
		}()
	}

	{
		// --memory keeps the store in memory: the IM server still has its
		// accounts, groups and history, and nothing survives the process.
		sopts := cfg.storageOptions()
		sopts.Logger = log
		dir := cfg.DataDir
		if cfg.Memory {
			sopts.FS, sopts.Durability, dir = vfs.NewMem(), storage.Async, "memory"
		} else if key, err := tokenKey(cfg.DataDir); err != nil {
			log.Error("cannot read or make the token key", "data_dir", cfg.DataDir, "err", err)
			return 1
		} else {
			cfg.TokenKey = key
		}
		db, err := storage.Open(dir, sopts)
		if err != nil {
			code := 1
			if errors.Is(err, storage.ErrOptions) {
				code = 2
			}
			log.Error("cannot open data dir", "data_dir", cfg.DataDir, "err", err)
			return code
		}
		defer func() {
			if err := db.Close(); err != nil {
				log.Error("closing data dir", "err", err)
			}
		}()
		cfg.Store = db
	}
	cfg.Options.Auth = auth
	srv, err := broker.New(cfg.Options)
	if err != nil {
		if errors.Is(err, broker.ErrOptions) {
			msg := goNamesToKeys(strings.TrimPrefix(err.Error(), broker.ErrOptions.Error()+": "))
			fmt.Fprintln(stderr, "cim server:", msg)
			return 2
		}
		log.Error("cannot start", "err", err)
		return 1
	}
	if err := srv.SetLimits(cfg.Limits); err != nil {
		fmt.Fprintln(stderr, "cim server:", strings.TrimPrefix(err.Error(), broker.ErrLimits.Error()+": ")) // unreachable: checked by loadConfig
		return 2
	}
	// Bind every listener of ours before the broker's, so that a port in
	// use is reported by its key and nothing has started.
	lns, err := listenAll(&cfg, tlsMat != nil)
	if err != nil {
		log.Error(err.Error())
		return 1
	}
	// Clustered (cluster.go): the node joins before the broker's listeners
	// open, so the first logins already find their sessions' owners.
	ctx, stopFatal := context.WithCancelCause(ctx)
	defer stopFatal(nil)
	if cfg.clustered() {
		co := cfg.clusterOptions()
		co.Cluster.HTTPAddr = lns.http.Addr().String()
		co.OnFatal = func(err error) { stopFatal(err) }
		if err := srv.StartCluster(co); err != nil {
			lns.close()
			log.Error("cannot join the cluster", "err", err)
			return 1
		}
	}
	if err := srv.Start(); err != nil {
		lns.close()
		log.Error("cannot start the listeners", "err", err) // the error names the address
		_ = srv.LeaveCluster(time.Second)
		return 1
	}
	proxies, _ := parsePrefixes(cfg.TrustedProxies) // checked with the config
	api, err := httpapi.New(srv, httpapi.Options{Addr: lns.http.Addr().String(), AdminToken: adminToken, Pprof: cfg.HTTPPprof, Logger: log,
		WebSocketIdentityAsUser: cfg.TLSIdentityAsUsername, TrustedProxies: proxies})
	if err != nil {
		log.Error("http api", "err", err) // unreachable: default options
		return 1
	}
	web.Mount(api.Handle)         // the chat page (web/) at / on the HTTP port
	mountCluster(api.Handle, srv) // GET /v1/cluster (cluster.go)
	if cfg.clustered() {
		api.Registry().MustRegister(newClusterCollector(srv)) // cim_cluster_* on /metrics (cluster.go)
	}
	var certs *httpapi.Certs
	if tlsMat != nil {
		certs = httpapi.NewCerts(tlsMat)
		log.Info("tls certificate", "subject", tlsMat.Subject(), "client_ca", cfg.TLSClientCA != "")
	}
	served := lns.serve(srv, api, certs, &cfg, log)

	rl := &reloader{path: *configPath, flags: values, flagNames: flagNames, loaded: loaded, srv: srv, api: api,
		certs: certs, level: level, log: log}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for running := true; running; {
		select {
		case <-hup:
			rl.reload()
		case <-ctx.Done():
			running = false
		}
	}
	code := 0
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopping", "err", err)
		code = 1
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	served.shutdown(sctx)
	if err := srv.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		code = 1
	}
	if err := srv.LeaveCluster(5 * time.Second); err != nil {
		log.Warn("leaving the cluster", "err", err)
	}
	log.Info("stopped")
	return code
}

// printProblems writes a config error, one problem a line.
func printProblems(w io.Writer, err error) {
	for _, line := range strings.Split(strings.TrimPrefix(err.Error(), errConfig.Error()+": "), "\n") {
		fmt.Fprintln(w, "cim server:", line)
	}
}

// tokenKey reads the key that signs native login tokens from the data dir,
// making it on first use, so that tokens outlive a restart.
func tokenKey(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, "token.key")
	if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
		return b, nil
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

// listeners are the sockets cim server binds itself (the MQTT one is the
// broker's): HTTP, MQTT over TLS, native over TLS, HTTPS for WSS.
type listeners struct {
	http, tls, nativeTLS, wss net.Listener
}

// listenAll binds the listeners the config asks for; the error names the
// key of an address that cannot be bound.
func listenAll(cfg *Config, tlsOn bool) (*listeners, error) {
	l := &listeners{}
	bind := func(key, addr, def string) (net.Listener, error) {
		if addr == "" {
			addr = def
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			l.close()
			return nil, fmt.Errorf("cannot listen on %s %s: %w", key, addr, err)
		}
		return ln, nil
	}
	var err error
	if l.http, err = bind("http_addr", cfg.HTTPAddr, defaultHTTPAddr); err != nil {
		return nil, err
	}
	if tlsOn {
		if l.tls, err = bind("tls_addr", cfg.TLSAddr, defaultTLSAddr); err != nil {
			return nil, err
		}
		if l.nativeTLS, err = bind("native_tls_addr", cfg.NativeTLSAddr, defaultNativeTLSAddr); err != nil {
			return nil, err
		}
		if l.wss, err = bind("wss_addr", cfg.WSSAddr, defaultWSSAddr); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *listeners) close() {
	for _, ln := range []net.Listener{l.http, l.tls, l.nativeTLS, l.wss} {
		if ln != nil {
			ln.Close()
		}
	}
}

// served is what serve started; shutdown stops it.
type served struct {
	https []*http.Server
	tls   []net.Listener // the TLS listeners the broker accepts on
	done  sync.WaitGroup // their accept loops
}

// serve starts the HTTP server(s) and the TLS accept loop.
func (l *listeners) serve(srv *broker.Server, api *httpapi.API, certs *httpapi.Certs, cfg *Config, log *slog.Logger) *served {
	s := &served{}
	newHTTP := func() *http.Server {
		h := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
		s.https = append(s.https, h)
		return h
	}
	serveHTTP := func(h *http.Server, ln net.Listener, what string) {
		log.Info(what+" listening", "addr", ln.Addr().String())
		go func() {
			if err := h.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error(what+" listener stopped", "err", err)
			}
		}()
	}
	serveHTTP(newHTTP(), l.http, "http")
	if l.tls == nil {
		return s
	}
	serveTLS := func(ln net.Listener, protocol, what string) {
		tl := tls.NewListener(ln, certs.Config())
		s.tls = append(s.tls, tl)
		log.Info(what+" listening", "addr", ln.Addr().String(), "client_auth", clientAuthName(cfg), "identity_as_username", cfg.TLSIdentityAsUsername)
		s.done.Go(func() {
			if err := srv.ServeListener(tl, protocol, "tls", cfg.TLSIdentityAsUsername); err != nil {
				log.Error(what+" listener stopped", "err", err)
			}
		})
	}
	serveTLS(l.tls, broker.ProtocolMQTT, "mqtt tls")
	serveTLS(l.nativeTLS, broker.ProtocolNative, "native tls")
	wss := newHTTP()
	log.Info("wss listening", "addr", l.wss.Addr().String(), "paths", "/mqtt /ws")
	go func() {
		if err := wss.Serve(tls.NewListener(l.wss, certs.Config("http/1.1"))); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("wss listener stopped", "err", err)
		}
	}()
	return s
}

func clientAuthName(cfg *Config) string {
	switch {
	case cfg.TLSClientCA == "":
		return "none"
	case cfg.TLSClientAuth == "":
		return "required"
	}
	return cfg.TLSClientAuth
}

// shutdown stops accepting and lets HTTP requests finish within ctx
// (bridged WebSocket and TLS connections close with the broker).
func (s *served) shutdown(ctx context.Context) {
	for _, ln := range s.tls {
		ln.Close()
	}
	s.done.Wait()
	for _, h := range s.https {
		_ = h.Shutdown(ctx)
	}
}

// reloader applies SIGHUP: it re-reads the config file with the same
// flags, builds the new auth, TLS material, limits, admin token and log
// level, and only when all of them are good swaps them in together. A bad
// config is logged and the running one kept; keys that need a restart are
// named.
type reloader struct {
	path      string
	flags     map[string]any
	flagNames map[string]string
	loaded    Config // as loadConfig returned it, before defaults were filled in
	srv       *broker.Server
	api       *httpapi.API
	certs     *httpapi.Certs // nil: TLS off
	level     *slog.LevelVar
	log       *slog.Logger
}

// reloadable are the keys a reload applies; others need a restart.
var reloadable = map[string]bool{
	"password_file": true, "jwt": true, "acl": true, "acl_default": true, "deny_filters": true,
	"tls_cert": true, "tls_key": true, "tls_client_ca": true, "tls_client_auth": true,
	"log_level": true, "admin_token": true, "admin_token_file": true,
	"max_connections": true, "max_connections_per_ip": true, "max_subscriptions_per_client": true,
	"max_publish_rate": true, "max_publish_bytes_rate": true, "log_rate": true,
}

func (r *reloader) reload() {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("reload refused; the running configuration stays", "err", fmt.Sprint(p))
		}
	}()
	refuse := func(msg string) {
		r.log.Error("reload refused; the running configuration stays", "problem", msg)
	}
	cfg, src, err := loadConfig(r.path, r.flags, r.flagNames)
	if err != nil {
		for _, line := range strings.Split(strings.TrimPrefix(err.Error(), errConfig.Error()+": "), "\n") {
			refuse(line)
		}
		return
	}
	if ps := unsupported(&cfg); len(ps) > 0 {
		for _, p := range ps {
			refuse(src.where(p.key) + ": " + p.msg)
		}
		return
	}
	auth, err := broker.NewAuth(cfg.authOptions())
	if err != nil {
		refuse(err.Error())
		return
	}
	var mat *httpapi.TLSMaterial
	if f := cfg.tlsFiles(); f != nil && r.certs != nil {
		if mat, err = httpapi.ReadTLS(*f); err != nil {
			refuse(err.Error())
			return
		}
	}
	token, err := cfg.adminToken()
	if err != nil {
		refuse(err.Error())
		return
	}
	lvl := slog.LevelInfo
	if cfg.LogLevel != "" {
		if err := lvl.UnmarshalText([]byte(strings.ToUpper(cfg.LogLevel))); err != nil {
			refuse("log_level: " + err.Error()) // unreachable: checked by loadConfig
			return
		}
	}
	if err := cfg.Limits.Validate(); err != nil {
		refuse(err.Error()) // unreachable: checked by loadConfig
		return
	}
	// Everything is good: swap it all in.
	r.srv.SetAuth(auth)
	_ = r.srv.SetLimits(cfg.Limits)
	if mat != nil {
		r.certs.Set(mat)
	}
	r.api.SetAdminToken(token)
	var restart []string
	for _, k := range changedKeys(r.loaded, cfg) {
		if !reloadable[k] {
			restart = append(restart, k)
		}
	}
	if (cfg.TLSCert != "") != (r.certs != nil) {
		restart = append(restart, "tls_cert")
	}
	r.loaded = cfg
	attrs := []any{"password_file", cfg.PasswordFile, "acl_rules", len(cfg.ACL), "deny_filters", len(cfg.DenyFilters),
		"jwt", cfg.JWT.SecretFile != "" || len(cfg.JWT.PublicKeys) > 0, "log_level", lvl.String(), "admin_api", token != ""}
	if mat != nil {
		attrs = append(attrs, "tls_certificate", mat.Subject())
	}
	r.log.Info("configuration reloaded", attrs...) // at the old level: a reload to "warn" still says so
	if len(restart) > 0 {
		r.log.Warn("changed keys take effect after a restart", "keys", strings.Join(restart, ","))
	}
	r.level.Set(lvl)
}

// changedKeys lists the config keys whose values differ between a and b.
func changedKeys(a, b Config) []string {
	var out []string
	var walk func(x, y reflect.Value)
	walk = func(x, y reflect.Value) {
		t := x.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, opt, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			switch {
			case name == "-" || !f.IsExported():
			case f.Anonymous && opt == "inline":
				walk(x.Field(i), y.Field(i))
			case name != "" && !reflect.DeepEqual(x.Field(i).Interface(), y.Field(i).Interface()):
				out = append(out, name)
			}
		}
	}
	walk(reflect.ValueOf(a), reflect.ValueOf(b))
	sort.Strings(out)
	return out
}
