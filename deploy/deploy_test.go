// Package deploy checks the deployment files that no Docker engine or
// Kubernetes cluster can check in CI: the Kubernetes manifests, the docker
// compose file, the Dockerfile's build context, the agent configuration they
// carry, and, with a real collector (SOCKEYE_OTELCOL_VALIDATE, set by
// deploy/validate.sh), the Prometheus names the recording rules rely on.
package deploy

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.yaml.in/yaml/v3"

	"github.com/sockeye/sockeye/agent"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/exporters/otlp"
	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/pipelines"
	"github.com/sockeye/sockeye/pipelines/drops"
	"github.com/sockeye/sockeye/pipelines/processors"
	"github.com/sockeye/sockeye/pipelines/traffic"
)

// Files, relative to this package's directory (go test runs tests there).
const (
	composeFile    = "../docker-compose.yml"
	dockerfile     = "../Dockerfile"
	dockerignore   = "../.dockerignore"
	agentConfig    = "sockeye.yaml"
	collectorFile  = "otelcol.yaml"
	rulesFile      = "prometheus/rules.yml"
	kubernetesDir  = "kubernetes"
	plannedMarker  = "#>"
	collectorOTLP  = "http://otel-collector.observability.svc:4317"
	capturesDir    = "/var/lib/sockeye/captures"
	kernelBTFDir   = "/sys/kernel/btf"
	podLogsDir     = "/var/log/pods"
	configMountDir = "/etc/sockeye"
)

// requiredCaps are what loading and attaching tracing programs needs; the
// manifests must add them rather than run privileged.
var requiredCaps = []string{"BPF", "PERFMON", "NET_ADMIN"}

// obj is a decoded YAML mapping; the helpers below walk it without
// Kubernetes types, which would pull k8s.io modules into go.mod.
type obj = map[string]any

func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(obj)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, keys ...string) string {
	s, _ := get(v, keys...).(string)
	return s
}

func list(v any, keys ...string) []any {
	l, _ := get(v, keys...).([]any)
	return l
}

func strList(v any, keys ...string) []string {
	var out []string
	for _, e := range list(v, keys...) {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// readDocs decodes every YAML document of a file.
func readDocs(t *testing.T, file string) []obj {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var docs []obj
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var d obj
		err := dec.Decode(&d)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// manifests returns the Kubernetes objects of deploy/kubernetes by kind.
func manifests(t *testing.T) map[string][]obj {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(kubernetesDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", kubernetesDir, err)
	}
	byKind := map[string][]obj{}
	for _, f := range files {
		for _, d := range readDocs(t, f) {
			kind := str(d, "kind")
			if kind == "" || str(d, "apiVersion") == "" {
				t.Errorf("%s: a document without kind or apiVersion", f)
				continue
			}
			byKind[kind] = append(byKind[kind], d)
		}
	}
	return byKind
}

func one(t *testing.T, objs map[string][]obj, kind string) obj {
	t.Helper()
	if len(objs[kind]) != 1 {
		t.Fatalf("want exactly one %s, found %d", kind, len(objs[kind]))
	}
	return objs[kind][0]
}

// k8sBytes parses a Kubernetes memory quantity (binary or decimal suffix).
func k8sBytes(q string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(q, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v * u.mult, err
		}
	}
	return strconv.ParseInt(q, 10, 64)
}

// goMemLimit parses GOMEMLIMIT the way the Go runtime does (B, KiB ... TiB).
func goMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v * u.mult, err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// expandK8s expands $(VAR) references to variables defined earlier in the
// list, as the kubelet does.
func expandK8s(s string, defined map[string]string) string {
	return regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).ReplaceAllStringFunc(s, func(ref string) string {
		if v, ok := defined[ref[2:len(ref)-1]]; ok {
			return v
		}
		return ref
	})
}

func TestKubernetesManifests(t *testing.T) {
	objs := manifests(t)
	ds := one(t, objs, "DaemonSet")
	if v := str(ds, "apiVersion"); v != "apps/v1" {
		t.Errorf("DaemonSet apiVersion = %q, want apps/v1", v)
	}
	ns := str(ds, "metadata", "namespace")
	pod := get(ds, "spec", "template", "spec")
	if get(pod, "hostPID") != true {
		t.Error("hostPID is not true: pids and /proc would be the pod's, not the node's")
	}
	if get(pod, "hostNetwork") != true {
		t.Error("hostNetwork is not true: only the pod's interfaces would be seen")
	}
	if str(pod, "dnsPolicy") != "ClusterFirstWithHostNet" {
		t.Error("dnsPolicy is not ClusterFirstWithHostNet: the collector's Service name would not resolve")
	}
	tolerateAll := false
	for _, tol := range list(pod, "tolerations") {
		if str(tol, "operator") == "Exists" && str(tol, "key") == "" && str(tol, "effect") == "" {
			tolerateAll = true
		}
	}
	if !tolerateAll {
		t.Error("no toleration {operator: Exists}: tainted nodes would run no agent")
	}

	sa := str(pod, "serviceAccountName")
	found := false
	for _, o := range objs["ServiceAccount"] {
		found = found || (str(o, "metadata", "name") == sa && str(o, "metadata", "namespace") == ns)
	}
	if !found {
		t.Errorf("serviceAccountName %q has no ServiceAccount in namespace %q", sa, ns)
	}
	for _, o := range objs["Namespace"] {
		if str(o, "metadata", "name") == ns && str(o, "metadata", "labels", "pod-security.kubernetes.io/enforce") != "privileged" {
			t.Errorf("namespace %s does not allow privileged pod security: hostPID and added capabilities would be refused", ns)
		}
	}

	containers := list(pod, "containers")
	if len(containers) != 1 {
		t.Fatalf("want one container, found %d", len(containers))
	}
	c := containers[0]
	checkImage(t, "DaemonSet", str(c, "image"))
	if tag := str(c, "image")[strings.LastIndex(str(c, "image"), ":")+1:]; tag != agent.Version {
		t.Errorf("DaemonSet image tag %q is not the agent's version %s", tag, agent.Version)
	}

	sc := get(c, "securityContext")
	if get(sc, "privileged") != false {
		t.Error("securityContext.privileged must be written false: the capabilities below suffice")
	}
	caps := strList(sc, "capabilities", "add")
	for _, want := range requiredCaps {
		if !slices.Contains(caps, want) {
			t.Errorf("capabilities.add %v lacks %s", caps, want)
		}
	}
	if slices.Contains(caps, "SYS_ADMIN") {
		t.Error("capabilities.add has SYS_ADMIN: CAP_BPF and CAP_PERFMON replace it since 5.8")
	}
	if !slices.Contains(strList(sc, "capabilities", "drop"), "ALL") {
		t.Error("capabilities.drop lacks ALL: the runtime's defaults would be kept on top")
	}

	// Resources, and GOMEMLIMIT below the memory limit.
	for _, kind := range []string{"requests", "limits"} {
		for _, res := range []string{"cpu", "memory"} {
			if str(c, "resources", kind, res) == "" {
				t.Errorf("resources.%s.%s is not set", kind, res)
			}
		}
	}
	limit, err := k8sBytes(str(c, "resources", "limits", "memory"))
	if err != nil {
		t.Errorf("resources.limits.memory: %v", err)
	}

	env := map[string]string{}
	var order []string
	for _, e := range list(c, "env") {
		name := str(e, "name")
		order = append(order, name)
		if ref := str(e, "valueFrom", "fieldRef", "fieldPath"); ref != "" {
			env[name] = "<" + ref + ">"
			continue
		}
		env[name] = expandK8s(str(e, "value"), env)
	}
	if env["K8S_NODE_NAME"] != "<spec.nodeName>" {
		t.Errorf("K8S_NODE_NAME = %q, want the downward API's spec.nodeName", env["K8S_NODE_NAME"])
	}
	if got := env["OTEL_RESOURCE_ATTRIBUTES"]; !strings.Contains(got, "k8s.node.name=<spec.nodeName>") {
		t.Errorf("OTEL_RESOURCE_ATTRIBUTES = %q after expansion (order %v): want k8s.node.name=$(K8S_NODE_NAME), defined after K8S_NODE_NAME", got, order)
	}
	if got := env["OTEL_EXPORTER_OTLP_ENDPOINT"]; got != collectorOTLP {
		t.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT = %q, want %s", got, collectorOTLP)
	}
	memLimit, err := goMemLimit(env["GOMEMLIMIT"])
	switch {
	case err != nil || env["GOMEMLIMIT"] == "":
		t.Errorf("GOMEMLIMIT %q: not set or invalid (%v)", env["GOMEMLIMIT"], err)
	case limit > 0 && (memLimit >= limit || memLimit < limit/2):
		t.Errorf("GOMEMLIMIT %s is %.0f%% of the memory limit: want below it, with headroom (e.g. 80%%)",
			env["GOMEMLIMIT"], 100*float64(memLimit)/float64(limit))
	}

	// Volumes: BTF from the node, the config from the ConfigMap.
	volumes := map[string]any{}
	for _, v := range list(pod, "volumes") {
		volumes[str(v, "name")] = v
	}
	var configMap, configKey string
	btfMounted, podLogsMounted := false, false
	for _, m := range list(c, "volumeMounts") {
		v := volumes[str(m, "name")]
		if v == nil {
			t.Errorf("volumeMount %q has no volume", str(m, "name"))
			continue
		}
		if str(v, "hostPath", "path") == kernelBTFDir && str(m, "mountPath") == kernelBTFDir {
			btfMounted = true
			if get(m, "readOnly") != true {
				t.Errorf("%s is mounted writable", kernelBTFDir)
			}
		}
		if str(m, "mountPath") == configMountDir {
			configMap = str(v, "configMap", "name")
		}
		if str(v, "hostPath", "path") == podLogsDir && str(m, "mountPath") == podLogsDir {
			podLogsMounted = get(m, "readOnly") == true
		}
	}
	if !btfMounted {
		t.Errorf("no hostPath volume of %s mounted at the same path", kernelBTFDir)
	}
	if !podLogsMounted {
		t.Errorf("no read-only hostPath volume of %s at the same path: the containers processor finds pod names there", podLogsDir)
	}
	args := strList(c, "args")
	if i := slices.Index(args, "--config"); i >= 0 && i+1 < len(args) {
		dir, file := path.Split(args[i+1])
		if path.Clean(dir) != configMountDir {
			t.Errorf("--config %s is not in the ConfigMap's mount %s", args[i+1], configMountDir)
		}
		configKey = file
	} else {
		t.Errorf("args %v give no --config", args)
	}

	// The agent config in the ConfigMap passes the agent's validation, with
	// the container's environment, and is deploy/sockeye.yaml.
	var data string
	for _, cm := range objs["ConfigMap"] {
		if str(cm, "metadata", "name") == configMap && str(cm, "metadata", "namespace") == ns {
			data = str(cm, "data", configKey)
		}
	}
	if data == "" {
		t.Fatalf("ConfigMap %q in %q has no key %q", configMap, ns, configKey)
	}
	cfg, err := config.Parse([]byte(data), "ConfigMap "+configMap, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the agent rejects the ConfigMap's config:\n%v", err)
	}
	if cfg.Log.Format != "json" {
		t.Errorf("log format in the DaemonSet is %q, want json", cfg.Log.Format)
	}
	file, err := os.ReadFile(agentConfig)
	if err != nil {
		t.Fatal(err)
	}
	if data != string(file) {
		t.Errorf("ConfigMap %s differs from deploy/%s: keep them the same", configMap, agentConfig)
	}
}

// pinnedTag is an exact version: 1.2.3, v1.2.3, 1.2.3-bookworm, ...
var pinnedTag = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+([.-][0-9A-Za-z.-]+)?$`)

// checkImage fails an image reference that is not pinned to an exact
// version (or digest).
func checkImage(t *testing.T, where, ref string) {
	t.Helper()
	if ref == "" {
		t.Errorf("%s: no image", where)
		return
	}
	if _, digest, ok := strings.Cut(ref, "@"); ok {
		if !strings.HasPrefix(digest, "sha256:") {
			t.Errorf("%s: image %s: bad digest", where, ref)
		}
		return
	}
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		t.Errorf("%s: image %s has no tag: it means latest", where, ref)
		return
	}
	if tag := ref[i+1:]; !pinnedTag.MatchString(tag) {
		t.Errorf("%s: image %s: tag %q is not an exact version", where, ref, tag)
	}
}

func TestComposeImagesPinned(t *testing.T) {
	docs := readDocs(t, composeFile)
	if len(docs) != 1 {
		t.Fatalf("%s: want one document", composeFile)
	}
	services, _ := get(docs[0], "services").(obj)
	if len(services) == 0 {
		t.Fatalf("%s: no services", composeFile)
	}
	for name, s := range services {
		checkImage(t, "service "+name, str(s, "image"))
	}
	if services["sockeye"] != nil {
		img := str(services["sockeye"], "image")
		if tag := img[strings.LastIndex(img, ":")+1:]; tag != agent.Version {
			t.Errorf("service sockeye image tag %q is not the agent's version %s", tag, agent.Version)
		}
	}
}

func TestComposeSockeyeService(t *testing.T) {
	s := get(readDocs(t, composeFile)[0], "services", "sockeye")
	if s == nil {
		t.Fatal("no sockeye service")
	}
	if str(s, "pid") != "host" || str(s, "network_mode") != "host" {
		t.Error("sockeye must run with pid: host and network_mode: host")
	}
	if get(s, "privileged") == true {
		t.Error("sockeye is privileged: the capabilities suffice")
	}
	caps := strList(s, "cap_add")
	for _, want := range requiredCaps {
		if !slices.Contains(caps, want) {
			t.Errorf("cap_add %v lacks %s", caps, want)
		}
	}
	mounts := strList(s, "volumes")
	for _, want := range []string{
		kernelBTFDir + ":" + kernelBTFDir + ":ro",
		"./deploy/" + agentConfig + ":" + configMountDir + "/" + agentConfig + ":ro",
		"captures:" + capturesDir,
	} {
		if !slices.Contains(mounts, want) {
			t.Errorf("volumes %v lack %s", mounts, want)
		}
	}
	env, _ := get(s, "environment").(obj)
	envFunc := func(k string) string { v, _ := env[k].(string); return v }
	if envFunc("OTEL_EXPORTER_OTLP_ENDPOINT") == "" {
		t.Error("no OTEL_EXPORTER_OTLP_ENDPOINT: the agent would not know the collector")
	}
	if _, err := config.Load(agentConfig, envFunc); err != nil {
		t.Errorf("the agent rejects %s with the compose environment:\n%v", agentConfig, err)
	}
}

// TestPlannedPipelines turns on the pipelines kept as "#>" lines in
// deploy/sockeye.yaml, so that they stay valid as the sources evolve.
func TestPlannedPipelines(t *testing.T) {
	data, err := os.ReadFile(agentConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(plannedMarker)) {
		t.Skip("no planned pipelines left")
	}
	all := regexp.MustCompile(`(?m)^`+plannedMarker).ReplaceAll(data, nil)
	cfg, err := config.Parse(all, agentConfig+" (planned pipelines on)", nil)
	if err != nil {
		var unknown, other []string
		for _, e := range config.Errors(err) {
			if strings.Contains(e.Error(), "unknown source type") || strings.Contains(e.Error(), "unknown exporter type") {
				unknown = append(unknown, e.Error())
			} else {
				other = append(other, e.Error())
			}
		}
		if len(other) > 0 {
			t.Fatalf("planned pipelines do not validate:\n%s", strings.Join(other, "\n"))
		}
		t.Skipf("planned pipelines use components this build does not have yet:\n%s", strings.Join(unknown, "\n"))
	}
	t.Logf("%d pipelines valid with the planned ones on", len(cfg.Pipelines))
}

// ignoreRules is the subset of .dockerignore syntax this repository uses:
// patterns matched on a path or any of its parent directories, the last
// match deciding, "!" re-including.
type ignoreRules []struct {
	pattern string
	include bool
}

func readIgnore(t *testing.T) ignoreRules {
	t.Helper()
	data, err := os.ReadFile(dockerignore)
	if err != nil {
		t.Fatal(err)
	}
	var r ignoreRules
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		inc := strings.HasPrefix(line, "!")
		p := path.Clean(strings.TrimPrefix(line, "!"))
		r = append(r, struct {
			pattern string
			include bool
		}{p, inc})
	}
	return r
}

func (r ignoreRules) excluded(rel string) bool {
	excluded := false
	for _, rule := range r {
		for p := rel; p != "."; p = path.Dir(p) {
			if ok, _ := path.Match(rule.pattern, p); ok {
				excluded = !rule.include
				break
			}
		}
	}
	return excluded
}

// TestDockerBuildContext runs the Dockerfile's go build on exactly the files
// .dockerignore lets into the build context, and checks the binary is
// static, as the scratch image needs.
func TestDockerBuildContext(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent")
	}
	dockerText, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	modText, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	checkDockerfileBase(t, string(dockerText), string(modText))

	build := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build [^&\n]*-o /out/sockeye [^&\n]*?)\s*(&&|$)`).FindSubmatch(dockerText)
	if build == nil {
		t.Fatal("Dockerfile: no `RUN CGO_ENABLED=0 go build ... -o /out/sockeye ...` line")
	}
	rules := readIgnore(t)
	ctxDir := t.TempDir()
	err = filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("..", p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if rules.excluded(rel) {
			if d.IsDir() && !rules.mayInclude(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(ctxDir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "sockeye")
	script := strings.Replace(strings.TrimRight(string(build[1]), " \t\\"), "/out/sockeye", out, 1)
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = ctxDir
	// The context has no nested go.work; GOFLAGS from the caller could add -mod=vendor and the like.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s\nin the build context .dockerignore leaves: %v\n%s", script, err, msg)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary asks for a dynamic loader: the scratch image has none")
		}
	}
}

// mayInclude reports whether some rule could re-include a path below dir.
func (r ignoreRules) mayInclude(dir string) bool {
	for _, rule := range r {
		if rule.include && (strings.HasPrefix(rule.pattern, dir+"/") || rule.pattern == dir) {
			return true
		}
	}
	return false
}

// checkDockerfileBase checks that every FROM is pinned, and that the Go
// image is at least the go directive of go.mod.
func checkDockerfileBase(t *testing.T, dockerText, modText string) {
	t.Helper()
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(dockerText, -1)
	if len(froms) == 0 {
		t.Fatal("Dockerfile: no FROM")
	}
	goTag := ""
	for _, m := range froms {
		ref := m[1]
		if ref == "scratch" {
			continue
		}
		checkImage(t, "Dockerfile FROM", ref)
		if strings.HasPrefix(ref, "golang:") {
			goTag = strings.TrimPrefix(ref, "golang:")
		}
	}
	want := regexp.MustCompile(`(?m)^go\s+(\S+)`).FindStringSubmatch(modText)
	got := regexp.MustCompile(`^[0-9]+\.[0-9]+(\.[0-9]+)?`).FindString(goTag)
	if want == nil || got == "" {
		t.Fatalf("Dockerfile: no golang:X.Y.Z build image (found %q) for go.mod's go directive", goTag)
	}
	if versionLess(got, want[1]) {
		t.Errorf("Dockerfile builds with Go %s, go.mod needs %s", got, want[1])
	}
}

func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// TestDockerignoreCoversAgent checks that the build context holds every
// package of the agent, without building it.
func TestDockerignoreCoversAgent(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}} {{.Dir}}{{end}}", "../agent/cmd/sockeye").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	rules := readIgnore(t)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, dir, _ := strings.Cut(line, " ")
		rel, err := filepath.Rel(root, dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a module dependency, downloaded in the image
		}
		if rules.excluded(filepath.ToSlash(rel) + "/x.go") {
			t.Errorf(".dockerignore leaves out %s (%s), which the agent imports", rel, pkg)
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if rules.excluded(f) {
			t.Errorf(".dockerignore leaves out %s", f)
		}
	}
}

// TestCollectorPrometheusNames sends sockeye's metrics, through its own OTLP
// exporter and the deployed config's processors, to a collector running
// deploy/otelcol.yaml (on free local ports), and checks that every metric
// and label the recording rules use is in what Prometheus would scrape.
func TestCollectorPrometheusNames(t *testing.T) {
	bin := os.Getenv("SOCKEYE_OTELCOL_VALIDATE")
	if bin == "" {
		t.Skip("SOCKEYE_OTELCOL_VALIDATE is not set (deploy/validate.sh builds the collector and sets it)")
	}

	// The deployed collector config, on local ports and without its own
	// telemetry server (:8888 may be taken).
	var col obj
	data, err := os.ReadFile(collectorFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &col); err != nil {
		t.Fatal(err)
	}
	grpcPort, promPort := testenv.FreePort(t), testenv.FreePort(t)
	set := func(v string, keys ...string) {
		m, ok := get(col, keys[:len(keys)-1]...).(obj)
		if !ok {
			t.Fatalf("%s: no %s", collectorFile, strings.Join(keys[:len(keys)-1], "."))
		}
		m[keys[len(keys)-1]] = v
	}
	set(fmt.Sprintf("127.0.0.1:%d", grpcPort), "receivers", "otlp", "protocols", "grpc", "endpoint")
	set(fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "receivers", "otlp", "protocols", "http", "endpoint")
	set(fmt.Sprintf("127.0.0.1:%d", promPort), "exporters", "prometheus", "endpoint")
	// No traces are sent; pointing the Jaeger exporter back at the receiver keeps its log quiet.
	set(fmt.Sprintf("127.0.0.1:%d", grpcPort), "exporters", "otlp_grpc/jaeger", "endpoint")
	get(col, "service").(obj)["telemetry"] = obj{"metrics": obj{"level": "none"}}
	colFile := filepath.Join(t.TempDir(), "otelcol.yaml")
	out, err := yaml.Marshal(col)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(colFile, out, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var colLog bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--config", colFile)
	cmd.Stdout, cmd.Stderr = &colLog, &colLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("collector output:\n%s", colLog.String())
		}
	}()
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", promPort)
	scrape := func() string {
		resp, err := http.Get(metricsURL)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor := func(what string, ok func() bool) {
		for !ok() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("the collector's prometheus endpoint", func() bool {
		resp, err := http.Get(metricsURL)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})

	// The agent's exporter, configured from deploy/sockeye.yaml.
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": fmt.Sprintf("http://127.0.0.1:%d", grpcPort)}
	cfg, err := config.Load(agentConfig, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	var pl *config.Pipeline
	for _, p := range cfg.Pipelines {
		if slices.ContainsFunc(p.Sources, func(id config.ID) bool { return id.Type == "traffic" }) {
			pl = p
		}
	}
	if pl == nil || len(pl.Exporters) == 0 {
		t.Fatalf("%s: no traffic pipeline", agentConfig)
	}
	exp := cfg.Exporters[pl.Exporters[0]]
	if exp == nil || exp.OTLP == nil {
		t.Fatalf("%s: pipeline %s does not export over otlp first", agentConfig, pl.ID)
	}
	res := resource.NewSchemaless(attribute.String("service.name", "sockeye"), attribute.String("host.name", "node-a"))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := otlp.NewMetrics("otlp", exp.OTLP, res, time.Hour, log)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())

	trafficBatch := &pipelines.Batch{Pipeline: pl.ID.String(), Source: "traffic", Metrics: traffic.Metrics, Rows: []pipelines.Row{
		traffic.Entry{PID: 4242, UID: 1000, Device: "eth0", Command: "curl", TxPackets: 3, RxPackets: 2, TxBytes: 4500, RxBytes: 900}.Row(false),
	}}
	for _, id := range pl.Processors {
		p := cfg.Processors[id]
		switch {
		case p.Attributes != nil:
			trafficBatch = processors.NewAttributes(id.String(), p.Attributes).Process(trafficBatch)
		case p.Filter != nil:
			trafficBatch = processors.NewFilter(id.String(), p.Filter).Process(trafficBatch)
		}
	}
	dropsBatch := &pipelines.Batch{Pipeline: "metrics/drops", Source: "drops", Metrics: drops.Metrics, Rows: []pipelines.Row{
		drops.Entry{Function: "tcp_v4_rcv", Reason: "NO_SOCKET", Type: "ipv4", Transport: "tcp", Packets: 7}.Row(),
	}}
	for _, b := range []*pipelines.Batch{trafficBatch, dropsBatch} {
		if err := m.ExportMetrics(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.ForceFlush(ctx); err != nil {
		t.Fatalf("export to the collector: %v", err)
	}

	// What the rules use must be in the scrape.
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	uses := regexp.MustCompile(`sum by \(([^)]*)\) \(rate\(([a-zA-Z_:][a-zA-Z0-9_:]*)\[`).FindAllStringSubmatch(string(rules), -1)
	if len(uses) == 0 {
		t.Fatalf("%s: no `sum by (...) (rate(metric[...]))` rule found", rulesFile)
	}
	// Label values are not translated: they tell when both metrics arrived.
	var exposition string
	waitFor("sockeye's metrics in the scrape", func() bool {
		exposition = scrape()
		return strings.Contains(exposition, `"curl"`) && strings.Contains(exposition, `"NO_SOCKET"`)
	})
	for _, u := range uses {
		name := u[2]
		series := regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+`\{([^}]*)\}`).FindAllStringSubmatch(exposition, -1)
		if len(series) == 0 {
			t.Errorf("%s uses %s, which the collector does not expose; it exposes:\n%s", rulesFile, name, names(exposition))
			continue
		}
		for _, label := range strings.Split(u[1], ",") {
			label = strings.TrimSpace(label)
			if !regexp.MustCompile(`(^|,)` + regexp.QuoteMeta(label) + `="`).MatchString(series[0][1]) {
				t.Errorf("%s groups %s by %s, a label it does not have: %s", rulesFile, name, label, series[0][0])
			}
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("rules match the collector's names, e.g.\n%s", strings.Join(regexp.MustCompile(`(?m)^(process_network_io_bytes_total|sockeye_network_packet_dropped_total)\{.*$`).FindAllString(exposition, -1), "\n"))
}

// names lists the metric names of a Prometheus exposition.
func names(exposition string) string {
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+)`).FindAllStringSubmatch(exposition, -1) {
		out = append(out, m[1])
	}
	return strings.Join(out, "\n")
}
