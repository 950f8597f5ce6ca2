//go:build !unix

package node

// descriptorLimit returns 0: the limit is unknown on this system, and the
// connection caps are used as configured.
func descriptorLimit() uint64 { return 0 }
