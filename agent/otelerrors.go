package agent

import (
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
)

// routeOTelErrors sends the OpenTelemetry SDK's own errors (failed exports,
// dropped data) to the agent's log, at most one line per interval with the
// count of those suppressed, instead of the SDK's default of one stdlib log
// line per error. The handler is process-wide by the SDK's design; each
// loss is counted by the exporters themselves (sockeye.agent.*).
func routeOTelErrors(log *slog.Logger, interval time.Duration) {
	var mu sync.Mutex
	var last time.Time
	suppressed := 0
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if now := time.Now(); now.Sub(last) >= interval {
			log.Warn("opentelemetry sdk", "error", err, "suppressed_since_last", suppressed)
			last, suppressed = now, 0
			return
		}
		suppressed++
	}))
}
