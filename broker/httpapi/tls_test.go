package httpapi

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

// pki is a CA made for one test; files are PEM in dir.
type pki struct {
	t      testing.TB
	ca     *x509.Certificate
	key    *ecdsa.PrivateKey
	pool   *x509.CertPool
	dir    string
	caFile string
	serial int64
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{t: t, ca: ca, key: key, pool: x509.NewCertPool(), dir: t.TempDir(), serial: 1}
	p.pool.AddCert(ca)
	p.caFile = p.writePEM("ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) writePEM(name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// issue makes a certificate; server ones are for 127.0.0.1.
func (p *pki) issue(cn string, server bool) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// files writes a certificate and its key; it returns their paths.
func (p *pki) files(name string, c tls.Certificate) (string, string) {
	kb, _ := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	return p.writePEM(name+".pem", "CERTIFICATE", c.Certificate[0]), p.writePEM(name+".key", "EC PRIVATE KEY", kb)
}

func (p *pki) client(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", Certificates: certs}
}

func TestReadTLSErrors(t *testing.T) {
	p := newPKI(t)
	cert, key := p.files("srv", p.issue("srv", true))
	junk := filepath.Join(p.dir, "junk.pem")
	os.WriteFile(junk, []byte("not pem"), 0o600)
	for _, c := range []struct {
		f    TLSFiles
		want string
	}{
		{TLSFiles{CertFile: cert}, "both are needed"},
		{TLSFiles{CertFile: cert, KeyFile: filepath.Join(p.dir, "missing")}, "tls_key"},
		{TLSFiles{CertFile: junk, KeyFile: key}, "tls_cert"},
		{TLSFiles{CertFile: key, KeyFile: cert}, "tls_cert"},
		{TLSFiles{CertFile: cert, KeyFile: key, ClientCAFile: junk}, "no PEM certificate"},
		{TLSFiles{CertFile: cert, KeyFile: key, ClientCAFile: filepath.Join(p.dir, "nope")}, "tls_client_ca"},
		{TLSFiles{CertFile: cert, KeyFile: key, ClientAuth: "optional"}, "needs tls_client_ca"},
		{TLSFiles{CertFile: cert, KeyFile: key, ClientCAFile: p.caFile, ClientAuth: "sometimes"}, "want required or optional"},
	} {
		if _, err := ReadTLS(c.f); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.f, err, c.want)
		}
	}
	m, err := ReadTLS(TLSFiles{CertFile: cert, KeyFile: key, ClientCAFile: p.caFile, ClientAuth: "optional"})
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.ClientAuth != tls.VerifyClientCertIfGiven || !strings.Contains(m.Subject(), "CN=srv") {
		t.Fatalf("material %+v %s", m.cfg.ClientAuth, m.Subject())
	}
}

// A new certificate set on Certs is served from the next handshake on;
// the connection made before keeps working.
func TestCertsReload(t *testing.T) {
	p := newPKI(t)
	c1, k1 := p.files("one", p.issue("one", true))
	m1, err := ReadTLS(TLSFiles{CertFile: c1, KeyFile: k1})
	if err != nil {
		t.Fatal(err)
	}
	certs := NewCerts(m1)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", certs.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // echo
				b := make([]byte, 64)
				for {
					n, err := c.Read(b)
					if err != nil {
						c.Close()
						return
					}
					c.Write(b[:n])
				}
			}()
		}
	}()
	served := func() (string, *tls.Conn) {
		c, err := tls.Dial("tcp", ln.Addr().String(), p.client())
		if err != nil {
			t.Fatal(err)
		}
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName, c
	}
	cn, old := served()
	defer old.Close()
	if cn != "one" {
		t.Fatalf("served %q", cn)
	}
	c2, k2 := p.files("two", p.issue("two", true))
	m2, err := ReadTLS(TLSFiles{CertFile: c2, KeyFile: k2})
	if err != nil {
		t.Fatal(err)
	}
	certs.Set(m2)
	cn, c := served()
	c.Close()
	if cn != "two" {
		t.Fatalf("after Set: served %q", cn)
	}
	old.Write([]byte("still"))
	b := make([]byte, 5)
	if _, err := old.Read(b); err != nil || string(b) != "still" {
		t.Fatalf("old connection: %q %v", b, err)
	}
}
