package cell

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// rawFrame is a ServerMessage already marshalled. Routing deltas go to
// many sessions at once (1,000 watchers of one domain): they are encoded
// once and the same bytes are written to every stream.
type rawFrame []byte

// wireCodec is the cell's server codec: protobuf, except that a rawFrame
// is sent as is. It keeps the name "proto", so clients see plain protobuf.
type wireCodec struct{ proto encoding.CodecV2 }

func newWireCodec() wireCodec { return wireCodec{proto: encoding.GetCodecV2("proto")} }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(rawFrame); ok {
		// SliceBuffer's Free is a no-op: the shared bytes are never
		// recycled or written to.
		return mem.BufferSlice{mem.SliceBuffer(f)}, nil
	}
	return c.proto.Marshal(v)
}

// Unmarshal never fails: a message that does not decode is noted for
// checkDecoded, which the services' handlers call (see registerService),
// so the client is told InvalidArgument rather than gRPC's Internal.
func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if err := c.proto.Unmarshal(data, v); err != nil {
		if m, ok := v.(proto.Message); ok {
			proto.Reset(m)
		}
		noteMalformed(v, err)
	}
	return nil
}

func (wireCodec) Name() string { return "proto" }

// routingBatch is the routing a subscriber is sent for one flush or
// snapshot, as encoded frames (shared between subscribers).
type routingBatch struct {
	snapshot bool
	frames   []rawFrame
}

// encodeRouting marshals routing messages into frames.
func encodeRouting(msgs []*wdsv1.Routing) routingBatch {
	b := routingBatch{snapshot: len(msgs) > 0 && msgs[0].GetSnapshot()}
	for _, m := range msgs {
		raw, err := proto.Marshal(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Routing{Routing: m}})
		if err != nil {
			// Only an invalid UTF-8 domain name could do this, and names
			// are validated: a bug, not an input error.
			panic(fmt.Sprintf("cell: encode routing: %v", err))
		}
		b.frames = append(b.frames, raw)
	}
	return b
}
