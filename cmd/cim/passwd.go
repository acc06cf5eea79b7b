package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

// runPasswd prints a password-file line "user:bcrypt-hash" for
// `cim server --password-file`. On a terminal it prompts twice without
// echo; otherwise it reads one line from stdin (for scripts).
func runPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cim passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cost := fs.Int("cost", bcrypt.DefaultCost, "bcrypt cost (4-31)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: cim passwd [--cost N] USER [< password]\n\nPrints USER:bcrypt-hash for a --password-file. Prompts twice on a terminal;\nreads one line from stdin otherwise.\n\n")
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
	if *cost < bcrypt.MinCost || *cost > bcrypt.MaxCost {
		fmt.Fprintf(stderr, "cim passwd: --cost %d: want %d to %d\n", *cost, bcrypt.MinCost, bcrypt.MaxCost)
		return 2
	}
	var pass []byte
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		var code int
		if pass, code = promptTwice(int(f.Fd()), fs.Arg(0), stderr); code != 0 {
			return code
		}
	} else {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintln(stderr, "cim passwd:", err)
			return 1
		}
		pass = []byte(strings.TrimRight(line, "\r\n"))
	}
	if len(pass) == 0 {
		fmt.Fprintln(stderr, "cim passwd: empty password")
		return 2
	}
	hash, err := bcrypt.GenerateFromPassword(pass, *cost)
	if err != nil {
		fmt.Fprintln(stderr, "cim passwd:", err)
		return 2
	}
	fmt.Fprintf(stdout, "%s:%s\n", fs.Arg(0), hash)
	return 0
}

// promptTwice reads the password from the terminal fd with echo off, then
// again to confirm.
func promptTwice(fd int, user string, stderr io.Writer) ([]byte, int) {
	fmt.Fprintf(stderr, "Password for %s: ", user)
	first, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "cim passwd:", err)
		return nil, 1
	}
	fmt.Fprint(stderr, "Retype password: ")
	second, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "cim passwd:", err)
		return nil, 1
	}
	if !bytes.Equal(first, second) {
		fmt.Fprintln(stderr, "cim passwd: the passwords differ")
		return nil, 2
	}
	return first, 0
}
