package cell

import (
	"context"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/wdsio/wds/internal/rpcerr"
)

// registerService registers impl under desc with malformed input reported
// as the client's fault. gRPC itself answers a message that does not decode
// (invalid UTF-8 in a string field, truncated or garbage bytes) with
// Internal — which reads as a server bug and invites retries — and writes
// that status to the stream before the handler can say otherwise. So the
// cell's codec (wireCodec) does not fail a decode: it leaves the message
// empty and notes the error beside it (noteMalformed), and the wrapped
// handlers — each unary handler's decoder, each stream's RecvMsg — turn
// the note into InvalidArgument.
func registerService(s grpc.ServiceRegistrar, desc *grpc.ServiceDesc, impl any) {
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

// messageKind names the kind of a client message for errors ("hello",
// "heartbeat"), as the wire protocol calls it rather than a Go type.
func messageKind(m proto.Message) string {
	r := m.ProtoReflect()
	if oo := r.Descriptor().Oneofs().ByName("msg"); oo != nil {
		if f := r.WhichOneof(oo); f != nil {
			return string(f.Name())
		}
	}
	return "an empty message"
}
