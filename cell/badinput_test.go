package cell_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/internal/celltest"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// helloResult opens a raw session to the leader, sends msgs, and returns the
// error the stream ends with (nil if a Welcome arrived).
func helloResult(t *testing.T, endpoint string, msgs ...*wdsv1.ClientMessage) (*wdsv1.ServerMessage, error) {
	t.Helper()
	cc, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := wdsv1.NewSessionClient(cc).Connect(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if err := s.Send(m); err != nil {
			break
		}
	}
	m, err := s.Recv()
	if err != nil {
		return nil, err
	}
	if m.GetWelcome() != nil && len(msgs) > 1 {
		// Later messages' verdict comes after the welcome.
		for {
			if _, err := s.Recv(); err != nil {
				return m, err
			}
		}
	}
	return m, nil
}

func hello(h *wdsv1.Hello) *wdsv1.ClientMessage {
	return &wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Hello{Hello: h}}
}

func consumerHello(id string, domains ...string) *wdsv1.Hello {
	return &wdsv1.Hello{Role: wdsv1.Role_ROLE_CONSUMER, ConsumerId: id, Region: celltest.Region, Domains: domains, Seq: 1}
}

func wantCode(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	if field != "" && !strings.Contains(status.Convert(err).Message(), field) {
		t.Fatalf("error %q does not name %q", status.Convert(err).Message(), field)
	}
}

// TestBadInput: each kind of bad input gets a clear error naming the field,
// nothing is half-applied, and the cell keeps serving.
func TestBadInput(t *testing.T) {
	c := celltest.New(t, 3)
	c.CreateDomain("orders", topology.KindGlobal, 8, 3*time.Second)
	leader := c.Endpoints()[c.Leader()]
	admin := c.Admin(c.Leader())
	ctx := context.Background()

	domain := func(name string, kind wdsv1.DomainKind, shards uint32, ttlMillis int64) *wdsv1.CreateDomainRequest {
		return &wdsv1.CreateDomainRequest{Domain: &wdsv1.Domain{Name: name, Kind: kind, Shards: shards, TtlMillis: ttlMillis}}
	}
	for _, tc := range []struct {
		name  string
		req   *wdsv1.CreateDomainRequest
		code  codes.Code
		field string
	}{
		{"shards zero", domain("d1", wdsv1.DomainKind_DOMAIN_KIND_GLOBAL, 0, 5000), codes.InvalidArgument, "domain.shards"},
		{"shards too many", domain("d1", wdsv1.DomainKind_DOMAIN_KIND_GLOBAL, 1<<20+1, 5000), codes.InvalidArgument, "domain.shards"},
		{"ttl under a second", domain("d1", wdsv1.DomainKind_DOMAIN_KIND_GLOBAL, 4, 500), codes.InvalidArgument, "domain.ttl"},
		{"bad name", domain("Bad Name", wdsv1.DomainKind_DOMAIN_KIND_GLOBAL, 4, 5000), codes.InvalidArgument, "domain.name"},
		{"no kind", domain("d1", wdsv1.DomainKind_DOMAIN_KIND_UNSPECIFIED, 4, 5000), codes.InvalidArgument, "domain.kind"},
		{"unit with shards", domain("d1", wdsv1.DomainKind_DOMAIN_KIND_UNIT, 4, 5000), codes.InvalidArgument, "domain.shards"},
		{"exists", domain("orders", wdsv1.DomainKind_DOMAIN_KIND_GLOBAL, 4, 5000), codes.AlreadyExists, "orders"},
	} {
		t.Run("create/"+tc.name, func(t *testing.T) {
			// Through a follower too: forwarding must keep the error.
			for _, a := range []wdsv1.AdminClient{admin, c.Admin((c.Leader() + 1) % 3)} {
				_, err := a.CreateDomain(ctx, tc.req)
				wantCode(t, err, tc.code, tc.field)
			}
		})
	}
	t.Run("nothing half-applied", func(t *testing.T) {
		l, err := admin.ListDomains(ctx, &wdsv1.ListDomainsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Domains) != 1 || l.Domains[0].Name != "orders" || l.Domains[0].Shards != 8 {
			t.Fatalf("domains after rejected creates: %v", l.Domains)
		}
	})
	t.Run("unknown domain", func(t *testing.T) {
		_, err := admin.ShardMap(ctx, &wdsv1.ShardMapRequest{Domain: "nope"})
		wantCode(t, err, codes.NotFound, "nope")
		_, err = admin.DescribeDomain(ctx, &wdsv1.DescribeDomainRequest{Name: "nope"})
		wantCode(t, err, codes.NotFound, "nope")
		_, err = admin.DeleteDomain(ctx, &wdsv1.DeleteDomainRequest{Name: "nope"})
		wantCode(t, err, codes.NotFound, "nope")
		_, err = helloResult(t, leader, hello(consumerHello("x", "nope")))
		wantCode(t, err, codes.NotFound, "hello.domains[0]")
	})
	t.Run("wrong region", func(t *testing.T) {
		h := consumerHello("x", "orders")
		h.Region = "mars"
		_, err := helloResult(t, leader, hello(h))
		wantCode(t, err, codes.InvalidArgument, "hello.region")
	})
	t.Run("bad consumer id", func(t *testing.T) {
		_, err := helloResult(t, leader, hello(consumerHello("has space", "orders")))
		wantCode(t, err, codes.InvalidArgument, "hello.consumer_id")
	})
	t.Run("first message not hello", func(t *testing.T) {
		_, err := helloResult(t, leader, &wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Heartbeat{Heartbeat: &wdsv1.Heartbeat{Seq: 1}}})
		wantCode(t, err, codes.InvalidArgument, "hello")
	})
	t.Run("duplicate consumer id", func(t *testing.T) {
		first := c.NewConsumer("dup", []string{"orders"})
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := first.WaitConnected(wctx); err != nil {
			t.Fatal(err)
		}
		_, err := helloResult(t, leader, hello(consumerHello("dup", "orders")))
		wantCode(t, err, codes.FailedPrecondition, "consumer_id")
		// The first session is unaffected.
		celltest.Eventually(t, 5*time.Second, func() error {
			_, err := first.Routing().Lookup("orders", [16]byte{})
			if !err {
				return context.DeadlineExceeded
			}
			return nil
		})
	})
	t.Run("invalid uuid in held grant", func(t *testing.T) {
		h := consumerHello("y", "orders")
		h.Held = []*wdsv1.ShardGrant{{Domain: "orders", Range: &wdsv1.KeyRange{From: []byte{1, 2, 3}}}}
		_, err := helloResult(t, leader, hello(h))
		wantCode(t, err, codes.InvalidArgument, "hello.held[0].range.from")
	})
	t.Run("invalid uuid in release", func(t *testing.T) {
		_, err := helloResult(t, leader, hello(consumerHello("z", "orders")), &wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Release{Release: &wdsv1.Release{
			Shards: []*wdsv1.ShardRef{{Domain: "orders", Range: &wdsv1.KeyRange{From: make([]byte, 16), To: []byte{9}}}},
		}}})
		wantCode(t, err, codes.InvalidArgument, "release.shards[0].range.to")
	})
	t.Run("oversized field", func(t *testing.T) {
		h := consumerHello("big", "orders")
		h.Endpoint = strings.Repeat("x", 100_000)
		_, err := helloResult(t, leader, hello(h))
		wantCode(t, err, codes.InvalidArgument, "hello.endpoint")
	})
	t.Run("oversized message", func(t *testing.T) {
		h := consumerHello("huge", "orders")
		h.Watch = []string{strings.Repeat("w", 9<<20)}
		_, err := helloResult(t, leader, hello(h))
		wantCode(t, err, codes.ResourceExhausted, "")
	})
	t.Run("still serving", func(t *testing.T) {
		ok := c.NewConsumer("good", []string{"orders"})
		celltest.Eventually(t, 10*time.Second, func() error {
			if len(ok.Held()) == 0 {
				return context.DeadlineExceeded
			}
			return nil
		})
	})
	c.CheckHistory(t)
}
