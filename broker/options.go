package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/cimgo/cim/storage"
)

// Options configure a Server. The zero value of a field means its default.
type Options struct {
	// MQTTAddr is the MQTT TCP listener, host:port. Default ":1883".
	MQTTAddr string `yaml:"mqtt_addr"`
	// NativeAddr, if set, is the native protocol's TCP listener, host:port,
	// on the same event loops as MQTT. Default "": none (cim server sets
	// ":9000").
	NativeAddr string `yaml:"native_addr"`
	// TokenKey signs native login tokens (HMAC-SHA256; cim server keeps it
	// in the data dir). Default: a random key, so tokens last as long as
	// the process.
	TokenKey []byte `yaml:"-"`
	// TokenTTL is how long a native login token is valid. Default 7 days.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// NodeName names this node in stored sessions and to a cluster.
	// Default: the host name.
	NodeName string `yaml:"node_name"`
	// Loops is the number of gnet event loops. Default: one per core.
	Loops int `yaml:"loops"`

	// ConnectTimeout closes a socket that sends no CONNECT in time. Default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxKeepalive caps the keepalive a client may ask for, in seconds. An
	// MQTT 5 client asking for more, or for none (0), is told this value
	// (Server Keep Alive); an MQTT 3 client, which cannot be told, is
	// refused (CONNACK 0x02, as Mosquitto does). 0 means the default, 65535;
	// negative means no maximum (a client asking for 0 then has no idle
	// deadline).
	MaxKeepalive int `yaml:"max_keepalive"`
	// MaxPacketSize bounds an inbound packet, in bytes. Default 1 MiB.
	MaxPacketSize uint32 `yaml:"max_packet_size"`
	// ReceiveMaximum bounds the client's unacknowledged QoS 1/2 publishes to
	// us (v5 Receive Maximum). Default 1024.
	ReceiveMaximum uint16 `yaml:"receive_maximum"`
	// MaxInflight bounds our unacknowledged QoS 1/2 publishes to a client,
	// further lowered by the client's Receive Maximum. Default 1024.
	MaxInflight uint16 `yaml:"max_inflight"`
	// TopicAliasMaximum is how many inbound topic aliases a v5 client may
	// use. Default 64.
	TopicAliasMaximum uint16 `yaml:"topic_alias_maximum"`
	// PacketTimeout closes a connection that started a packet and did not
	// finish sending it in this time, whatever its keepalive. Default 30s.
	PacketTimeout time.Duration `yaml:"packet_timeout"`
	// MaxPartialBytes bounds the memory held by unfinished inbound packets
	// over all connections; past it, the connections holding the most are
	// closed (counted). Default 256 MiB.
	MaxPartialBytes int64 `yaml:"max_partial_bytes"`
	// MaxOutboundBytes bounds bytes waiting to be written to one connection.
	// Past it QoS 0 deliveries are dropped (counted) and QoS 1/2 stay queued
	// in the session. Default 1 MiB.
	MaxOutboundBytes int `yaml:"max_outbound_bytes"`
	// SlowConsumerTimeout disconnects a client whose outbound data stays
	// over MaxOutboundBytes this long. Default 30s.
	SlowConsumerTimeout time.Duration `yaml:"slow_consumer_timeout"`
	// MaxQueued bounds the QoS 1/2 messages queued for one session; past it
	// the oldest is dropped (counted). Default 10000.
	MaxQueued int `yaml:"max_queued"`
	// MaxSessionExpiry caps the v5 session expiry interval, in seconds.
	// Default 0xFFFFFFFF (no cap).
	MaxSessionExpiry uint32 `yaml:"max_session_expiry"`
	// SysInterval is how often $SYS/broker/... topics are published.
	// Default 10s; negative disables them.
	SysInterval time.Duration `yaml:"sys_interval"`

	// PasswordFile, if set, requires every client to log in with a user
	// name and password listed in it (lines "user:bcrypt-hash").
	PasswordFile string `yaml:"password_file"`
	// ACL rules, first match wins. With no rules everything is allowed.
	ACL []ACLRule `yaml:"acl"`
	// ACLDefault is the access when rules exist and none matches: "allow"
	// or "deny". Default "deny".
	ACLDefault string `yaml:"acl_default"`
	// DenyFilters refuse a subscription to a filter equal to or broader
	// than one of them ("not authorized"): with "#" nobody subscribes to
	// "#" (but "a/#" is fine); with "a/#" nobody subscribes to "a/#", "+/#"
	// or "#".
	DenyFilters []string `yaml:"deny_filters"`
	// Auth, if set, replaces PasswordFile, ACL, ACLDefault and DenyFilters
	// (NewAuth builds one with JWT keys too; SetAuth swaps it at run time).
	Auth *Auth `yaml:"-"`

	// Owner, if set, is asked before a login attaches a session here (a
	// cluster's session ownership; owner.go). Default nil: sessions are local.
	Owner Owner `yaml:"-"`
	// Interest, if set, hears filters go live and dead on this node
	// (interest.go). Forwarder, if set, carries messages published here to
	// other nodes (forward.go).
	Interest  Interest  `yaml:"-"`
	Forwarder Forwarder `yaml:"-"`

	// Now is the clock. Default time.Now; tests set it.
	Now func() time.Time `yaml:"-"`

	// Store, if set, makes sessions, queued messages and retained messages
	// durable, and QoS 1/2 acknowledgements wait for it (persist.go). The
	// caller opens and closes it. Default nil: memory only.
	Store *storage.DB `yaml:"-"`

	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger `yaml:"-"`
}

// EnsureDefaults fills unset fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.MQTTAddr == "" {
		o.MQTTAddr = ":1883"
	}
	if o.Loops <= 0 {
		o.Loops = runtime.NumCPU()
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.MaxKeepalive == 0 {
		o.MaxKeepalive = 65535
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = 7 * 24 * time.Hour
	}
	if o.NodeName == "" {
		o.NodeName, _ = os.Hostname()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxPacketSize == 0 {
		o.MaxPacketSize = 1 << 20
	}
	if o.ReceiveMaximum == 0 {
		o.ReceiveMaximum = 1024
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = 1024
	}
	if o.TopicAliasMaximum == 0 {
		o.TopicAliasMaximum = 64
	}
	if o.PacketTimeout == 0 {
		o.PacketTimeout = 30 * time.Second
	}
	if o.MaxPartialBytes == 0 {
		o.MaxPartialBytes = 256 << 20
	}
	if o.MaxOutboundBytes == 0 {
		o.MaxOutboundBytes = 1 << 20
	}
	if o.SlowConsumerTimeout == 0 {
		o.SlowConsumerTimeout = 30 * time.Second
	}
	if o.MaxQueued == 0 {
		o.MaxQueued = 10000
	}
	if o.MaxSessionExpiry == 0 {
		o.MaxSessionExpiry = 0xFFFFFFFF
	}
	if o.SysInterval == 0 {
		o.SysInterval = 10 * time.Second
	}
	if o.ACLDefault == "" {
		o.ACLDefault = "deny"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// ErrOptions is wrapped by every Validate error.
var ErrOptions = errors.New("broker: invalid options")

// Validate reports the first bad field.
func (o *Options) Validate() error {
	bad := func(field, why string) error { return fmt.Errorf("%w: %s: %s", ErrOptions, field, why) }
	switch {
	case o.MaxKeepalive > 65535:
		return bad("MaxKeepalive", "above 65535")
	case o.ConnectTimeout < 0:
		return bad("ConnectTimeout", "negative")
	case o.MaxPacketSize < 16:
		return bad("MaxPacketSize", "below 16 bytes")
	case o.PacketTimeout < time.Second:
		return bad("PacketTimeout", "below one second")
	case o.MaxPartialBytes < int64(o.MaxPacketSize):
		return bad("MaxPartialBytes", "below MaxPacketSize")
	case o.MaxOutboundBytes < 0:
		return bad("MaxOutboundBytes", "negative")
	case o.MaxQueued < 0:
		return bad("MaxQueued", "negative")
	case o.ACLDefault != "allow" && o.ACLDefault != "deny":
		return bad("ACLDefault", fmt.Sprintf("%q is not allow or deny", o.ACLDefault))
	}
	for i, r := range o.ACL {
		if err := r.validate(); err != nil {
			return bad(fmt.Sprintf("ACL[%d]", i), err.Error())
		}
	}
	return nil
}
