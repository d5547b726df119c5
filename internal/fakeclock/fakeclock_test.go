package fakeclock_test

import (
	"testing"
	"time"

	"github.com/rookery-ml/rookery/internal/fakeclock"
)

func TestAdvanceFiresDueChannels(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := fakeclock.New(t0)
	early, late := c.After(time.Second), c.After(time.Minute)
	if n := c.Waiters(); n != 2 {
		t.Fatalf("got %d waiters, want 2", n)
	}
	c.Advance(2 * time.Second)
	select {
	case got := <-early:
		if want := t0.Add(2 * time.Second); !got.Equal(want) {
			t.Errorf("fired at %v, want %v", got, want)
		}
	default:
		t.Fatal("the channel due after 1s did not fire after 2s")
	}
	select {
	case <-late:
		t.Fatal("the channel due after 1m fired after 2s")
	default:
	}
	if n := c.Waiters(); n != 1 {
		t.Errorf("got %d waiters, want 1", n)
	}
	if got := <-c.After(0); !got.Equal(c.Now()) {
		t.Errorf("After(0) received %v, want now %v", got, c.Now())
	}
}

func TestBlockUntil(t *testing.T) {
	c := fakeclock.New(time.Unix(0, 0))
	waiting := make(chan int)
	go func() {
		c.BlockUntil(1)
		waiting <- c.Waiters()
	}()
	c.After(time.Second)
	if n := <-waiting; n != 1 {
		t.Errorf("BlockUntil(1) returned with %d waiters", n)
	}
}
