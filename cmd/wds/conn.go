package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// adminClient calls the Admin API of a cell through any of its endpoints.
// Every node answers (followers forward to the leader), so an endpoint that
// cannot be reached, or a cell without a leader for a moment, is retried on
// the next endpoint until --timeout.
type adminClient struct {
	endpoints []string
	timeout   time.Duration
	conns     []*grpc.ClientConn
}

func (g *globals) admin() (*adminClient, error) {
	eps, err := g.endpoints()
	if err != nil {
		return nil, err
	}
	a := &adminClient{endpoints: eps, timeout: g.timeout}
	for _, ep := range eps {
		cc, err := dial(ep)
		if err != nil {
			a.close()
			return nil, fmt.Errorf("--endpoint: %q: %v", ep, err)
		}
		a.conns = append(a.conns, cc)
	}
	return a, nil
}

// dial opens a plaintext client connection (WDS has no TLS yet).
func dial(endpoint string) (*grpc.ClientConn, error) {
	return grpc.NewClient(endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
}

func (a *adminClient) close() {
	for _, cc := range a.conns {
		cc.Close()
	}
}

// call runs fn against the endpoints in turn until one answers with
// anything but Unavailable. A pass in which every endpoint failed to
// connect ends the call; a node that is up but has no leader is retried
// until the timeout.
func (a *adminClient) call(ctx context.Context, fn func(ctx context.Context, c wdsv1.AdminClient) error) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	backoff := 50 * time.Millisecond
	for {
		var last error
		unreachable := 0
		for _, cc := range a.conns {
			err := fn(ctx, wdsv1.NewAdminClient(cc))
			if status.Code(err) != codes.Unavailable {
				return callError(err, a.endpoints, a.timeout.String())
			}
			last = err
			if transportFailure(status.Convert(err).Message()) {
				unreachable++
			}
		}
		if unreachable == len(a.conns) {
			return callError(last, a.endpoints, a.timeout.String())
		}
		select {
		case <-ctx.Done():
			return callError(last, a.endpoints, a.timeout.String())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}
