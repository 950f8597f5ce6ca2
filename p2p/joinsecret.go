package p2p

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/sec"
	ma "github.com/multiformats/go-multiaddr"
)

// MinJoinSecretBytes is the shortest join secret accepted (after trimming
// surrounding white space): 16 bytes, so a secret cannot be guessed.
const MinJoinSecretBytes = 16

// MaxJoinSecretBytes bounds the join secret file read.
const MaxJoinSecretBytes = 4096

// LoadJoinSecret reads a join secret file (any bytes; surrounding white
// space is ignored, so a file written by `echo` or a Kubernetes Secret
// works) and derives the cluster's private-network key from it: SHA-256
// over a fixed label, the cluster name and the secret. Two nodes share the
// key exactly when they share the secret and the cluster name.
func LoadJoinSecret(path, cluster string) (pnet.PSK, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("p2p: join secret: %w", err)
	}
	if len(raw) > MaxJoinSecretBytes {
		return nil, fmt.Errorf("p2p: join secret %s is %d bytes; the limit is %d", path, len(raw), MaxJoinSecretBytes)
	}
	secret := bytes.TrimSpace(raw)
	if len(secret) < MinJoinSecretBytes {
		return nil, fmt.Errorf("p2p: join secret %s holds %d bytes; at least %d are needed (`chorus join-secret` writes a random one)", path, len(secret), MinJoinSecretBytes)
	}
	return JoinSecretKey(secret, cluster), nil
}

// JoinSecretKey derives the private-network key of a cluster from its join
// secret.
func JoinSecretKey(secret []byte, cluster string) pnet.PSK {
	h := sha256.New()
	h.Write([]byte("chorus join secret v1\x00"))
	h.Write([]byte(cluster))
	h.Write([]byte{0})
	h.Write(secret)
	return pnet.PSK(h.Sum(nil))
}

// GenerateJoinSecret returns a new random join secret (64 hex digits and a
// newline).
func GenerateJoinSecret() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("p2p: generate join secret: %w", err)
	}
	return []byte(hex.EncodeToString(key) + "\n"), nil
}

// ErrNoPeerID is returned by LearnPeerID when the address answered without
// revealing a peer id.
var ErrNoPeerID = errors.New("p2p: the address did not reveal its peer id")

// LearnPeerID finds out the peer id of whoever listens at addr (a multiaddr
// without /p2p/). go-libp2p cannot dial a peer whose id it does not know
// (its upgrader refuses an outbound connection with no expected id: the
// secured transports check the remote key against it), so this dials addr
// expecting a throwaway id; the security handshake (Noise or TLS) then fails
// with sec.ErrPeerIDMismatch, which carries the id the remote presented.
// That id is a hint, not a proof: the caller dials it next, and that
// handshake authenticates it. With a private-network key only a host with
// the same key gets that far. allow is called with the throwaway id before
// the dial (a connection gater must let it out) and done after.
func LearnPeerID(ctx context.Context, h host.Host, addr ma.Multiaddr, allow, done func(peer.ID)) (peer.ID, error) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("p2p: learn peer id: %w", err)
	}
	probe, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		return "", fmt.Errorf("p2p: learn peer id: %w", err)
	}
	if allow != nil {
		allow(probe)
	}
	defer func() {
		h.Peerstore().ClearAddrs(probe)
		h.Peerstore().RemovePeer(probe)
		if done != nil {
			done(probe)
		}
	}()
	err = h.Connect(ctx, peer.AddrInfo{ID: probe, Addrs: []ma.Multiaddr{addr}})
	if err == nil {
		// Cannot happen unless the remote holds the throwaway key.
		_ = h.Network().ClosePeer(probe)
		return "", fmt.Errorf("%w: %s", ErrNoPeerID, addr)
	}
	var mismatch sec.ErrPeerIDMismatch
	if errors.As(err, &mismatch) && mismatch.Actual != "" {
		return mismatch.Actual, nil
	}
	return "", fmt.Errorf("p2p: learn the peer id at %s: %w", addr, err)
}
