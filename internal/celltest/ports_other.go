//go:build !unix

package celltest

import "testing"

// reservePort: no cross-process reservation here; listening decides.
func reservePort(testing.TB, int) bool { return true }
