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

	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/celltest"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// rawCodec sends []byte as the message body, as a hostile client would.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestMalformedWireInput: bytes that do not decode as the call's message
// (invalid UTF-8 in a string field, truncated, garbage) are the client's
// fault — InvalidArgument, on unary calls and on the session stream — not
// Internal; a second Hello is named as such, without a Go type name; a
// Hello's endpoint must be host:port; the cell keeps serving.
func TestMalformedWireInput(t *testing.T) {
	c := celltest.New(t, 1)
	ep := c.Endpoints()[0]
	cc, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	bodies := map[string][]byte{
		// CreateDomainRequest{domain: Domain{name: "\xff\xfe"}}
		"invalid UTF-8": {0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe},
		"truncated":     {0x0a, 0x09, 0x0a},
		"garbage":       {0xff, 0xff, 0xff, 0xff},
	}
	for name, body := range bodies {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		var reply []byte
		err := cc.Invoke(ctx, "/wds.v1.Admin/CreateDomain", body, &reply, grpc.ForceCodec(rawCodec{}))
		cancel()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "malformed message") {
			t.Errorf("unary %s: %v, want InvalidArgument: malformed message", name, err)
		}
	}
	streamBodies := map[string][]byte{
		// ClientMessage{hello: Hello{consumer_id: "\xff\xfe"}}
		"invalid UTF-8": {0x0a, 0x04, 0x12, 0x02, 0xff, 0xfe},
		"truncated":     {0x0a, 0x09, 0x12},
		"garbage":       {0xff, 0xff, 0xff, 0xff},
	}
	for name, body := range streamBodies {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		s, err := cc.NewStream(ctx, &wdsv1.Session_ServiceDesc.Streams[0], "/wds.v1.Session/Connect", grpc.ForceCodec(rawCodec{}))
		if err == nil {
			err = s.SendMsg(body)
		}
		if err == nil {
			var reply []byte
			err = s.RecvMsg(&reply)
		}
		cancel()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "malformed message") {
			t.Errorf("stream %s: %v, want InvalidArgument: malformed message", name, err)
		}
	}

	// A second Hello on a consumer session.
	c.CreateDomain("orders", topology.KindGlobal, 2, 3*time.Second)
	_, err = helloResult(t, ep, hello(consumerHello("c1", "orders")), hello(consumerHello("c1", "orders")))
	wantCode(t, err, codes.InvalidArgument, "message")
	if msg := status.Convert(err).Message(); strings.Contains(msg, "wdsv1") || strings.Contains(msg, "*") || !strings.Contains(msg, "(got hello)") {
		t.Errorf("second Hello: %q; want it named \"hello\", without a Go type", msg)
	}

	// An endpoint published in routing must be an address.
	h := consumerHello("c2", "orders")
	h.Endpoint = "not an address"
	_, err = helloResult(t, ep, hello(h))
	wantCode(t, err, codes.InvalidArgument, "hello.endpoint")
	if _, err := client.NewConsumer(client.Config{Endpoints: []string{ep}, ID: "c3", Domains: []string{"orders"}, Endpoint: "not an address",
		Handler: func(context.Context, client.Shard) {}}); err == nil || !strings.Contains(err.Error(), "endpoint") {
		t.Errorf("client with Endpoint %q: %v, want an error naming endpoint", "not an address", err)
	}
	for _, eps := range [][]string{nil, {"http://" + ep}} {
		if _, err := client.NewConsumer(client.Config{Endpoints: eps, ID: "c4", Domains: []string{"orders"},
			Handler: func(context.Context, client.Shard) {}}); err == nil || !strings.Contains(err.Error(), "endpoints") {
			t.Errorf("client with Endpoints %q: %v, want an error naming endpoints", eps, err)
		}
	}

	// No region named: the region of the cell reached.
	anyRegion := c.NewConsumer("c5", []string{"orders"}, func(cfg *client.Config) { cfg.Region = "" })
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := anyRegion.WaitConnected(wctx); err != nil {
		t.Errorf("consumer with no region: %v", err)
	}

	// Still serving.
	if _, err := c.ShardMap("orders"); err != nil {
		t.Fatal(err)
	}
}
