package sim

import (
	"testing"
	"testing/synctest"
	"time"
)

// lingerAfterClose is how long goroutines of closed components may
// outlive Close: goleveldb's mpoolDrain waits up to 1 s after DB.Close
// and nothing can wait for it. In the bubble it costs virtual time only.
const lingerAfterClose = 2 * time.Second

// Run runs f on a new cluster inside a synctest bubble (virtual time) and
// closes the cluster when f returns.
func Run(t *testing.T, cfg Config, f func(t *testing.T, c *Cluster)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		c, err := New(cfg)
		if err != nil {
			time.Sleep(lingerAfterClose)
			t.Fatal(err)
		}
		defer func() {
			if err := c.Close(); err != nil {
				t.Errorf("close the cluster: %v", err)
			}
			time.Sleep(lingerAfterClose)
		}()
		f(t, c)
	})
}
