package etcdapi

import (
	"context"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// MaxTxnDepth is the most levels of Txns a Txn may nest (a Txn with no Txn
// inside is one level). etcd sets no bound of its own, but a request nested
// deeper than protobuf's recursion limit (about 3,300 Txn levels) fails in
// gRPC's decoder, with Internal; Kubernetes never nests a Txn.
const MaxTxnDepth = 64

// Field numbers of etcd's TxnRequest and RequestOp (rpc.proto).
const (
	txnSuccessField = 2 // TxnRequest.success: repeated RequestOp
	txnFailureField = 3 // TxnRequest.failure: repeated RequestOp
	requestTxnField = 4 // RequestOp.request_txn: TxnRequest
)

// rawRequest is a request kept in its wire form by serverCodec, for a
// handler that decodes it itself.
type rawRequest struct{ b []byte }

// serverCodec is gRPC's proto codec, except that it hands a *rawRequest
// its bytes undecoded. gRPC answers Internal whatever a codec's error, so a
// request that must be refused with InvalidArgument before it is decoded
// (a Txn nested too deep for the decoder) is decoded by its handler.
type serverCodec struct{ encoding.CodecV2 }

func newServerCodec() serverCodec { return serverCodec{encoding.GetCodecV2("proto")} }

func (c serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawRequest); ok {
		r.b = data.Materialize()
		return nil
	}
	return c.CodecV2.Unmarshal(data, v)
}

// kvServiceDesc is etcd's KV service with Txn decoded by decodeTxn.
func kvServiceDesc() *grpc.ServiceDesc {
	desc := pb.KV_ServiceDesc
	desc.Methods = slices.Clone(desc.Methods)
	for i := range desc.Methods {
		if desc.Methods[i].MethodName == "Txn" {
			desc.Methods[i].Handler = txnHandler
		}
	}
	return &desc
}

// txnHandler is etcd's generated Txn handler with decodeTxn as the decoder.
func txnHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	var raw rawRequest
	if err := dec(&raw); err != nil {
		return nil, err
	}
	req, err := decodeTxn(raw.b)
	if err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(pb.KVServer).Txn(ctx, req)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: pb.KV_Txn_FullMethodName}
	return interceptor(ctx, req, info, func(ctx context.Context, r any) (any, error) {
		return srv.(pb.KVServer).Txn(ctx, r.(*pb.TxnRequest))
	})
}

// decodeTxn decodes a TxnRequest after checking, on the wire form, that it
// nests at most MaxTxnDepth levels.
func decodeTxn(b []byte) (*pb.TxnRequest, error) {
	depth, err := txnDepth(b, MaxTxnDepth)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "chorus: malformed txn request: %v", err)
	}
	if depth > MaxTxnDepth {
		return nil, errTxnTooDeep()
	}
	req := &pb.TxnRequest{}
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "chorus: malformed txn request: %v", err)
	}
	return req, nil
}

func errTxnTooDeep() error {
	return status.Errorf(codes.InvalidArgument, "chorus: txn nests more than %d levels of txns; the limit is %d", MaxTxnDepth, MaxTxnDepth)
}

// txnDepth returns how many levels of Txns the TxnRequest encoded in b
// nests (1 when it holds no Txn), reading only tags and lengths. It stops as
// soon as the depth passes limit (and returns a depth above limit then), so
// it recurses at most limit+1 levels whatever the input. A RequestOp that
// holds several request fields counts its deepest Txn, although the
// decoder keeps only the last field: the count is never too small.
func txnDepth(b []byte, limit int) (int, error) {
	if limit <= 0 {
		return 1, nil // one level more than the caller's limit
	}
	deepest := 1
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		b = b[n:]
		if (num == txnSuccessField || num == txnFailureField) && typ == protowire.BytesType {
			op, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, protowire.ParseError(n)
			}
			b = b[n:]
			d, err := opTxnDepth(op, limit-1)
			if err != nil {
				return 0, err
			}
			if deepest = max(deepest, 1+d); deepest > limit {
				return deepest, nil
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return deepest, nil
}

// opTxnDepth is the depth of the Txns a RequestOp holds (0: none).
func opTxnDepth(b []byte, limit int) (int, error) {
	deepest := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		b = b[n:]
		if num == requestTxnField && typ == protowire.BytesType {
			txn, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, protowire.ParseError(n)
			}
			b = b[n:]
			d, err := txnDepth(txn, limit)
			if err != nil {
				return 0, err
			}
			if deepest = max(deepest, d); deepest > limit {
				return deepest, nil
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return deepest, nil
}

// checkTxnDepth is the same bound on a decoded request (for calls that do
// not come through decodeTxn).
func checkTxnDepth(req *pb.TxnRequest, limit int) error {
	if limit <= 0 {
		return errTxnTooDeep()
	}
	for _, branch := range [][]*pb.RequestOp{req.Success, req.Failure} {
		for _, op := range branch {
			if t := op.GetRequestTxn(); t != nil {
				if err := checkTxnDepth(t, limit-1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
