package client

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

	"github.com/cimgo/cim/broker/wire"
)

// The HTTP API calls the SDK makes: cim's route API (CIM.md). Every answer
// is the envelope {"code": "9000", "message": ..., "reqNo": ...,
// "dataBody": ...}; cim sends the code as a string, a number is accepted
// too.

// maxAPIBody bounds an HTTP API answer.
const maxAPIBody = 1 << 20

type envelope struct {
	Code     json.RawMessage `json:"code"`
	Message  string          `json:"message"`
	DataBody json.RawMessage `json:"dataBody"`
}

// flexInt is a JSON number or a string holding one (cim's ports and codes
// come either way).
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not a number: %s", b)
	}
	*f = flexInt(v)
	return nil
}

// postAPI posts body as JSON to base+path and decodes the envelope's
// dataBody into out (if not nil). A code other than 9000 is returned as an
// error wrapping the wire.Code.
func postAPI(ctx context.Context, hc *http.Client, base, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("client: %s: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("client: %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody+1))
	if err != nil {
		return fmt.Errorf("client: %s: reading the answer: %w", path, err)
	}
	if len(raw) > maxAPIBody {
		return fmt.Errorf("%w: %s: answer over %d bytes", ErrHTTP, path, maxAPIBody)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s: status %s: %.200s", ErrHTTP, path, resp.Status, raw)
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("%w: %s: %v: %.200s", ErrHTTP, path, err, raw)
	}
	var code flexInt
	if err := code.UnmarshalJSON(env.Code); err != nil || code == 0 {
		return fmt.Errorf("%w: %s: bad code %s", ErrHTTP, path, env.Code)
	}
	if c := wire.Code(code); c != wire.CodeOK {
		return fmt.Errorf("client: %s: %s: %w", path, env.Message, c)
	}
	if out != nil {
		if err := json.Unmarshal(env.DataBody, out); err != nil {
			return fmt.Errorf("%w: %s: dataBody: %v", ErrHTTP, path, err)
		}
	}
	return nil
}

// Register registers userName with the HTTP API at apiURL (cim's POST
// /registerAccount) and returns the account. Registering an existing name
// returns its id. password, if not empty, is sent as "password" for a
// server that keeps one (cim's API had none). hc nil means
// http.DefaultClient.
func Register(ctx context.Context, hc *http.Client, apiURL, userName, password string) (wire.User, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	in := struct {
		UserName string `json:"userName"`
		Password string `json:"password,omitempty"`
	}{userName, password}
	var out struct {
		UserID   flexInt `json:"userId"`
		UserName string  `json:"userName"`
	}
	if err := postAPI(ctx, hc, apiURL, "/registerAccount", in, &out); err != nil {
		return wire.User{}, err
	}
	if out.UserID <= 0 {
		return wire.User{}, fmt.Errorf("%w: /registerAccount: no userId", ErrHTTP)
	}
	return wire.User{ID: uint64(out.UserID), Name: out.UserName}, nil
}

// Route asks the HTTP API at apiURL which node the user should connect to
// (cim's POST /login) and returns its native address. An answer without
// an ip, or with an unspecified one (0.0.0.0, ::), means the API's own
// host. hc nil means http.DefaultClient.
func Route(ctx context.Context, hc *http.Client, apiURL string, userID uint64, userName string) (string, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	in := struct {
		UserID   uint64 `json:"userId,omitempty"`
		UserName string `json:"userName,omitempty"`
	}{userID, userName}
	var out struct {
		IP       string  `json:"ip"`
		Port     flexInt `json:"cimServerPort"`
		HTTPPort flexInt `json:"httpPort"`
	}
	if err := postAPI(ctx, hc, apiURL, "/login", in, &out); err != nil {
		return "", err
	}
	if out.Port <= 0 || out.Port > 65535 {
		return "", fmt.Errorf("%w: /login: bad cimServerPort %d", ErrHTTP, out.Port)
	}
	host := out.IP
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		u, err := url.Parse(apiURL)
		if err != nil {
			return "", fmt.Errorf("client: %w", err)
		}
		host = u.Hostname()
	}
	return net.JoinHostPort(host, strconv.Itoa(int(out.Port))), nil
}
