package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA makes a CA and server certificates for 127.0.0.1 as PEM files.
type testCA struct {
	t      *testing.T
	dir    string
	ca     *x509.Certificate
	key    *ecdsa.PrivateKey
	pool   *x509.CertPool
	caFile string
	serial int64
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ops test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	c := &testCA{t: t, dir: t.TempDir(), ca: ca, key: key, pool: x509.NewCertPool(), serial: 1}
	c.pool.AddCert(ca)
	c.caFile = c.write("ca.pem", "CERTIFICATE", der)
	return c
}

func (c *testCA) write(name, typ string, der []byte) string {
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// serverFiles writes a server certificate named cn to cert.pem/key.pem
// (overwriting: a rotation) and returns their paths.
func (c *testCA) serverFiles(cn string) (string, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(c.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ca, &key.PublicKey, c.key)
	if err != nil {
		c.t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	// Key first, then certificate: a reload between the two would see a
	// mismatched pair and keep the old one.
	k := c.write("key.pem", "EC PRIVATE KEY", kb)
	return c.write("cert.pem", "CERTIFICATE", der), k
}

func (c *testCA) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: c.pool, ServerName: "127.0.0.1"}
}

func TestOpsConfigErrors(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.serverFiles("srv")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", cert}, "tls_key: missing: tls_cert needs its private key"},
		{[]string{"--tls-key", key}, "tls_cert: missing: tls_key needs its certificate"},
		{[]string{"--tls-addr", ":8883"}, "--tls-addr (tls_addr): needs tls_cert and tls_key"},
		{[]string{"--tls-client-ca", ca.caFile}, "--tls-client-ca (tls_client_ca): needs tls_cert and tls_key"},
		{[]string{"--tls-cert", cert, "--tls-key", key, "--tls-client-auth", "maybe"}, `tls_client_auth): want required or optional, got "maybe"`},
		{[]string{"--tls-cert", cert, "--tls-key", key, "--tls-client-auth", "optional"}, "needs tls_client_ca"},
		{[]string{"--tls-cert", cert, "--tls-key", key, "--tls-identity-as-username"}, "tls_identity_as_username): needs tls_client_ca"},
		{[]string{"--tls-cert", key, "--tls-key", cert}, "tls_cert " + key},
		{[]string{"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", key}, "no PEM certificate"},
		{[]string{"--admin-token", "short"}, "--admin-token (admin_token): want at least 16 characters, got 5"},
		{[]string{"--admin-token-file", "/nonexistent/token"}, "admin_token_file: open /nonexistent/token"},
		{[]string{"--max-publish-rate", "fast"}, `--max-publish-rate (max_publish_rate): want a number (messages per second), got "fast"`},
		{[]string{"--max-connections", "-1"}, "max_connections): want 0 (no limit) or more"},
		{[]string{"--max-connections-per-ip", "many"}, "max_connections_per_ip): want an integer"},
		{[]string{"--http-addr", "8083"}, `http_addr): want host:port`},
		{[]string{"--trusted-proxies", "10.0.0.0/8,proxy.local"}, `--trusted-proxies (trusted_proxies): want an IP or a CIDR such as 10.0.0.0/8, got "proxy.local"`},
		{[]string{"--wss-addr", ":8084"}, "wss_addr): needs tls_cert and tls_key"},
	} {
		code, out := serverRun(t, append(c.args, "--memory", "--check-config")...)
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("%v: exit %d: %s\nwant %q", c.args, code, out, c.want)
		}
	}
	tok := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(tok, []byte("0123456789abcdef-from-a-file\n"), 0o600)
	code, out := serverRun(t, "--memory", "--check-config", "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca.caFile,
		"--tls-client-auth", "optional", "--tls-identity-as-username", "--admin-token-file", tok, "--max-publish-rate", "2.5",
		"--max-connections", "10", "--log-rate", "5")
	if code != 0 {
		t.Fatalf("good TLS config: exit %d: %s", code, out)
	}
}

func TestHTTPPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, out := serverRun(t, "--memory", "--mqtt-addr", "127.0.0.1:0", "--http-addr", l.Addr().String(), "--log-level", "error")
	if code != 1 || !strings.Contains(out, "cannot listen on http_addr "+l.Addr().String()) {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestChangedKeys(t *testing.T) {
	a := Config{HTTPAddr: ":1"}
	a.PasswordFile = "p"
	a.MaxConnections = 3
	b := a
	b.HTTPAddr = ":2"
	b.PasswordFile = "q"
	b.MaxConnections = 4
	b.ACL = nil
	got := strings.Join(changedKeys(a, b), ",")
	if got != "http_addr,max_connections,password_file" {
		t.Fatalf("changed %q", got)
	}
	if len(changedKeys(a, a)) != 0 {
		t.Fatal("a config differs from itself")
	}
}
