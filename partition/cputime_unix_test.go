//go:build unix

package partition_test

import (
	"syscall"
	"time"
)

// cpuTime is the processor time this process has used, all threads
// together, or 0 where it is not known.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
