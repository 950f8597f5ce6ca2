// Package grpcstop stops a gRPC server gracefully within a time limit.
//
// Invariant: Graceful returns only once the server has stopped: every
// connection closed and every handler returned. Calls in flight get up to
// the timeout to finish; then the rest are cancelled (grpc.Server.Stop).
package grpcstop
