package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cimgo/cim/broker/httpapi"
)

// cim ctl: the client of a node's admin API (/v1/admin, broker/httpapi).
//
//	cim ctl [--api URL] [--token TOKEN] [--json] COMMAND [ARGS]
//	  clients                   list sessions
//	  kick ID                   close a client's connection (MQTT 5: DISCONNECT 0x98)
//	  subs ID                   list a session's subscriptions
//	  retained [FILTER]         list retained messages (default #)
//	  retained --delete TOPIC   clear a topic's retained message
//	  publish TOPIC MSG         publish [--qos N] [--retain]
//
// Exit status: 0 done, 1 the node refused or could not be reached, 2 bad usage.

const ctlUsage = `usage: cim ctl [--api URL] [--token TOKEN] [--json] COMMAND [ARGS]

commands:
  clients                   list sessions (connected and kept)
  kick ID                   close a client's connection (MQTT 5: DISCONNECT 0x98)
  subs ID                   list a session's subscriptions
  retained [FILTER]         list retained messages (default #)
  retained --delete TOPIC   clear a topic's retained message
  publish TOPIC MSG         publish a message [--qos 0|1|2] [--retain]

kick and subs take --protocol native for a native session (default mqtt).
The token may also come from $CIM_ADMIN_TOKEN, the URL from $CIM_API.
Exit status: 0 done, 1 refused by the node or unreachable, 2 bad usage.

flags:
`

// ctl is one invocation.
type ctl struct {
	api     string
	token   string
	json    bool
	client  *http.Client
	stdout  io.Writer
	timeout time.Duration
}

// errUsage marks a usage error (exit 2).
var errUsage = errors.New("usage")

func runCtl(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cim ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &ctl{stdout: stdout}
	fs.StringVar(&c.api, "api", envOr("CIM_API", "http://127.0.0.1:8083"), "the node's HTTP `URL`")
	fs.StringVar(&c.token, "token", os.Getenv("CIM_ADMIN_TOKEN"), "admin bearer `token` (default $CIM_ADMIN_TOKEN)")
	fs.BoolVar(&c.json, "json", false, "print the API's JSON instead of a table")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "give up after `duration`")
	fs.Usage = func() {
		fmt.Fprint(stderr, ctlUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	u, err := url.Parse(c.api)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "cim ctl: --api: want a URL such as http://127.0.0.1:8083, got %q\n", c.api)
		return 2
	}
	if c.timeout <= 0 {
		fmt.Fprintln(stderr, "cim ctl: --timeout: want a positive duration")
		return 2
	}
	c.api = strings.TrimRight(c.api, "/")
	c.client = &http.Client{Timeout: c.timeout}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	var run func(context.Context, []string, io.Writer) error
	switch cmd {
	case "clients":
		run = c.clients
	case "kick":
		run = c.kick
	case "subs":
		run = c.subs
	case "retained":
		run = c.retained
	case "publish":
		run = c.publish
	default:
		fmt.Fprintf(stderr, "cim ctl: unknown command %q\n\n", cmd)
		fs.Usage()
		return 2
	}
	if err := run(ctx, rest, stderr); err != nil {
		if errors.Is(err, errUsage) {
			if msg := strings.TrimPrefix(err.Error(), errUsage.Error()); msg != "" {
				fmt.Fprintln(stderr, "cim ctl "+cmd+msg)
			}
			return 2
		}
		fmt.Fprintln(stderr, "cim ctl:", err)
		return 1
	}
	return 0
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// parseCmd parses a command's flags wherever they stand among its
// arguments ("publish t m --qos 1"); "--" ends the flags.
func parseCmd(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// usageErr is a usage error; its message follows "cim ctl CMD" (": ..." or " ID: ...").
func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w%s", errUsage, fmt.Sprintf(format, a...))
}

// call sends one request; a JSON error answer becomes an error naming its
// status and code. The body is returned raw.
func (c *ctl) call(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.api+path, rd)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", c.api, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e httpapi.Error
		if json.Unmarshal(b, &e) == nil && e.Code != "" {
			hint := ""
			if resp.StatusCode == http.StatusUnauthorized && c.token == "" {
				hint = " (give --token or set CIM_ADMIN_TOKEN)"
			}
			return nil, fmt.Errorf("%s: %s: %s%s", resp.Status, e.Code, e.Message, hint)
		}
		return nil, fmt.Errorf("%s from %s%s", resp.Status, c.api, path)
	}
	return b, nil
}

// show prints the JSON (--json) or a table made by table.
func (c *ctl) show(raw []byte, v any, table func(w *tabwriter.Writer)) error {
	if c.json {
		_, err := c.stdout.Write(raw)
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("unexpected answer: %w", err)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *ctl) clients(ctx context.Context, args []string, _ io.Writer) error {
	fs := flag.NewFlagSet("clients", flag.ContinueOnError)
	pos, err := parseCmd(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr(": takes no arguments")
	}
	raw, err := c.call(ctx, http.MethodGet, "/v1/admin/clients", nil)
	if err != nil {
		return err
	}
	var out httpapi.Clients
	return c.show(raw, &out, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "PROTOCOL\tID\tUSER\tREMOTE\tTRANSPORT\tCONNECTED SINCE\tINFLIGHT\tQUEUED\tSUBS")
		for _, cl := range out.Clients {
			since := "offline"
			if cl.Since != nil {
				since = cl.Since.Local().Format("2006-01-02 15:04:05")
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", cl.Protocol, cl.ID, dash(cl.User), dash(cl.Remote),
				dash(cl.Transport), since, cl.Inflight, cl.Queued, cl.Subscriptions)
		}
	})
}

// oneClient parses "ID [--protocol P]".
func oneClient(name string, args []string) (string, string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	proto := fs.String("protocol", "mqtt", "")
	pos, err := parseCmd(fs, args)
	if err != nil {
		return "", "", err
	}
	if len(pos) != 1 {
		return "", "", usageErr(" ID: want one client id")
	}
	if *proto != "mqtt" && *proto != "native" {
		return "", "", usageErr(": --protocol: want mqtt or native, got %q", *proto)
	}
	q := ""
	if *proto != "mqtt" {
		q = "?protocol=" + *proto
	}
	return pos[0], q, nil
}

func (c *ctl) kick(ctx context.Context, args []string, _ io.Writer) error {
	id, q, err := oneClient("kick", args)
	if err != nil {
		return err
	}
	raw, err := c.call(ctx, http.MethodPost, "/v1/admin/clients/"+url.PathEscape(id)+"/kick"+q, nil)
	if err != nil {
		return err
	}
	var out map[string]string
	return c.show(raw, &out, func(w *tabwriter.Writer) { fmt.Fprintf(w, "kicked %s\n", out["kicked"]) })
}

func (c *ctl) subs(ctx context.Context, args []string, _ io.Writer) error {
	id, q, err := oneClient("subs", args)
	if err != nil {
		return err
	}
	raw, err := c.call(ctx, http.MethodGet, "/v1/admin/clients/"+url.PathEscape(id)+"/subscriptions"+q, nil)
	if err != nil {
		return err
	}
	var out httpapi.Subscriptions
	return c.show(raw, &out, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "FILTER\tQOS\tNO LOCAL\tRETAIN AS PUBLISHED\tRETAIN HANDLING\tID")
		for _, s := range out.Subscriptions {
			id := "-"
			if s.ID != 0 {
				id = strconv.FormatUint(uint64(s.ID), 10)
			}
			fmt.Fprintf(w, "%s\t%d\t%t\t%t\t%d\t%s\n", s.Filter, s.QoS, s.NoLocal, s.RetainAsPublished, s.RetainHandling, id)
		}
	})
}

func (c *ctl) retained(ctx context.Context, args []string, _ io.Writer) error {
	fs := flag.NewFlagSet("retained", flag.ContinueOnError)
	del := fs.String("delete", "", "")
	pos, err := parseCmd(fs, args)
	if err != nil {
		return err
	}
	if *del != "" {
		if len(pos) != 0 {
			return usageErr(" --delete TOPIC: takes no other argument")
		}
		raw, err := c.call(ctx, http.MethodDelete, "/v1/admin/retained?topic="+url.QueryEscape(*del), nil)
		if err != nil {
			return err
		}
		var out map[string]string
		return c.show(raw, &out, func(w *tabwriter.Writer) { fmt.Fprintf(w, "deleted the retained message of %s\n", out["deleted"]) })
	}
	if len(pos) > 1 {
		return usageErr(" [FILTER]: want at most one filter")
	}
	path := "/v1/admin/retained"
	if len(pos) == 1 {
		path += "?filter=" + url.QueryEscape(pos[0])
	}
	raw, err := c.call(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	var out httpapi.RetainedList
	return c.show(raw, &out, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "TOPIC\tQOS\tSIZE\tCREATED\tPAYLOAD")
		for _, m := range out.Retained {
			p := fmt.Sprintf("<%d bytes, not UTF-8>", m.Size)
			if m.Payload != nil {
				p = strconv.Quote(truncate(*m.Payload, 60))
			}
			fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\n", m.Topic, m.QoS, m.Size, m.Created.Local().Format("2006-01-02 15:04:05"), p)
		}
	})
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

func (c *ctl) publish(ctx context.Context, args []string, _ io.Writer) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	qos := fs.Int("qos", 0, "")
	retain := fs.Bool("retain", false, "")
	pos, err := parseCmd(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErr(" TOPIC MSG: want a topic and a message")
	}
	if *qos < 0 || *qos > 2 {
		return usageErr(": --qos: want 0, 1 or 2, got %d", *qos)
	}
	msg := pos[1]
	req := httpapi.PublishRequest{Topic: pos[0], Payload: &msg, QoS: byte(*qos), Retain: *retain}
	raw, err := c.call(ctx, http.MethodPost, "/v1/admin/publish", req)
	if err != nil {
		return err
	}
	var out httpapi.PublishResult
	return c.show(raw, &out, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "published to %s: %d matching session(s)\n", out.Topic, out.Matched)
	})
}
