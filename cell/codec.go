package cell

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/wdsio/wds/internal/wire"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// routingBatch is the routing a subscriber is sent for one flush or
// snapshot, as encoded frames (shared between subscribers).
type routingBatch struct {
	snapshot bool
	frames   []wire.RawFrame
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
