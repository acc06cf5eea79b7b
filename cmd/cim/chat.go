package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cimgo/cim/chat"
	"golang.org/x/term"
)

// runChat is `cim chat`: the terminal chat client (package chat). Exit
// statuses: 0 quit, 1 ended by the server (taken over, kicked), 2 bad
// flags, 3 login refused, 4 server unreachable.
func runChat(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cim chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	api := fs.String("api", "", "HTTP API `URL` of a node: registers the user, names the node to connect to (default http://127.0.0.1:8083 without --addr)")
	addr := fs.String("addr", "", "connect straight to native `host:port[,host:port...]` (the account must exist; with --api too, the API only registers)")
	user := fs.String("user", "", "user `name` (required; registered on first use through --api)")
	password := fs.String("password", "", "`password` (default $CIM_PASSWORD; set at registration, checked at login)")
	logDir := fs.String("log-dir", defaultLogDir(), "local chat logs under `dir`/<user>/yyyy-MM-dd.log")
	noLog := fs.Bool("no-log", false, "keep no local chat log")
	plain := fs.Bool("plain", false, "line mode even on a terminal: commands from stdin, one line per message, no colour")
	noEmoji := fs.Bool("no-emoji", false, "show :alias: text instead of the emoji")
	timeout := fs.Duration("timeout", 10*time.Second, "give up registering and logging in after `duration`")
	verbose := fs.Bool("v", false, "log the SDK's connection events to stderr")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: cim chat --user NAME [--password P] [--api URL | --addr HOST:PORT] [flags]

Chat in a terminal: a line goes to everyone online, name;;text (or id;;text)
is private, :g group;;text goes to a group; :help lists every command.
Without a terminal (or with --plain) commands are read line by line from
stdin and each received message is printed as one line:
  [yyyy-MM-dd HH:mm:ss] sender$ text
End of input is :q!. Exit status: 0 quit, 1 ended by the server (another
login of the same user, kicked), 2 bad flags, 3 wrong password or unknown
account, 4 server unreachable.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return chat.ExitUsage
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "cim chat: "+format+"\n", a...)
		fs.Usage()
		return chat.ExitUsage
	}
	switch {
	case fs.NArg() > 0:
		return bad("unexpected argument %q", fs.Arg(0))
	case *user == "":
		return bad("--user is required")
	case *timeout <= 0:
		return bad("--timeout must be over 0")
	}
	opts := chat.Options{User: *user, Password: *password, APIURL: *api, LogDir: *logDir,
		NoEmoji: *noEmoji, DialTimeout: *timeout}
	if opts.Password == "" {
		opts.Password = os.Getenv("CIM_PASSWORD")
	}
	if *addr != "" {
		for _, a := range strings.Split(*addr, ",") {
			if a = strings.TrimSpace(a); a != "" {
				opts.Addrs = append(opts.Addrs, a)
			}
		}
	} else if opts.APIURL == "" {
		opts.APIURL = "http://127.0.0.1:8083"
	}
	if *noLog {
		opts.LogDir = ""
	}
	if *verbose {
		opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if err := opts.Validate(); err != nil {
		return bad("%v", strings.TrimPrefix(err.Error(), "chat: invalid options: "))
	}

	var err error
	if !*plain && term.IsTerminal(int(stdin.Fd())) && isTerminal(stdout) {
		err = chat.RunTerminal(ctx, opts, chat.TerminalIO{In: stdin, Out: stdout, Err: stderr})
	} else {
		err = chat.RunLines(ctx, opts, stdin, stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "cim chat:", strings.TrimPrefix(err.Error(), "chat: "))
	}
	return chat.ExitCode(err)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// defaultLogDir is ~/.cim/chat ("" if there is no home: no log).
func defaultLogDir() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".cim", "chat")
}
