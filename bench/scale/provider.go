package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rookery-ml/rookery/transport"
)

// limiter holds a provider to its share of a core.
type limiter struct {
	kind string // "cgroup v2", "cgroup v1" or "affinity"
	root string // the cgroup hierarchy providers' cgroups are made in
	why  string // why the fallback was taken
}

// cfsPeriod is the CFS bandwidth period of the providers' quotas, in µs
// (-cfs-period). A provider of share c runs at most c·period in every
// period: the shorter the period, the closer it comes to a machine that
// is c times slower, instead of one that runs at full speed and then
// stops for the rest of the period.
var cfsPeriod = 100000

func newLimiter() *limiter {
	if os.Geteuid() != 0 {
		return &limiter{kind: "affinity", why: "not running as root"}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		root := "/sys/fs/cgroup"
		ctl, _ := os.ReadFile(filepath.Join(root, "cgroup.subtree_control"))
		if !strings.Contains(string(ctl), "cpu") {
			// Enable the cpu controller for the children; this fails where
			// processes live in the root's own cgroup of a nested tree.
			if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+cpu"), 0); err != nil {
				return &limiter{kind: "affinity", why: "cgroup v2 without the cpu controller: " + err.Error()}
			}
		}
		return &limiter{kind: "cgroup v2", root: root}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"); err == nil {
		return &limiter{kind: "cgroup v1", root: "/sys/fs/cgroup/cpu"}
	}
	return &limiter{kind: "affinity", why: "no cgroup cpu controller mounted"}
}

func (l *limiter) describe() string {
	if l.kind == "affinity" {
		return fmt.Sprintf("GOMAXPROCS=1 and one CPU per provider (%s): a fraction of a core cannot be emulated, every provider gets a whole CPU", l.why)
	}
	return fmt.Sprintf("%s cpu quota per provider, under %s", l.kind, l.root)
}

// provider is a `rookery provider` child process.
type provider struct {
	cmd    *osexec.Cmd
	cgroup string // removed by stop; "" when none
	addr   string
	share  float64
	procs  int
	gflops float64
	done   chan struct{} // closed once the process has been waited for
}

// startProvider starts provider i held to share of a core and waits
// until it listens. A provider returned with an error must still be
// stopped.
func startProvider(ctx context.Context, bin, dir string, i int, share float64, l *limiter, extra ...string) (*provider, error) {
	p := &provider{share: share, procs: max(1, int(math.Ceil(share))), done: make(chan struct{})}
	args := []string{"provider", "--listen", "127.0.0.1:0", "--name", fmt.Sprintf("scale-%d", i),
		"--max-memory", "4GiB", "--bench", "1s", "--gpu", "off", "--key", filepath.Join(dir, fmt.Sprintf("provider-%d.key", i))}
	args = append(args, extra...)
	var argv []string
	switch l.kind {
	case "cgroup v1", "cgroup v2":
		p.cgroup = filepath.Join(l.root, fmt.Sprintf("rookery-scale-%d-%d", os.Getpid(), i))
		if err := os.Mkdir(p.cgroup, 0o755); err != nil {
			p.cgroup = ""
			return nil, fmt.Errorf("provider %d: %w", i, err)
		}
		quota := int(share * float64(cfsPeriod))
		var err error
		if l.kind == "cgroup v2" {
			err = os.WriteFile(filepath.Join(p.cgroup, "cpu.max"), []byte(fmt.Sprintf("%d %d", quota, cfsPeriod)), 0)
		} else {
			err = errors.Join(
				os.WriteFile(filepath.Join(p.cgroup, "cpu.cfs_period_us"), []byte(strconv.Itoa(cfsPeriod)), 0),
				os.WriteFile(filepath.Join(p.cgroup, "cpu.cfs_quota_us"), []byte(strconv.Itoa(quota)), 0))
		}
		if err != nil {
			return p, fmt.Errorf("provider %d: setting its cpu quota: %w", i, err)
		}
		// The shell joins the cgroup and then becomes the provider, so that
		// the provider never runs outside it.
		argv = append([]string{"/bin/sh", "-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(p.cgroup, "cgroup.procs"), bin}, args...)
	default:
		p.procs = 1
		argv = append([]string{bin}, args...)
		if ts, err := osexec.LookPath("taskset"); err == nil {
			argv = append([]string{ts, "-c", strconv.Itoa(i % runtime.NumCPU())}, argv...)
		}
	}
	p.cmd = osexec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(p.procs))
	// The providers die with this process even when it is killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("provider-%d.log", i)))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	p.cmd.Stderr = logf
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return p, fmt.Errorf("provider %d: %w", i, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	if l.kind == "affinity" && !strings.Contains(argv[0], "taskset") {
		var set unix.CPUSet
		set.Set(i % runtime.NumCPU())
		if err := unix.SchedSetaffinity(p.cmd.Process.Pid, &set); err != nil {
			return p, fmt.Errorf("provider %d: sched_setaffinity: %w", i, err)
		}
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				select {
				case addr <- a:
				default:
				}
			}
		}
	}()
	wait := time.NewTimer(60 * time.Second)
	defer wait.Stop()
	select {
	case p.addr = <-addr:
	case <-p.done:
		return p, fmt.Errorf("provider %d exited before listening; see its log %s", i, logf.Name())
	case <-wait.C:
		return p, fmt.Errorf("provider %d did not listen within 60s", i)
	case <-ctx.Done():
		return p, ctx.Err()
	}
	c, err := transport.Connect(ctx, p.addr)
	if err != nil {
		return p, fmt.Errorf("provider %d: %w", i, err)
	}
	p.gflops = c.Capabilities().GetGflops()
	c.Close()
	return p, nil
}

// stop ends the provider (SIGTERM, then SIGKILL after 5 s), waits for it
// and removes its cgroup.
func (p *provider) stop() error {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(5 * time.Second)
		select {
		case <-p.done:
		case <-t.C:
			p.cmd.Process.Kill()
			<-p.done
		}
		t.Stop()
	}
	if p.cgroup == "" {
		return nil
	}
	// A cgroup can be removed once its last process has gone, which the
	// kernel notes shortly after the process is reaped.
	var err error
	for range 50 {
		if err = syscall.Rmdir(p.cgroup); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("removing cgroup %s: %w", p.cgroup, err)
}

// cpu returns the CPU time the provider process has used, user and
// system, from /proc (clock ticks; 0 where it cannot be read).
func (p *provider) cpu() time.Duration {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// fields 14 and 15 (utime, stime) count from after its ")".
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / clockTicks
}

// clockTicks is the kernel's USER_HZ, the unit of /proc's CPU times: 100
// on every Linux architecture Go supports.
const clockTicks = 100

// throttled returns how long the kernel has held the provider back for
// having used its quota (cgroups only; 0 otherwise).
func (p *provider) throttled() time.Duration {
	if p.cgroup == "" {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(p.cgroup, "cpu.stat"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "throttled_time": // v1, ns
			return time.Duration(v)
		case "throttled_usec": // v2
			return time.Duration(v) * time.Microsecond
		}
	}
	return 0
}
