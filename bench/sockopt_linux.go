package bench

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPort lets a socket bound to a source address (--workers binds
// 127.0.0.2, ...) pick its port at connect time rather than at bind time.
// Without it every bind takes a port no other socket on that address holds,
// TIME_WAIT ones included, so back-to-back runs of 19,000 connections
// exhaust the range and connects crawl; with it the kernel picks per
// destination, as for an unbound connect.
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
