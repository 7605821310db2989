//go:build linux

package reliability

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/internal/testpeer/otelcol"
)

// The traffic child sends datagrams of this size to itself over lo, from a
// thread named childComm, so its transmit bytes are known exactly.
const (
	childEnv  = "SOCKEYE_RELIABILITY_CHILD"
	childComm = "sk-rel-udp"
	payload   = 200
	// A UDP/IPv4 datagram on lo, link-layer header included.
	frameBytes = payload + 8 + 20 + 14
)

// TestMain lets the test binary double as the traffic child.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "udp" {
		if err := udpChild(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// udpChild reads "send N" lines and answers "ok N" once N datagrams went
// out and came back; it stops at end of input.
func udpChild(in io.Reader, out io.Writer) error {
	runtime.LockOSThread()
	name := append([]byte(childComm), 0)
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0); err != nil {
		return err
	}
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer rx.Close()
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		return err
	}
	defer tx.Close()
	buf := make([]byte, payload)
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var n int
		if _, err := fmt.Sscanf(sc.Text(), "send %d", &n); err != nil {
			return fmt.Errorf("bad command %q: %w", sc.Text(), err)
		}
		for i := 0; i < n; i++ {
			if _, err := tx.Write(buf); err != nil {
				return err
			}
			rx.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := rx.Read(buf); err != nil {
				return err
			}
		}
		fmt.Fprintf(out, "ok %d\n", n)
	}
	return sc.Err()
}

// trafficChild is a running udpChild.
type trafficChild struct {
	pid  int
	in   io.WriteCloser
	out  *bufio.Reader
	sent int
	stop func()
}

func startTrafficChild(t *testing.T) *trafficChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=udp")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &trafficChild{pid: cmd.Process.Pid, in: in, out: bufio.NewReader(out)}
	// stop ends the child and reaps it: a zombie would still count as a
	// live process to the agent.
	c.stop = sync.OnceFunc(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	t.Cleanup(c.stop)
	return c
}

// send has the child send n datagrams and waits until it did.
func (c *trafficChild) send(t *testing.T, n int) {
	t.Helper()
	if _, err := fmt.Fprintf(c.in, "send %d\n", n); err != nil {
		t.Fatalf("traffic child: %v", err)
	}
	line, err := c.out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != fmt.Sprintf("ok %d", n) {
		t.Fatalf("traffic child answered %q, %v", line, err)
	}
	c.sent += n
}

// txMatch matches the child's transmit bytes on lo, as exported by the
// agent whose resource carries sockeye.test.agent=agent ("" for any).
func (c *trafficChild) txMatch(agent string) func(otelcol.MetricPoint) bool {
	pid := strconv.Itoa(c.pid)
	return func(p otelcol.MetricPoint) bool {
		return p.Name == "process.network.io" && p.Attrs["process.pid"] == pid &&
			p.Attrs["network.interface.name"] == "lo" && p.Attrs["network.io.direction"] == "transmit" &&
			(agent == "" || p.Resource["sockeye.test.agent"] == agent)
	}
}

// acceptServer accepts TCP connections on 127.0.0.1 in this process, so
// each connect makes one accept record with this process's pid.
type acceptServer struct {
	ln       net.Listener
	port     int
	accepted chan struct{}
}

func startAcceptServer(t *testing.T) *acceptServer {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &acceptServer{ln: ln, port: ln.Addr().(*net.TCPAddr).Port, accepted: make(chan struct{}, 1<<16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			s.accepted <- struct{}{}
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

// connect makes n connections one after the other, each accepted before
// the next, and returns their client ports.
func (s *acceptServer) connect(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp4", s.ln.Addr().String(), 5*time.Second)
		if err != nil {
			return ports, err
		}
		ports = append(ports, c.LocalAddr().(*net.TCPAddr).Port)
		// A connection reset before accept returns has lost its local
		// port by then (the record would say port 0): wait for the accept.
		select {
		case <-s.accepted:
		case <-time.After(5 * time.Second):
			c.Close()
			return ports, fmt.Errorf("connection %d of %d not accepted", i+1, n)
		}
		// A reset instead of a FIN leaves no TIME_WAIT socket behind, so
		// thousands of connections do not use up the local ports.
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	return ports, nil
}

// acceptMatch matches accept records of this process on s, from agent.
func (s *acceptServer) acceptMatch(agent string) func(otelcol.LogRecord) bool {
	pid, port := strconv.Itoa(os.Getpid()), strconv.Itoa(s.port)
	return func(r otelcol.LogRecord) bool {
		return r.EventName == "sockeye.tcp.accept" && r.Attrs["process.pid"] == pid &&
			r.Attrs["server.port"] == port && (agent == "" || r.Resource["sockeye.test.agent"] == agent)
	}
}

// latest returns, per series (attributes and resource), the last point
// matching, by time.
func latest(points []otelcol.MetricPoint, match func(otelcol.MetricPoint) bool) []otelcol.MetricPoint {
	last := map[string]otelcol.MetricPoint{}
	for _, p := range points {
		if !match(p) {
			continue
		}
		k := seriesKey(p)
		if q, ok := last[k]; !ok || !p.Time.Before(q.Time) {
			last[k] = p
		}
	}
	out := make([]otelcol.MetricPoint, 0, len(last))
	for _, p := range last {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return seriesKey(out[i]) < seriesKey(out[j]) })
	return out
}

func seriesKey(p otelcol.MetricPoint) string {
	kv := func(m map[string]string) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k+"="+m[k])
		}
		sort.Strings(keys)
		return strings.Join(keys, ",")
	}
	return p.Name + "{" + kv(p.Attrs) + "}[" + kv(p.Resource) + "]"
}

// pki is a throwaway CA with a server certificate for 127.0.0.1 and
// localhost and a client certificate, as PEM files.
type pki struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	serial := int64(0)
	issue := func(tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key
	}
	write := func(name string, blocks ...*pem.Block) string {
		var b []byte
		for _, blk := range blocks {
			b = append(b, pem.EncodeToMemory(blk)...)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPEM := func(k *ecdsa.PrivateKey) *pem.Block {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	}
	certPEM := func(c *x509.Certificate) *pem.Block { return &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw} }

	ca, caKey := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "sockeye reliability test CA"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, nil, nil)
	srv, srvKey := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	cli, cliKey := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "sockeye agent"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	return &pki{
		caFile:     write("ca.pem", certPEM(ca)),
		serverCert: write("server.pem", certPEM(srv)),
		serverKey:  write("server-key.pem", keyPEM(srvKey)),
		clientCert: write("client.pem", certPEM(cli)),
		clientKey:  write("client-key.pem", keyPEM(cliKey)),
	}
}

// procStatus reads a numeric field of /proc/PID/status (VmRSS is in kB).
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// writeConfig writes a sockeye config into a temp file.
func writeConfig(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncErrs collects errors from helper goroutines for the test goroutine.
type syncErrs struct {
	mu   sync.Mutex
	errs []error
}

func (s *syncErrs) add(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

func (s *syncErrs) get() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}
