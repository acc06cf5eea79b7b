// Command cim is the cim broker, and the tools around it.
//
//	cim server [flags]   run a broker node
//	cim bench  ...       load-test a broker (see cim bench -h)
//	cim chat   --user N  chat in a terminal (see cim chat -h)
//	cim passwd USER      print a password-file line
//	cim health           probe a node's /healthz (for container health checks)
//	cim ctl ...          the admin API's client (see cim ctl -h)
//	cim version          print the version
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cimgo/cim/broker"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "server":
		os.Exit(runServer(ctx, args, os.Stdout, os.Stderr))
	case "bench":
		os.Exit(runBench(ctx, args))
	case "chat":
		os.Exit(runChat(ctx, args, os.Stdin, os.Stdout, os.Stderr))
	case "passwd":
		os.Exit(runPasswd(args, os.Stdin, os.Stdout, os.Stderr))
	case "health":
		os.Exit(runHealth(ctx, args, os.Stdout, os.Stderr))
	case "ctl":
		os.Exit(runCtl(ctx, args, os.Stdout, os.Stderr))
	case "version", "-v", "--version":
		fmt.Println(versionLine())
	case "help", "-h", "--help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "cim: unknown command %q\n\n", cmd)
		usage()
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: cim <command> [flags]

commands:
  server    run a broker node (MQTT 3.1.1 and 5.0)
  bench     load-test a broker
  chat      chat in a terminal (cim's client): cim chat --user NAME
  passwd    print a password-file line (prompts on a terminal, else reads stdin)
  health    GET a node's /healthz: exit 0 if healthy, 1 if not
  ctl       the admin API's client: clients, kick ID, subs ID, retained, publish TOPIC MSG
  version   print the version

Run 'cim <command> -h' for a command's flags.
`)
}

func init() { broker.Version = buildVersion() }
