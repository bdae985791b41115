// Package wire is how a WDS process's gRPC server reads and writes
// messages, for every service on it (the cell's Session and Admin, the
// global group's Coordinator and GlobalAdmin): one codec (protobuf, plus
// pre-encoded frames sent to many streams at once), malformed input
// answered InvalidArgument instead of gRPC's Internal, and a registrar
// that gates a node's services and adds their own interceptors.
package wire

import (
	"context"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/wdsio/wds/internal/rpcerr"
)

// RawFrame is a message already marshalled. Routing deltas go to
// many sessions at once (1,000 watchers of one domain): they are encoded
// once and the same bytes are written to every stream.
type RawFrame []byte

// codec is the server codec of a WDS process: protobuf, except that a
// RawFrame is sent as is. It keeps the name "proto", so clients see plain
// protobuf.
type codec struct{ proto encoding.CodecV2 }

// Codec returns the server codec every service on a WDS process's gRPC
// server relies on: give it with grpc.ForceServerCodecV2, and register
// each service with RegisterService.
func Codec() encoding.CodecV2 { return codec{proto: encoding.GetCodecV2("proto")} }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(RawFrame); ok {
		// SliceBuffer's Free is a no-op: the shared bytes are never
		// recycled or written to.
		return mem.BufferSlice{mem.SliceBuffer(f)}, nil
	}
	return c.proto.Marshal(v)
}

// Unmarshal never fails: a message that does not decode is noted for
// checkDecoded, which the services' handlers call (see RegisterService),
// so the client is told InvalidArgument rather than gRPC's Internal.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if err := c.proto.Unmarshal(data, v); err != nil {
		if m, ok := v.(proto.Message); ok {
			proto.Reset(m)
		}
		noteMalformed(v, err)
	}
	return nil
}

func (codec) Name() string { return "proto" }

// RegisterService registers impl under desc with malformed input reported
// as the client's fault. gRPC itself answers a message that does not decode
// (invalid UTF-8 in a string field, truncated or garbage bytes) with
// Internal — which reads as a server bug and invites retries — and writes
// that status to the stream before the handler can say otherwise. So the
// process's codec (Codec) does not fail a decode: it leaves the message
// empty and notes the error beside it (noteMalformed), and the wrapped
// handlers — each unary handler's decoder, each stream's RecvMsg — turn
// the note into InvalidArgument.
func RegisterService(s grpc.ServiceRegistrar, desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = slices.Clone(desc.Methods)
	for i := range d.Methods {
		h := d.Methods[i].Handler
		d.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			return h(srv, ctx, func(v any) error { return checkDecoded(v, dec(v)) }, ic)
		}
	}
	d.Streams = slices.Clone(desc.Streams)
	for i := range d.Streams {
		h := d.Streams[i].Handler
		d.Streams[i].Handler = func(srv any, ss grpc.ServerStream) error { return h(srv, decodeStream{ss}) }
	}
	s.RegisterService(&d, impl)
}

// decodeStream reports the stream's malformed messages.
type decodeStream struct{ grpc.ServerStream }

func (s decodeStream) RecvMsg(m any) error { return checkDecoded(m, s.ServerStream.RecvMsg(m)) }

// malformed holds the decode error of each message wireCodec could not
// decode, until checkDecoded takes it.
var malformed sync.Map // message pointer → error

func noteMalformed(v any, err error) { malformed.Store(v, err) }

// checkDecoded returns InvalidArgument if v did not decode.
func checkDecoded(v any, err error) error {
	if err != nil {
		return err
	}
	if e, ok := malformed.LoadAndDelete(v); ok {
		return rpcerr.Newf(codes.InvalidArgument, rpcerr.ReasonMalformedMessage, "malformed message: not a valid protobuf message of this call (%v)", e)
	}
	return nil
}

// Registrar registers services on S with a gate and, for unary methods,
// an interceptor of the service's own (run inside the server's): what a
// node whose services share a server with others needs. Once Gate fails
// (the node is closed) its handlers refuse new calls with Gate's error,
// while the server goes on serving the other services.
type Registrar struct {
	S     grpc.ServiceRegistrar
	Gate  func() error
	Unary grpc.UnaryServerInterceptor
}

// RegisterService implements grpc.ServiceRegistrar.
func (r Registrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = slices.Clone(desc.Methods)
	for i := range d.Methods {
		h := d.Methods[i].Handler
		d.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			if err := r.gate(); err != nil {
				return nil, err
			}
			return h(srv, ctx, dec, chainUnary(ic, r.Unary))
		}
	}
	d.Streams = slices.Clone(desc.Streams)
	for i := range d.Streams {
		h := d.Streams[i].Handler
		d.Streams[i].Handler = func(srv any, ss grpc.ServerStream) error {
			if err := r.gate(); err != nil {
				return err
			}
			return h(srv, ss)
		}
	}
	r.S.RegisterService(&d, impl)
}

// chainUnary runs outer (the server's interceptors, if any), then inner.
func chainUnary(outer, inner grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	switch {
	case inner == nil:
		return outer
	case outer == nil:
		return inner
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return outer(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return inner(ctx, req, info, h)
		})
	}
}

func (r Registrar) gate() error {
	if r.Gate == nil {
		return nil
	}
	return r.Gate()
}
