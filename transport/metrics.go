package transport

import (
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/grpc/status"
)

// metrics are the server's Prometheus metrics, in a registry of its own
// (never the process-wide default one), beside the Go runtime and
// process collectors.
type metrics struct {
	reg      *prometheus.Registry
	opened   prometheus.Counter
	bytesIn  prometheus.Counter
	bytesOut prometheus.Counter
	sessions prometheus.Gauge
	resident prometheus.Gauge
	gflops   prometheus.Gauge
	calls    *prometheus.CounterVec
	lat      *prometheus.HistogramVec
	rings    *prometheus.CounterVec // ring rounds sent, by path
	// the same counts, for RingRounds
	wireRounds, streamRounds atomic.Int64
}

// latencyBuckets are the upper bounds, in seconds, of the call latency
// histograms.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rookery_provider_sessions", Help: "Sessions open now."}),
		opened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rookery_provider_sessions_opened_total", Help: "Sessions opened since start."}),
		resident: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rookery_provider_resident_bytes", Help: "Bytes held by sessions and calls in flight."}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rookery_provider_received_bytes_total", Help: "Tensor and graph bytes received."}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rookery_provider_sent_bytes_total", Help: "Tensor bytes sent."}),
		gflops: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rookery_provider_gflops", Help: "Float32 matrix-multiply speed measured at start-up."}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rookery_provider_calls_total", Help: "Calls by method and gRPC status code."}, []string{"method", "code"}),
		lat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rookery_provider_call_seconds", Help: "Call latency by method.", Buckets: latencyBuckets}, []string{"method"}),
		rings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rookery_provider_ring_rounds_total", Help: "Ring rounds whose segments this provider sent to the next member, by path: wire (the ring wire) or stream (RingPass)."}, []string{"path"}),
	}
	m.reg.MustRegister(m.sessions, m.opened, m.resident, m.bytesIn, m.bytesOut, m.gflops, m.calls, m.lat, m.rings,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) setSessions(n int, resident int64) {
	m.sessions.Set(float64(n))
	m.resident.Set(float64(resident))
}

// observe records a call of method that started at start and ended with
// *err.
func (m *metrics) observe(method string, start time.Time, err *error) {
	d := time.Since(start).Seconds()
	m.calls.WithLabelValues(method, status.Code(*err).String()).Inc()
	m.lat.WithLabelValues(method).Observe(d)
}

// WriteMetrics writes the server's metrics in the Prometheus text
// exposition format (version 0.0.4): open sessions, resident bytes, bytes
// in and out, calls by method and status code, and call latency
// histograms by method (the step latency is method="step"), then the Go
// runtime's and the process's metrics (go_*, process_*).
func (s *Server) WriteMetrics(w io.Writer) error {
	mfs, err := s.metrics.reg.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}

// MetricsHandler serves the server's metrics over HTTP, for a Prometheus
// scraper.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
}

// ringRound counts a ring round sent on the ring wire or a stream.
func (m *metrics) ringRound(wire bool) {
	if wire {
		m.wireRounds.Add(1)
		m.rings.WithLabelValues("wire").Inc()
	} else {
		m.streamRounds.Add(1)
		m.rings.WithLabelValues("stream").Inc()
	}
}

// RingRounds returns how many ring rounds this server has sent to the
// next members of its rings on the ring wire and on RingPass streams.
func (s *Server) RingRounds() (wire, streams int64) {
	return s.metrics.wireRounds.Load(), s.metrics.streamRounds.Load()
}
