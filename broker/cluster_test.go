package broker

import (
	"fmt"
	"testing"
)

// Three nodes: a publish on n1 reaches MQTT subscribers on n2 and n3,
// through wildcards, at QoS 0 and 1, once each; nothing goes to a node
// without a matching filter.
func TestClusterMQTTAcrossNodes(t *testing.T) {
	nodes := startTestCluster(t, 3, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	s2 := connectV5(t, n2.srv, "s2")
	s2.subscribe("a/+/c", 1)
	s3 := connectV5(t, n3.srv, "s3")
	s3.subscribe("a/#", 1)
	waitInterest(t, nodes, "n2", "a/+/c")
	waitInterest(t, nodes, "n3", "a/#")

	p := connectV5(t, n1.srv, "p")
	for i := range 20 {
		qos := byte(i % 2)
		if rc := p.publish("a/b/c", fmt.Sprint(i), qos, false); qos == 1 && rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
	}
	for i := range 20 {
		s2.expect("a/b/c", fmt.Sprint(i))
		s3.expect("a/b/c", fmt.Sprint(i))
	}
	p.publish("a/x", "only-n3", 1, false)
	s3.expect("a/x", "only-n3")
	s2.none()
	s3.none()
	// n2 forwarded nothing to n3 (n1's message is n1's to forward).
	if fwd := linkForwarded(n2, "n3"); fwd != 0 {
		t.Fatalf("n2 forwarded %d messages to n3", fwd)
	}
}

func linkForwarded(n *cnode, peer string) uint64 {
	l, _ := n.cn().linkUp(peer)
	return l.Forwarded
}
