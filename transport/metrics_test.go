package transport_test

import (
	"context"
	"io"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

// exposition is a parsed Prometheus text exposition.
type exposition map[string]*dto.MetricFamily

func parseMetrics(t testing.TB, text string) exposition {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing the exposition: %v\n%s", err, text)
	}
	return fams
}

// value returns the value of the counter, gauge or untyped series name
// whose labels are exactly the given name, value pairs, or the sample
// count of such a histogram.
func (e exposition) value(name string, labels ...string) (float64, bool) {
	f := e[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels)/2 {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			i := 0
			for i < len(labels) && labels[i] != l.GetName() {
				i += 2
			}
			if i >= len(labels) || labels[i+1] != l.GetValue() {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetrics: each server counts its own sessions, calls and bytes in a
// registry of its own, beside the Go runtime's and the process's
// metrics, and serves the same over HTTP.
func TestMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := newMLP(t, tensor.Float32, 8, 20, 16, 4)
	busy, c := startBufconn(t, exec.NewCPU())
	idle, _ := startBufconn(t, exec.NewCPU())
	s, err := openFirstPart(t, c, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "shard", m.feeds[m.data[0]]); err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	if err := busy.WriteMetrics(&text); err != nil {
		t.Fatal(err)
	}
	got := parseMetrics(t, text.String())
	for _, want := range []struct {
		name   string
		labels []string
		value  float64
	}{
		{"rookery_provider_sessions", nil, 1},
		{"rookery_provider_sessions_opened_total", nil, 1},
		{"rookery_provider_calls_total", []string{"method", "open", "code", "OK"}, 1},
		{"rookery_provider_calls_total", []string{"method", "put", "code", "OK"}, 1},
		{"rookery_provider_call_seconds", []string{"method", "put"}, 1},
		{"rookery_provider_gflops", nil, 0}, // WithBenchmark(0): not measured
	} {
		if v, ok := got.value(want.name, want.labels...); !ok || v != want.value {
			t.Errorf("%s%v: got %v (present %v), want %v", want.name, want.labels, v, ok, want.value)
		}
	}
	for _, name := range []string{"rookery_provider_received_bytes_total", "rookery_provider_resident_bytes"} {
		if v, ok := got.value(name); !ok || v <= 0 {
			t.Errorf("%s: got %v (present %v), want more than 0", name, v, ok)
		}
	}
	if v, ok := got.value("rookery_provider_sent_bytes_total"); !ok || v != 0 {
		t.Errorf("rookery_provider_sent_bytes_total: got %v (present %v), want 0", v, ok)
	}
	if v, ok := got.value("go_goroutines"); !ok || v < 1 {
		t.Errorf("go_goroutines: got %v (present %v), want the Go collector's count", v, ok)
	}
	if _, ok := got.value("process_start_time_seconds"); runtime.GOOS == "linux" && !ok {
		t.Error("process_start_time_seconds missing: no process collector")
	}

	// The other server in this process counts nothing of it.
	text.Reset()
	if err := idle.WriteMetrics(&text); err != nil {
		t.Fatal(err)
	}
	other := parseMetrics(t, text.String())
	for _, name := range []string{"rookery_provider_sessions", "rookery_provider_sessions_opened_total", "rookery_provider_received_bytes_total"} {
		if v, ok := other.value(name); !ok || v != 0 {
			t.Errorf("the idle server's %s: got %v (present %v), want 0", name, v, ok)
		}
	}

	// Over HTTP, in the text format a scraper asks for by default.
	srv := httptest.NewServer(busy.MetricsHandler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want the text format 0.0.4", ct)
	}
	if v, ok := parseMetrics(t, string(b)).value("rookery_provider_calls_total", "method", "put", "code", "OK"); !ok || v != 1 {
		t.Errorf("over HTTP, put calls: got %v (present %v), want 1", v, ok)
	}
}
