package otlp

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

// sink is an OTLP/gRPC trace receiver that counts spans and drops them.
type sink struct {
	collectortrace.UnimplementedTraceServiceServer
	spans atomic.Int64
	mu    sync.Mutex
	// onExport, if set, sees every request (under mu).
	onExport func(*collectortrace.ExportTraceServiceRequest)
}

func (s *sink) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	var n int64
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += int64(len(ss.Spans))
		}
	}
	s.spans.Add(n)
	s.mu.Lock()
	if s.onExport != nil {
		s.onExport(req)
	}
	s.mu.Unlock()
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func startSink(b testing.TB) (*sink, string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	s := &sink{}
	collectortrace.RegisterTraceServiceServer(srv, s)
	go srv.Serve(l)
	b.Cleanup(srv.Stop)
	return s, l.Addr().String()
}

// rawCodec keeps a request's bytes undecoded, so the receiver costs next
// to nothing and the benchmark measures the sending side.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) ([]byte, error) {
	if _, ok := v.(*collectortrace.ExportTraceServiceResponse); ok {
		return nil, nil
	}
	return *(v.(*[]byte)), nil
}
func (rawCodec) Unmarshal(data []byte, v any) error {
	if p, ok := v.(*[]byte); ok {
		*p = data
	}
	return nil
}

// startRawSink accepts OTLP/gRPC trace exports without decoding them and
// counts the requests and their bytes.
func startRawSink(b testing.TB) (*atomic.Int64, string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var bytes atomic.Int64
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var req []byte
		if err := stream.RecvMsg(&req); err != nil {
			return err
		}
		bytes.Add(int64(len(req)))
		return stream.SendMsg(&collectortrace.ExportTraceServiceResponse{})
	}))
	go srv.Serve(l)
	b.Cleanup(srv.Stop)
	return &bytes, l.Addr().String()
}

// benchSpans are socket-call spans as the socket_calls source makes them:
// a root with two children, ten attributes each, from a few processes.
func benchSpans(n int) []pipelines.Span {
	out := make([]pipelines.Span, n)
	t0 := time.Now()
	// One resource slice per process, as the socket_calls source shares them.
	procs := make([][]attribute.KeyValue, 4)
	for i := range procs {
		procs[i] = []attribute.KeyValue{attribute.String("service.name", "client"), attribute.Int("process.pid", 4242+i)}
	}
	for i := range out {
		var tid trace.TraceID
		tid[0], tid[15] = byte(i>>8)|1, byte(i)
		var sid, pid trace.SpanID
		sid[0], sid[7] = byte(i>>8)|1, byte(i)
		if i%3 != 0 {
			pid = trace.SpanID{1, 2, 3, 4, 5, 6, 7, byte(i / 3)}
		}
		out[i] = pipelines.Span{
			TraceID: tid, SpanID: sid, ParentID: pid, Name: "sendto", Kind: trace.SpanKindInternal,
			Start: t0, End: t0.Add(3 * time.Microsecond),
			Attrs: []attribute.KeyValue{
				attribute.Int("process.pid", 4242), attribute.Int("thread.id", 4243), attribute.String("thread.name", "client"),
				attribute.String("process.executable.name", "client"), attribute.Int("process.user.id", 0),
				attribute.String("code.function.name", "sendto"), attribute.Int64("sockeye.return_value", 5),
				attribute.Int64("sockeye.io.bytes", 5), attribute.Int("sockeye.socket.fd", 4), attribute.String("network.transport", "tcp"),
			},
			Resource: procs[i%4],
		}
	}
	return out
}

// BenchmarkTracesOTLP measures the user-space end of the traces pipeline:
// spans converted straight into OTLP messages, batched and sent by the
// OTLP/gRPC client to a receiver on loopback, counting what the receiver
// got; "marshal only" sends nothing (the client marshals the request and
// drops it), to isolate conversion and encoding. One op is one span.
// Run it on one core: go test -run ^$ -bench TracesOTLP -cpu 1 ./exporters/otlp/
func BenchmarkTracesOTLP(b *testing.B) {
	b.Run("decoding receiver", func(b *testing.B) {
		s, addr := startSink(b)
		benchTraces(b, grpcTraces(b, addr), func() int64 { return s.spans.Load() })
	})
	b.Run("raw receiver", func(b *testing.B) {
		_, addr := startRawSink(b)
		benchTraces(b, grpcTraces(b, addr), nil)
	})
	b.Run("marshal only", func(b *testing.B) {
		benchTraces(b, newTraces("bench", &marshalClient{}, benchResource(), quietLog()), nil)
	})
}

func benchResource() *resource.Resource {
	return resource.NewSchemaless(attribute.String("service.name", "sockeye"))
}

func grpcTraces(b *testing.B, addr string) *Traces {
	cfg := &config.OTLPExporter{Enabled: true, Endpoint: addr, Protocol: config.ProtocolGRPC, Insecure: true, Timeout: 10 * time.Second}
	tr, err := NewTraces("bench", cfg, benchResource(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	return tr
}

// marshalClient encodes every request, as the gRPC client does, and drops it.
type marshalClient struct {
	buf []byte
}

func (*marshalClient) Start(context.Context) error { return nil }
func (*marshalClient) Stop(context.Context) error  { return nil }
func (c *marshalClient) UploadTraces(_ context.Context, rs []*tracepb.ResourceSpans) error {
	var err error
	c.buf, err = proto.MarshalOptions{}.MarshalAppend(c.buf[:0], &collectortrace.ExportTraceServiceRequest{ResourceSpans: rs})
	return err
}

func benchTraces(b *testing.B, tr *Traces, received func() int64) {
	spans := benchSpans(1024)
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	sent := 0
	for sent < b.N {
		n := min(len(spans), b.N-sent)
		tr.ExportSpans(context.Background(), &pipelines.SpanBatch{Spans: spans[:n]})
		sent += n
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	if tr.failed.Load() != 0 || tr.spans.Load() != int64(b.N) {
		b.Fatalf("%d spans of %d exported, %d in failed exports", tr.spans.Load(), b.N, tr.failed.Load())
	}
	if received != nil && received() != int64(b.N) {
		b.Fatalf("receiver got %d spans of %d", received(), b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "spans/s")
	// On a shared machine wall time mostly measures the neighbours: spans
	// per CPU-second of this process (receiver included) is what one core
	// would sustain.
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "spans/cpu-s")
}

// cpuTime is the user and system time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
