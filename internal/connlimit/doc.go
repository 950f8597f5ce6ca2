// Package connlimit caps how many connections a listener hands out at once.
//
// Invariants: at most Max connections accepted through a Listener are open
// at any time; a connection accepted beyond that is closed at once, before
// any byte is read from it, and counted (Refused). A slot is freed when its
// connection is closed, once, however many times Close is called.
//
// Closing the excess at once, rather than leaving it in the kernel's accept
// queue as golang.org/x/net/netutil.LimitListener does, keeps a flood from
// also stalling the clients queued behind it: they are refused quickly and
// retry, and the descriptors the process holds stay bounded.
//
// What a caller does: wrap the listener with New before handing it to the
// server (gRPC's Serve, http.Server.Serve); the server closes what it
// accepted as usual.
package connlimit
