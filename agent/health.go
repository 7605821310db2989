package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"
)

// HealthReport is the body of GET /healthz.
type HealthReport struct {
	// Status is starting (some pipeline not attached yet), ok (every
	// pipeline runs), degraded (some run), failed (none runs) or stopping.
	Status     string           `json:"status"`
	Version    string           `json:"version"`
	Uptime     string           `json:"uptime"`
	Goroutines int              `json:"goroutines"`
	HeapBytes  uint64           `json:"heap_bytes"`
	Pipelines  []PipelineHealth `json:"pipelines"`
}

type PipelineHealth struct {
	Name    string         `json:"name"`
	State   string         `json:"state"` // running | failed | pending
	Sources []SourceStatus `json:"sources,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// Health reports the state of every pipeline of the current config.
func (a *Agent) Health() HealthReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	running := map[string]*runningPipeline{}
	for _, r := range a.running {
		running[r.Name()] = r
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rep := HealthReport{Version: Version, Goroutines: runtime.NumGoroutine(), HeapBytes: ms.HeapAlloc}
	up, pending := 0, 0
	for _, pl := range a.cfg.Pipelines {
		name := pl.ID.String()
		ph := PipelineHealth{Name: name, State: "pending"}
		if r, ok := running[name]; ok {
			ph.State, ph.Sources = "running", r.status
			up++
		} else if err, ok := a.Failed[name]; ok {
			ph.State, ph.Error = "failed", err.Error()
		} else {
			pending++
		}
		rep.Pipelines = append(rep.Pipelines, ph)
	}
	switch {
	case a.stopping:
		rep.Status = "stopping"
	case pending > 0:
		rep.Status = "starting"
	case up == len(a.cfg.Pipelines):
		rep.Status = "ok"
	case up > 0:
		rep.Status = "degraded"
	default:
		rep.Status = "failed"
	}
	return rep
}

type healthServer struct {
	srv *http.Server
}

// startHealth listens on endpoint and serves /healthz (and /debug/pprof/): 200 while at least
// one pipeline runs (ok or degraded; the body says which), 503 otherwise,
// so a liveness probe does not restart an agent that is partly useful.
func startHealth(endpoint string, a *Agent, log *slog.Logger) (*healthServer, error) {
	ln, err := net.Listen("tcp", endpoint)
	if err != nil {
		return nil, fmt.Errorf("health.endpoint %s: %w", endpoint, err)
	}
	started := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		rep := a.Health()
		rep.Uptime = time.Since(started).Round(time.Second).String()
		w.Header().Set("Content-Type", "application/json")
		if rep.Status != "ok" && rep.Status != "degraded" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	})
	// The Go profiler beside it, as the collector's pprof extension: the
	// endpoint is off by default and meant for localhost.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	h := &healthServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go func() {
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health endpoint stopped", "error", err)
		}
	}()
	log.Info("health endpoint", "url", "http://"+ln.Addr().String()+"/healthz")
	return h, nil
}

func (h *healthServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return h.srv.Shutdown(ctx)
}
