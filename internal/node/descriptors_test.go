package node

import "testing"

func TestPlanConns(t *testing.T) {
	want := connCaps{Client: 4096, Etcd: 4096, HTTP: 256, P2P: 1024}
	for _, tt := range []struct {
		name        string
		limit       uint64
		want        connCaps
		caps        connCaps
		wantLowered bool
	}{
		{"unknown limit", 0, want, want, false},
		{"plenty", 1 << 20, want, want, false},
		{"exactly enough", uint64(want.sum()) + reservedDescriptors, want, want, false},
		{"one short: all lowered in proportion", uint64(want.sum()) + reservedDescriptors - 1, want,
			connCaps{Client: 4095, Etcd: 4095, HTTP: 255, P2P: 1023}, true},
		{"1024", 1024, want, connCaps{Client: 163, Etcd: 163, HTTP: minConns, P2P: 40}, true},
		{"1024 without the etcd API", 1024, connCaps{Client: 4096, HTTP: 256, P2P: 1024},
			connCaps{Client: 292, HTTP: 18, P2P: 73}, true},
		{"below the reserve: the minimum", 256, want, connCaps{Client: minConns, Etcd: minConns, HTTP: minConns, P2P: minConns}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			caps, lowered := planConns(tt.limit, tt.want)
			if caps != tt.caps || lowered != tt.wantLowered {
				t.Fatalf("planConns(%d) = %+v, %v; want %+v, %v", tt.limit, caps, lowered, tt.caps, tt.wantLowered)
			}
			if tt.limit > reservedDescriptors+4*minConns && caps.sum()+reservedDescriptors > int(tt.limit) {
				t.Errorf("caps %+v (sum %d) leave less than %d of %d for the store", caps, caps.sum(), reservedDescriptors, tt.limit)
			}
		})
	}
}
