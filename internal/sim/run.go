package sim

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/chorus-kv/chorus/internal/netsim"
)

// Run runs f on a new cluster inside a synctest bubble (virtual time) and
// closes the cluster when f returns.
func Run(t *testing.T, cfg Config, f func(t *testing.T, c *Cluster)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		c, err := New(cfg)
		if err != nil {
			time.Sleep(netsim.LingerAfterClose)
			t.Fatal(err)
		}
		defer func() {
			if err := c.Close(); err != nil {
				t.Errorf("close the cluster: %v", err)
			}
			time.Sleep(netsim.LingerAfterClose)
		}()
		f(t, c)
	})
}
