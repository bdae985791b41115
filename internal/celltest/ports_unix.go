//go:build unix

package celltest

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// reservePort takes port for the rest of test t across every test process
// on the machine: go test runs packages in parallel, and a port one
// process found free and closed again (FreeAddrs hands out addresses for
// servers started later) could otherwise be found free by another before
// its server binds it. The reservation is an flock on a file per port,
// released when t ends or its process exits (a crashed process leaves
// nothing held).
func reservePort(t testing.TB, port int) bool {
	dir := filepath.Join(os.TempDir(), "wds-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return true // no reservations on this machine: listening decides alone
	}
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%d.lock", port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false // another test process holds it
	}
	t.Cleanup(func() { f.Close() })
	return true
}
