package bench

import "context"

// Preparer may be implemented by a Proto whose clients need something in
// place on the server before they connect: the native protocol registers
// its accounts and joins its groups. Each runner calls Prepare once, from
// its Setup goroutine, before its first Dial, and dials with the Proto it
// returns (which carries what was prepared, such as the ids the server gave
// the accounts). Prepare blocks until it is done or ctx is; p is read only
// and not kept. An error means none of the runner's clients can connect:
// it should wrap ErrRegister or another sentinel of errors.go, and is
// counted in the report.
type Preparer interface {
	Prepare(ctx context.Context, p *Preparation) (Proto, error)
}

// Finisher may be implemented by a Proto that Prepare returned. The runner
// calls Finish once, from Close, after every client has closed, to undo
// what Prepare did that should not outlive the run (native: group
// memberships of a clean run). It blocks until done or ctx is done; an
// error is counted in the report.
type Finisher interface {
	Finish(ctx context.Context) error
}

// Preparation is what a runner tells a Preparer about its share of a run.
type Preparation struct {
	Options *Options
	Clients []PreparedClient
}

// PreparedClient is one client of a Preparation.
type PreparedClient struct {
	Name string // its client id
	// Topic is the topic pattern it publishes to (%i, %c and %u expanded,
	// %rand not), Filter the filter it subscribes to; "" for none.
	Topic, Filter string
}
