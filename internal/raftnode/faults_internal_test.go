package raftnode

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wdsio/wds/internal/faults"
)

// TestRefusedPipelinedAppend: an AppendEntries pipelined to a node that
// the network cuts off before it arrives is refused with a response of
// the right type. hashicorp/raft's in-memory pipeline reads the response
// even of a failed append: a nil one crashed the process.
func TestRefusedPipelinedAppend(t *testing.T) {
	ts := NewInmemTransports("a", "b")
	net := faults.New()
	b, err := wrapFaults(ts[1], net.Endpoint("b", faults.Raft), "b")
	if err != nil {
		t.Fatal(err)
	}
	defer closeTransport(b)
	pipe, err := ts[0].AppendEntriesPipeline("b", "b")
	if err != nil {
		t.Fatal(err)
	}
	defer pipe.Close()
	net.Isolate("b", faults.Raft)
	var resp raft.AppendEntriesResponse
	fut, err := pipe.AppendEntries(&raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("a"), Addr: []byte("a")}, Term: 1}, &resp)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case done := <-pipe.Consumer():
		if err := done.Error(); !errors.Is(err, ErrIsolated) && (err == nil || err.Error() != ErrIsolated.Error()) {
			t.Fatalf("refused append answered %v, want %v", err, ErrIsolated)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no answer to the refused append (future %v)", fut)
	}
}
