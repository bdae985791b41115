package raftnode

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// ErrVoterMismatch: the data dir holds a group whose voters differ from the
// ones the node was started with.
var ErrVoterMismatch = errors.New("raftnode: data dir belongs to another voter set")

// openLogStore opens (creating it if needed) the WAL under dir/wal: the
// Raft log and stable store.
//
// The meta DB is opened by us and handed to the WAL, so that Shutdown can
// close it even when the WAL's own Close fails part-way (raft-wal v0.4.0
// did not close it at all, which held its bolt file lock across an
// in-process restart).
//
// raft-wal must be v0.4.1 or later: v0.4.0 sealed a segment without its
// index block when raft truncated a log suffix (a deposed leader's
// unreplicated entries; hashicorp/raft-wal#31), and every later open
// panicked with "sealed segment has no index block". TestWALReopensAfter*
// pins it.
func openLogStore(dir string, logger hclog.Logger) (*wal.WAL, *metadb.BoltMetaDB, error) {
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o750); err != nil {
		return nil, nil, fmt.Errorf("raftnode: data dir: %w", err)
	}
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(filepath.Join(dir, "wal"), wal.WithLogger(logger.Named("wal")), wal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		return nil, nil, fmt.Errorf("raftnode: open wal in %s: %w", dir, err)
	}
	return w, meta, nil
}

// checkStoredVoters refuses a data dir whose latest Raft configuration is
// not the voter set the node was asked to run with. Raft itself would not:
// it would start the stored group and ignore the peers given, or (a new
// voter set around an old node) let the others elect a leader of a new
// group that truncates this node's log. Either way an operator mistake
// would silently lose state.
func checkStoredVoters(rc *raft.Config, w *wal.WAL, snaps raft.SnapshotStore, cfg Config, selfAddr string) error {
	probe := *rc
	probe.NotifyCh = nil
	probe.Logger = hclog.NewNullLogger()
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	stored, err := raft.GetConfiguration(&probe, discardFSM{}, w, w, snaps, trans)
	if err != nil {
		return fmt.Errorf("raftnode: read the voters stored in %s: %w", cfg.Dir, err)
	}
	want := map[string]string{}
	for _, p := range cfg.Peers {
		addr := p.Address
		if p.ID == cfg.ID {
			addr = selfAddr
		}
		want[p.ID] = addr
	}
	have := map[string]string{}
	for _, s := range stored.Servers {
		have[string(s.ID)] = string(s.Address)
	}
	if len(have) == 0 {
		return nil // a log with no configuration entry yet: raft bootstraps or waits
	}
	same := len(have) == len(want)
	for id, addr := range want {
		if have[id] != addr {
			same = false
		}
	}
	if same {
		return nil
	}
	return &VoterMismatchError{Dir: cfg.Dir, Stored: voterList(have), Asked: voterList(want)}
}

// VoterMismatchError is ErrVoterMismatch with the details an operator
// needs: the dir and both voter sets, as "id=raftaddr" lists.
type VoterMismatchError struct {
	Dir, Stored, Asked string
}

func (e *VoterMismatchError) Error() string {
	return fmt.Sprintf("data dir %s was created for the voters %s, but this node was started with %s: "+
		"start it with the voters its data dir remembers, or give it a new, empty data dir "+
		"(changing a cell's voters after it was created is not supported yet)", e.Dir, e.Stored, e.Asked)
}

func (e *VoterMismatchError) Unwrap() error { return ErrVoterMismatch }

func voterList(m map[string]string) string {
	var out []string
	for id, addr := range m {
		out = append(out, id+"="+addr)
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// discardFSM reads a snapshot and forgets it: checkStoredVoters needs only
// the configuration raft keeps beside it.
type discardFSM struct{}

func (discardFSM) Apply(*raft.Log) any { return nil }

func (discardFSM) Snapshot() (raft.FSMSnapshot, error) {
	return nil, errors.New("raftnode: discardFSM takes no snapshots")
}

func (discardFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	_, err := io.Copy(io.Discard, rc)
	return err
}
