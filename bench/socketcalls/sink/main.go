// Command sink is the OTLP/gRPC trace receiver of the socket-calls
// benchmark: it decodes every request, counts spans by name, and prints
// the counts when it receives SIGINT or SIGTERM. With -raw it counts them
// by walking the protobuf wire format instead of decoding messages, at a
// small part of the CPU, so that on two cores the agent's side is measured
// rather than the receiver's.
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
	"google.golang.org/protobuf/encoding/protowire"
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

// countRaw counts the spans of an ExportTraceServiceRequest in its wire
// form: resource_spans (1) > scope_spans (2) > spans (2) > name (5).
func (s *sink) countRaw(req []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fields(req, 1, func(rs []byte) error {
		return fields(rs, 2, func(ss []byte) error {
			return fields(ss, 2, func(sp []byte) error {
				s.total++
				return fields(sp, 5, func(name []byte) error {
					s.byName[string(name)]++
					return nil
				})
			})
		})
	})
}

// fields calls fn with the value of each length-delimited field num of msg.
func fields(msg []byte, num protowire.Number, fn func([]byte) error) error {
	for len(msg) > 0 {
		n, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return protowire.ParseError(l)
		}
		msg = msg[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(msg)
			if l < 0 {
				return protowire.ParseError(l)
			}
			if err := fn(v); err != nil {
				return err
			}
			msg = msg[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, msg)
		if l < 0 {
			return protowire.ParseError(l)
		}
		msg = msg[l:]
	}
	return nil
}

// rawMessage is a request or response as its bytes; rawCodec moves them.
type rawMessage []byte

type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) ([]byte, error) {
	return *v.(*rawMessage), nil
}
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*rawMessage) = append((*v.(*rawMessage))[:0], data...)
	return nil
}

// rawService is TraceService with the request left undecoded; the reply
// is an empty ExportTraceServiceResponse (zero bytes).
func rawService(s *sink) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Export",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var req rawMessage
				if err := dec(&req); err != nil {
					return nil, err
				}
				if err := s.countRaw(req); err != nil {
					return nil, err
				}
				return &rawMessage{}, nil
			},
		}},
	}
}

func main() {
	addr := flag.String("listen", "127.0.0.1:4319", "address to listen on")
	raw := flag.Bool("raw", false, "count spans in the wire format instead of decoding requests")
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := &sink{byName: map[string]int{}}
	var srv *grpc.Server
	if *raw {
		srv = grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.ForceServerCodec(rawCodec{}))
		srv.RegisterService(rawService(s), s)
	} else {
		srv = grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
		collectortrace.RegisterTraceServiceServer(srv, s)
	}
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
