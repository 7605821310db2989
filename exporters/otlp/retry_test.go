package otlp

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/pipelines"
)

// TestHTTPLogsWaitForCollector: over HTTP, records handed over while the
// collector refuses connections are delivered once it listens, as gRPC
// does, instead of failing at the first refused connection.
func TestHTTPLogsWaitForCollector(t *testing.T) {
	addr := testenv.FreeAddr(t) // until the server below starts

	l, err := NewLogs("otlp", &config.OTLPExporter{Endpoint: "http://" + addr, Protocol: config.ProtocolHTTPProtobuf,
		Insecure: true, Timeout: 10 * time.Second, LogQueueSize: 16}, resource.Empty(), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := l.ExportLog(context.Background(), &pipelines.LogRecord{EventName: "test", Body: "x", Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}

	var posts atomic.Int64
	go func() {
		time.Sleep(1500 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			posts.Add(1)
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.WriteHeader(http.StatusOK)
		}))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := l.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if posts.Load() == 0 || l.Failed() != 0 {
		t.Errorf("%d posts, %d records failed: want the records delivered once the collector listens", posts.Load(), l.Failed())
	}
}
