package broker

import (
	"bytes"
	"context"
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
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pahopackets "github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
)

// testPKI is a CA generated for one test, with a server certificate for
// 127.0.0.1 and client certificates signed by it, also written as PEM
// files (for mosquitto_pub).
type testPKI struct {
	ca       *x509.Certificate
	caKey    *ecdsa.PrivateKey
	pool     *x509.CertPool
	server   tls.Certificate
	dir      string
	caFile   string
	certFile string
	keyFile  string
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cim test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{ca: ca, caKey: caKey, pool: x509.NewCertPool(), dir: t.TempDir()}
	p.pool.AddCert(ca)
	p.server = p.issue(t, "cim server", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, x509.ExtKeyUsageServerAuth)
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", ca.Raw)
	p.certFile = p.write(t, "server.pem", "CERTIFICATE", p.server.Certificate[0])
	kb, _ := x509.MarshalECPrivateKey(p.server.PrivateKey.(*ecdsa.PrivateKey))
	p.keyFile = p.write(t, "server.key", "EC PRIVATE KEY", kb)
	return p
}

var serial int64 = 10

func (p *testPKI) issue(t testing.TB, cn string, dns []string, ips []net.IP, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: dns, IPAddresses: ips, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func (p *testPKI) write(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// serverConfig is the broker's TLS config; clientAuth as for mTLS.
func (p *testPKI) serverConfig(clientAuth tls.ClientAuthType) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool, ClientAuth: clientAuth, MinVersion: tls.VersionTLS12}
}

func (p *testPKI) clientConfig(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", Certificates: certs}
}

// serveTLS runs a TLS listener bridged into s on an ephemeral port.
func serveTLS(t testing.TB, s *Server, cfg *tls.Config, identityAsUser bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ServeListener(tls.NewListener(ln, cfg), ProtocolMQTT, "tls", identityAsUser) }()
	t.Cleanup(func() {
		ln.Close()
		if err := <-done; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})
	return ln.Addr().String()
}

// dialV5TLS connects a Paho v5 client over TLS.
func dialV5TLS(t testing.TB, addr string, cfg *tls.Config, id string, opts ...v5Opt) (*v5Client, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: e2eWait}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	return startV5(t, conn, id, opts...)
}

// startV5 runs the Paho v5 CONNECT on conn.
func startV5(t testing.TB, conn net.Conn, id string, opts ...v5Opt) (*v5Client, error) {
	c := &v5Client{t: t, conn: conn, msgs: make(chan *paho.Publish, 1000), disc: make(chan *paho.Disconnect, 1)}
	c.cli = paho.NewClient(paho.ClientConfig{
		// Paho writes a packet in several Writes, from more than one
		// goroutine (its pinger sends a PINGREQ at once): over a tls.Conn
		// or a WebSocket those interleave unless the conn is locked.
		Conn: pahopackets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.disc <- d:
			default:
			}
		},
		PacketTimeout: e2eWait,
	})
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
	for _, o := range opts {
		o(cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	var err error
	c.ack, err = c.cli.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return c, err
	}
	t.Cleanup(c.disconnect)
	return c, nil
}

func clientInfo(t testing.TB, s *Server, id string) ClientInfo {
	t.Helper()
	for _, ci := range s.Clients() {
		if ci.ID == id {
			return ci
		}
	}
	t.Fatalf("no client %q in %+v", id, s.Clients())
	return ClientInfo{}
}

func TestTLSServerOnly(t *testing.T) {
	pki := newTestPKI(t)
	s := startServer(t, Options{})
	addr := serveTLS(t, s, pki.serverConfig(tls.NoClientCert), false)

	sub, err := dialV5TLS(t, addr, pki.clientConfig(), "tls-sub")
	if err != nil {
		t.Fatal(err)
	}
	sub.subscribe("tls/#", 1)
	plain := connectV5(t, s, "tcp-pub")
	plain.publish("tls/a", "over tcp", 1, false)
	sub.expect("tls/a", "over tcp")
	sub.publish("tls/b", "over tls", 0, false)
	sub.expect("tls/b", "over tls")

	ci := clientInfo(t, s, "tls-sub")
	local := sub.conn.LocalAddr().String()
	if ci.Remote != local || ci.Transport != "tls" || ci.Identity != "" {
		t.Fatalf("client info %+v, want remote %s over tls without identity", ci, local)
	}
	if n := countOf(s, ProtocolMQTT, "tls"); n != 1 {
		t.Fatalf("tls connections %d, want 1", n)
	}

	// A large payload crosses the pumps intact, both ways.
	big := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640 KB
	sub.cli.Publish(context.Background(), &paho.Publish{Topic: "tls/big", QoS: 1, Payload: big})
	got := sub.next()
	if !bytes.Equal(got.Payload, big) {
		t.Fatalf("big payload: %d bytes back, want %d", len(got.Payload), len(big))
	}

	// A kick reaches the client as DISCONNECT 0x98 through the bridge's half-close.
	if err := s.Kick(ProtocolMQTT, "tls-sub"); err != nil {
		t.Fatal(err)
	}
	if d := sub.serverDisconnect(); d.ReasonCode != packets.ErrAdministrativeAction.Code {
		t.Fatalf("DISCONNECT %#x, want 0x98", d.ReasonCode)
	}
	waitE2E(t, "tls connection closed", func() bool { return countOf(s, ProtocolMQTT, "tls") == 0 })

	// A client that does not trust the CA never gets in; one that speaks
	// plain MQTT to the TLS port neither.
	if _, err := dialV5TLS(t, addr, &tls.Config{ServerName: "127.0.0.1"}, "untrusting"); err == nil {
		t.Fatal("client without the CA connected")
	}
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write([]byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 0}) // plain CONNECT
	_ = raw.SetReadDeadline(time.Now().Add(e2eWait))
	buf := make([]byte, 64)
	for {
		if _, err := raw.Read(buf); err != nil {
			break // closed after a failed handshake
		}
	}
	waitE2E(t, "handshake error counted", func() bool { return s.Stats().TLSHandshakeErrors >= 2 })
}

func countOf(s *Server, proto, transport string) int64 {
	for _, c := range s.ConnectionCounts() {
		if c.Protocol == proto && c.Transport == transport {
			return c.Open
		}
	}
	return -1
}

func TestTLSMutual(t *testing.T) {
	pki := newTestPKI(t)
	pw := writePasswordFile(t, map[string]string{"alice": "secret"})
	s := startServer(t, Options{PasswordFile: pw,
		ACL: []ACLRule{{User: "device-1", Topic: "dev/%u/#", Access: "readwrite"}, {User: "alice", Topic: "#", Access: "readwrite"}}})
	required := serveTLS(t, s, pki.serverConfig(tls.RequireAndVerifyClientCert), true)
	optional := serveTLS(t, s, pki.serverConfig(tls.VerifyClientCertIfGiven), true)
	dev := pki.issue(t, "device-1", nil, nil, x509.ExtKeyUsageClientAuth)

	// Required: no certificate, no connection.
	if c, err := dialV5TLS(t, required, pki.clientConfig(), "nocert"); err == nil {
		t.Fatalf("connected without a client certificate: %+v", c.ack)
	}
	// The certificate is the credential: no password, user name = CN.
	c, err := dialV5TLS(t, required, pki.clientConfig(dev), "dev1")
	if err != nil {
		t.Fatalf("mTLS connect: %v", err)
	}
	ci := clientInfo(t, s, "dev1")
	if ci.User != "device-1" || ci.Identity != "device-1" {
		t.Fatalf("client info %+v, want user and identity device-1", ci)
	}
	c.subscribe("dev/device-1/cmd", 1) // the ACL applies to the certificate's user
	c.subscribeOpts(paho.SubscribeOptions{Topic: "dev/other/cmd", QoS: 1}, 0, packets.ErrNotAuthorized.Code)

	// A certificate from another CA is refused at the handshake.
	other := newTestPKI(t)
	if _, err := dialV5TLS(t, required, pki.clientConfig(other.issue(t, "device-1", nil, nil, x509.ExtKeyUsageClientAuth)), "forged"); err == nil {
		t.Fatal("a certificate of another CA was accepted")
	}
	// Optional: without a certificate the password file applies.
	if _, err := dialV5TLS(t, optional, pki.clientConfig(), "anon"); err == nil {
		t.Fatal("no certificate and no password, yet connected")
	}
	a, err := dialV5TLS(t, optional, pki.clientConfig(), "alice-c", credentials("alice", "secret"))
	if err != nil {
		t.Fatalf("password login over optional mTLS: %v", err)
	}
	a.publish("dev/device-1/cmd", "reboot", 1, false)
	c.expect("dev/device-1/cmd", "reboot")
	if _, err := dialV5TLS(t, optional, pki.clientConfig(dev), "dev1b"); err != nil {
		t.Fatalf("certificate login over optional mTLS: %v", err)
	}
}

func TestTLSPahoV3(t *testing.T) {
	pki := newTestPKI(t)
	s := startServer(t, Options{})
	addr := serveTLS(t, s, pki.serverConfig(tls.NoClientCert), false)
	conn, err := tls.Dial("tcp", addr, pki.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	sub := connectV3TLS(t, addr, pki.clientConfig(), "v3-tls")
	if sub.subscribe("v3/tls", 1) != 1 {
		t.Fatal("SUBACK")
	}
	connectV5(t, s, "v5-pub").publish("v3/tls", "hello", 1, false)
	sub.expect("v3/tls", "hello")
}

func TestTLSMosquittoPub(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("mosquitto_pub not installed (apt-get install mosquitto-clients)")
	}
	pki := newTestPKI(t)
	s := startServer(t, Options{})
	addr := serveTLS(t, s, pki.serverConfig(tls.NoClientCert), false)
	sub := connectV5(t, s, "plain-sub")
	sub.subscribe("mosq/#", 1)
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command(bin, "-h", host, "-p", port, "--cafile", pki.caFile, "-t", "mosq/tls", "-m", "from mosquitto", "-q", "1", "-V", "mqttv5").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
	sub.expect("mosq/tls", "from mosquitto")

	// With mTLS, mosquitto_pub's certificate logs it in as its CN.
	mtls := serveTLS(t, s, pki.serverConfig(tls.RequireAndVerifyClientCert), true)
	cl := pki.issue(t, "mosq-device", nil, nil, x509.ExtKeyUsageClientAuth)
	certFile := pki.write(t, "client.pem", "CERTIFICATE", cl.Certificate[0])
	kb, _ := x509.MarshalECPrivateKey(cl.PrivateKey.(*ecdsa.PrivateKey))
	keyFile := pki.write(t, "client.key", "EC PRIVATE KEY", kb)
	_, port, _ = net.SplitHostPort(mtls)
	out, err = exec.Command(bin, "-h", host, "-p", port, "--cafile", pki.caFile, "--cert", certFile, "--key", keyFile,
		"-t", "mosq/mtls", "-m", "with a certificate", "-q", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub with certificate: %v: %s", err, out)
	}
	m := sub.expect("mosq/mtls", "with a certificate")
	_ = m
	out, err = exec.Command(bin, "-h", host, "-p", port, "--cafile", pki.caFile, "-t", "mosq/mtls", "-m", "x").CombinedOutput()
	if err == nil {
		t.Fatalf("mosquitto_pub without a certificate succeeded on a required-mTLS port: %s", out)
	}
}

// The byte stream between pumps keeps packet boundaries nowhere: a client
// writing one byte at a time is served like any other.
func TestBridgeByteAtATime(t *testing.T) {
	pki := newTestPKI(t)
	s := startServer(t, Options{})
	addr := serveTLS(t, s, pki.serverConfig(tls.NoClientCert), false)
	conn, err := tls.Dial("tcp", addr, pki.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	connect := []byte{0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 4, 'b', 'y', 't', 'e'}
	for _, b := range connect {
		if _, err := conn.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(e2eWait))
	ack := make([]byte, 4)
	if _, err := ioReadFull(conn, ack); err != nil || !bytes.Equal(ack, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK % x, %v", ack, err)
	}
	waitE2E(t, "client listed", func() bool {
		for _, ci := range s.Clients() {
			if ci.ID == "byte" && ci.Connected {
				return true
			}
		}
		return false
	})
	conn.Close() // no DISCONNECT: the session ends as a lost connection
	waitE2E(t, "client gone", func() bool { return s.Stats().ClientsConnected == 0 && countOf(s, ProtocolMQTT, "tls") == 0 })
}

func ioReadFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestBridgeRefusals(t *testing.T) {
	s := startServer(t, Options{})
	a, b := net.Pipe()
	defer b.Close()
	if err := s.Bridge(a, BridgeInfo{Protocol: "smtp"}); err == nil || !strings.Contains(err.Error(), "unknown protocol") {
		t.Fatalf("unknown protocol: %v", err)
	}
	stopped, err := New(Options{MQTTAddr: "127.0.0.1:0", Logger: startServerLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c, d := net.Pipe()
	defer d.Close()
	if err := stopped.Bridge(c, BridgeInfo{}); err == nil {
		t.Fatal("Bridge before Start succeeded")
	}
}

func TestCertIdentity(t *testing.T) {
	pki := newTestPKI(t)
	cases := []struct {
		name string
		cert tls.Certificate
		want string
	}{
		{"cn", pki.issue(t, "cn-user", []string{"dns.example"}, nil, x509.ExtKeyUsageClientAuth), "cn-user"},
		{"dns", pki.issue(t, "", []string{"dns.example"}, nil, x509.ExtKeyUsageClientAuth), "dns.example"},
	}
	for _, c := range cases {
		cs := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c.cert.Leaf}}}
		if got := CertIdentity(cs); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	if got := CertIdentity(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{cases[0].cert.Leaf}}); got != "" {
		t.Errorf("unverified certificate gave identity %q", got)
	}
	if CertIdentity(nil) != "" {
		t.Error("nil state gave an identity")
	}
}

// connectV3TLS connects a Paho v3.1.1 client over TLS (its ssl:// scheme).
func connectV3TLS(t testing.TB, addr string, cfg *tls.Config, id string) *v3Client {
	t.Helper()
	c := &v3Client{t: t, msgs: make(chan mqtt3.Message, 1000), lost: make(chan error, 1)}
	o := mqtt3.NewClientOptions().AddBroker("ssl://" + addr).SetTLSConfig(cfg).SetClientID(id).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(e2eWait).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { c.msgs <- m }).
		SetConnectionLostHandler(func(_ mqtt3.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		})
	c.cli = mqtt3.NewClient(o)
	tok := c.cli.Connect()
	if !tok.WaitTimeout(e2eWait) || tok.Error() != nil {
		t.Fatalf("v3 TLS connect: %v", tok.Error())
	}
	t.Cleanup(c.disconnect)
	return c
}
