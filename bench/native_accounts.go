package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// A native client logs in as a registered account: its client id is the
// user name. Before the first connect every runner prepares its share of
// the run through the IM server's HTTP API (POST /v1/accounts, /v1/groups),
// registerParallel requests at a time:
//
//   - it registers its clients' accounts and the receivers its topics name
//     (cim/u/<name>); registering an existing name answers its id, so a
//     run may reuse an earlier run's accounts (--client-id-prefix) and
//     several runners may register the same receiver;
//   - for a topic or filter cim/g/<name> it creates the group (one that
//     exists is fine) and makes every client that publishes or subscribes
//     to it a member: only members may send to a group, and membership is
//     the group's subscription.
//
// After the run a clean run (the default) takes its clients out of the
// groups again (DELETE /v1/groups/<name>/members/<id>): a native session
// lasts as long as its account, and a member nobody logs in as again would
// collect every later run's group messages.

// ProtoNative is the --proto value of cim's native protocol.
const ProtoNative = "native"

// defaultAPIPort is the port of `cim server --http-addr`'s default.
const defaultAPIPort = "8083"

// registerParallel bounds a runner's HTTP API requests in flight.
const registerParallel = 16

// maxAPIAnswer bounds what is read of one answer of the HTTP API.
const maxAPIAnswer = 64 << 10

// Codes of the IM API's envelope this file acts on (broker/wire's numbers).
const (
	apiGroupExists = "3012"
	apiNotMember   = "3013"
)

// defaultAPI is the HTTP API next to the first broker address.
func defaultAPI(addrs []string) string {
	host := "127.0.0.1"
	if len(addrs) > 0 {
		if h, _, err := net.SplitHostPort(addrs[0]); err == nil && h != "" {
			host = h
		}
	}
	return "http://" + net.JoinHostPort(host, defaultAPIPort)
}

// checkAPI validates --api.
func checkAPI(api string) error {
	u, err := url.Parse(api)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return usageErr("--api %q: want the HTTP API's base URL, http://host:port", api)
	}
	return nil
}

// nativeRun is what Prepare set up for one runner's share of a run. Read
// only once Prepare has returned.
type nativeRun struct {
	o      *Options
	ids    map[string]uint64 // user name -> account id
	groups map[string]bool   // groups the run's clients were made members of
	joined []membership      // what Finish undoes
}

type membership struct {
	group string
	user  uint64
}

// inboxName is the user name in a topic cim/u/<name> that is not an id
// ("" when the topic names no such receiver: another topic, a numeric id,
// a wildcard or a %rand still to be drawn).
func inboxName(topic string) string {
	rest, ok := strings.CutPrefix(topic, inboxPrefix)
	if !ok || rest == "" || strings.ContainsAny(rest, "/+#%") || isDigits(rest) {
		return ""
	}
	return rest
}

// groupName is the group of a topic cim/g/<name> ("" for any other topic,
// a wildcard or a %rand still to be drawn).
func groupName(topic string) string {
	rest, ok := strings.CutPrefix(topic, groupPrefix)
	if !ok || rest == "" || strings.ContainsAny(rest, "/+#%") {
		return ""
	}
	return rest
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// api talks to the IM server's HTTP API.
type api struct {
	hc   *http.Client
	base string
}

func newAPI(o *Options) (*api, func()) {
	tr := &http.Transport{MaxIdleConnsPerHost: registerParallel, DisableCompression: true}
	return &api{hc: &http.Client{Transport: tr, Timeout: o.ConnectTimeout}, base: strings.TrimSuffix(o.API, "/")}, tr.CloseIdleConnections
}

// apiError is an answer of the API with a code other than 9000.
type apiError struct {
	code, message string
}

func (e *apiError) Error() string { return "code " + e.code + ": " + e.message }

// call sends a JSON request and decodes the envelope's dataBody into out
// (nil: ignore it). A refusal is an *apiError; anything that is not the
// API's answer is an error saying what came instead.
func (a *api) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIAnswer+1))
	switch {
	case err != nil:
		return fmt.Errorf("reading the answer: %w", err)
	case len(raw) > maxAPIAnswer:
		return fmt.Errorf("answer over %d bytes", maxAPIAnswer)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("HTTP %s: %s", resp.Status, snippet(raw))
	}
	var env struct {
		Code     string          `json:"code"`
		Message  string          `json:"message"`
		DataBody json.RawMessage `json:"dataBody"`
	}
	if err := json.Unmarshal(raw, &env); err != nil || env.Code == "" {
		return fmt.Errorf("not the IM API's answer: %s", snippet(raw))
	}
	if env.Code != strconv.Itoa(codeOK) {
		return &apiError{env.Code, env.Message}
	}
	if out != nil {
		if err := json.Unmarshal(env.DataBody, out); err != nil {
			return fmt.Errorf("dataBody: %v: %s", err, snippet(env.DataBody))
		}
	}
	return nil
}

func isAPICode(err error, code string) bool {
	ae, ok := err.(*apiError)
	return ok && ae.code == code
}

// register registers one account and returns its id.
func (a *api) register(ctx context.Context, name, password string) (uint64, error) {
	var acct struct {
		ID   uint64 `json:"id"`
		Name string `json:"name"`
	}
	in := map[string]string{"name": name}
	if password != "" {
		in["password"] = password
	}
	if err := a.call(ctx, http.MethodPost, "/v1/accounts", in, &acct); err != nil {
		return 0, fmt.Errorf("%w: account %q at %s: %w", ErrRegister, name, a.base, err)
	}
	switch {
	case acct.ID == 0:
		return 0, fmt.Errorf("%w: account %q at %s: no account id in the answer", ErrRegister, name, a.base)
	case acct.Name != name:
		return 0, fmt.Errorf("%w: account %q at %s: the answer is for %q", ErrRegister, name, a.base, acct.Name)
	}
	return acct.ID, nil
}

// createGroup creates a group; one that exists already is fine.
func (a *api) createGroup(ctx context.Context, name string, owner uint64) error {
	err := a.call(ctx, http.MethodPost, "/v1/groups", map[string]any{"name": name, "owner": owner}, nil)
	if err != nil && !isAPICode(err, apiGroupExists) {
		return fmt.Errorf("%w: group %q at %s: %w", ErrRegister, name, a.base, err)
	}
	return nil
}

func (a *api) join(ctx context.Context, m membership) error {
	err := a.call(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(m.group)+"/members", map[string]any{"user": m.user}, nil)
	if err != nil {
		return fmt.Errorf("%w: joining user %d to group %q at %s: %w", ErrRegister, m.user, m.group, a.base, err)
	}
	return nil
}

func (a *api) leave(ctx context.Context, m membership) error {
	err := a.call(ctx, http.MethodDelete, "/v1/groups/"+url.PathEscape(m.group)+"/members/"+strconv.FormatUint(m.user, 10), nil, nil)
	if err != nil && !isAPICode(err, apiNotMember) {
		return fmt.Errorf("%w: user %d leaving group %q at %s: %w", ErrRegister, m.user, m.group, a.base, err)
	}
	return nil
}

// parallel runs f(0..n-1), registerParallel at a time; the first error
// stops what has not started and is returned.
func parallel(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex // guards firstErr
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan int)
	for range min(registerParallel, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(ctx, i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrRegister, err)
	}
	return nil
}

// prepare registers the accounts and the group memberships of p.
func prepareNative(ctx context.Context, p *Preparation) (*nativeRun, error) {
	o := p.Options
	a, done := newAPI(o)
	defer done()
	// Accounts: the clients, then the named receivers.
	seen := map[string]bool{}
	var names []string
	add := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, c := range p.Clients {
		add(c.Name)
	}
	for _, c := range p.Clients {
		add(inboxName(c.Topic))
		add(inboxName(c.Filter))
	}
	ids := make([]uint64, len(names))
	if err := parallel(ctx, len(names), func(ctx context.Context, i int) (err error) {
		ids[i], err = a.register(ctx, names[i], o.Password)
		return err
	}); err != nil {
		return nil, err
	}
	run := &nativeRun{o: o, ids: make(map[string]uint64, len(names)), groups: map[string]bool{}}
	for i, n := range names {
		run.ids[n] = ids[i]
	}
	// Groups: created by their first client, joined by every client that
	// uses them.
	var owners []membership
	member := map[membership]bool{}
	for _, c := range p.Clients {
		for _, g := range []string{groupName(c.Topic), groupName(c.Filter)} {
			m := membership{g, run.ids[c.Name]}
			if g == "" || member[m] {
				continue
			}
			member[m] = true
			if !run.groups[g] {
				run.groups[g] = true
				owners = append(owners, m)
			}
			run.joined = append(run.joined, m)
		}
	}
	if err := parallel(ctx, len(owners), func(ctx context.Context, i int) error {
		return a.createGroup(ctx, owners[i].group, owners[i].user)
	}); err != nil {
		return nil, err
	}
	if err := parallel(ctx, len(run.joined), func(ctx context.Context, i int) error {
		return a.join(ctx, run.joined[i])
	}); err != nil {
		return nil, err
	}
	return run, nil
}

// finish takes a clean run's clients out of the groups Prepare put them in.
func (run *nativeRun) finish(ctx context.Context) error {
	if run == nil || run.o.Persistent || len(run.joined) == 0 {
		return nil
	}
	a, done := newAPI(run.o)
	defer done()
	return parallel(ctx, len(run.joined), func(ctx context.Context, i int) error {
		return a.leave(ctx, run.joined[i])
	})
}

// snippet is the start of an answer, for an error message.
func snippet(b []byte) string {
	const n = 200
	s := strings.ToValidUTF8(string(b[:min(len(b), n)]), "?")
	if len(b) > n {
		s += "..."
	}
	return strconv.Quote(s)
}
