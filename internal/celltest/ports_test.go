//go:build unix

package celltest

import "testing"

// TestReservePort: a reserved port is refused to every other reservation
// (another test process, or another test of this one) until the test that
// holds it ends.
func TestReservePort(t *testing.T) {
	const port = testPortHigh - 1
	t.Run("holder", func(t *testing.T) {
		if !ReservePort(t, port) {
			t.Skip("the port is reserved by another test process")
		}
		if ReservePort(t, port) {
			t.Fatal("a reserved port was reserved again")
		}
	})
	if !ReservePort(t, port) {
		t.Fatal("the port is still reserved after its holder ended")
	}
}
