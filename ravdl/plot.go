package ravdl

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// SavePlot writes the training loss (per step, as a moving mean over a
// window of about a fiftieth of an epoch) and, where measured, the
// validation loss and accuracy per epoch to a PNG file. The x axis counts
// epochs.
func (h *History) SavePlot(path string) error {
	if len(h.StepLoss) == 0 || len(h.Epochs) == 0 {
		return fmt.Errorf("%w: nothing to plot", ErrConfig)
	}
	perEpoch := float64(h.Epochs[0].Steps)
	win := max(1, h.Epochs[0].Steps/50)
	var train plotter.XYs
	var sum float64
	for i, l := range h.StepLoss {
		sum += l
		if i >= win {
			sum -= h.StepLoss[i-win]
		}
		if i+1 >= win && (i+1)%win == 0 {
			train = append(train, plotter.XY{X: float64(i+1) / perEpoch, Y: sum / float64(win)})
		}
	}
	p := plot.New()
	p.Title.Text = "training"
	p.X.Label.Text = "epoch"
	p.Y.Label.Text = "loss / accuracy"
	tl, err := plotter.NewLine(train)
	if err != nil {
		return err
	}
	tl.Color = color.RGBA{B: 200, A: 255}
	p.Add(tl)
	p.Legend.Add("training loss", tl)
	var vl, va plotter.XYs
	for _, e := range h.Epochs {
		if e.HasVal {
			vl = append(vl, plotter.XY{X: float64(e.Epoch), Y: e.ValLoss})
			if e.ValAccuracy == e.ValAccuracy { // not NaN
				va = append(va, plotter.XY{X: float64(e.Epoch), Y: e.ValAccuracy})
			}
		}
	}
	for _, s := range []struct {
		name string
		xy   plotter.XYs
		c    color.RGBA
	}{{"validation loss", vl, color.RGBA{R: 200, A: 255}}, {"validation accuracy", va, color.RGBA{G: 150, A: 255}}} {
		if len(s.xy) == 0 {
			continue
		}
		l, pts, err := plotter.NewLinePoints(s.xy)
		if err != nil {
			return err
		}
		l.Color, pts.Color = s.c, s.c
		p.Add(l, pts)
		p.Legend.Add(s.name, l, pts)
	}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p.Save(8*vg.Inch, 4*vg.Inch, path)
}
