//go:build linux

package containers

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockeye/sockeye/internal/testenv"
)

// childEnv makes the test binary a child process that lives until its stdin
// closes, to be moved between cgroups.
const childEnv = "SOCKEYE_CONTAINERS_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestLiveSelf resolves the test process itself against the real /proc. On a
// host the answer is empty; in a container it is that container.
func TestLiveSelf(t *testing.T) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	id, uid, err := parseCgroup(data)
	if err != nil {
		t.Fatalf("/proc/self/cgroup does not parse: %v\n%s", err, data)
	}
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	if start, err := parseStartTime(stat); err != nil || start == 0 {
		t.Fatalf("/proc/self/stat start time = %d, %v\n%s", start, err, stat)
	}
	r := New(Options{})
	info := r.Lookup(uint32(os.Getpid()))
	if info.ContainerID != id || info.PodUID != uid {
		t.Errorf("Lookup(self) = %+v, want container %q pod %q", info, id, uid)
	}
	if again := r.Lookup(uint32(os.Getpid())); again != info {
		t.Errorf("cached Lookup(self) = %+v, want %+v", again, info)
	}
	t.Logf("self: %+v", info)
}

// TestLiveCgroupChild puts a child process into new cgroup v2 directories
// named like a Docker scope and like a kubelet pod's containerd scope, and
// resolves it through the real /proc.
func TestLiveCgroupChild(t *testing.T) {
	mnt, writable, err := cgroup2Mount()
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case mnt == "":
		t.Skip("cgroup v2 is not mounted")
	case os.Geteuid() != 0:
		t.Skip("creating cgroups needs root")
	case !writable:
		t.Skipf("cgroup v2 at %s is mounted read-only", mnt)
	}

	dockerID, podID := randomHex(t, 32), randomHex(t, 32)
	const uid = "3f2c9a0e-5b7d-4e61-9c8a-1d2e3f405162"
	slice := filepath.Join(mnt, "sockeye-test-"+strconv.Itoa(os.Getpid())+".slice")
	podSlice := filepath.Join(slice, "kubepods-besteffort-pod"+strings.ReplaceAll(uid, "-", "_")+".slice")
	dockerScope := filepath.Join(slice, "docker-"+dockerID+".scope")
	podScope := filepath.Join(podSlice, "cri-containerd-"+podID+".scope")
	for _, dir := range []string{slice, dockerScope, podSlice, podScope} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			testenv.Unavailable(t, "cannot create a cgroup: "+err.Error())
		}
		t.Cleanup(func() { removeCgroup(t, dir) })
	}

	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), childEnv+"=1")
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	// Runs before the cgroups are removed: they must be empty.
	t.Cleanup(func() {
		stdin.Close()
		if err := child.Wait(); err != nil {
			t.Errorf("child: %v", err)
		}
	})
	pid := uint32(child.Process.Pid)

	pods := t.TempDir()
	podLogs(t, pods, "shop_cart-7d9f8b6c5-x2x9q_"+uid)

	moveTo(t, dockerScope, pid)
	if got, want := New(Options{PodLogsRoot: pods}).Lookup(pid), (Info{ContainerID: dockerID}); got != want {
		t.Errorf("child in %s: Lookup = %+v, want %+v", dockerScope, got, want)
	}
	moveTo(t, podScope, pid)
	want := Info{ContainerID: podID, PodUID: uid, PodName: "cart-7d9f8b6c5-x2x9q", Namespace: "shop"}
	if got := New(Options{PodLogsRoot: pods}).Lookup(pid); got != want {
		cg, _ := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/cgroup")
		t.Errorf("child in %s: Lookup = %+v, want %+v\n/proc/%d/cgroup:\n%s", podScope, got, want, pid, cg)
	}
}

// cgroup2Mount returns the first cgroup2 mount point (on hybrid hosts, often
// /sys/fs/cgroup/unified) and whether it is mounted read-write.
func cgroup2Mount() (dir string, writable bool, err error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false, err
	}
	for line := range strings.Lines(string(data)) {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		before, after, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(before), strings.Fields(after)
		if len(f) < 6 || len(g) < 1 || g[0] != "cgroup2" {
			continue
		}
		for _, o := range strings.Split(f[5], ",") {
			if o == "rw" {
				writable = true
			}
		}
		return f[4], writable, nil
	}
	return "", false, nil
}

func moveTo(t *testing.T, cgroup string, pid uint32) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(cgroup, "cgroup.procs"), os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(strconv.Itoa(int(pid)))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		testenv.Unavailable(t, "cannot move a process into a cgroup: "+err.Error())
	}
}

// removeCgroup retries while the kernel still counts the reaped child as a
// member.
func removeCgroup(t *testing.T, dir string) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			t.Errorf("removing cgroup: %v", err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
