package cell_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/wdsio/wds/cell"
)

// recordingConn is a connection whose streams fail at once, recording the
// endpoint each was opened to.
type recordingConn struct {
	grpc.ClientConnInterface
	ep  string
	log *endpointLog
}

type endpointLog struct {
	mu  sync.Mutex
	eps []string
}

func (c recordingConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	c.log.mu.Lock()
	c.log.eps = append(c.log.eps, c.ep)
	c.log.mu.Unlock()
	return nil, errors.New("refused by the test")
}

// TestGlobalClientLeaderHint: with a leader hint (a global voter in the
// same process), a new renewal stream goes to the hinted endpoint first;
// without one, to the endpoints in turn.
func TestGlobalClientLeaderHint(t *testing.T) {
	for _, c := range []struct {
		name  string
		hint  string
		first string
	}{{"hint", "c:1", "c:1"}, {"no hint", "", "a:1"}} {
		t.Run(c.name, func(t *testing.T) {
			log := &endpointLog{}
			gc := cell.NewGlobalClient([]string{"a:1", "b:1"}, func(ep string) (grpc.ClientConnInterface, error) {
				return recordingConn{ep: ep, log: log}, nil
			})
			defer gc.Close()
			if c.hint != "" {
				gc.SetLeaderHint(func() string { return c.hint })
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if _, err := gc.Renew(ctx, cell.RenewRequest{}); err == nil {
				t.Fatal("Renew succeeded against refusing endpoints")
			}
			log.mu.Lock()
			defer log.mu.Unlock()
			if len(log.eps) == 0 || log.eps[0] != c.first {
				t.Fatalf("streams opened to %v, want %s first", log.eps, c.first)
			}
			if c.hint == "" && !slices.Contains(log.eps, "b:1") {
				t.Fatalf("streams opened to %v, want every endpoint tried", log.eps)
			}
		})
	}
}
