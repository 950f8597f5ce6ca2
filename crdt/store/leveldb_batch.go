package store

import (
	"context"
	"errors"

	ds "github.com/ipfs/go-datastore"
	goleveldb "github.com/syndtr/goleveldb/leveldb"
)

// batch is a LevelDB batch behind go-datastore's Batch interface, so that
// the writer chooses per batch whether its write is fsynced (go-ds-leveldb's
// own batches always are). Commit is not used: the writer writes b.
type batch struct{ b goleveldb.Batch }

var _ ds.Batch = (*batch)(nil)

func (b *batch) Put(_ context.Context, k ds.Key, v []byte) error {
	b.b.Put(k.Bytes(), v)
	return nil
}

func (b *batch) Delete(_ context.Context, k ds.Key) error {
	b.b.Delete(k.Bytes())
	return nil
}

func (b *batch) Commit(context.Context) error {
	return errors.New("store: internal batches are written by the writer goroutine")
}
