package cluster

import (
	"net"
	"slices"
	"testing"
)

// A seed list naming every node (the same on every node) drops only this
// node's own address: nodes on one machine may share the port on other
// loopback addresses.
func TestSeedsSkipOnlySelf(t *testing.T) {
	join := []string{"127.0.0.2:7946", "127.0.0.3:7946", "localhost:7946", "cim-0.cim:7946", "10.9.9.9:7946", "127.0.0.2:7999"}
	for _, c := range []struct {
		name string
		c    *Cluster
		want []string
	}{
		{"bound to 127.0.0.2", &Cluster{bindIP: net.ParseIP("127.0.0.2"), boundPort: 7946, advertiseIP: "127.0.0.2", advertPort: 7946},
			[]string{"127.0.0.3:7946", "localhost:7946", "cim-0.cim:7946", "10.9.9.9:7946", "127.0.0.2:7999"}},
		{"bound to every interface", &Cluster{boundPort: 7946, advertiseIP: "10.9.9.9", advertPort: 7946},
			[]string{"cim-0.cim:7946", "127.0.0.2:7999"}},
		{"advertised elsewhere", &Cluster{bindIP: net.ParseIP("127.0.0.3"), boundPort: 7946, advertiseIP: "127.0.0.2", advertPort: 7999},
			[]string{"127.0.0.2:7946", "localhost:7946", "cim-0.cim:7946", "10.9.9.9:7946"}},
	} {
		c.c.opts.Join = join
		if got := c.c.seeds(); !slices.Equal(got, c.want) {
			t.Errorf("%s: seeds %v, want %v", c.name, got, c.want)
		}
	}
}
