package faultstorage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/syndtr/goleveldb/leveldb/storage"
)

// ErrInjected is the error of every call Fail makes fail.
var ErrInjected = errors.New("faultstorage: injected fault")

// ErrCrashed is the error of every call on a storage after its Crash.
var ErrCrashed = errors.New("faultstorage: the storage crashed")

// Op is a file operation a fault can hit.
type Op int

// The operations Fail can make fail.
const (
	// Write is a file writer's Write: it writes nothing and fails.
	Write Op = iota + 1
	// Sync is a file writer's Sync (fsync): it makes nothing durable and
	// fails.
	Sync
	// ShortWrite is a file writer's Write that writes the first half of
	// its bytes and fails, as a write that fills the disk does.
	ShortWrite
)

func (o Op) String() string {
	switch o {
	case Write:
		return "write"
	case Sync:
		return "sync"
	case ShortWrite:
		return "short write"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Storage is an in-memory goleveldb storage.Storage with injectable faults
// and crashes (see the package doc). It is safe for concurrent use.
type Storage struct {
	mu      sync.Mutex
	files   map[storage.FileDesc]*file
	meta    storage.FileDesc
	locked  bool
	crashed bool
	boot    int
	// fail holds, per operation, the file types on which it fails.
	fail     map[Op]storage.FileType
	injected int
}

// file is one file's contents and how much of it would survive a crash.
type file struct {
	data    []byte
	synced  int  // bytes durable: the length at the last successful Sync
	durable bool // the name survives a crash (synced at least once)
}

var _ storage.Storage = (*Storage)(nil)

// New returns an empty storage.
func New() *Storage {
	return &Storage{files: map[storage.FileDesc]*file{}, fail: map[Op]storage.FileType{}}
}

// Fail makes every later op on files of the given types (a mask of
// storage.TypeJournal, TypeTable, TypeManifest, TypeTemp, or TypeAll) fail
// with ErrInjected, until Heal.
func (s *Storage) Fail(op Op, types storage.FileType) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[op] |= types
}

// Heal ends every fault Fail set.
func (s *Storage) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.fail)
}

// Injected returns how many calls failed with ErrInjected.
func (s *Storage) Injected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.injected
}

// BootID names the boot this storage belongs to: it changes with every
// Crash, as a machine's boot id does with a reboot.
func (s *Storage) BootID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("faultstorage-boot-%d", s.boot)
}

// Crash is a power loss: it returns what a reboot finds (each file cut to
// its last synced length, files never synced gone, the meta as last set, no
// faults, unlocked), and makes every later call on s and on its files fail
// with ErrCrashed.
func (s *Storage) Crash() *Storage {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crashed = true
	after := New()
	after.boot = s.boot + 1
	after.meta = s.meta
	for fd, f := range s.files {
		if !f.durable {
			continue
		}
		after.files[fd] = &file{data: bytes.Clone(f.data[:f.synced]), synced: f.synced, durable: true}
	}
	return after
}

// Durable returns the bytes of the file fd that would survive a crash now,
// and whether its name would.
func (s *Storage) Durable(fd storage.FileDesc) (synced, written int, durable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[fd]
	if !ok {
		return 0, 0, false
	}
	return f.synced, len(f.data), f.durable
}

// check fails a call on a crashed storage, or an op a fault hits.
// REQUIRES: s.mu.
func (s *Storage) check(op Op, fd storage.FileDesc) error {
	if s.crashed {
		return ErrCrashed
	}
	if op != 0 && s.fail[op]&fd.Type != 0 {
		s.injected++
		return fmt.Errorf("%w: %v of %v", ErrInjected, op, fd)
	}
	return nil
}

// Lock takes the storage's lock; a second Lock before Unlock fails with
// storage.ErrLocked.
func (s *Storage) Lock() (storage.Locker, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(0, storage.FileDesc{}); err != nil {
		return nil, err
	}
	if s.locked {
		return nil, storage.ErrLocked
	}
	s.locked = true
	return locker{s}, nil
}

type locker struct{ s *Storage }

func (l locker) Unlock() {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	l.s.locked = false
}

// Log discards LevelDB's log lines.
func (*Storage) Log(string) {}

// SetMeta records the current manifest, durably.
func (s *Storage) SetMeta(fd storage.FileDesc) error {
	if !storage.FileDescOk(fd) {
		return storage.ErrInvalidFile
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(0, fd); err != nil {
		return err
	}
	s.meta = fd
	return nil
}

// GetMeta returns the current manifest.
func (s *Storage) GetMeta() (storage.FileDesc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(0, storage.FileDesc{}); err != nil {
		return storage.FileDesc{}, err
	}
	if s.meta.Zero() {
		return storage.FileDesc{}, os.ErrNotExist
	}
	return s.meta, nil
}

// List returns the files of the given types.
func (s *Storage) List(ft storage.FileType) ([]storage.FileDesc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(0, storage.FileDesc{}); err != nil {
		return nil, err
	}
	var fds []storage.FileDesc
	for fd := range s.files {
		if fd.Type&ft != 0 {
			fds = append(fds, fd)
		}
	}
	return fds, nil
}

// Open opens fd for reading, as it is now.
func (s *Storage) Open(fd storage.FileDesc) (storage.Reader, error) {
	if !storage.FileDescOk(fd) {
		return nil, storage.ErrInvalidFile
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(0, fd); err != nil {
		return nil, err
	}
	f, ok := s.files[fd]
	if !ok {
		return nil, os.ErrNotExist
	}
	return &reader{s: s, r: bytes.NewReader(f.data[:len(f.data):len(f.data)])}, nil
}

// Create creates fd, empty (replacing a file of that name), for writing.
func (s *Storage) Create(fd storage.FileDesc) (storage.Writer, error) {
	if !storage.FileDescOk(fd) {
		return nil, storage.ErrInvalidFile
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(0, fd); err != nil {
		return nil, err
	}
	f := &file{}
	if old, ok := s.files[fd]; ok && old.durable {
		// The name was durable already; its old contents are not.
		f.durable = true
	}
	s.files[fd] = f
	return &writer{s: s, fd: fd, f: f}, nil
}

// Remove removes fd, durably.
func (s *Storage) Remove(fd storage.FileDesc) error {
	if !storage.FileDescOk(fd) {
		return storage.ErrInvalidFile
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(0, fd); err != nil {
		return err
	}
	if _, ok := s.files[fd]; !ok {
		return os.ErrNotExist
	}
	delete(s.files, fd)
	return nil
}

// Rename renames oldfd to newfd (replacing it), durably.
func (s *Storage) Rename(oldfd, newfd storage.FileDesc) error {
	if !storage.FileDescOk(oldfd) || !storage.FileDescOk(newfd) {
		return storage.ErrInvalidFile
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(0, oldfd); err != nil {
		return err
	}
	f, ok := s.files[oldfd]
	if !ok {
		return os.ErrNotExist
	}
	if oldfd == newfd {
		return nil
	}
	delete(s.files, oldfd)
	f.durable = true
	s.files[newfd] = f
	return nil
}

// Close does nothing: the contents stay for the next Open (LevelDB does
// not close a storage it was given).
func (*Storage) Close() error { return nil }

type reader struct {
	s *Storage
	r *bytes.Reader
}

func (r *reader) guard() error {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	return r.s.check(0, storage.FileDesc{})
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.guard(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	if err := r.guard(); err != nil {
		return 0, err
	}
	return r.r.ReadAt(p, off)
}

func (r *reader) Seek(off int64, whence int) (int64, error) {
	if err := r.guard(); err != nil {
		return 0, err
	}
	return r.r.Seek(off, whence)
}

func (r *reader) Close() error { return nil }

type writer struct {
	s      *Storage
	fd     storage.FileDesc
	f      *file
	closed bool
}

var _ io.WriteCloser = (*writer)(nil)

func (w *writer) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.closed {
		return 0, storage.ErrClosed
	}
	if err := w.s.check(Write, w.fd); err != nil {
		return 0, err
	}
	if err := w.s.check(ShortWrite, w.fd); err != nil {
		n := len(p) / 2
		w.f.data = append(w.f.data, p[:n]...)
		return n, err
	}
	w.f.data = append(w.f.data, p...)
	return len(p), nil
}

func (w *writer) Sync() error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.closed {
		return storage.ErrClosed
	}
	if err := w.s.check(Sync, w.fd); err != nil {
		return err
	}
	w.f.synced = len(w.f.data)
	w.f.durable = true
	return nil
}

func (w *writer) Close() error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.closed {
		return storage.ErrClosed
	}
	w.closed = true
	return nil
}
