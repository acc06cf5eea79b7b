package httpapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// TLS material of the TLS listeners (MQTT over TLS, WSS), read from PEM
// files and re-read on a reload. A listener's *tls.Config (Certs.Config)
// picks the current material at each handshake, so a reload applies to
// the next handshake and never to an established connection.
//
//	ReadTLS(files) ─► *TLSMaterial (checked) ─► Certs.Set (atomic swap)
//	                   (a bad file: error, the old material stays)

// TLSFiles name the PEM files.
type TLSFiles struct {
	// CertFile is the server certificate chain, KeyFile its private key.
	CertFile, KeyFile string
	// ClientCAFile, if set, asks clients for a certificate signed by one of
	// its CAs (mTLS).
	ClientCAFile string
	// ClientAuth is "required" (default with a ClientCAFile: no valid
	// certificate, no connection) or "optional" (a certificate, if given,
	// must be valid; without one the client logs in as usual).
	ClientAuth string
}

// ErrTLS is wrapped by errors reading TLS material.
var ErrTLS = errors.New("httpapi: tls")

// TLSMaterial is one reading of the TLS files. Immutable.
type TLSMaterial struct {
	files TLSFiles
	cfg   *tls.Config
	leaf  *x509.Certificate
}

// ReadTLS reads and checks the files.
func ReadTLS(f TLSFiles) (*TLSMaterial, error) {
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, fmt.Errorf("%w: tls_cert and tls_key: both are needed", ErrTLS)
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: tls_cert %s, tls_key %s: %w", ErrTLS, f.CertFile, f.KeyFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%w: tls_cert %s: %w", ErrTLS, f.CertFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	switch f.ClientAuth {
	case "", "required", "optional":
	default:
		return nil, fmt.Errorf("%w: tls_client_auth: want required or optional, got %q", ErrTLS, f.ClientAuth)
	}
	if f.ClientCAFile != "" {
		pem, err := os.ReadFile(f.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: tls_client_ca: %w", ErrTLS, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: tls_client_ca %s: no PEM certificate in it", ErrTLS, f.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		if f.ClientAuth == "optional" {
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
		}
	} else if f.ClientAuth != "" {
		return nil, fmt.Errorf("%w: tls_client_auth needs tls_client_ca", ErrTLS)
	}
	return &TLSMaterial{files: f, cfg: cfg, leaf: leaf}, nil
}

// Files are what m was read from.
func (m *TLSMaterial) Files() TLSFiles { return m.files }

// Subject is the server certificate's subject and expiry, for logs.
func (m *TLSMaterial) Subject() string {
	return fmt.Sprintf("%s (expires %s)", m.leaf.Subject.String(), m.leaf.NotAfter.UTC().Format("2006-01-02"))
}

// Certs holds the current TLS material of the listeners. Any goroutine.
type Certs struct{ cur atomic.Pointer[TLSMaterial] }

// NewCerts starts with m.
func NewCerts(m *TLSMaterial) *Certs {
	c := &Certs{}
	c.Set(m)
	return c
}

// Set makes m current for the next handshakes.
func (c *Certs) Set(m *TLSMaterial) { c.cur.Store(m) }

// Current is the material in use.
func (c *Certs) Current() *TLSMaterial { return c.cur.Load() }

// Config is a listener's TLS config: each handshake uses the material
// current at that moment. nextProtos, if given, are offered by ALPN
// (WSS: "http/1.1", so no client picks HTTP/2, which cannot upgrade).
func (c *Certs) Config(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cfg := c.cur.Load().cfg
			if len(nextProtos) > 0 {
				cfg = cfg.Clone()
				cfg.NextProtos = nextProtos
			}
			return cfg, nil
		},
	}
}
