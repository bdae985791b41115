package globalstate

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
)

// FSM is the global group's raft.FSM: a thin shell that decodes entries
// and hands their ops to State (the same shape as the cell's).
type FSM struct {
	State *State
	// OnApply observes each applied entry, in log order, on the FSM
	// goroutine. It must not block for long.
	OnApply func(index uint64, res *ApplyResult)
	// OnRestore is called after a snapshot replaced the state.
	OnRestore func()
}

var _ raft.FSM = (*FSM)(nil)

// Apply applies one committed entry and returns []Result, one per op.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var e globalv1.Entry
	if err := proto.Unmarshal(l.Data, &e); err != nil {
		panic(fmt.Sprintf("global: undecodable log entry at index %d: %v", l.Index, err))
	}
	var res ApplyResult
	out := f.State.applyEntry(l.Index, e.GetOps(), &res)
	if f.OnApply != nil {
		f.OnApply(l.Index, &res)
	}
	return out
}

// Snapshot copies the state into an immutable message.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{msg: f.State.snapshot()}, nil
}

// Restore replaces the state with a persisted snapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("global: read snapshot: %w", err)
	}
	var snap globalv1.Snapshot
	if err := proto.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("global: decode snapshot: %w", err)
	}
	if err := f.State.restore(&snap); err != nil {
		return err
	}
	if f.OnRestore != nil {
		f.OnRestore()
	}
	return nil
}

type fsmSnapshot struct{ msg *globalv1.Snapshot }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	data, err := proto.Marshal(s.msg)
	if err == nil {
		_, err = sink.Write(data)
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("global: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// EncodeEntry is the proposal batcher's encoder: one entry holding every op.
func EncodeEntry(ops []*globalv1.Op) ([]byte, error) {
	return proto.Marshal(&globalv1.Entry{Ops: ops})
}
