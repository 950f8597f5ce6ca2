package p2p

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// IdentityFile is the name of the key file in a node's data folder.
const IdentityFile = "identity.key"

// Identity is a node's libp2p key pair and the peer id derived from it.
type Identity struct {
	Key crypto.PrivKey
	ID  peer.ID
}

// LoadOrCreateIdentity reads the node's key from dir/identity.key, creating
// the folder and a new Ed25519 key on first start.
func LoadOrCreateIdentity(dir string) (Identity, error) {
	path := filepath.Join(dir, IdentityFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		sk, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return Identity{}, fmt.Errorf("p2p: identity key %s does not decode (restore it, or remove it to make this a new node): %w", path, err)
		}
		return newIdentity(sk)
	case !errors.Is(err, fs.ErrNotExist):
		return Identity{}, fmt.Errorf("p2p: read identity key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Identity{}, fmt.Errorf("p2p: create data folder: %w", err)
	}
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return Identity{}, fmt.Errorf("p2p: generate identity key: %w", err)
	}
	b, err = crypto.MarshalPrivateKey(sk)
	if err != nil {
		return Identity{}, fmt.Errorf("p2p: encode identity key: %w", err)
	}
	if err := writeFileAtomic(path, b, 0o600); err != nil {
		return Identity{}, fmt.Errorf("p2p: write identity key: %w", err)
	}
	return newIdentity(sk)
}

func newIdentity(sk crypto.PrivKey) (Identity, error) {
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		return Identity{}, fmt.Errorf("p2p: peer id from key: %w", err)
	}
	return Identity{Key: sk, ID: id}, nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
