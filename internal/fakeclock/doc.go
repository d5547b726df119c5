// Package fakeclock is a clock that tests move by hand, for code that
// reads the time and waits on it through an injected clock (such as
// transport.Clock), so that a test of idle reaping or expiry neither
// sleeps nor polls the real clock.
//
// Time stands still until Advance moves it; Advance fires, at once and in
// the caller's goroutine, every channel from After whose time has come.
// BlockUntil waits until the code under test waits on the clock, which is
// how a test knows that a timer-driven loop has finished its pass.
package fakeclock
