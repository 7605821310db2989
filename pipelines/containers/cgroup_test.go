package containers

import (
	"os"
	"path/filepath"
	"testing"
)

// cgroupCases are the files under testdata/cgroup: real /proc/<pid>/cgroup
// shapes, one per runtime and cgroup driver, and host processes.
var cgroupCases = []struct {
	file, id, podUID string
}{
	{"docker-systemd-v2", "7b4e8c6a22a2f4bfbc8e1e06b5fe768703b5210382b997396839ed4326efb4c8", ""},
	{"docker-cgroupfs-v1", "a7d742d26e3fdcff842f7b86033e3c6d8e770a1a5c875acdb504b8a728dd34b0", ""},
	{"containerd-kubelet-systemd-v2", "b87e07c5aba9fe0e4a2fe11c8f1a979bea95aa99458c3ee9cfca7c907aa22d70", "1135940c-12e4-4fac-a88d-9dd46733c8db"},
	{"containerd-kubelet-cgroupfs-v1", "25c6fc8300af16c545c624bd842b85508bf750cd0e26949183a589f78899bd47", "dc201b12-f31c-4ca8-9334-c729fb946674"},
	{"containerd-systemd-colon-v2", "4c64752269f098ab180d5fb201bda701198f093e253e287d1f55de01f66d67ad", "86f682fd-1a92-4881-b5c4-9ccd9fcd4e5a"},
	{"crio-guaranteed-v2", "2d5d5627b7ec06a67835b82d62d4dd0ebab38cb387ee82d42b4cc9bc7d0741e4", "c9869f41-f244-4092-8913-b3ef877d9a8a"},
	{"crio-conmon-v2", "", ""},
	{"podman-v2", "4736223b4fa4d07c8c3d07393545c49af653fdff2f5db9bd4ef610842512fbd3", ""},
	{"podman-conmon-v2", "", ""},
	{"podman-rootless-v2", "690f010c111ce93b587664b69b17b1e755f59e249cf136c29bce016cf612dfdd", ""},
	{"actions-job-v1", "234cc1256f566260e489ced44b0042c1abf5871076e7392abd622629f720324f", ""},
	{"buildkit-v2", "dab724d260cf0601942e4f1efdacb721a246251a7cdc94821c68aba300985c44", ""},
	{"cgroupns-private-v2", "0cd6fee458f1e55a3212bdaf3d8a39b67743a68dd47a049be780bea46208468d", "b28fd614-6e65-4e48-a192-952ff24133f6"},
	{"kind-nested-v2", "f96b7b68a88c8f3388132d9b932a67a60c2a2abb5a475fdd1a217e58dc4f669c", "74b588e6-7596-409b-b783-8096caf6e0ce"},
	{"static-pod-cgroupfs-v1", "f28eefd3faa3db2934711ea6abe0ac49cb889ed8295dee19741045a1886f1b6a", "b06bbcf497d2f69950f45333e6f32c5f"},
	{"deleted-v2", "0efdbb36b68cec1edd885eceb00759625e21b37c35f52a3d197cbce373a4601b", ""},
	{"host-session-v2", "", ""},
	{"host-init-v2", "", ""},
	{"host-service-v1", "", ""},
	{"host-hybrid-v1", "", ""},
	{"cgroupns-own-root-v2", "", ""},
}

func TestParseCgroup(t *testing.T) {
	covered := map[string]bool{}
	for _, c := range cgroupCases {
		covered[c.file] = true
		t.Run(c.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "cgroup", c.file))
			if err != nil {
				t.Fatal(err)
			}
			id, uid, err := parseCgroup(data)
			if err != nil {
				t.Fatalf("parseCgroup: %v", err)
			}
			if id != c.id || uid != c.podUID {
				t.Errorf("got (%q, %q), want (%q, %q)", id, uid, c.id, c.podUID)
			}
		})
	}
	files, err := os.ReadDir(filepath.Join("testdata", "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !covered[f.Name()] {
			t.Errorf("testdata/cgroup/%s has no row in cgroupCases", f.Name())
		}
	}
}

func TestParseCgroupLines(t *testing.T) {
	const id = "7b4e8c6a22a2f4bfbc8e1e06b5fe768703b5210382b997396839ed4326efb4c8"
	for _, c := range []struct {
		name, in, id, podUID string
		err                  bool
	}{
		{name: "empty", in: "", err: true},
		{name: "not a cgroup file", in: "hello\nworld\n", err: true},
		{name: "no trailing newline", in: "0::/docker/" + id, id: id},
		{name: "first line with an id wins", in: "2:pids:/docker/" + id + "\n1:name=systemd:/docker/" + id[:63] + "0\n", id: id},
		{name: "uppercase is not an id", in: "0::/docker/" + "7B4E" + id[4:] + "\n"},
		{name: "63 hex digits", in: "0::/docker/" + id[1:] + "\n"},
		{name: "id glued to a word", in: "0::/system.slice/docker" + id + ".scope\n"},
		{name: "prefix without dash", in: "0::/system.slice/x" + id + "\n"},
		{name: "sub-cgroup below the container", in: "0::/kubepods/pod1135940c-12e4-4fac-a88d-9dd46733c8db/" + id + "/sub\n", id: id, podUID: "1135940c-12e4-4fac-a88d-9dd46733c8db"},
		{name: "pod word not a segment prefix", in: "0::/kubepods/ipod1135940c-12e4-4fac-a88d-9dd46733c8db/" + id + "\n", id: id},
		{name: "pod uid with bad dashes", in: "0::/kubepods/pod1135940c12e4-4fac-a88d-9dd46733c8db0/" + id + "\n", id: id},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, uid, err := parseCgroup([]byte(c.in))
			if (err != nil) != c.err {
				t.Fatalf("err = %v, want error %v", err, c.err)
			}
			if id != c.id || uid != c.podUID {
				t.Errorf("got (%q, %q), want (%q, %q)", id, uid, c.id, c.podUID)
			}
		})
	}
}

func TestParseStartTime(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     uint64
		err      bool
	}{
		{name: "plain", in: statLine(4242, "nginx", 98765), want: 98765},
		{name: "spaces in comm", in: statLine(4242, "Web Content", 12), want: 12},
		{name: "parentheses in comm", in: statLine(4242, ") (x) 1 2 3 (", 77), want: 77},
		{name: "no trailing newline", in: "1 (a) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 555", want: 555},
		{name: "truncated", in: "1 (a) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0\n", err: true},
		{name: "no comm", in: "1 a S 0\n", err: true},
		{name: "not a number", in: "1 (a) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 x 1\n", err: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseStartTime([]byte(c.in))
			if (err != nil) != c.err {
				t.Fatalf("err = %v, want error %v", err, c.err)
			}
			if got != c.want {
				t.Errorf("got %d, want %d", got, c.want)
			}
		})
	}
}

func TestParsePodDir(t *testing.T) {
	for _, c := range []struct {
		in, ns, pod, uid string
		ok               bool
	}{
		{"kube-system_coredns-5d78c9869d-8xq2k_1135940c-12e4-4fac-a88d-9dd46733c8db", "kube-system", "coredns-5d78c9869d-8xq2k", "1135940c-12e4-4fac-a88d-9dd46733c8db", true},
		{"kube-system_kube-apiserver-node-1_b06bbcf497d2f69950f45333e6f32c5f", "kube-system", "kube-apiserver-node-1", "b06bbcf497d2f69950f45333e6f32c5f", true},
		{"default_web_1135940c-12e4-4fac-a88d-9dd46733c8db_extra", "", "", "", false},
		{"default_web", "", "", "", false},
		{"_web_1135940c-12e4-4fac-a88d-9dd46733c8db", "", "", "", false},
		{"default__1135940c-12e4-4fac-a88d-9dd46733c8db", "", "", "", false},
		{"default_web_not-a-uid", "", "", "", false},
		{"lost+found", "", "", "", false},
	} {
		ns, pod, uid, ok := parsePodDir(c.in)
		if ns != c.ns || pod != c.pod || uid != c.uid || ok != c.ok {
			t.Errorf("parsePodDir(%q) = (%q, %q, %q, %v), want (%q, %q, %q, %v)", c.in, ns, pod, uid, ok, c.ns, c.pod, c.uid, c.ok)
		}
	}
}
