//go:build !unix

package otelcol

import "context"

// lockFile is a no-op where flock is unavailable; the atomic rename in
// Build still keeps concurrent builds from corrupting the binary.
func lockFile(context.Context, string) (func(), error) { return func() {}, nil }
