package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// runPasswd prints a password-file line "user:bcrypt-hash" for the password
// read from stdin (one line), for `cim server --password-file`.
func runPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cim passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cost := fs.Int("cost", bcrypt.DefaultCost, "bcrypt cost (4-31)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: cim passwd [--cost N] USER < password\n\nPrints USER:bcrypt-hash for a --password-file.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" || strings.ContainsAny(fs.Arg(0), ":\n") {
		fs.Usage()
		return 2
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(stderr, "cim passwd:", err)
		return 1
	}
	pass := strings.TrimRight(line, "\r\n")
	if pass == "" {
		fmt.Fprintln(stderr, "cim passwd: empty password on stdin")
		return 2
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), *cost)
	if err != nil {
		fmt.Fprintln(stderr, "cim passwd:", err)
		return 2
	}
	fmt.Fprintf(stdout, "%s:%s\n", fs.Arg(0), hash)
	return 0
}
