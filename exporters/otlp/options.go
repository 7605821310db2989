// Package otlp ships pipelines to an OpenTelemetry Collector (or any OTLP
// endpoint) with the OpenTelemetry Go SDK's exporters, over gRPC or HTTP.
package otlp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/sockeye/sockeye/config"
)

// reconnectBackoff paces the gRPC exporters' attempts to reach a collector
// that is down. gRPC's default lets the wait grow to two minutes: after a
// long outage an exporter could go on failing for a minute or more with
// the collector back, losing what it is handed meanwhile. Capped, it is
// back within seconds. A variable for tests.
var reconnectBackoff = backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second}

// unreachable reports a collector that refused the connection or could not
// be reached: worth trying again.
func unreachable(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// retryUnreachable calls export until it succeeds, fails for another
// reason, or ctx (the SDK's export timeout) ends. The SDK's HTTP exporters
// retry only on HTTP statuses and give up on a refused connection at once,
// so a collector restart would cost every batch exported meanwhile; the
// gRPC ones wait for the connection, and this keeps HTTP alike.
func retryUnreachable(ctx context.Context, export func() error) error {
	delay := 250 * time.Millisecond
	for {
		err := export()
		if err == nil || !unreachable(err) {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(2*delay, reconnectBackoff.MaxDelay)
	}
}

// grpcDialOptions are added to every gRPC exporter.
func grpcDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff: reconnectBackoff,
		// gRPC's default for one connection attempt.
		MinConnectTimeout: 20 * time.Second,
	})}
}

// endpoint splits a configured endpoint into host:port, URL path and whether
// the scheme asks for plaintext.
type endpoint struct {
	hostPort string
	path     string
	scheme   string
}

func parseEndpoint(raw string) (endpoint, error) {
	if !strings.Contains(raw, "://") {
		return endpoint{hostPort: raw}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return endpoint{}, fmt.Errorf("endpoint %q: %w", raw, err)
	}
	return endpoint{hostPort: u.Host, path: u.Path, scheme: u.Scheme}, nil
}

// insecure is true when the config asks for plaintext or the URL is http://.
func insecure(cfg *config.OTLPExporter, ep endpoint) bool {
	return cfg.Insecure || ep.scheme == "http"
}

func tlsConfig(t config.TLS) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // only when the user asks
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca_file %s: no PEM certificates in it", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
