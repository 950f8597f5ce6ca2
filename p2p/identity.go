package p2p

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/internal/atomicfile"
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
			return Identity{}, fmt.Errorf("%w: %s does not decode (restore it from a backup, or start with a new identity): %w", ErrDamagedIdentity, path, err)
		}
		if err := checkKeyPair(sk); err != nil {
			return Identity{}, fmt.Errorf("%w: %s: %w (restore it from a backup, or start with a new identity)", ErrDamagedIdentity, path, err)
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
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return Identity{}, fmt.Errorf("p2p: write identity key: %w", err)
	}
	return newIdentity(sk)
}

// ErrDamagedIdentity reports an identity key file that does not hold a
// usable key pair. A damaged key must not be used: its peer id would differ
// from the node's, or every signature it makes would fail to verify.
var ErrDamagedIdentity = errors.New("p2p: damaged identity key")

// checkKeyPair checks that sk's public half matches its private half, by
// signing a message and verifying it: an Ed25519 key file holds both halves,
// and a flipped bit in the public one still decodes.
func checkKeyPair(sk crypto.PrivKey) error {
	msg := []byte("chorus identity key check")
	sig, err := sk.Sign(msg)
	if err != nil {
		return fmt.Errorf("it cannot sign: %w", err)
	}
	if ok, err := sk.GetPublic().Verify(msg, sig); err != nil || !ok {
		return errors.New("its public half does not match its private half")
	}
	return nil
}

// IdentityExists reports whether dir holds an identity key file.
func IdentityExists(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, IdentityFile))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("p2p: identity key: %w", err)
	}
}

func newIdentity(sk crypto.PrivKey) (Identity, error) {
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		return Identity{}, fmt.Errorf("p2p: peer id from key: %w", err)
	}
	return Identity{Key: sk, ID: id}, nil
}
