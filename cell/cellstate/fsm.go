package cellstate

import (
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/wdsio/wds/internal/fsmshell"
	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
)

// FSM is the cell's raft.FSM: a thin shell that decodes log entries and
// hands their ops to State. hashicorp/raft calls Apply, Snapshot and Restore
// from one goroutine; Persist may run concurrently with Apply, so Snapshot
// copies the state into an immutable message first.
type FSM struct {
	State *State
	// OnApply observes each applied entry's consequences, in log order, on
	// the FSM goroutine. It must not block for long.
	OnApply func(index uint64, res *ApplyResult)
	// OnRestore is called after a snapshot replaced the state.
	OnRestore func()
}

var _ raft.FSM = (*FSM)(nil)

// Apply applies one committed entry and returns []Result, one per op.
func (f *FSM) Apply(l *raft.Log) any {
	var e cellv1.Entry
	if !fsmshell.Decode("cell", l, &e) {
		return nil
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
	return &fsmshell.Snapshot{Group: "cell", Msg: f.State.snapshot()}, nil
}

// Restore replaces the state with a persisted snapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	var snap cellv1.Snapshot
	if err := fsmshell.ReadSnapshot("cell", rc, &snap); err != nil {
		return err
	}
	if err := f.State.restore(&snap); err != nil {
		return err
	}
	if f.OnRestore != nil {
		f.OnRestore()
	}
	return nil
}

// EncodeEntry is the proposal batcher's encoder: one entry holding every op.
func EncodeEntry(ops []*cellv1.Op) ([]byte, error) {
	return proto.Marshal(&cellv1.Entry{Ops: ops})
}
