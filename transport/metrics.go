package transport

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"
)

// metrics are the server's counters, written in the Prometheus text
// exposition format by WriteMetrics.
type metrics struct {
	opened   atomic.Int64
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	sessions atomic.Int64
	resident atomic.Int64

	mu    sync.Mutex
	calls map[callKey]int64
	lat   map[string]*histogram
}

type callKey struct{ method, code string }

// latencyBuckets are the upper bounds, in seconds, of the call latency
// histograms.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type histogram struct {
	counts []int64 // per bucket, then +Inf
	sum    float64
	n      int64
}

func newMetrics() *metrics {
	return &metrics{calls: map[callKey]int64{}, lat: map[string]*histogram{}}
}

func (m *metrics) setSessions(n int, resident int64) {
	m.sessions.Store(int64(n))
	m.resident.Store(resident)
}

// observe records a call of method that started at start and ended with
// *err.
func (m *metrics) observe(method string, start time.Time, err *error) {
	d := time.Since(start).Seconds()
	code := status.Code(*err).String()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls[callKey{method, code}]++
	h := m.lat[method]
	if h == nil {
		h = &histogram{counts: make([]int64, len(latencyBuckets)+1)}
		m.lat[method] = h
	}
	i := sort.SearchFloat64s(latencyBuckets, d)
	h.counts[i]++
	h.sum += d
	h.n++
}

// WriteMetrics writes the server's metrics in the Prometheus text
// exposition format (version 0.0.4): open sessions, resident bytes, bytes
// in and out, calls by method and status code, and call latency
// histograms by method (the step latency is method="step").
func (s *Server) WriteMetrics(w io.Writer) error {
	m := s.metrics
	var b []byte
	p := func(format string, a ...any) { b = fmt.Appendf(b, format, a...) }
	p("# HELP rookery_provider_sessions Sessions open now.\n# TYPE rookery_provider_sessions gauge\n")
	p("rookery_provider_sessions %d\n", m.sessions.Load())
	p("# HELP rookery_provider_sessions_opened_total Sessions opened since start.\n# TYPE rookery_provider_sessions_opened_total counter\n")
	p("rookery_provider_sessions_opened_total %d\n", m.opened.Load())
	p("# HELP rookery_provider_resident_bytes Bytes held by sessions and calls in flight.\n# TYPE rookery_provider_resident_bytes gauge\n")
	p("rookery_provider_resident_bytes %d\n", m.resident.Load())
	p("# HELP rookery_provider_received_bytes_total Tensor and graph bytes received.\n# TYPE rookery_provider_received_bytes_total counter\n")
	p("rookery_provider_received_bytes_total %d\n", m.bytesIn.Load())
	p("# HELP rookery_provider_sent_bytes_total Tensor bytes sent.\n# TYPE rookery_provider_sent_bytes_total counter\n")
	p("rookery_provider_sent_bytes_total %d\n", m.bytesOut.Load())
	p("# HELP rookery_provider_gflops Float32 matrix-multiply speed measured at start-up.\n# TYPE rookery_provider_gflops gauge\n")
	p("rookery_provider_gflops %g\n", s.caps.Gflops)
	m.mu.Lock()
	keys := make([]callKey, 0, len(m.calls))
	for k := range m.calls {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].method != keys[j].method {
			return keys[i].method < keys[j].method
		}
		return keys[i].code < keys[j].code
	})
	p("# HELP rookery_provider_calls_total Calls by method and gRPC status code.\n# TYPE rookery_provider_calls_total counter\n")
	for _, k := range keys {
		p("rookery_provider_calls_total{method=%q,code=%q} %d\n", k.method, k.code, m.calls[k])
	}
	methods := make([]string, 0, len(m.lat))
	for k := range m.lat {
		methods = append(methods, k)
	}
	sort.Strings(methods)
	p("# HELP rookery_provider_call_seconds Call latency by method.\n# TYPE rookery_provider_call_seconds histogram\n")
	for _, meth := range methods {
		h := m.lat[meth]
		var cum int64
		for i, ub := range latencyBuckets {
			cum += h.counts[i]
			p("rookery_provider_call_seconds_bucket{method=%q,le=\"%g\"} %d\n", meth, ub, cum)
		}
		cum += h.counts[len(latencyBuckets)]
		p("rookery_provider_call_seconds_bucket{method=%q,le=\"+Inf\"} %d\n", meth, cum)
		p("rookery_provider_call_seconds_sum{method=%q} %g\n", meth, h.sum)
		p("rookery_provider_call_seconds_count{method=%q} %d\n", meth, h.n)
	}
	m.mu.Unlock()
	_, err := w.Write(b)
	return err
}

// MetricsHandler serves WriteMetrics over HTTP, for a Prometheus scraper.
func (s *Server) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_ = s.WriteMetrics(w)
	})
}
