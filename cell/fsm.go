package cell

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
)

// fsm is the cell's raft.FSM: a thin shell that decodes log entries and
// hands their ops to State. hashicorp/raft calls Apply, Snapshot and Restore
// from one goroutine; Persist may run concurrently with Apply, so Snapshot
// copies the state into an immutable message first.
type fsm struct {
	state *State
	// onApply observes each applied entry's consequences, in log order, on
	// the FSM goroutine. It must not block for long.
	onApply func(index uint64, res *applyResult)
	// onRestore is called after a snapshot replaced the state.
	onRestore func()
}

var _ raft.FSM = (*fsm)(nil)

// Apply applies one committed entry and returns []Result, one per op.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var e cellv1.Entry
	if err := proto.Unmarshal(l.Data, &e); err != nil {
		// A committed entry that does not decode means a corrupt log or a
		// bug; applying anything else would fork the replicas.
		panic(fmt.Sprintf("cell: undecodable log entry at index %d: %v", l.Index, err))
	}
	var res applyResult
	out := f.state.applyEntry(l.Index, e.GetOps(), &res)
	if f.onApply != nil {
		f.onApply(l.Index, &res)
	}
	return out
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{msg: f.state.snapshot()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("cell: read snapshot: %w", err)
	}
	var snap cellv1.Snapshot
	if err := proto.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("cell: decode snapshot: %w", err)
	}
	if err := f.state.restore(&snap); err != nil {
		return err
	}
	if f.onRestore != nil {
		f.onRestore()
	}
	return nil
}

type fsmSnapshot struct{ msg *cellv1.Snapshot }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	data, err := proto.Marshal(s.msg)
	if err == nil {
		_, err = sink.Write(data)
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("cell: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// encodeEntry is the batcher's encoder: one entry holding every op.
func encodeEntry(ops []*cellv1.Op) ([]byte, error) {
	return proto.Marshal(&cellv1.Entry{Ops: ops})
}
