# sockeye agent image: a static binary on an empty base.
#
#   docker build -t sockeye:0.1.0 .
#
# The build stage's tag is the Go release the project is tested with; the
# final image holds only the binary and the CA bundle (for OTLP over TLS).
# The agent runs as uid 0: loading eBPF programs needs capabilities, and a
# non-root user loses them when the runtime starts it. Grant only CAP_BPF,
# CAP_PERFMON, CAP_NET_ADMIN (and CAP_SYS_RESOURCE on kernels before 5.11),
# not --privileged: see docs/deploy.md.

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=0: no libc in the final image. The BPF objects are committed
# and embedded, so no clang is needed here.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/sockeye ./agent/cmd/sockeye \
	&& mkdir -p /out/captures

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/sockeye /usr/bin/sockeye
# A named volume mounted here starts with this directory's owner and mode.
COPY --from=build /out/captures /var/lib/sockeye/captures
USER 0:0
ENTRYPOINT ["/usr/bin/sockeye"]
CMD ["run", "--config", "/etc/sockeye/sockeye.yaml"]
