package ravdl

import (
	"bytes"
	"testing"
)

func TestEpochLineGrammar(t *testing.T) {
	for _, tc := range []struct {
		steps int
		want  string
	}{
		{1, "epoch 1/1  1 step in 2.0s (0 steps/s)  loss 0.5000\n"},
		{3, "epoch 1/1  3 steps in 2.0s (2 steps/s)  loss 0.5000\n"},
	} {
		var b bytes.Buffer
		p := &progress{w: &b}
		p.startEpoch(1, 1, tc.steps)
		p.endEpoch(Epoch{Epoch: 1, Steps: tc.steps, Seconds: 2, Loss: 0.5}, false)
		if got := b.String(); got != tc.want {
			t.Errorf("%d steps: got %q, want %q", tc.steps, got, tc.want)
		}
	}
}
