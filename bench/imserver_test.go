package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with -cim.pprof
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/broker/httpapi"
	"github.com/cimgo/cim/storage"
	"github.com/cockroachdb/pebble/vfs"
)

// The test binary doubles as a broker for bench/native.sh while `cim
// server --http-addr` does not serve the IM HTTP API yet: it runs cim's
// broker as `cim server` does (GOGC 50, the store's defaults) with the IM
// API mounted beside it, until SIGTERM. (bench may not import broker
// outside its tests, so this lives here.)
//
//	go test -c -o bench.test ./bench
//	./bench.test -cim.serve -cim.mqtt 127.0.0.5:1883 -cim.native 127.0.0.5:9000 \
//	    -cim.http 127.0.0.5:8083 -cim.data /tmp/d [-cim.durability async|memory] [-cim.pprof addr]
var (
	serveIM    = flag.Bool("cim.serve", false, "run cim's broker with the IM HTTP API instead of the tests")
	serveMQTT  = flag.String("cim.mqtt", "127.0.0.1:1883", "-cim.serve: MQTT listener")
	serveNat   = flag.String("cim.native", "127.0.0.1:9000", "-cim.serve: native listener")
	serveHTTP  = flag.String("cim.http", "127.0.0.1:8083", "-cim.serve: IM HTTP API listener")
	serveData  = flag.String("cim.data", "", "-cim.serve: data directory (required unless -cim.durability memory)")
	serveDur   = flag.String("cim.durability", "sync", "-cim.serve: sync, async or memory")
	servePprof = flag.String("cim.pprof", "", "-cim.serve: serve net/http/pprof here")
	serveLoops = flag.Int("cim.loops", 0, "-cim.serve: event loops (0: one per core)")
)

// serveIMServer runs the broker until SIGINT or SIGTERM; the exit code.
func serveIMServer() int {
	if err := runIMServer(); err != nil {
		fmt.Fprintln(os.Stderr, "cim.serve:", err)
		return 1
	}
	return 0
}

func runIMServer() error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	debug.SetGCPercent(50) // as cim server does
	sopts := storage.Options{Logger: log}
	dir := *serveData
	switch *serveDur {
	case "sync":
		sopts.Durability = storage.Sync
	case "async":
		sopts.Durability = storage.Async
	case "memory":
		sopts.FS, sopts.Durability, dir = vfs.NewMem(), storage.Async, "memory"
	default:
		return fmt.Errorf("-cim.durability %q: want sync, async or memory", *serveDur)
	}
	if dir == "" {
		return errors.New("-cim.data is required")
	}
	db, err := storage.Open(dir, sopts)
	if err != nil {
		return err
	}
	defer db.Close()
	srv, err := broker.New(broker.Options{MQTTAddr: *serveMQTT, NativeAddr: *serveNat, Store: db, Loops: *serveLoops,
		Logger: log, NodeName: "bench"})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	l, err := net.Listen("tcp", *serveHTTP)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	httpapi.MountIM(mux, srv, l.Addr().String())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	go func() { _ = hs.Serve(l) }()
	if *servePprof != "" {
		go func() { _ = http.ListenAndServe(*servePprof, nil) }()
	}
	fmt.Fprintf(os.Stdout, "ready mqtt %s native %s http %s\n", srv.Addr(), srv.ListenerAddr(broker.ProtocolNative), l.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	return srv.Shutdown(sctx)
}
