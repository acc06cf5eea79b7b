package chat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/cimgo/cim/broker/wire"
	"github.com/cimgo/cim/client"
)

// lookupUser finds a registered user by name through the API's POST
// /v1/login (which names the account and its node, and changes nothing).
// An unknown name is wire.CodeAccountMismatch.
func lookupUser(ctx context.Context, hc *http.Client, apiURL, name string) (client.UserInfo, error) {
	b, _ := json.Marshal(map[string]string{"name": name})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(apiURL, "/")+"/v1/login", bytes.NewReader(b))
	if err != nil {
		return client.UserInfo{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return client.UserInfo{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return client.UserInfo{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return client.UserInfo{}, fmt.Errorf("%w: /v1/login: %s", client.ErrHTTP, resp.Status)
	}
	var env struct {
		Code     json.RawMessage `json:"code"`
		Message  string          `json:"message"`
		DataBody struct {
			ID   uint64 `json:"id"`
			Name string `json:"name"`
		} `json:"dataBody"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return client.UserInfo{}, fmt.Errorf("%w: /v1/login: %v", client.ErrHTTP, err)
	}
	code, err := strconv.Atoi(strings.Trim(string(env.Code), `"`))
	if err != nil {
		return client.UserInfo{}, fmt.Errorf("%w: /v1/login: bad code %s", client.ErrHTTP, env.Code)
	}
	if wire.Code(code) != wire.CodeOK {
		return client.UserInfo{}, fmt.Errorf("/v1/login: %s: %w", env.Message, wire.Code(code))
	}
	if env.DataBody.ID == 0 {
		return client.UserInfo{}, fmt.Errorf("%w: /v1/login: no id", client.ErrHTTP)
	}
	return client.UserInfo{ID: env.DataBody.ID, Name: env.DataBody.Name}, nil
}
