package netsim

import (
	"testing"
	"testing/synctest"
	"time"
)

// LingerAfterClose is how long goroutines of closed components may
// outlive Close: goleveldb's mpoolDrain waits up to 1 s after DB.Close
// and nothing can wait for it. In the bubble it costs virtual time only.
const LingerAfterClose = 2 * time.Second

// Run runs f inside a synctest bubble (virtual time) and, after f and
// every cleanup f registered, waits LingerAfterClose of virtual time so
// that goroutines lingering after Close end before the bubble does.
func Run(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		t.Cleanup(func() { time.Sleep(LingerAfterClose) }) // registered first: runs last
		f(t)
	})
}

// Start returns a network started inside the bubble of t (call it from
// Run's f), closed when the test ends, after the cleanups registered
// after it (the hosts').
func Start(t testing.TB, cfg LinkConfig, seed uint64) *Network {
	t.Helper()
	n, err := NewNetwork(cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}
