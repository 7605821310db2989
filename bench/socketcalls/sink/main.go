// Command sink is the OTLP/gRPC trace receiver of the socket-calls
// benchmark: it decodes every request, counts spans by name, and prints
// the counts when it receives SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

type sink struct {
	collectortrace.UnimplementedTraceServiceServer
	mu     sync.Mutex
	byName map[string]int
	total  int
}

func (s *sink) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				s.byName[sp.Name]++
				s.total++
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func main() {
	addr := flag.String("listen", "127.0.0.1:4319", "address to listen on")
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := &sink{byName: map[string]int{}}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	collectortrace.RegisterTraceServiceServer(srv, s)
	go srv.Serve(l)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	srv.GracefulStop()
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.byName))
	for n := range s.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Printf("spans=%d", s.total)
	for _, n := range names {
		fmt.Printf(" %s=%d", n, s.byName[n])
	}
	fmt.Println()
}
