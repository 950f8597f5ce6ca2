// Package protoconflict lets etcd's generated API code and GossipSub's live
// in one binary. Both register a protobuf file named "rpc.proto" (packages
// etcdserverpb and pubsub.pb: the file paths clash, no message or service
// name does), and the protobuf runtime panics at start on such a clash
// unless GOLANG_PROTOBUF_REGISTRATION_CONFLICT says otherwise. Known on both
// sides (etcd-io/etcd#19682, libp2p/go-libp2p-pubsub#729), unfixed.
//
// Importing this package sets that variable to "ignore" unless it is set
// already. Its init runs before either registration: the Go spec initializes
// packages in import-path order among those whose imports are initialized,
// this package imports only os, and both generated packages import the
// protobuf runtime, which imports os and sorts after this import path.
package protoconflict

import "os"

func init() {
	const env = "GOLANG_PROTOBUF_REGISTRATION_CONFLICT"
	if os.Getenv(env) == "" {
		_ = os.Setenv(env, "ignore")
	}
}
