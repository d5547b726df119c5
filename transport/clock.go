package transport

import "time"

// Clock is the time a server reads and waits on: leases are checked
// against Now, and the idle-session reaper wakes on After and compares
// Now with each session's last use. A server uses the system clock unless
// given WithClock; tests give it a fake one that they move by hand.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real time, the default clock of servers and seed
// nodes.
var SystemClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
