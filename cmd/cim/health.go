package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runHealth GETs a node's health URL and exits 0 on a 2xx answer, 1
// otherwise: the HEALTHCHECK of an image that has no curl (distroless).
func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cim health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8083/healthz", "health `URL` (/healthz: alive, /readyz: ready)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after `duration`")
	quiet := fs.Bool("q", false, "print nothing")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: cim health [--url URL] [--timeout D] [-q]\n\nExit status 0 if URL answers 2xx, 1 if not, 2 for bad flags.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || *timeout <= 0 {
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		fmt.Fprintln(stderr, "cim health:", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if !*quiet {
			fmt.Fprintln(stderr, "cim health: unhealthy:", err)
		}
		return 1
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if !*quiet {
			fmt.Fprintf(stderr, "cim health: unhealthy: %s: %s\n", resp.Status, body)
		}
		return 1
	}
	if !*quiet {
		fmt.Fprintf(stdout, "healthy: %s\n", resp.Status)
	}
	return 0
}
