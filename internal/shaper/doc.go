// Package shaper emulates a slower network link in user space, for
// benchmarks on one machine whose kernel offers no traffic control: a
// loopback TCP proxy whose every direction sends at most Rate bytes per
// second and delivers each byte Delay after it has been sent.
//
// A value moves through it like this: Listen opens a proxy in front of a
// target address; for every connection accepted, each direction reads
// chunks as they arrive, stamps them with their arrival time, gives each a
// delivery time from the link's schedule (the link is busy sending the
// chunks before it, then this one at Rate, then the chunk travels for
// Delay) and writes them, in order, once that time has come. The schedule
// is a pure function of arrival times and sizes; the time is read and
// waited on through a Clock, which tests replace with a fake one.
//
// Errors: ParseLink returns errors matching ErrLink; a proxy's
// connections end when either side closes or fails, and Close ends them
// all.
package shaper
