//go:build linux

package drops

import (
	"strings"
	"testing"
)

// FuzzFindTracefs feeds /proc/self/mountinfo-like text to the parser that
// finds tracefs: nothing may panic, and a mount point found comes from a
// tracefs line and is never longer than what that line wrote.
func FuzzFindTracefs(f *testing.F) {
	f.Add("22 27 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n" +
		"30 22 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime shared:13 - tracefs tracefs rw\n")
	f.Add("31 22 0:12 /instances/x /mnt/x rw - tracefs tracefs rw\n41 1 0:12 / /mnt/with\\040space rw - tracefs nodev rw\n")
	f.Add("1 2 3 / /a\\04 - tracefs\n1 2 3 / \\777 - tracefs\n - tracefs\n")
	f.Fuzz(func(t *testing.T, mountinfo string) {
		dir := findTracefs(strings.NewReader(mountinfo))
		if dir == "" {
			return
		}
		if !strings.Contains(mountinfo, "tracefs") {
			t.Fatalf("found %q without a tracefs line", dir)
		}
		if len(dir) > len(mountinfo) {
			t.Fatalf("mount point %q longer than the listing", dir)
		}
	})
}
