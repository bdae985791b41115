package chaos_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The real-process tests of this package run the wds binary, built once
// (on first use, so that the checker's own tests and fuzzing do not pay
// for it) into a directory TestMain removes.
var (
	wdsBuild struct {
		once sync.Once
		dir  string
		bin  string
		err  error
	}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if wdsBuild.dir != "" {
		os.RemoveAll(wdsBuild.dir)
	}
	os.Exit(code)
}

// wdsBinary returns the path of the wds binary, building it the first time.
func wdsBinary(t testing.TB) string {
	t.Helper()
	b := &wdsBuild
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "wds-chaos-test-")
		if b.err != nil {
			return
		}
		b.bin = filepath.Join(b.dir, "wds")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "github.com/wdsio/wds/cmd/wds").CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build ./cmd/wds: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

// procEnv is the environment of the processes under test: a WDS_ENDPOINT
// of the developer's shell must not leak in.
func procEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WDS_ENDPOINT=") {
			out = append(out, kv)
		}
	}
	return out
}

// runWDS runs the binary to completion (at most 30 s) and returns its
// stdout, stderr and exit code.
func runWDS(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wdsBinary(t), args...)
	cmd.Env = procEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("wds %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return o.String(), e.String(), code
}

// proc is a long-running wds process started by the test. Every stdout
// line is kept (lines); stderr is kept whole. Only the test signals it,
// by its PID; a process still running when the test ends is killed.
type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	stderr *syncBuffer

	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced when a line arrives

	done     chan struct{} // closed once the process was reaped
	err      error
	exitedAt time.Time
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

// startProc starts the wds binary with args.
func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(wdsBinary(t), args...)
	cmd.Env = procEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, cmd: cmd, stderr: &syncBuffer{}, more: make(chan struct{}), done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.more)
			p.more = make(chan struct{})
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() {
		<-read // Wait closes stdout: read it all first
		p.err = cmd.Wait()
		p.mu.Lock()
		p.exitedAt = time.Now()
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Signal(syscall.SIGKILL) // this PID only
			<-p.done
		}
	})
	return p
}

// output returns a copy of the stdout lines so far.
func (p *proc) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// waitLine waits up to timeout for a stdout line containing sub and
// returns it.
func (p *proc) waitLine(sub string, timeout time.Duration) (string, bool) {
	deadline := time.After(timeout)
	seen := 0
	for {
		p.mu.Lock()
		lines, more := p.lines, p.more
		p.mu.Unlock()
		for ; seen < len(lines); seen++ {
			if strings.Contains(lines[seen], sub) {
				return lines[seen], true
			}
		}
		select {
		case <-more:
		case <-p.done:
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if seen == n {
				return "", false
			}
		case <-deadline:
			return "", false
		}
	}
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) signal(s syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatalf("%s: signal %v: %v", p.name, s, err)
	}
}

// wait waits for the process to exit and returns its exit code and when it
// was reaped, failing the test after timeout.
func (p *proc) wait(timeout time.Duration) (code int, at time.Time) {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v; stderr:\n%s", p.name, timeout, p.stderr.String())
	}
	if p.err != nil {
		ee, ok := p.err.(*exec.ExitError)
		if !ok {
			p.t.Fatalf("%s: %v", p.name, p.err)
		}
		code = ee.ExitCode()
		if ee.Sys().(syscall.WaitStatus).Signaled() {
			code = -1
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return code, p.exitedAt
}

// kill9 kills the process with SIGKILL and returns once it is gone, with
// the instant it was reaped: a dead process believes nothing after it.
func (p *proc) kill9() time.Time {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	_, at := p.wait(10 * time.Second)
	return at
}

// envInt reads a positive integer knob from the environment.
func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err == nil && v > 0 {
		return v
	}
	return def
}
