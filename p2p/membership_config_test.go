package p2p

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/p2p/swim"
)

// TestMembershipConfig: WithDefaults fills the cluster, the logger and the
// detector's random source; Validate reports every problem at once, and
// StartMembership refuses what Validate refuses.
func TestMembershipConfig(t *testing.T) {
	n := startTestNode(t, "test")
	valid := MembershipConfig{Host: n.host, PubSub: n.repl.PubSub()}

	d := MembershipConfig{}.WithDefaults()
	if d.Cluster != DefaultCluster || d.Logger == nil || d.Detector.Rand == nil {
		t.Errorf("WithDefaults: cluster %q, logger %v, rand %v; want %q and both set", d.Cluster, d.Logger, d.Detector.Rand, DefaultCluster)
	}

	slowTimeout := valid
	slowTimeout.Detector = swim.Config{ProbeInterval: time.Second, ProbeTimeout: 2 * time.Second}
	for _, tt := range []struct {
		name    string
		cfg     MembershipConfig
		want    []string // substrings of the error, each problem once
		wantErr error    // wrapped, when set
	}{
		{name: "valid", cfg: valid},
		{name: "empty", cfg: MembershipConfig{}, want: []string{"needs a Host", "needs a PubSub"}},
		{name: "probe timeout past the interval", cfg: slowTimeout, want: []string{"ProbeTimeout: must be less than ProbeInterval"}, wantErr: swim.ErrInvalidConfig},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil; want %q", tt.want)
			}
			for _, w := range tt.want {
				if strings.Count(err.Error(), w) != 1 {
					t.Errorf("Validate: %v; want %q once", err, w)
				}
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Validate: %v; want it to wrap %v", err, tt.wantErr)
			}
			if m, err := StartMembership(tt.cfg); err == nil {
				m.Close()
				t.Error("StartMembership took a config Validate refuses")
			}
		})
	}
}
