// Package fsmshell is what the raft.FSM of every WDS Raft group shares
// around its own state: decoding a committed entry (an undecodable one
// stops the node: applying anything else would fork the replicas),
// reading a snapshot back, and persisting one. The cell's and the global
// group's states (cell/cellstate, global/globalstate) each keep a thin FSM
// that calls these with their own protos.
package fsmshell

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// Decode unmarshals a committed command entry into e; false for entries
// that are not commands (raft's own). A command that does not decode
// panics, naming the group and the index.
func Decode(group string, l *raft.Log, e proto.Message) bool {
	if l.Type != raft.LogCommand {
		return false
	}
	if err := proto.Unmarshal(l.Data, e); err != nil {
		panic(fmt.Sprintf("%s: undecodable log entry at index %d: %v", group, l.Index, err))
	}
	return true
}

// ReadSnapshot reads and unmarshals a persisted snapshot into snap, and
// closes rc.
func ReadSnapshot(group string, rc io.ReadCloser, snap proto.Message) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("%s: read snapshot: %w", group, err)
	}
	if err := proto.Unmarshal(data, snap); err != nil {
		return fmt.Errorf("%s: decode snapshot: %w", group, err)
	}
	return nil
}

// Snapshot persists an immutable snapshot message (a copy of the state
// taken on the FSM goroutine; Persist may run concurrently with Apply).
type Snapshot struct {
	Group string
	Msg   proto.Message
}

var _ raft.FSMSnapshot = (*Snapshot)(nil)

// Persist writes the message to the sink.
func (s *Snapshot) Persist(sink raft.SnapshotSink) error {
	data, err := proto.Marshal(s.Msg)
	if err == nil {
		_, err = sink.Write(data)
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("%s: persist snapshot: %w", s.Group, err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *Snapshot) Release() {}
