// Package rpcfwd is the one forwarding path for leader-only unary calls of
// a Raft group's gRPC services (the cell's Admin service; the global
// group's services too: it imports nothing of either). A follower that
// receives a leader-only call relays it once to the node it knows leads
// and returns the leader's answer; a call that was forwarded already is
// answered or refused (NOT_LEADER), never forwarded again, so a call
// cannot bounce between two nodes that each think the other leads.
package rpcfwd

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/wdsio/wds/internal/rpcerr"
)

// ForwardedByKey is the metadata key of a forwarded call: the id of the
// node that forwarded it.
const ForwardedByKey = "wds-forwarded-by"

// Forwarder forwards leader-only calls to the leader.
type Forwarder struct {
	// Self is this node's id, sent under ForwardedByKey and named in errors.
	Self string
	// Group names the Raft group in errors ("cell", "global group").
	Group string
	// Leader reports whether this node answers leader-only calls itself
	// (it is the ready leader), else the leader's id and client endpoint
	// as far as this node knows them ("" when it knows none).
	Leader func() (self bool, id, endpoint string)
	// Dial returns a client connection to a node's endpoint; the caller
	// caches and closes connections.
	Dial func(endpoint string) (grpc.ClientConnInterface, error)
}

// Interceptor returns a unary server interceptor that forwards the
// methods (full names, "/wds.v1.Admin/CreateDomain") to the leader unless
// this node leads, and passes every other call through. Each method must
// be a method of a generated service linked into the binary (its reply
// type is looked up in the protobuf registry): Interceptor panics on one
// that is not, a programming error.
func (f *Forwarder) Interceptor(methods ...string) grpc.UnaryServerInterceptor {
	replies := make(map[string]protoreflect.MessageType, len(methods))
	for _, m := range methods {
		mt, err := replyType(m)
		if err != nil {
			panic(fmt.Sprintf("rpcfwd: %v", err))
		}
		replies[m] = mt
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		mt, ok := replies[info.FullMethod]
		if !ok {
			return handler(ctx, req)
		}
		reply := mt.New().Interface()
		local, err := f.Forward(ctx, info.FullMethod, req, reply)
		if local {
			return handler(ctx, req)
		}
		if err != nil {
			return nil, err
		}
		return reply, nil
	}
}

// Forward relays a leader-only call to the leader and fills reply with its
// answer, unless this node leads: then it returns local true and the
// caller answers the call itself. Every error is a status: the leader's
// own, or NOT_LEADER (no leader known, or the call was forwarded to this
// node already) or LEADER_UNREACHABLE (the hop to the leader failed).
func (f *Forwarder) Forward(ctx context.Context, method string, req, reply any) (local bool, err error) {
	self, id, ep := f.Leader()
	if self {
		return true, nil
	}
	if id == f.Self {
		id, ep = "", "" // elected, not yet in office
	}
	if by := ForwardedBy(ctx); by != "" {
		return false, rpcerr.New(codes.Unavailable, rpcerr.ReasonNotLeader,
			fmt.Sprintf("node %s is not the leader (forwarded by %s); retry", f.Self, by),
			rpcerr.KeyLeaderID, id, rpcerr.KeyLeaderEndpoint, ep)
	}
	if ep == "" {
		return false, rpcerr.New(codes.Unavailable, rpcerr.ReasonNotLeader,
			fmt.Sprintf("the %s has no leader right now; retry shortly", f.group()),
			rpcerr.KeyLeaderID, id)
	}
	cc, err := f.Dial(ep)
	if err != nil {
		return false, rpcerr.New(codes.Unavailable, rpcerr.ReasonLeaderUnreachable,
			fmt.Sprintf("forward to leader %s at %s: %v", id, ep, err),
			rpcerr.KeyLeaderID, id, rpcerr.KeyLeaderEndpoint, ep)
	}
	out := metadata.AppendToOutgoingContext(ctx, ForwardedByKey, f.Self)
	err = cc.Invoke(out, method, req, reply)
	if err != nil && status.Code(err) == codes.Unavailable && !rpcerr.FromServer(err) {
		// gRPC's own Unavailable: the hop failed (or the leader predates
		// the reasons), not the leader's answer.
		return false, rpcerr.New(codes.Unavailable, rpcerr.ReasonLeaderUnreachable,
			fmt.Sprintf("forward to leader %s at %s: %s", id, ep, status.Convert(err).Message()),
			rpcerr.KeyLeaderID, id, rpcerr.KeyLeaderEndpoint, ep)
	}
	return false, err
}

func (f *Forwarder) group() string {
	if f.Group == "" {
		return "group"
	}
	return f.Group
}

// ForwardedBy returns the id of the node that forwarded the incoming call
// in ctx, "" if none did.
func ForwardedBy(ctx context.Context) string {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ""
	}
	if v := md.Get(ForwardedByKey); len(v) > 0 {
		return v[0]
	}
	return ""
}

// replyType looks up the reply message type of a full method name.
func replyType(method string) (protoreflect.MessageType, error) {
	name := strings.ReplaceAll(strings.TrimPrefix(method, "/"), "/", ".")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, fmt.Errorf("method %s: %v", method, err)
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a method", method)
	}
	if md.IsStreamingClient() || md.IsStreamingServer() {
		return nil, fmt.Errorf("method %s streams: only unary calls are forwarded", method)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, fmt.Errorf("method %s: reply %s: %v", method, md.Output().FullName(), err)
	}
	return mt, nil
}
