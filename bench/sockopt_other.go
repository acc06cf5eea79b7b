//go:build !linux

package bench

import "syscall"

// bindNoPort is Linux-only (IP_BIND_ADDRESS_NO_PORT); elsewhere bound
// sockets pick their port at bind time.
func bindNoPort(_, _ string, _ syscall.RawConn) error { return nil }
