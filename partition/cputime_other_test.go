//go:build !unix

package partition_test

import "time"

// cpuTime is the processor time this process has used; unknown here.
func cpuTime() time.Duration { return 0 }
