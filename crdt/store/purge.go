package store

import (
	"bytes"
	"context"
	"fmt"

	ds "github.com/ipfs/go-datastore"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/merkle"
)

// purgedRecord marks, in openBatch.records, a key the batch purges.
const purgedRecord = -1

// purge is a tombstone removed by garbage collection: its tree update.
type purge struct {
	bucket uint32
	hash   uint64
	hlc    crdt.Timestamp
}

// mergePurge removes, in the open batch, the key's entry if it is still the
// tombstone t; a newer write since makes it a no-op.
func (s *Store) mergePurge(ctx context.Context, ob *openBatch, cur *Record, t *crdt.Entry) error {
	if cur == nil || !cur.Tombstone || cur.HLC != t.HLC || !bytes.Equal(cur.Origin, t.Origin) {
		return nil
	}
	key := cur.Key
	kh := merkle.KeyHash(key)
	for _, k := range [][]byte{entryKey(key), hashKey(kh, key), tombKey(cur.HLC, key)} {
		if err := ob.b.Delete(ctx, ds.RawKey(string(k))); err != nil {
			return fmt.Errorf("store: batch: %w", err)
		}
	}
	ob.purges = append(ob.purges, purge{bucket: merkle.BucketOf(kh), hash: merkle.EntryHash(&cur.Entry), hlc: cur.HLC})
	ob.records[string(key)] = purgedRecord
	return nil
}
