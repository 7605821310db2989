# sockeye: the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
BIN     := bin/sockeye
CLANG   ?= clang-14
STRIP   ?= llvm-strip-14

.PHONY: build run test test-unit test-kernels test-deploy generate check-generated bench vet clean

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./agent/cmd/sockeye

# Runs the agent on its embedded default config (needs root: eBPF).
run: build
	$(BIN) run

# Every test: unit, BPF integration on this kernel, end to end with a real
# OpenTelemetry Collector. BPF tests skip without root unless
# SOCKEYE_REQUIRE_BPF=1, which CI sets so that they fail instead.
test:
	tools/install-deps.sh test
	tools/otelcol/build.sh
	tools/jaeger/build.sh
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

test-unit:
	$(GO) test -count=1 -short ./...

# The BPF suites on Linux 5.10, 6.1 and 6.12 under QEMU, and on this host.
test-kernels:
	test/kernels/run.sh --write-docs

# Checks the Dockerfile, docker-compose.yml, deploy/ and the Kubernetes
# manifests without a Docker engine or a cluster (see docs/deploy.md).
test-deploy:
	deploy/validate.sh

# Rebuilds the BPF objects and their Go bindings from bpf/**/*.bpf.c.
generate:
	tools/install-deps.sh build
	BPF2GO_CC=$(CLANG) BPF2GO_STRIP=$(STRIP) $(GO) generate ./bpf/...

# Fails when the committed BPF objects or bindings differ from what the C
# sources build to.
check-generated: generate
	@git diff --exit-code --stat -- bpf/ || { echo "bpf2go output is stale: run 'make generate' and commit"; exit 1; }

bench:
	bench/traffic.sh

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
