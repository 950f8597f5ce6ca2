package sim

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	Run(t, Config{N: 5}, func(t *testing.T, c *Cluster) {
		time.Sleep(5 * time.Second)
		var keys []string
		for k := range 10 {
			key := fmt.Sprintf("w/%d", k)
			keys = append(keys, key)
			if err := c.Put(context.Background(), k%5, key, []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)
		for _, w := range c.Writes(keys...) {
			t.Logf("%s applied %d conv %v", w.Key, w.Applied, w.Last.Sub(w.Acked))
		}
	})
}
