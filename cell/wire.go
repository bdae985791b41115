package cell

import (
	"google.golang.org/protobuf/proto"
)

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
