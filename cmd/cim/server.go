package main

import (
	"crypto/rand"
	"path/filepath"

	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/cockroachdb/pebble/vfs"
	"io"
	"net/http"
	_ "net/http/pprof" // served only with --pprof
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/storage"
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
	{"native-addr", "native protocol listener `host:port` (not supported yet)", flagString},
	{"http-addr", "HTTP listener `host:port`: API, /metrics, /healthz (not supported yet)", flagString},
	{"cluster-addr", "gossip `host:port`, tcp and udp; setting it (or --peer-addr, --join) makes the node clustered (default :7946 then)", flagString},
	{"peer-addr", "peer link `host:port` (default :7947 when clustered)", flagString},
	{"join", "`host:port,...` gossip addresses of cluster nodes to join (retried until one answers)", flagList},
	{"tls-addr", "MQTT over TLS listener `host:port` (not supported yet)", flagString},
	{"tls-cert", "TLS certificate chain PEM `file` (not supported yet)", flagString},
	{"tls-key", "TLS private key PEM `file` (not supported yet)", flagString},
	{"tls-client-ca", "CA PEM `file` for client certificates (not supported yet)", flagString},
	{"admin-token", "bearer `token` for /v1/admin (not supported yet)", flagString},
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
	if *checkOnly {
		fmt.Fprintln(stdout, "cim server: configuration ok")
		return 0
	}
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
	base, _, err := newLogger(cfg.LogLevel, cfg.LogFormat, stderr)
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
	// Clustered (cluster.go): the node joins before its listeners open, so
	// the first logins already find their sessions' owners.
	ctx, stopFatal := context.WithCancelCause(ctx)
	defer stopFatal(nil)
	if cfg.clustered() {
		co := cfg.clusterOptions()
		co.OnFatal = func(err error) { stopFatal(err) }
		if err := srv.StartCluster(co); err != nil {
			log.Error("cannot join the cluster", "err", err)
			return 1
		}
	}
	if err := srv.Start(); err != nil {
		log.Error("cannot start the listeners", "err", err) // the error names the address
		_ = srv.LeaveCluster(time.Second)
		return 1
	}
	<-ctx.Done()
	code := 0
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopping", "err", err)
		code = 1
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
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
