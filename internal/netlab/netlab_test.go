package netlab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// helperEnv, when set, makes the test binary a helper program (its value
// names which) rather than a test run: the tests start it inside the
// lab's namespaces through Node.Command.
const helperEnv = "ROOKERY_NETLAB_HELPER"

// helperLife bounds how long a helper runs if nobody stops it.
const helperLife = 2 * time.Minute

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// report is what a helper prints as its last line, in JSON.
type report struct {
	Local    string   `json:"local,omitempty"`    // udp-probe: its local address
	Seen     []string `json:"seen,omitempty"`     // udp-probe: each reflector's view of its address
	OK       bool     `json:"ok"`                 // tcp-dial: connected
	Err      string   `json:"err,omitempty"`      // why not
	Received int      `json:"received,omitempty"` // udp-listen: packets; tcp-listen: connections
}

// helper runs one helper program and returns its exit status. Servers
// print "ready" once bound and run until their stdin closes (or
// helperLife passes), then print their report.
func helper(mode string, args []string) int {
	out := json.NewEncoder(os.Stdout)
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, mode+":", err)
		return 1
	}
	switch mode {
	case "udp-reflect": // addr...: answer each datagram with its source address
		for _, a := range args {
			c, err := net.ListenPacket("udp4", a)
			if err != nil {
				return fail(err)
			}
			go func() {
				buf := make([]byte, 1500)
				for {
					_, from, err := c.ReadFrom(buf)
					if err != nil {
						return
					}
					c.WriteTo([]byte(from.String()), from)
				}
			}()
		}
		fmt.Println("ready")
		waitStdin()
		out.Encode(report{})
	case "udp-probe": // reflector...: from one socket, ask each reflector what it sees
		c, err := net.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			return fail(err)
		}
		defer c.Close()
		r := report{Local: c.LocalAddr().String()}
		buf := make([]byte, 1500)
		for _, a := range args {
			to, err := net.ResolveUDPAddr("udp4", a)
			if err != nil {
				return fail(err)
			}
			seen := ""
			for try := 0; try < 5 && seen == ""; try++ {
				c.WriteTo([]byte("probe"), to)
				c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				n, from, err := c.ReadFrom(buf)
				if err == nil && from.String() == to.String() {
					seen = string(buf[:n])
				}
			}
			if seen == "" {
				return fail(fmt.Errorf("no answer from %s", a))
			}
			r.Seen = append(r.Seen, seen)
		}
		out.Encode(r)
	case "udp-listen": // addr: count datagrams
		c, err := net.ListenPacket("udp4", args[0])
		if err != nil {
			return fail(err)
		}
		var mu sync.Mutex
		n := 0
		go func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := c.ReadFrom(buf); err != nil {
					return
				}
				mu.Lock()
				n++
				mu.Unlock()
			}
		}()
		fmt.Println("ready")
		waitStdin()
		time.Sleep(200 * time.Millisecond) // let datagrams in flight arrive
		mu.Lock()
		out.Encode(report{Received: n})
		mu.Unlock()
	case "udp-hold": // reflector: open a mapping through the NAT, then count datagrams from anyone else
		c, err := net.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			return fail(err)
		}
		to, err := net.ResolveUDPAddr("udp4", args[0])
		if err != nil {
			return fail(err)
		}
		buf := make([]byte, 1500)
		seen := ""
		for try := 0; try < 5 && seen == ""; try++ {
			c.WriteTo([]byte("probe"), to)
			c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if n, from, err := c.ReadFrom(buf); err == nil && from.String() == to.String() {
				seen = string(buf[:n])
			}
		}
		if seen == "" {
			return fail(fmt.Errorf("no answer from %s", args[0]))
		}
		c.SetReadDeadline(time.Time{})
		var mu sync.Mutex
		n := 0
		go func() {
			for {
				_, from, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				if from.String() != to.String() {
					mu.Lock()
					n++
					mu.Unlock()
				}
			}
		}()
		fmt.Println("ready", seen, c.LocalAddr().(*net.UDPAddr).Port)
		waitStdin()
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		out.Encode(report{Received: n})
		mu.Unlock()
	case "udp-send": // addr [local]: send three datagrams
		local := &net.UDPAddr{}
		if len(args) > 1 {
			var err error
			if local, err = net.ResolveUDPAddr("udp4", args[1]); err != nil {
				return fail(err)
			}
		}
		c, err := net.DialUDP("udp4", local, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(args[0])))
		if err != nil {
			out.Encode(report{Err: err.Error()})
			return 0
		}
		for range 3 {
			c.Write([]byte("hello"))
		}
		c.Close()
		out.Encode(report{OK: true})
	case "tcp-listen": // addr: count connections accepted
		l, err := net.Listen("tcp4", args[0])
		if err != nil {
			return fail(err)
		}
		var mu sync.Mutex
		n := 0
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				n++
				mu.Unlock()
				c.Close()
			}
		}()
		fmt.Println("ready")
		waitStdin()
		mu.Lock()
		out.Encode(report{Received: n})
		mu.Unlock()
	case "tcp-dial": // addr: connect, or say why not
		c, err := net.DialTimeout("tcp4", args[0], 2*time.Second)
		if err != nil {
			out.Encode(report{Err: err.Error()})
			return 0
		}
		c.Close()
		out.Encode(report{OK: true})
	default:
		return fail(errors.New("unknown helper"))
	}
	return 0
}

// waitStdin returns when stdin closes or helperLife has passed.
func waitStdin() {
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(helperLife):
	}
}

// helperCmd is the test binary as helper mode, run in node n.
func helperCmd(ctx context.Context, t *testing.T, n *Node, mode string, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := n.Command(ctx, self, args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	return cmd
}

// runHelper runs a helper that ends by itself and returns its report.
func runHelper(ctx context.Context, t *testing.T, n *Node, mode string, args ...string) report {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := helperCmd(ctx, t, n, mode, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s in %s: %v: %s", mode, strings.Join(args, " "), n.NS, err, stderr.String())
	}
	return decode(t, string(out))
}

func decode(t *testing.T, out string) report {
	t.Helper()
	var r report
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("helper printed %q: %v", out, err)
	}
	return r
}

// server is a running helper that serves until stopped.
type server struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	ready string // what followed "ready" on its first line
	once  sync.Once
	rep   report
}

// startHelper starts a serving helper in n and waits, bounded, for it to
// be ready. The test's cleanup kills it if it still runs.
func startHelper(ctx context.Context, t *testing.T, n *Node, mode string, args ...string) *server {
	t.Helper()
	cmd := helperCmd(ctx, t, n, mode, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	t.Cleanup(func() { s.kill() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	select {
	case l, ok := <-s.lines:
		rest, isReady := strings.CutPrefix(l, "ready")
		if !ok || !isReady {
			t.Fatalf("%s in %s: got %q, want ready", mode, n.NS, l)
		}
		s.ready = strings.TrimSpace(rest)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s in %s: not ready after 10s", mode, n.NS)
	}
	return s
}

// kill ends the helper by its PID, if it still runs, and reaps it.
func (s *server) kill() {
	s.once.Do(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
}

// stop closes the helper's stdin and returns its report, waiting at most
// 10 s for it.
func (s *server) stop(t *testing.T) report {
	t.Helper()
	s.stdin.Close()
	select {
	case l, ok := <-s.lines:
		if !ok {
			t.Fatal("helper ended without a report")
		}
		s.rep = decode(t, l)
	case <-time.After(10 * time.Second):
		t.Fatal("helper did not report within 10s")
	}
	s.kill()
	return s.rep
}

// newLab builds a lab whose teardown the test's cleanup runs, and checks
// that it leaves no namespace behind.
func newLab(ctx context.Context, t *testing.T, prefix string) *Lab {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("ROOKERY_NETLAB_REQUIRED") != "" {
			t.Fatalf("ROOKERY_NETLAB_REQUIRED is set, but no network lab can be built here: %v", err)
		}
		t.Skipf("no network lab here: %v", err)
	}
	if err := Cleanup(prefix); err != nil {
		t.Fatal(err)
	}
	l, err := New(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if left, err := Namespaces(prefix); err != nil || len(left) > 0 {
			t.Errorf("after Close: namespaces %v left (%v)", left, err)
		}
	})
	return l
}

// port returns the port of host:port s.
func port(t *testing.T, s string) (netip.Addr, uint16) {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap.Addr(), ap.Port()
}

func TestLab(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := newLab(ctx, t, fmt.Sprintf("nl%d", os.Getpid()))
	cone, err := l.AddHome("cone", Cone)
	if err != nil {
		t.Fatal(err)
	}
	sym, err := l.AddHome("sym", Symmetric)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AddInternetAddr("198.18.0.2"); err != nil {
		t.Fatal(err)
	}
	inet := l.Internet()
	t.Logf("internet %s %s; cone home %s %s behind %s; symmetric home %s %s behind %s",
		inet.NS, inet.IP, cone.NS, cone.IP, cone.PublicIP, sym.NS, sym.IP, sym.PublicIP)
	for _, c := range []struct{ got, want string }{
		{inet.IP, "198.18.0.1"}, {inet.PublicIP, "198.18.0.1"},
		{cone.IP, "198.19.1.2"}, {cone.PublicIP, "198.18.0.10"},
		{sym.IP, "198.19.2.2"}, {sym.PublicIP, "198.18.0.11"},
	} {
		if c.got != c.want {
			t.Errorf("address %s, want %s", c.got, c.want)
		}
	}

	for _, n := range []*Node{inet, cone, cone.Router, sym, sym.Router} {
		out, err := run(ctx, "", "ip", "-n", n.NS, "-o", "link", "show", "lo")
		if err != nil || !strings.Contains(out, ",UP") {
			t.Errorf("%s: loopback not up: %q %v", n.NS, out, err)
		}
	}

	reflectors := []string{"198.18.0.1:3478", "198.18.0.1:3479", "198.18.0.2:3478"}
	refl := startHelper(ctx, t, inet, "udp-reflect", reflectors...)

	t.Run("cone keeps one public port", func(t *testing.T) {
		r := runHelper(ctx, t, cone, "udp-probe", reflectors...)
		_, local := port(t, r.Local)
		t.Logf("local port %d; seen as %v", local, r.Seen)
		for i, s := range r.Seen {
			ip, p := port(t, s)
			if ip.String() != cone.PublicIP || p != local {
				t.Errorf("%s sees %s, want %s:%d", reflectors[i], s, cone.PublicIP, local)
			}
		}
	})

	t.Run("symmetric maps each destination to another port", func(t *testing.T) {
		const tries = 5
		for try := range tries {
			r := runHelper(ctx, t, sym, "udp-probe", reflectors[:2]...)
			ip0, p0 := port(t, r.Seen[0])
			ip1, p1 := port(t, r.Seen[1])
			t.Logf("try %d: local %s; seen as %v", try, r.Local, r.Seen)
			if ip0.String() != sym.PublicIP || ip1.String() != sym.PublicIP {
				t.Fatalf("seen as %v, want %s", r.Seen, sym.PublicIP)
			}
			if p0 != p1 {
				return
			}
		}
		t.Errorf("the same public port for both destinations in %d tries", tries)
	})

	t.Run("a mapping admits only the endpoint it was made for", func(t *testing.T) {
		for _, h := range []*Node{cone, sym} {
			hold := startHelper(ctx, t, h, "udp-hold", reflectors[0])
			public, local, _ := strings.Cut(hold.ready, " ")
			t.Logf("%s: local port %s mapped to %s", h.Name, local, public)
			// From the reflector's address but another port, and from
			// other addresses: all unsolicited.
			for _, from := range []string{"198.18.0.1:0", "198.18.0.2:0", sym.Router.IP + ":0", cone.Router.IP + ":0"} {
				runHelper(ctx, t, inetOr(from, inet, cone, sym), "udp-send", public, from)
			}
			// The control: the router, on the LAN, reaches the socket.
			runHelper(ctx, t, h.Router, "udp-send", h.IP+":"+local)
			if r := hold.stop(t); r.Received != 3 {
				t.Errorf("%s received %d datagrams from others than its reflector, want 3 (the router's)", h.Name, r.Received)
			}
		}
	})
	refl.stop(t)

	t.Run("outbound TCP passes both NATs", func(t *testing.T) {
		srv := startHelper(ctx, t, inet, "tcp-listen", "198.18.0.1:7001")
		for _, h := range []*Node{cone, sym} {
			if r := runHelper(ctx, t, h, "tcp-dial", "198.18.0.1:7001"); !r.OK {
				t.Errorf("from %s: %s", h.Name, r.Err)
			}
		}
		if r := srv.stop(t); r.Received != 2 {
			t.Errorf("accepted %d, want 2", r.Received)
		}
	})

	t.Run("nothing unsolicited reaches a home", func(t *testing.T) {
		tcp := startHelper(ctx, t, cone, "tcp-listen", "0.0.0.0:7000")
		udp := startHelper(ctx, t, cone, "udp-listen", "0.0.0.0:7000")
		for _, c := range []struct {
			from *Node
			to   string
		}{
			{inet, cone.PublicIP + ":7000"}, // unsolicited, at the NAT
			{inet, cone.IP + ":7000"},       // a LAN address, from the internet
			{sym, cone.IP + ":7000"},        // a LAN address, from another home
			{sym, cone.PublicIP + ":7000"},  // unsolicited, from another home
		} {
			if r := runHelper(ctx, t, c.from, "tcp-dial", c.to); r.OK {
				t.Errorf("TCP from %s to %s connected", c.from.Name, c.to)
			} else {
				t.Logf("TCP from %s to %s: %s", c.from.Name, c.to, r.Err)
			}
			runHelper(ctx, t, c.from, "udp-send", c.to)
		}
		// The control: the router, on the LAN, reaches the host.
		if r := runHelper(ctx, t, cone.Router, "tcp-dial", cone.IP+":7000"); !r.OK {
			t.Errorf("TCP from the router to %s: %s", cone.IP, r.Err)
		}
		runHelper(ctx, t, cone.Router, "udp-send", cone.IP+":7000")
		if r := tcp.stop(t); r.Received != 1 {
			t.Errorf("home accepted %d TCP connections, want 1 (the router's)", r.Received)
		}
		if r := udp.stop(t); r.Received != 3 {
			t.Errorf("home received %d datagrams, want 3 (the router's)", r.Received)
		}
	})
}

func TestCleanupRemovesStaleLab(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("nc%d", os.Getpid())
	l := newLab(ctx, t, prefix)
	if _, err := l.AddHome("a", Cone); err != nil {
		t.Fatal(err)
	}
	// A second lab of the same prefix is refused while the first exists.
	if _, err := New(ctx, prefix); !errors.Is(err, ErrExists) {
		t.Errorf("New over a live lab: got %v, want ErrExists", err)
	}
	// The run "crashes": the lab is never closed; a later run cleans up.
	if got, err := Namespaces(prefix); err != nil || len(got) != 3 {
		t.Fatalf("before Cleanup: namespaces %v (%v), want 3", got, err)
	}
	if err := Cleanup(prefix); err != nil {
		t.Fatal(err)
	}
	if got, err := Namespaces(prefix); err != nil || len(got) != 0 {
		t.Errorf("after Cleanup: namespaces %v (%v), want none", got, err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close after Cleanup: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	for _, p := range []string{"", "has-dash", "UPPER", "muchtoolongprefix"} {
		if _, err := New(ctx, p); !errors.Is(err, ErrName) {
			t.Errorf("New(%q): got %v, want ErrName", p, err)
		}
		if err := Cleanup(p); !errors.Is(err, ErrName) {
			t.Errorf("Cleanup(%q): got %v, want ErrName", p, err)
		}
	}
	l := &Lab{prefix: "x", used: map[netip.Addr]bool{internetIP: true}, inet: &Node{NS: "x-inet"}}
	for _, a := range []string{"nonsense", "10.0.0.1", "198.18.1.1", "198.18.0.0", "198.18.0.255", "198.18.0.1", "::1"} {
		if err := l.AddInternetAddr(a); !errors.Is(err, ErrAddr) {
			t.Errorf("AddInternetAddr(%q): got %v, want ErrAddr", a, err)
		}
	}
	for _, n := range []string{"", "inet", "a-b", "x y"} {
		if _, err := l.AddHome(n, Cone); !errors.Is(err, ErrName) {
			t.Errorf("AddHome(%q): got %v, want ErrName", n, err)
		}
	}
	if _, err := l.AddHome("ok", NAT(7)); err == nil || !strings.Contains(err.Error(), "NAT(7)") {
		t.Errorf("AddHome with NAT(7): got %v", err)
	}
	l.Close()
	if _, err := l.AddHome("ok", Cone); !errors.Is(err, ErrClosed) {
		t.Errorf("AddHome after Close: got %v, want ErrClosed", err)
	}
	if err := l.AddInternetAddr("198.18.0.3"); !errors.Is(err, ErrClosed) {
		t.Errorf("AddInternetAddr after Close: got %v, want ErrClosed", err)
	}
}

// inetOr returns the node that holds the address of host:port from: one
// of the homes' routers, or else the internet.
func inetOr(from string, inet *Node, homes ...*Node) *Node {
	for _, h := range homes {
		if strings.HasPrefix(from, h.Router.IP+":") {
			return h.Router
		}
	}
	return inet
}
