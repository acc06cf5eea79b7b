package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// PasswordEnv is the environment variable `cim bench` reads the CONNECT
// password from when neither --password nor --password-file is given.
const PasswordEnv = "CIM_BENCH_PASSWORD"

// ReadSecretFile returns the first line of a file (a password or an agent
// token), without its line ending; an empty first line is an error.
func ReadSecretFile(path string) (string, error) {
	b, err := readLimited(path, 64<<10)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s: empty first line", path)
	}
	return line, nil
}

// ReadPayloadFile returns a --payload-file: not empty, at most 16 MiB.
func ReadPayloadFile(path string) ([]byte, error) {
	b, err := readLimited(path, maxPayloadFile)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	return b, nil
}

// AgentToken is the shared agent token: the first line of file if given,
// else $CIM_BENCH_TOKEN.
func AgentToken(file string) (string, error) {
	if file != "" {
		t, err := ReadSecretFile(file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return t, nil
	}
	if t := os.Getenv(TokenEnv); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("no agent token: give --token-file or set $%s", TokenEnv)
}

// ParseUserProperty parses --user-property key=value.
func ParseUserProperty(s string) (UserProperty, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return UserProperty{}, fmt.Errorf("want key=value, got %q", s)
	}
	return UserProperty{Key: k, Value: v}, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}
