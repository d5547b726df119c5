package ravdl

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
)

// progress draws the per-epoch bar and prints the epoch summaries.
type progress struct {
	w      io.Writer // nil: silent
	bar    bool      // w is a terminal
	epoch  int
	epochs int
	steps  int
	start  time.Time
	last   time.Time
	drawn  bool
	rounds bool // the steps are rounds of local SGD
}

func (p *progress) unit() string {
	if p.rounds {
		return "rounds"
	}
	return "steps"
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newProgress(cfg *config) *progress {
	p := &progress{w: cfg.out}
	if p.w != nil {
		p.bar = isTerminal(p.w)
		if cfg.auto && !p.bar {
			p.w = nil
		}
	}
	return p
}

func (p *progress) startEpoch(e, epochs, steps int) {
	p.epoch, p.epochs, p.steps = e, epochs, steps
	p.start = time.Now()
	p.last = time.Time{}
}

const barWidth = 20

func (p *progress) step(s int, running float64) {
	if p.w == nil || !p.bar {
		return
	}
	now := time.Now()
	if s < p.steps && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	el := now.Sub(p.start).Seconds()
	rate := float64(s) / math.Max(el, 1e-9)
	eta := time.Duration(float64(p.steps-s) / rate * float64(time.Second)).Round(time.Second)
	fill := barWidth * s / p.steps
	bar := strings.Repeat("=", fill)
	if fill < barWidth {
		bar += ">" + strings.Repeat(" ", barWidth-fill-1)
	}
	fmt.Fprintf(p.w, "\r\033[Kepoch %d/%d [%s] %d/%d  %.0f %s/s  ETA %v  loss %.4f", p.epoch, p.epochs, bar, s, p.steps, rate, p.unit(), eta, running)
	p.drawn = true
}

func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

// note prints a line before the epochs' bars.
func (p *progress) note(format string, a ...any) {
	if p.w != nil {
		p.clear()
		fmt.Fprintf(p.w, format+"\n", a...)
	}
}

func (p *progress) abort() {
	if p.w != nil {
		p.clear()
	}
}

func (p *progress) endEpoch(e Epoch, acc bool) {
	if p.w == nil {
		return
	}
	p.clear()
	unit := strings.TrimSuffix(p.unit(), "s")
	line := fmt.Sprintf("epoch %d/%d  %s in %.1fs (%.0f %ss/s)  loss %.4f", e.Epoch, p.epochs, count(e.Steps, unit), e.Seconds, float64(e.Steps)/e.Seconds, unit, e.Loss)
	if e.HasVal {
		line += fmt.Sprintf("  val_loss %.4f", e.ValLoss)
		if acc {
			line += fmt.Sprintf("  val_acc %.2f%%", 100*e.ValAccuracy)
		}
	}
	fmt.Fprintln(p.w, line)
}

// count is n and noun, plural unless n is 1: "1 epoch", "2 epochs".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
