package processors

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

const (
	ctrID  = "4c3a8b2e9f0d1c7b6a5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a"
	podUID = "0b6d3f6e-2c9a-4d5e-8f7a-1b2c3d4e5f60"
)

// fakeHost writes a /proc with pid 4242 in a Kubernetes container and pid
// 7 on the host, and kubelet's pod log directory of that pod.
func fakeHost(t *testing.T) *config.ContainersProcessor {
	root := t.TempDir()
	proc := func(pid int, cgroup string) {
		dir := filepath.Join(root, "proc", fmt.Sprint(pid))
		os.MkdirAll(dir, 0o755)
		// Field 22 (start time) after the command in parentheses.
		stat := fmt.Sprintf("%d (app) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", pid, 1000+pid)
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	slice := "kubepods-besteffort-pod" + strings.ReplaceAll(podUID, "-", "_") + ".slice"
	proc(4242, "0::/kubepods.slice/kubepods-besteffort.slice/"+slice+"/cri-containerd-"+ctrID+".scope\n")
	proc(7, "0::/system.slice/sshd.service\n")
	os.MkdirAll(filepath.Join(root, "pods", "shop_checkout-7d9f_"+podUID), 0o755)
	return &config.ContainersProcessor{ProcRoot: filepath.Join(root, "proc"), PodLogsRoot: filepath.Join(root, "pods")}
}

func wantPod(t *testing.T, what string, attrs []attribute.KeyValue) {
	t.Helper()
	set := attribute.NewSet(attrs...)
	for k, want := range map[attribute.Key]string{
		semconv.ContainerIDKey: ctrID, semconv.K8SPodUIDKey: podUID,
		semconv.K8SPodNameKey: "checkout-7d9f", semconv.K8SNamespaceNameKey: "shop",
	} {
		if v, ok := set.Value(k); !ok || v.AsString() != want {
			t.Errorf("%s: %s = %q, want %q (all: %v)", what, k, v.AsString(), want, attrs)
		}
	}
}

func TestContainersEverySignal(t *testing.T) {
	c := NewContainers("containers", NewResolver(fakeHost(t)))
	inPod := semconv.ProcessPIDKey.Int(4242)
	onHost := semconv.ProcessPIDKey.Int(7)

	b := c.Process(&pipelines.Batch{Rows: []pipelines.Row{
		{Attrs: []attribute.KeyValue{inPod, semconv.ProcessExecutableNameKey.String("app")}},
		{Attrs: []attribute.KeyValue{onHost}},
		{Attrs: []attribute.KeyValue{attribute.String("sockeye.drop.reason", "NO_SOCKET")}},
	}})
	wantPod(t, "metrics row", b.Rows[0].Attrs)
	if len(b.Rows[1].Attrs) != 1 || len(b.Rows[2].Attrs) != 1 {
		t.Errorf("rows outside containers changed: %v, %v", b.Rows[1].Attrs, b.Rows[2].Attrs)
	}

	r := &pipelines.LogRecord{Attrs: []attribute.KeyValue{inPod}}
	if !c.ProcessLog(r) {
		t.Fatal("the containers processor dropped a record")
	}
	wantPod(t, "log record", r.Attrs)

	res := []attribute.KeyValue{semconv.ServiceNameKey.String("app"), inPod}
	sb := &pipelines.SpanBatch{Spans: []pipelines.Span{
		{Resource: res, Attrs: []attribute.KeyValue{inPod}},
		{Resource: res, Attrs: []attribute.KeyValue{inPod}},
		{Attrs: []attribute.KeyValue{inPod}},
	}}
	c.ProcessSpans(sb)
	wantPod(t, "span resource", sb.Spans[0].Resource)
	if &sb.Spans[0].Resource[0] != &sb.Spans[1].Resource[0] {
		t.Error("spans of one process got different resource slices: exporters key providers on them")
	}
	if len(res) != 2 || len(sb.Spans[0].Attrs) != 1 {
		t.Errorf("the source's shared resource or the span attributes changed: %v %v", res, sb.Spans[0].Attrs)
	}
	wantPod(t, "span without resource", sb.Spans[2].Attrs)
}
