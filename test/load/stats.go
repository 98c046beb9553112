package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// stats are one worker's measurements, or all of them merged.
type stats struct {
	ok        int64
	bytes     int64
	items     int64 // listing lines
	latencies []time.Duration
	errors    map[string]int64  // by "phase kind", e.g. "retr 425"
	firstErr  map[string]string // an example message per key
	cut       int64             // failures caused by the end of the run
	dataConns int64
	resumed   int64 // data connections that resumed the control session
	// Connections by TLS version and cipher suite.
	controlTLS map[string]int64
	dataTLS    map[string]int64
}

func newStats() *stats {
	return &stats{
		errors: make(map[string]int64), firstErr: make(map[string]string),
		controlTLS: make(map[string]int64), dataTLS: make(map[string]int64),
	}
}

func (s *stats) addError(key string, err error) {
	s.errors[key]++
	if _, ok := s.firstErr[key]; !ok {
		s.firstErr[key] = err.Error()
	}
}

func (s *stats) merge(o *stats) {
	s.ok += o.ok
	s.bytes += o.bytes
	s.items += o.items
	s.latencies = append(s.latencies, o.latencies...)
	for k, n := range o.errors {
		s.errors[k] += n
		if _, ok := s.firstErr[k]; !ok {
			s.firstErr[k] = o.firstErr[k]
		}
	}
	s.cut += o.cut
	s.dataConns += o.dataConns
	s.resumed += o.resumed
	for k, n := range o.controlTLS {
		s.controlTLS[k] += n
	}
	for k, n := range o.dataTLS {
		s.dataTLS[k] += n
	}
}

// result is the report of one run.
type result struct {
	cfg     *config
	elapsed time.Duration
	stopped string // duration, max-ops or signal
	*stats
}

// failed is the number of counted errors.
func (r *result) failed() int64 {
	var n int64
	for _, c := range r.errors {
		n += c
	}
	return n
}

// percentile is the nearest-rank percentile p (0..100) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// round keeps three or so significant digits of a latency.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func (r *result) print(w io.Writer) {
	cfg := r.cfg
	slices.Sort(r.latencies)
	secs := r.elapsed.Seconds()
	what := string(cfg.op)
	switch cfg.op {
	case opRetr, opStor:
		what += " " + formatSize(cfg.size)
	case opList, opSession:
		what += " " + strconv.Quote(cfg.dir)
	}
	fmt.Fprintf(w, "ftpsd-load: %s, %d sessions, %s: ran %s, stopped by %s\n",
		what, cfg.conns, cfg.addr, r.elapsed.Round(time.Millisecond), r.stopped)
	fmt.Fprintf(w, "ops:        %d ok, %d failed: %.1f ops/s\n", r.ok, r.failed(), float64(r.ok)/secs)
	if cfg.op == opRetr || cfg.op == opStor || cfg.op == opList {
		fmt.Fprintf(w, "throughput: %.1f MB/s of payload (1 MB = 10^6 bytes)\n", float64(r.bytes)/1e6/secs)
	}
	if (cfg.op == opList || cfg.op == opSession) && r.ok > 0 {
		fmt.Fprintf(w, "listing:    %d lines per listing, %.0f lines/s\n", r.items/r.ok, float64(r.items)/secs)
	}
	if len(r.latencies) > 0 {
		fmt.Fprintf(w, "latency:    p50 %s  p95 %s  p99 %s  max %s\n",
			round(percentile(r.latencies, 50)), round(percentile(r.latencies, 95)),
			round(percentile(r.latencies, 99)), round(r.latencies[len(r.latencies)-1]))
	}
	if r.dataConns > 0 {
		fmt.Fprintf(w, "data conns: %d, %d resumed the control TLS session\n", r.dataConns, r.resumed)
	}
	if len(r.controlTLS) > 0 {
		fmt.Fprintf(w, "control:    %s\n", tally(r.controlTLS))
	}
	if len(r.dataTLS) > 0 {
		fmt.Fprintf(w, "data:       %s\n", tally(r.dataTLS))
	}
	if r.cut > 0 {
		fmt.Fprintf(w, "cut:        %d operations in flight were cut at the end of the run (not counted)\n", r.cut)
	}
	if len(r.errors) == 0 {
		fmt.Fprintf(w, "errors:     none\n")
		return
	}
	fmt.Fprintf(w, "errors:     %d\n", r.failed())
	keys := make([]string, 0, len(r.errors))
	for k := range r.errors {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-16s %6d  e.g. %s\n", k, r.errors[k], r.firstErr[k])
	}
}

// tally writes counts by key, in key order: "TLS 1.3 TLS_AES_128_GCM_SHA256 x12".
func tally(m map[string]int64) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s x%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// jsonReport is the report of -json. Durations are in seconds.
type jsonReport struct {
	Op         string            `json:"op"`
	Size       int64             `json:"size"`
	Conns      int               `json:"conns"`
	Elapsed    float64           `json:"elapsed_s"`
	Stopped    string            `json:"stopped"`
	OK         int64             `json:"ok"`
	Failed     int64             `json:"failed"`
	Bytes      int64             `json:"bytes"`
	Items      int64             `json:"items"`
	Busy       float64           `json:"busy_s"` // the operations' latencies summed
	P50        float64           `json:"p50_s"`
	P99        float64           `json:"p99_s"`
	DataConns  int64             `json:"data_conns"`
	Resumed    int64             `json:"resumed"`
	ControlTLS map[string]int64  `json:"control_tls"`
	DataTLS    map[string]int64  `json:"data_tls"`
	Errors     map[string]int64  `json:"errors"`
	FirstError map[string]string `json:"first_error"`
}

func (r *result) printJSON(w io.Writer) error {
	slices.Sort(r.latencies)
	var busy time.Duration
	for _, d := range r.latencies {
		busy += d
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonReport{
		Op: string(r.cfg.op), Size: r.cfg.size, Conns: r.cfg.conns,
		Elapsed: r.elapsed.Seconds(), Stopped: r.stopped,
		OK: r.ok, Failed: r.failed(), Bytes: r.bytes, Items: r.items,
		Busy: busy.Seconds(), P50: percentile(r.latencies, 50).Seconds(), P99: percentile(r.latencies, 99).Seconds(),
		DataConns: r.dataConns, Resumed: r.resumed,
		ControlTLS: r.controlTLS, DataTLS: r.dataTLS,
		Errors: r.errors, FirstError: r.firstErr,
	})
}
