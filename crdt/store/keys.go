package store

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/merkle"
)

// Key-space prefixes in LevelDB. Each is a go-datastore key prefix.
const (
	entryPrefix = "/k/"
	logPrefix   = "/l/"
	metaRev     = "/m/rev"
	metaOldest  = "/m/oldest"
	metaHLC     = "/m/hlc"
	// The anti-entropy indexes and their metadata.
	hashPrefix  = "/h/" // /h/<%016x key hash><hex key>: keys by Merkle bucket
	tombPrefix  = "/t/" // /t/<%016x hlc><hex key>: tombstones by age
	metaIndexed = "/m/indexed"
	metaContact = "/m/contact"
	metaPurged  = "/m/purged"
	// metaReserved is the revision reservation for buffered batches;
	// metaBoot the boot id of the machine that last opened the store.
	metaReserved = "/m/reserved"
	metaBoot     = "/m/boot"
	gapPrefix    = "/g/" // /g/<%016x first revision>: revisions skipped at Open

)

// digestValue is the value of a key-hash index key: the entry's HLC and
// Merkle hash, so that a bucket's digests are read from the index alone.
func digestValue(e *crdt.Entry) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(e.HLC))
	return binary.BigEndian.AppendUint64(b, merkle.EntryHash(e))
}

// hashKey is the LevelDB key of key's entry in the key-hash index.
func hashKey(keyHash uint64, key []byte) []byte {
	b := make([]byte, 0, len(hashPrefix)+16+hex.EncodedLen(len(key)))
	return hex.AppendEncode(appendHex16(append(b, hashPrefix...), keyHash), key)
}

// appendHex16 appends v as 16 lowercase hex digits (fmt's %016x, without
// fmt's cost on the write path).
func appendHex16(dst []byte, v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return hex.AppendEncode(dst, b[:])
}

// bucketPrefix is the prefix of the key-hash index keys of a Merkle bucket:
// its 20 bits are the key hash's first five hex digits.
func bucketPrefix(bucket uint32) []byte { return fmt.Appendf(nil, "%s%05x", hashPrefix, bucket) }

// keyHashPrefix is the prefix of the key-hash index keys of one key hash.
func keyHashPrefix(keyHash uint64) []byte { return fmt.Appendf(nil, "%s%016x", hashPrefix, keyHash) }

// tombKey is the LevelDB key of a tombstone in the tombstone index.
func tombKey(hlc crdt.Timestamp, key []byte) []byte {
	b := make([]byte, 0, len(tombPrefix)+16+hex.EncodedLen(len(key)))
	return hex.AppendEncode(appendHex16(append(b, tombPrefix...), uint64(hlc)), key)
}

// entryKey is the LevelDB key of a user key's entry. Hex keeps byte order and
// keeps go-datastore's path cleaning away from arbitrary bytes.
func entryKey(key []byte) []byte {
	out := make([]byte, len(entryPrefix)+hex.EncodedLen(len(key)))
	copy(out, entryPrefix)
	hex.Encode(out[len(entryPrefix):], key)
	return out
}

// entryKeyEnd is the first LevelDB key after every entry key.
func entryKeyEnd() []byte { return []byte("/k0") } // '0' follows '/'

// logKey is the LevelDB key of the change-log record of rev.
func logKey(rev int64) []byte {
	return appendHex16(append(make([]byte, 0, len(logPrefix)+16), logPrefix...), uint64(rev))
}

// logKeyEnd is the first LevelDB key after every log key.
func logKeyEnd() []byte { return []byte("/l0") }

// gapKey is the key of the skipped revisions that start at from; its value
// is the last skipped revision.
func gapKey(from int64) []byte { return fmt.Appendf(nil, "%s%016x", gapPrefix, uint64(from)) }

func encodeUint64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decodeUint64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("store: metadata value is %d bytes; want 8", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// PrefixEnd returns the smallest key greater than every key with the prefix,
// or nil when there is none (the prefix is empty or all 0xff).
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
