package broker

// offLoop runs work on a goroutine of its own and then, back on t's event
// loop, then with work's result: the way a loop waits for something slow
// (a bcrypt check, a cluster ownership hand-off) without blocking. While it
// waits the transport reads no input (gnet keeps buffering it) and is read
// again once then has run. If the connection closes meanwhile, then is not
// called. Loop only; then runs on the loop.
func offLoop[T any](t *transport, work func() T, then func(T)) {
	prev := t.state
	t.state = stateWaiting
	go func() {
		v := work()
		_ = t.loop.el.Execute(nilCtx, runFunc(func() {
			if t.state != stateWaiting {
				return // closed meanwhile
			}
			t.state = prev
			then(v)
			t.flush()
			_ = t.gc.Wake(nil) // read what arrived while waiting
		}))
	}()
}
