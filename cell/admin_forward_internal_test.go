package cell

import (
	"slices"
	"testing"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// TestEveryAdminCallButStatusIsLeaderOnly: an Admin method added later is
// forwarded by followers unless it is deliberately answered anywhere.
func TestEveryAdminCallButStatusIsLeaderOnly(t *testing.T) {
	anywhere := []string{"Status"}
	for _, m := range wdsv1.Admin_ServiceDesc.Methods {
		full := "/" + wdsv1.Admin_ServiceDesc.ServiceName + "/" + m.MethodName
		if got, want := slices.Contains(leaderOnlyAdmin, full), !slices.Contains(anywhere, m.MethodName); got != want {
			t.Errorf("%s: leader-only %v, want %v (list it in leaderOnlyAdmin, or as answered anywhere here)", full, got, want)
		}
	}
}
