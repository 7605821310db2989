package agent_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/internal/testpeer/agentbin"
)

// The agent's process lifecycle, end to end with the real binary: signals,
// shutdown, reload, /healthz, capabilities.

// allPipelines runs every source; otlp goes to endpoint and packets to pcap.
func allPipelinesConfig(t *testing.T, endpoint, pcap, health string) string {
	t.Helper()
	cfg := fmt.Sprintf(`sources:
  traffic:
  drops:
  accepts:
  socket_calls:
    commands: [curl]
  tcp_receive:
    snaplen: headers
exporters:
  otlp:
    endpoint: %s
    insecure: true
    timeout: 3s
  pcapng:
    path: %s
pipelines:
  metrics/traffic: {sources: [traffic], exporters: [otlp], interval: 1s}
  metrics/drops: {sources: [drops], exporters: [otlp], interval: 1s}
  logs/accepts: {sources: [accepts], exporters: [otlp]}
  traces/socket_calls: {sources: [socket_calls], exporters: [otlp]}
  packets/tcp_receive: {sources: [tcp_receive], exporters: [pcapng]}
health:
  endpoint: %s
`, endpoint, pcap, health)
	path := filepath.Join(t.TempDir(), "sockeye.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// hungCollector accepts connections and never answers, as a collector
// stuck behind a dead proxy would.
func hungCollector(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	})
	return ln.Addr().String()
}

type health struct {
	Status     string `json:"status"`
	Goroutines int    `json:"goroutines"`
	Pipelines  []struct {
		Name    string `json:"name"`
		State   string `json:"state"`
		Error   string `json:"error"`
		Sources []struct {
			Source string `json:"source"`
			Rung   string `json:"rung"`
		} `json:"sources"`
	} `json:"pipelines"`
}

func getHealth(addr string) (health, int, error) {
	var h health
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		return h, 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &h); err != nil {
		return h, resp.StatusCode, fmt.Errorf("%v: %s", err, body)
	}
	return h, resp.StatusCode, nil
}

// waitHealth polls /healthz until its status is want.
func waitHealth(t *testing.T, a *agentbin.Agent, addr, want string) health {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last health
	var lastErr error
	for time.Now().Before(deadline) {
		if exited, code := a.Exited(); exited {
			t.Fatalf("sockeye exited (%d) before /healthz said %s:\n%s", code, want, a.Stderr())
		}
		h, _, err := getHealth(addr)
		if err == nil && h.Status == want {
			return h
		}
		last, lastErr = h, err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("/healthz never said %s (last %+v, %v):\n%s", want, last, lastErr, a.Stderr())
	return last
}

// bpfIDs reads the BPF programs, links and maps a process holds from its
// fdinfo, as kind ("prog", "link", "map") -> ids.
func bpfIDs(t *testing.T, pid int) map[string][]int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string][]int{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, kind := range []string{"prog", "link", "map"} {
				if v, ok := strings.CutPrefix(line, kind+"_id:"); ok {
					if id, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
						ids[kind] = append(ids[kind], id)
					}
				}
			}
		}
	}
	return ids
}

// bpftoolIDs lists the ids of kind ("prog", "link", "map") the kernel has,
// with their names, as `bpftool KIND show` tells.
func bpftoolIDs(t *testing.T, kind string) map[int]string {
	t.Helper()
	out, err := exec.Command("bpftool", "-j", kind, "show").Output()
	if err != nil {
		t.Fatalf("bpftool %s show: %v", kind, err)
	}
	var list []struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("bpftool %s show: %v", kind, err)
	}
	m := map[int]string{}
	for _, o := range list {
		m[o.ID] = o.Name
	}
	return m
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, tool+" not installed (tools/install-deps.sh test)")
		}
	}
}

func pinned(t *testing.T) []string {
	t.Helper()
	var all []string
	filepath.WalkDir("/sys/fs/bpf", func(p string, d os.DirEntry, err error) error {
		if err == nil && p != "/sys/fs/bpf" {
			all = append(all, p)
		}
		return nil
	})
	return all
}

// TestShutdownReleasesEverything: SIGTERM with every pipeline running and
// the collector hung ends the process within the shutdown bound, releases
// every program, link and map (bpftool no longer lists them), pins
// nothing, and leaves a pcapng file that tshark reads.
func TestShutdownReleasesEverything(t *testing.T) {
	testenv.RequireRoot(t)
	requireTools(t, "bpftool", "capinfos")
	pinsBefore := pinned(t)
	healthAddr := testenv.FreeAddr(t)
	pcap := filepath.Join(t.TempDir(), "rx.pcapng")
	cfg := allPipelinesConfig(t, hungCollector(t), pcap, healthAddr)
	a := agentbin.Start(t, nil, "run", "--config", cfg)
	h := waitHealth(t, a, healthAddr, "ok")
	if len(h.Pipelines) != 5 {
		t.Fatalf("/healthz lists %d pipelines, want 5: %+v", len(h.Pipelines), h)
	}
	for _, p := range h.Pipelines {
		if p.State != "running" || len(p.Sources) == 0 || p.Sources[0].Rung == "" {
			t.Errorf("pipeline %s: state %s, sources %+v", p.Name, p.State, p.Sources)
		}
	}

	held := bpfIDs(t, a.PID())
	for _, kind := range []string{"prog", "link", "map"} {
		listed := bpftoolIDs(t, kind)
		if len(held[kind]) == 0 {
			t.Fatalf("sockeye holds no %s", kind)
		}
		for _, id := range held[kind] {
			if _, ok := listed[id]; !ok {
				t.Errorf("bpftool does not list %s %d that sockeye holds", kind, id)
			}
		}
	}
	// Received TCP segments for the capture: the health endpoint itself.
	for range 5 {
		getHealth(healthAddr)
	}
	time.Sleep(1500 * time.Millisecond) // a few export attempts into the hung collector

	start := time.Now()
	code := a.Stop(t, syscall.SIGTERM, 30*time.Second)
	took := time.Since(start)
	lines := strings.Split(strings.TrimSpace(a.Stderr()), "\n")
	t.Logf("exit %d after %s; last log lines:\n%s", code, took.Round(time.Millisecond), strings.Join(lines[max(0, len(lines)-4):], "\n"))
	// 10 s for the exporters' final flush plus the 5 s grace of the
	// process-wide bound (agent/commands.go), and scheduling slack.
	if took > 17*time.Second {
		t.Errorf("exit took %s with the collector hung, want at most ~15 s", took)
	}

	// The kernel frees programs after an RCU grace period: poll briefly.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		for _, kind := range []string{"prog", "link", "map"} {
			listed := bpftoolIDs(t, kind)
			for _, id := range held[kind] {
				if name, ok := listed[id]; ok {
					left = append(left, fmt.Sprintf("%s %d (%s)", kind, id, name))
				}
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still loaded after exit: %s", strings.Join(left, ", "))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if after := pinned(t); len(after) != len(pinsBefore) {
		t.Errorf("/sys/fs/bpf changed: before %v, after %v", pinsBefore, after)
	}

	out, err := exec.Command("capinfos", "-c", "-M", pcap).CombinedOutput()
	if err != nil {
		t.Fatalf("capinfos %s: %v\n%s", pcap, err, out)
	}
	if !strings.Contains(string(out), "Number of packets") || strings.Contains(string(out), "Number of packets:   0\n") {
		t.Errorf("capinfos: %s", out)
	}
	if strings.Contains(a.Stderr(), "panic") {
		t.Errorf("panic in the log:\n%s", a.Stderr())
	}
}

// mapIDsByName is the ids of the maps pid holds, by map name.
func mapIDsByName(t *testing.T, pid int) map[string][]int {
	t.Helper()
	names := bpftoolIDs(t, "map")
	out := map[string][]int{}
	for _, id := range bpfIDs(t, pid)["map"] {
		out[names[id]] = append(out[names[id]], id)
	}
	return out
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReload: SIGHUP applies a changed config without touching unchanged
// pipelines (same kernel maps, so their counts carry on), restarts the
// changed one, rejects an invalid file with its line and keeps running,
// and drops a removed pipeline.
func TestReload(t *testing.T) {
	testenv.RequireRoot(t)
	requireTools(t, "bpftool")
	healthAddr := testenv.FreeAddr(t)
	path := filepath.Join(t.TempDir(), "sockeye.yaml")
	base := `sources:
  traffic:
  drops:
exporters:
  console:
pipelines:
  metrics/traffic: {sources: [traffic], exporters: [console], interval: 1s}
  metrics/drops: {sources: [drops], exporters: [console], interval: %s}
health: {endpoint: "` + healthAddr + `"}
`
	writeFile(t, path, fmt.Sprintf(base, "1s"))
	a := agentbin.Start(t, nil, "run", "--config", path)
	waitHealth(t, a, healthAddr, "ok")
	before := mapIDsByName(t, a.PID())
	if len(before["traffic"]) != 1 || len(before["drops"]) != 1 {
		t.Fatalf("want one traffic and one drops map, got %v", before)
	}

	// Change only the drops pipeline.
	writeFile(t, path, fmt.Sprintf(base, "2s"))
	syscall.Kill(a.PID(), syscall.SIGHUP)
	a.WaitLog(t, "config reloaded", 30*time.Second)
	if !strings.Contains(a.Stderr(), "kept=1 started=1 stopped=1") {
		t.Errorf("reload did not keep traffic and restart drops:\n%s", a.Stderr())
	}
	waitHealth(t, a, healthAddr, "ok")
	after := mapIDsByName(t, a.PID())
	if fmt.Sprint(after["traffic"]) != fmt.Sprint(before["traffic"]) {
		t.Errorf("traffic map replaced by a reload that did not change it: %v -> %v", before["traffic"], after["traffic"])
	}
	if len(after["drops"]) != 1 || after["drops"][0] == before["drops"][0] {
		t.Errorf("drops map not replaced by a reload that changed it: %v -> %v", before["drops"], after["drops"])
	}

	// An invalid file is rejected with its line; everything goes on.
	writeFile(t, path, fmt.Sprintf(base, "1s")+"pipelines_typo: 1\n")
	syscall.Kill(a.PID(), syscall.SIGHUP)
	a.WaitLog(t, "config reload rejected", 30*time.Second)
	if !strings.Contains(a.Stderr(), path+":10: pipelines_typo: unknown key") {
		t.Errorf("rejection does not name the file, line and key:\n%s", a.Stderr())
	}
	if h, _, err := getHealth(healthAddr); err != nil || h.Status != "ok" || len(h.Pipelines) != 2 {
		t.Errorf("after a rejected reload: %+v %v", h, err)
	}
	if now := mapIDsByName(t, a.PID()); fmt.Sprint(now["traffic"], now["drops"]) != fmt.Sprint(after["traffic"], after["drops"]) {
		t.Errorf("a rejected reload changed the maps: %v -> %v", after, now)
	}

	// Removing a pipeline stops it alone.
	writeFile(t, path, strings.Replace(fmt.Sprintf(base, "2s"), "  metrics/drops: {sources: [drops], exporters: [console], interval: 2s}\n", "", 1))
	syscall.Kill(a.PID(), syscall.SIGHUP)
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, _, err := getHealth(healthAddr)
		if err == nil && len(h.Pipelines) == 1 && h.Pipelines[0].Name == "metrics/traffic" && h.Status == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drops pipeline not removed: %+v %v\n%s", h, err, a.Stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if now := mapIDsByName(t, a.PID()); len(now["drops"]) != 0 || fmt.Sprint(now["traffic"]) != fmt.Sprint(before["traffic"]) {
		t.Errorf("after removing drops: %v", now)
	}
	if code := a.Stop(t, syscall.SIGINT, 20*time.Second); code != 0 {
		t.Errorf("exit %d:\n%s", code, a.Stderr())
	}
}

// setprivNobody runs as user nobody with only caps (e.g. "bpf,perfmon")
// in its permitted, effective and ambient sets.
func setprivNobody(caps string) []string {
	w := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}
	if caps == "" {
		return append(w, "--inh-caps=-all")
	}
	plus := "+" + strings.ReplaceAll(caps, ",", ",+")
	return append(w, "--inh-caps=-all,"+plus, "--ambient-caps=-all,"+plus)
}

// startAllAsNobody runs every pipeline as nobody with caps, capturing to
// dir/name.pcapng.
func startAllAsNobody(t *testing.T, dir, name, caps string) (*agentbin.Agent, string) {
	t.Helper()
	healthAddr := testenv.FreeAddr(t)
	cfg := filepath.Join(dir, name+".yaml")
	writeFile(t, cfg, readFile(t, allPipelinesConfig(t, hungCollector(t), filepath.Join(dir, name+".pcapng"), healthAddr)))
	os.Chmod(cfg, 0o644)
	return agentbin.StartWrapped(t, nil, setprivNobody(caps), "run", "--config", cfg), healthAddr
}

func capEff(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no CapEff")
	return ""
}

// TestLeastPrivilege: as user nobody with CAP_BPF and CAP_PERFMON only,
// every pipeline starts and counts; with either missing, sockeye exits
// with a message naming it; --drop-capabilities empties the sets once
// attached, and the pipelines go on.
func TestLeastPrivilege(t *testing.T) {
	testenv.RequireRoot(t)
	requireTools(t, "setpriv")
	// Files nobody reads (config) and writes (capture): t.TempDir's
	// parents are private to root.
	dir, err := os.MkdirTemp("", "sockeye-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)

	t.Run("bpf, perfmon and ipc_lock suffice", func(t *testing.T) {
		a, healthAddr := startAllAsNobody(t, dir, "rx", "bpf,perfmon,ipc_lock")
		h := waitHealth(t, a, healthAddr, "ok")
		for _, p := range h.Pipelines {
			if p.State != "running" {
				t.Errorf("pipeline %s: %s %s", p.Name, p.State, p.Error)
			}
		}
		if got := capEff(t, a.PID()); got != "000000c000004000" {
			t.Errorf("CapEff %s, want CAP_BPF, CAP_PERFMON, CAP_IPC_LOCK (000000c000004000)", got)
		}
		for range 5 {
			getHealth(healthAddr)
		}
		a.Stop(t, syscall.SIGINT, 30*time.Second)
		if out, err := exec.Command("capinfos", "-c", "-M", filepath.Join(dir, "rx.pcapng")).CombinedOutput(); err != nil || strings.Contains(string(out), "Number of packets:   0\n") {
			t.Errorf("capture written as nobody: %v\n%s", err, out)
		}
	})

	t.Run("without CAP_IPC_LOCK only tcp_receive stops", func(t *testing.T) {
		a, healthAddr := startAllAsNobody(t, dir, "rx2", "bpf,perfmon")
		h := waitHealth(t, a, healthAddr, "degraded")
		for _, p := range h.Pipelines {
			if p.Name == "packets/tcp_receive" {
				if p.State != "failed" || !strings.Contains(p.Error, "missing capability CAP_IPC_LOCK") {
					t.Errorf("tcp_receive: %s %q", p.State, p.Error)
				}
			} else if p.State != "running" {
				t.Errorf("pipeline %s: %s %s", p.Name, p.State, p.Error)
			}
		}
		a.Stop(t, syscall.SIGINT, 30*time.Second)
	})

	for _, c := range []struct{ have, missing string }{{"perfmon", "CAP_BPF"}, {"bpf", "CAP_PERFMON"}} {
		t.Run("without "+c.missing, func(t *testing.T) {
			a := agentbin.StartWrapped(t, nil, setprivNobody(c.have), "top")
			deadline := time.Now().Add(30 * time.Second)
			for {
				if exited, code := a.Exited(); exited {
					if code != 1 {
						t.Errorf("exit %d, want 1", code)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("still running without %s:\n%s", c.missing, a.Stderr())
				}
				time.Sleep(50 * time.Millisecond)
			}
			if want := "missing capability " + c.missing; !strings.Contains(a.Stderr(), want) {
				t.Errorf("log does not say %q:\n%s", want, a.Stderr())
			}
		})
	}

	t.Run("drop capabilities after attaching", func(t *testing.T) {
		healthAddr := testenv.FreeAddr(t)
		path := filepath.Join(dir, "drop.yaml")
		writeFile(t, path, `sources:
  traffic:
  drops:
exporters:
  console:
pipelines:
  metrics/traffic: {sources: [traffic], exporters: [console], interval: 1s}
health: {endpoint: "`+healthAddr+`"}
drop_capabilities: true
`)
		os.Chmod(path, 0o644)
		a := agentbin.StartWrapped(t, nil, setprivNobody("bpf,perfmon"), "run", "--config", path)
		a.WaitLog(t, "capabilities dropped", 30*time.Second)
		if got := capEff(t, a.PID()); got != "0000000000000000" {
			t.Errorf("CapEff %s after dropping", got)
		}
		// Traffic after the drop is still counted: the agent's own
		// health endpoint, seen as nobody's sockeye process.
		mark := len(a.Stdout())
		for range 5 {
			getHealth(healthAddr)
		}
		row := fmt.Sprintf("%d 65534 lo", a.PID())
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(a.Stdout()[mark:], row) {
			if time.Now().After(deadline) {
				t.Fatalf("no traffic row %q after dropping capabilities:\n%s", row, a.Stdout()[mark:])
			}
			time.Sleep(100 * time.Millisecond)
		}
		// A reload that would attach something new is refused.
		writeFile(t, path, strings.Replace(readFile(t, path), "pipelines:\n", "pipelines:\n  metrics/drops: {sources: [drops], exporters: [console]}\n", 1))
		syscall.Kill(a.PID(), syscall.SIGHUP)
		a.WaitLog(t, "capabilities were dropped after start", 30*time.Second)
		if code := a.Stop(t, syscall.SIGINT, 20*time.Second); code != 0 {
			t.Errorf("exit %d:\n%s", code, a.Stderr())
		}
	})
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
