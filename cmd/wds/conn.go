package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/client"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// maxAdminRecv bounds an admin answer (a shard map of a million shards).
const maxAdminRecv = 256 << 20

// adminClient calls the Admin API of a cell. It asks every endpoint at once
// which node leads (client.Locator) and calls the leader, so a dead or hung
// node in --endpoint costs nothing: the answer comes in about two round
// trips whenever any listed node is healthy. A call that meets a leader
// change (Unavailable) is retried on the new leader until --timeout.
type adminClient struct {
	endpoints []string
	timeout   time.Duration
	loc       *client.Locator
}

func (g *globals) admin() (*adminClient, error) {
	eps, err := g.endpoints()
	if err != nil {
		return nil, err
	}
	return newAdminClient(eps, g.timeout)
}

func newAdminClient(eps []string, timeout time.Duration) (*adminClient, error) {
	loc, err := client.NewLocator(eps, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxAdminRecv)))
	if err != nil {
		return nil, err
	}
	return &adminClient{endpoints: eps, timeout: timeout, loc: loc}, nil
}

// dial opens a plaintext client connection (WDS has no TLS yet).
func dial(endpoint string) (*grpc.ClientConn, error) {
	return grpc.NewClient(endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxAdminRecv)))
}

func (a *adminClient) close() { a.loc.Close() }

// call runs fn against the cell's leader.
func (a *adminClient) call(ctx context.Context, fn func(ctx context.Context, c wdsv1.AdminClient) error) error {
	return a.run(ctx, a.loc.Leader, fn)
}

// callAny runs fn against any node that answers (calls every node answers
// itself, such as Status).
func (a *adminClient) callAny(ctx context.Context, fn func(ctx context.Context, c wdsv1.AdminClient) error) error {
	return a.run(ctx, a.loc.Any, fn)
}

func (a *adminClient) run(ctx context.Context, find func(context.Context) (string, error), fn func(ctx context.Context, c wdsv1.AdminClient) error) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	var last error
	for {
		ep, err := find(ctx)
		if err != nil {
			if ctx.Err() != nil && last != nil {
				err = last
			}
			return callError(err, a.endpoints, a.timeout.String())
		}
		cc, err := a.loc.Conn(ep)
		if err != nil {
			return fmt.Errorf("--endpoint: %q: %v", ep, err)
		}
		err = fn(ctx, wdsv1.NewAdminClient(cc))
		if status.Code(err) != codes.Unavailable {
			return callError(err, a.endpoints, a.timeout.String())
		}
		// The leader changed or went away under the call: find it again.
		last = err
		select {
		case <-ctx.Done():
			return callError(last, a.endpoints, a.timeout.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
