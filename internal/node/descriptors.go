package node

// File descriptors: the store must always be able to open its files (a
// journal switch or a compaction that fails with "too many open files"
// stops the node), so the connection caps are fitted into what the
// process's descriptor limit leaves after a reserve for the store.
//
// Go raises the soft RLIMIT_NOFILE to the hard limit when a program starts
// (package syscall, since Go 1.19), so the limit read here is the hard one
// unless an operator lowered both.

// reservedDescriptors is what the connection caps leave for the rest of
// the process: LevelDB's table cache (goleveldb's default, 500 open
// tables), its journal, manifest, lock and LOG, and the process's own
// (executable, epoll, timers, pipes, the data folder's other files, DNS,
// logs, the listeners themselves).
const reservedDescriptors = 640

// minConns is the least cap a listener gets when the limit is too low for
// the caps asked for.
const minConns = 16

// connCaps are the connection caps of the node's listeners: client gRPC
// connections per gRPC listener (the native API and the etcd API each),
// HTTP connections, and descriptors libp2p may hold (TCP connections; QUIC
// shares one socket).
type connCaps struct {
	Client, Etcd, HTTP, P2P int
}

func (c connCaps) sum() int { return c.Client + c.Etcd + c.HTTP + c.P2P }

// planConns fits want into limit descriptors less reservedDescriptors. When
// they fit, or the limit is unknown (0), want is returned; otherwise every
// cap is lowered in proportion, to at least minConns (a limit below
// reservedDescriptors + 4·minConns leaves the store less than its reserve:
// the caller warns), and lowered is true. A zero Etcd cap (the etcd API
// off) stays zero.
func planConns(limit uint64, want connCaps) (caps connCaps, lowered bool) {
	if limit == 0 || uint64(want.sum())+reservedDescriptors <= limit {
		return want, false
	}
	avail := 0
	if limit > reservedDescriptors {
		avail = int(limit - reservedDescriptors)
	}
	// Share avail in proportion to want; a cap that falls under minConns
	// takes minConns out of the share of the others (a fixed point after
	// at most one pass per cap).
	wants := []int{want.Client, want.Etcd, want.HTTP, want.P2P}
	got := make([]int, len(wants))
	atMin := make([]bool, len(wants))
	for range wants {
		share, total := avail, 0
		for i, w := range wants {
			if atMin[i] {
				share -= minConns
			} else {
				total += w
			}
		}
		changed := false
		for i, w := range wants {
			switch {
			case w == 0:
				got[i] = 0
			case atMin[i]:
				got[i] = minConns
			default:
				got[i] = int(int64(w) * int64(max(share, 0)) / int64(max(total, 1)))
				if got[i] < minConns {
					got[i], atMin[i], changed = minConns, true, true
				}
			}
		}
		if !changed {
			break
		}
	}
	return connCaps{Client: got[0], Etcd: got[1], HTTP: got[2], P2P: got[3]}, true
}

// defaultP2PDescriptors is how many descriptors libp2p's resource manager
// may hold (TCP connections to peers; QUIC shares one socket), before
// planConns fits it to the limit.
const defaultP2PDescriptors = 1024

// planDescriptors sets the node's connection caps from its configuration
// and the process's descriptor limit, and says so in the log.
func (n *Node) planDescriptors() {
	want := connCaps{Client: n.cfg.MaxClientConns, HTTP: n.cfg.MaxHTTPConns, P2P: defaultP2PDescriptors}
	if n.cfg.ListenEtcd != "" {
		want.Etcd = n.cfg.MaxClientConns
	}
	if n.cfg.ListenHTTP == ListenHTTPOff {
		want.HTTP = 0
	}
	limit := descriptorLimit()
	caps, lowered := planConns(limit, want)
	n.caps = caps
	if !lowered {
		n.cfg.Logger.Debug("connection caps", "descriptor_limit", limit, "client", caps.Client, "etcd", caps.Etcd, "http", caps.HTTP, "p2p_descriptors", caps.P2P)
		return
	}
	msg := "the descriptor limit cannot hold the connection caps next to the store's reserve: lowered them (raise the limit, e.g. LimitNOFILE= in a systemd unit or ulimit -n, to keep them)"
	if limit < reservedDescriptors+4*minConns {
		msg = "the descriptor limit is below what the store needs next to the smallest connection caps: the store may fail to open a file under load (raise the limit, e.g. LimitNOFILE= in a systemd unit or ulimit -n)"
	}
	n.cfg.Logger.Warn(msg, "descriptor_limit", limit, "reserved_for_store", reservedDescriptors,
		"client", caps.Client, "etcd", caps.Etcd, "http", caps.HTTP, "p2p_descriptors", caps.P2P)
}
