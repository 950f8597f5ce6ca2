//go:build unix

package node

import "syscall"

// descriptorLimit returns the process's soft RLIMIT_NOFILE, 0 if unknown.
func descriptorLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return uint64(lim.Cur)
}
