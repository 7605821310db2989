package tcpreceive

// The generated Go and object files are committed so that `go build` needs no
// clang; `make generate` (clang 14) rebuilds them and CI checks they match.
//go:generate go tool bpf2go -tags linux -target amd64 -type event -type owner_key -type owner -type ifkey tcpreceive tcpreceive.bpf.c -- -I../headers -I/usr/include -Wall -Werror
