package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wdsio/wds/internal/celltest"
)

// wdsBin is the wds binary under test, built once by TestMain: the
// commands run as real processes against real cells.
var wdsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wds-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	wdsBin = filepath.Join(dir, "wds")
	build := exec.Command("go", "build", "-o", wdsBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is the environment of the processes under test: WDS_ENDPOINT of the
// developer's shell must not leak in.
func env() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, EnvEndpoint+"=") {
			out = append(out, kv)
		}
	}
	return out
}

type result struct {
	stdout, stderr string
	code           int
}

// wds runs the binary to completion (at most 60 s).
func wds(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wdsBin, args...)
	cmd.Env = env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("wds %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// mustWDS runs the binary and fails the test unless it exits 0.
func mustWDS(t *testing.T, args ...string) string {
	t.Helper()
	r := wds(t, args...)
	if r.code != 0 {
		t.Fatalf("wds %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// proc is a long-running wds process whose stdout is read line by line.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  chan string
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(wdsBin, args...)
	cmd.Env = env()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, lines: make(chan string, 4096), stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() {
		<-read // Wait closes stdout: read it all first
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// next returns the next stdout line, failing the test after timeout or at
// the end of the output.
func (p *proc) next(timeout time.Duration) string {
	p.t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("%s: output ended; stderr:\n%s", p.cmd.Args, p.stderr.String())
		}
		return l
	case <-time.After(timeout):
		p.t.Fatalf("%s: no output line within %v; stderr:\n%s", p.cmd.Args, timeout, p.stderr.String())
	}
	return ""
}

func (p *proc) signal(s os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatal(err)
	}
}

// wait waits for the process to exit and returns its remaining stdout
// lines and exit code.
func (p *proc) wait(timeout time.Duration) (rest []string, code int) {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if ok {
				rest = append(rest, l)
				continue
			}
			select {
			case <-p.done:
			case <-deadline:
				p.t.Fatalf("%s did not exit within %v; stderr:\n%s", p.cmd.Args, timeout, p.stderr.String())
			}
			code = 0
			if p.err != nil {
				ee, ok := p.err.(*exec.ExitError)
				if !ok {
					p.t.Fatal(p.err)
				}
				code = ee.ExitCode()
			}
			return rest, code
		case <-deadline:
			p.t.Fatalf("%s did not exit within %v; stderr:\n%s", p.cmd.Args, timeout, p.stderr.String())
		}
	}
}

// freePortRange returns a base port such that base+offset is free for
// every offset given.
func freePortRange(t *testing.T, offsets ...int) int {
	t.Helper()
	for try := 0; try < 100; try++ {
		// Below the kernel's ephemeral range (see celltest.FreeAddrs): the
		// tests restart servers on these ports, which other tests'
		// connections must not take in between.
		base := 20000 + rand.IntN(12000)
		if base+offsets[len(offsets)-1] > 32700 {
			continue
		}
		ok := true
		var ls []net.Listener
		for _, off := range offsets {
			if !celltest.ReservePort(t, base+off) {
				ok = false // another test process has it
				break
			}
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+off))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}
