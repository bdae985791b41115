package cell_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/internal/celltest"
	"github.com/wdsio/wds/internal/rpcerr"
	"github.com/wdsio/wds/internal/rpcfwd"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

func wantReason(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || rpcerr.Reason(err) != reason {
		t.Fatalf("got %v (reason %q), want %v %s", err, rpcerr.Reason(err), code, reason)
	}
}

// TestErrorReasons: the cell's statuses carry their ErrorInfo reasons,
// through a follower too; a follower forwards leader-only Admin calls, and
// refuses a call forwarded to it (NOT_LEADER, naming the leader), so no
// call bounces between nodes.
func TestErrorReasons(t *testing.T) {
	c := celltest.New(t, 3)
	c.CreateDomain("orders", topology.KindGlobal, 4, 3*time.Second)
	li := c.Leader()
	fi := (li + 1) % 3
	leader, follower := c.Admin(li), c.Admin(fi)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("follower forwards", func(t *testing.T) {
		l, err := follower.ListDomains(ctx, &wdsv1.ListDomainsRequest{})
		if err != nil || len(l.GetDomains()) != 1 || l.GetDomains()[0].GetName() != "orders" {
			t.Fatalf("ListDomains through a follower: %v, %v", l, err)
		}
		_, err = follower.CreateDomain(ctx, &wdsv1.CreateDomainRequest{Domain: &wdsv1.Domain{
			Name: "orders", Kind: wdsv1.DomainKind_DOMAIN_KIND_GLOBAL, Shards: 4, TtlMillis: 5000}})
		wantReason(t, err, codes.AlreadyExists, rpcerr.ReasonAlreadyExists)
		_, err = follower.CreateDomain(ctx, &wdsv1.CreateDomainRequest{Domain: &wdsv1.Domain{
			Name: "d2", Kind: wdsv1.DomainKind_DOMAIN_KIND_GLOBAL, Shards: 0, TtlMillis: 5000}})
		wantReason(t, err, codes.InvalidArgument, rpcerr.ReasonInvalidField)
		if f := rpcerr.Info(err).GetMetadata()[rpcerr.KeyField]; f != "domain.shards" {
			t.Errorf("field %q, want domain.shards", f)
		}
		_, err = follower.DescribeDomain(ctx, &wdsv1.DescribeDomainRequest{Name: "nope"})
		wantReason(t, err, codes.NotFound, rpcerr.ReasonNotFound)
	})

	t.Run("forwarded call refused", func(t *testing.T) {
		fctx := metadata.AppendToOutgoingContext(ctx, rpcfwd.ForwardedByKey, "elsewhere")
		_, err := follower.ListDomains(fctx, &wdsv1.ListDomainsRequest{})
		wantReason(t, err, codes.Unavailable, rpcerr.ReasonNotLeader)
		md := rpcerr.Info(err).GetMetadata()
		if md[rpcerr.KeyLeaderID] != c.Configs[li].NodeID || md[rpcerr.KeyLeaderEndpoint] != c.Endpoints()[li] {
			t.Errorf("metadata %v, want the leader %s at %s", md, c.Configs[li].NodeID, c.Endpoints()[li])
		}
		// The leader answers a forwarded call; Status is answered anywhere.
		if _, err := leader.ListDomains(fctx, &wdsv1.ListDomainsRequest{}); err != nil {
			t.Errorf("the leader refused a forwarded call: %v", err)
		}
		if _, err := follower.Status(fctx, &wdsv1.StatusRequest{}); err != nil {
			t.Errorf("Status on a follower: %v", err)
		}
	})

	t.Run("duplicate consumer", func(t *testing.T) {
		first := c.NewConsumer("dup", []string{"orders"})
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := first.WaitConnected(wctx); err != nil {
			t.Fatal(err)
		}
		_, err := helloResult(t, c.Endpoints()[li], hello(consumerHello("dup", "orders")))
		wantReason(t, err, codes.FailedPrecondition, rpcerr.ReasonDuplicateConsumer)
	})
}
