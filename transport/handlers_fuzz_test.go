package transport_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/internal/fuzzcalls"
	"github.com/rookery-ml/rookery/ledger"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
)

// The handler fuzz targets call a provider's RPC handlers directly, with
// fake streams that deliver arbitrary messages decoded as gRPC's codec
// would, so that every input check runs at the speed of a function call.
// (The seed node's are fuzzed in package transport/seednode.)

// placeholder in a message's bytes stands for the id of the last session
// opened, which the fuzzer cannot guess: it has the length of a real id,
// so the bytes around it stay valid protobuf.
var placeholder = []byte("SESSIONIDSESSIONIDSESSIONIDSESSI")

// fakeStream is a grpc.ServerStream that receives msgs and records what
// the handler sends.
type fakeStream struct {
	ctx  context.Context
	msgs [][]byte
	sent []any
}

func (s *fakeStream) SetHeader(metadata.MD) error  { return nil }
func (s *fakeStream) SendHeader(metadata.MD) error { return nil }
func (s *fakeStream) SetTrailer(metadata.MD)       {}
func (s *fakeStream) Context() context.Context     { return s.ctx }
func (s *fakeStream) SendMsg(m any) error {
	s.sent = append(s.sent, m)
	return nil
}

func (s *fakeStream) RecvMsg(m any) error {
	if len(s.msgs) == 0 {
		return io.EOF
	}
	b := s.msgs[0]
	s.msgs = s.msgs[1:]
	if err := transport.DecodeMessage(b, m); err != nil {
		// What a gRPC server stream returns for a message it cannot decode.
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	return nil
}

const (
	opOpen = iota
	opPut
	opGet
	opForward
	opBackward
	opStep
	opClose
	opLocalSteps
	opReceipt
	opJoinRing
	opAllReduce
	opRingPass
	numOps
)

// FuzzProviderHandlers sends arbitrary call sequences to a provider's
// Open, Put, Get, Forward, Backward, Step, Close, LocalSteps, Receipt,
// JoinRing, AllReduce and RingPass handlers (the provider's dials to other
// providers fail at once: the fuzzer reaches no network). No input may
// panic the provider or get an error that is not a gRPC status; a receipt
// it signs checks, with figures none of which is negative; every
// byte it reserves is released once the sessions are closed; it never
// holds more than its budget.
func FuzzProviderHandlers(f *testing.F) {
	m := newMLP(f, tensor.Float64, 2, 3, 4, 2)
	lay, err := exec.NewLayout(m.ir, m.parts(1), m.loss, m.data)
	if err != nil {
		f.Fatal(err)
	}
	sp := lay.Specs[0]
	gb, err := sp.Graph.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	spec := &rookeryv1.SessionSpec{Part: int32(sp.Part), Inputs: sp.Inputs, DataInputs: sp.DataInputs, Outputs: sp.Outputs,
		Loss: sp.Loss, HasLoss: sp.HasLoss, Solver: &rookeryv1.Solver{Kind: rookeryv1.Solver_KIND_SGD, LearnRate: 0.1, Momentum: 0.9}}
	sid := string(placeholder)
	frame := func(id int64, name string, t *tensor.Dense) *rookeryv1.TensorFrame {
		pb, err := graph.EncodeTensor(t)
		if err != nil {
			f.Fatal(err)
		}
		return &rookeryv1.TensorFrame{Id: id, Name: name, Tensor: pb}
	}
	var feeds []any
	feeds = append(feeds, byte(opForward), &rookeryv1.TensorFrame{Session: sid})
	for _, id := range m.data {
		feeds = append(feeds, frame(id, "", m.feeds[id]))
	}
	wid := m.ir.Learnables()[0]
	wname := "param/" + strconv.FormatInt(wid, 10)
	wn, _ := m.ir.Node(wid)
	wv := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(wn.Shape...))
	open := []any{byte(opOpen), &rookeryv1.OpenRequest{Spec: spec, GraphBytes: int64(len(gb)), GraphChunk: gb[:len(gb)/2]},
		&rookeryv1.OpenRequest{GraphChunk: gb[len(gb)/2:]}}
	f.Add(fuzzcalls.Encode(open,
		[]any{byte(opPut), &rookeryv1.TensorFrame{Session: sid}, frame(0, wname, wv)},
		feeds,
		[]any{byte(opBackward), &rookeryv1.TensorFrame{Session: sid}},
		[]any{byte(opStep), &rookeryv1.StepRequest{Session: sid}},
		[]any{byte(opGet), &rookeryv1.GetRequest{Session: sid, Names: []string{wname}}},
		[]any{byte(opClose), &rookeryv1.CloseRequest{Session: sid}}))
	f.Add(fuzzcalls.Encode(open, feeds, feeds, []any{byte(opStep), &rookeryv1.StepRequest{Session: sid}}))
	f.Add(fuzzcalls.Encode(open, []any{byte(opPut), &rookeryv1.TensorFrame{Session: sid, Tensor: &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_FLOAT32, Shape: []int64{1 << 20}}},
		&rookeryv1.TensorFrame{Data: []byte{1, 2, 3}}}))
	f.Add(fuzzcalls.Encode([]any{byte(opOpen), &rookeryv1.OpenRequest{Spec: spec, GraphBytes: 1 << 40}}))
	// A tensor in a header and continuation frames; a wrong dtype; an
	// evaluation session; micro-batches far apart.
	whead := frame(0, wname, wv)
	wdata := whead.Tensor.Data
	whead.Tensor.Data = wdata[:5]
	f.Add(fuzzcalls.Encode(open, []any{byte(opPut), &rookeryv1.TensorFrame{Session: sid}, whead,
		&rookeryv1.TensorFrame{Data: wdata[5:9]}, &rookeryv1.TensorFrame{Data: wdata[9:]}},
		[]any{byte(opGet), &rookeryv1.GetRequest{Session: sid, Names: []string{wname, "nope"}}}))
	wrong := frame(m.data[0], "", tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(m.feeds[m.data[0]].Shape()...)))
	f.Add(fuzzcalls.Encode(open, []any{byte(opForward), &rookeryv1.TensorFrame{Session: sid, MicroBatch: 1}, wrong}))
	eval := proto.Clone(spec).(*rookeryv1.SessionSpec)
	eval.EvalMode = true
	far := append([]any{}, feeds...)
	far[1] = &rookeryv1.TensorFrame{Session: sid, MicroBatch: 1 << 20}
	f.Add(fuzzcalls.Encode([]any{byte(opOpen), &rookeryv1.OpenRequest{Spec: eval, GraphBytes: int64(len(gb)), GraphChunk: gb}}, feeds, far,
		[]any{byte(opBackward), &rookeryv1.TensorFrame{Session: sid, MicroBatch: 1 << 20}}))
	// A whole-model session of one micro-batch with its shards, trained
	// by local steps.
	whole := proto.Clone(spec).(*rookeryv1.SessionSpec)
	whole.MicroBatches = 1
	shards := []any{byte(opPut), &rookeryv1.TensorFrame{Session: sid}}
	for _, id := range m.data {
		shards = append(shards, frame(0, exec.ShardName(id), m.feeds[id]))
	}
	f.Add(fuzzcalls.Encode([]any{byte(opOpen), &rookeryv1.OpenRequest{Spec: whole, GraphBytes: int64(len(gb)), GraphChunk: gb}}, shards,
		[]any{byte(opLocalSteps), &rookeryv1.LocalStepsRequest{Session: sid, Steps: 3, Seed: 5, Start: 1}},
		[]any{byte(opLocalSteps), &rookeryv1.LocalStepsRequest{Session: sid, Steps: -1, Start: -1}}))
	f.Add(fuzzcalls.Encode(open, []any{byte(opLocalSteps), &rookeryv1.LocalStepsRequest{Session: sid, Steps: 1}}))
	f.Add(fuzzcalls.Encode(open, feeds, []any{byte(opBackward), &rookeryv1.TensorFrame{Session: sid}},
		[]any{byte(opStep), &rookeryv1.StepRequest{Session: sid}},
		[]any{byte(opReceipt), &rookeryv1.ReceiptRequest{Session: sid, Job: "job"}},
		[]any{byte(opReceipt), &rookeryv1.ReceiptRequest{Session: sid, Job: strings.Repeat("j", 300), Final: true}}))
	// A ring that cannot reach its next member, a round without a ring,
	// and a ring pass with the fuzzer's key.
	wname0 := "grad/" + strconv.FormatInt(wid, 10)
	f.Add(fuzzcalls.Encode(open,
		[]any{byte(opJoinRing), &rookeryv1.JoinRingRequest{Session: sid, Rank: 1, Weights: []float64{0.5, 0.5}, Names: []string{wname0},
			Key: fuzzRingKey, NextAddress: "127.0.0.1:1", NextSession: sid}},
		[]any{byte(opAllReduce), &rookeryv1.AllReduceRequest{Session: sid, Round: 1}},
		[]any{byte(opJoinRing), &rookeryv1.JoinRingRequest{Session: sid, Rank: 0, Weights: []float64{0.25, 0.75}, Names: []string{wname0},
			Key: fuzzRingKey, NextAddress: "127.0.0.1:1", NextSession: sid, Shard: true}},
		[]any{byte(opAllReduce), &rookeryv1.AllReduceRequest{Session: sid, Round: 2, Mode: rookeryv1.RingMode_RING_MODE_STEP}},
		[]any{byte(opAllReduce), &rookeryv1.AllReduceRequest{Session: sid, Round: 3, Mode: rookeryv1.RingMode_RING_MODE_GATHER_STATE}},
		[]any{byte(opAllReduce), &rookeryv1.AllReduceRequest{Session: sid, Round: 4, Mode: 7}},
		[]any{byte(opRingPass), &rookeryv1.TensorFrame{Session: sid, Name: "ring", MicroBatch: 1}, frame(0, "", wv)},
		[]any{byte(opRingPass), &rookeryv1.TensorFrame{Session: sid, Name: "probe"}}))

	const budget = 1 << 22
	noNetwork := transport.WithDialer(func(context.Context, string) (net.Conn, error) {
		return nil, errors.New("the fuzzer reaches no network")
	})
	srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithLimits(transport.Limits{
		MaxSessions: 3, MaxNodes: 64, MaxGraphBytes: 1 << 16, MaxTensorBytes: 1 << 16, MaxSessionBytes: 1 << 20,
		MaxProviderBytes: budget, IdleTimeout: -1, ChunkBytes: 1 << 12}),
		transport.WithPeerDialOptions(noNetwork, transport.WithDialTimeout(20*time.Millisecond)))
	f.Cleanup(srv.Stop)
	// Sessions name a requester key, so that Receipt signs receipts; ring
	// passes carry the fuzzer's ring key.
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(transport.RequesterKeyHeader,
		transport.EncodeIdentityKey(transport.DefaultRequesterKey().Public().(ed25519.PublicKey)),
		transport.RingKeyHeader, base64.StdEncoding.EncodeToString(fuzzRingKey)))
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, msgs := fuzzcalls.Decode(data, 24)
		var ids []string
		last := sid
		fill := func(ms [][]byte) [][]byte {
			out := make([][]byte, len(ms))
			for i, b := range ms {
				out[i] = bytes.ReplaceAll(b, placeholder, []byte(last))
			}
			return out
		}
		unary := func(ms [][]byte, m proto.Message) bool {
			if len(ms) == 0 {
				return false
			}
			return proto.Unmarshal(fill(ms)[0], m) == nil
		}
		for i, op := range ops {
			st := &fakeStream{ctx: ctx, msgs: fill(msgs[i])}
			var err error
			switch op % numOps {
			case opOpen:
				err = srv.Open(&grpc.GenericServerStream[rookeryv1.OpenRequest, rookeryv1.OpenResponse]{ServerStream: st})
				if err == nil {
					if len(st.sent) != 1 {
						t.Fatalf("Open sent %d responses", len(st.sent))
					}
					last = st.sent[0].(*rookeryv1.OpenResponse).Session
					ids = append(ids, last)
				}
			case opPut:
				err = srv.Put(&grpc.GenericServerStream[rookeryv1.TensorFrame, rookeryv1.PutResponse]{ServerStream: st})
			case opGet:
				var req rookeryv1.GetRequest
				if unary(msgs[i], &req) {
					err = srv.Get(&req, &grpc.GenericServerStream[rookeryv1.GetRequest, rookeryv1.TensorFrame]{ServerStream: st})
				}
			case opForward:
				err = srv.Forward(&grpc.GenericServerStream[rookeryv1.TensorFrame, rookeryv1.TensorFrame]{ServerStream: st})
			case opBackward:
				err = srv.Backward(&grpc.GenericServerStream[rookeryv1.TensorFrame, rookeryv1.TensorFrame]{ServerStream: st})
			case opStep:
				var req rookeryv1.StepRequest
				if unary(msgs[i], &req) {
					_, err = srv.Step(ctx, &req)
				}
			case opClose:
				var req rookeryv1.CloseRequest
				if unary(msgs[i], &req) {
					_, err = srv.Close(ctx, &req)
				}
			case opLocalSteps:
				var req rookeryv1.LocalStepsRequest
				if unary(msgs[i], &req) {
					// A valid count runs at most a few steps, so that
					// one input stays quick.
					if req.Steps > 4 && req.Steps <= exec.MaxLocalSteps {
						req.Steps = 4
					}
					_, err = srv.LocalSteps(ctx, &req)
				}
			case opJoinRing:
				var req rookeryv1.JoinRingRequest
				if unary(msgs[i], &req) {
					_, err = srv.JoinRing(ctx, &req)
				}
			case opAllReduce:
				var req rookeryv1.AllReduceRequest
				if unary(msgs[i], &req) {
					_, err = srv.AllReduce(ctx, &req)
				}
			case opRingPass:
				// A probe waits for its session to join a ring; a short
				// bound keeps each input quick.
				rctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
				st.ctx = rctx
				err = srv.RingPass(&grpc.GenericServerStream[rookeryv1.TensorFrame, rookeryv1.PutResponse]{ServerStream: st})
				cancel()
			case opReceipt:
				var req rookeryv1.ReceiptRequest
				if unary(msgs[i], &req) {
					var resp *rookeryv1.ReceiptResponse
					if resp, err = srv.Receipt(ctx, &req); err == nil {
						r, oerr := ledger.OpenProviderReceipt(resp.Receipt)
						if oerr != nil {
							t.Fatalf("the provider's receipt does not open: %v", oerr)
						}
						if w := r.Work; w.Flops < 0 || w.BytesIn < 0 || w.BytesOut < 0 || w.Steps < 0 || w.MicroBatches < 0 {
							t.Fatalf("receipt with negative figures: %v", w)
						}
					}
				}
			}
			fuzzcalls.CheckStatus(t, "call", err)
			if r := srv.Reserved(); r < 0 || r > budget {
				t.Fatalf("reserved %d bytes, budget %d", r, budget)
			}
		}
		for _, id := range ids {
			if _, err := srv.Close(ctx, &rookeryv1.CloseRequest{Session: id}); err != nil {
				t.Fatal(err)
			}
		}
		if n, r := srv.Sessions(), srv.Reserved(); n != 0 || r != 0 {
			t.Fatalf("after closing every session: %d sessions, %d bytes reserved", n, r)
		}
	})
}

// fuzzRingKey is the ring key of FuzzProviderHandlers' seeds and calls.
var fuzzRingKey = bytes.Repeat([]byte{7}, 32)

// FuzzParseLease feeds lease tokens to ParseLease: it must never panic,
// must refuse with an *AuthError matching ErrUnauthenticated, and what it
// accepts must carry the seed key's signature: signing its claims again
// gives a token that reads the same.
func FuzzParseLease(f *testing.F) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	pub := key.Public().(ed25519.PublicKey)
	good, err := transport.SignLease(key, transport.Lease{ProviderID: "p1", ProviderAddress: "127.0.0.1:7070", Requester: "token:alice",
		IssuedAt: time.UnixMilli(1_700_000_000_000), Expires: time.UnixMilli(1_700_003_600_000)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	bound, err := transport.SignLease(key, transport.Lease{ProviderID: "p1", ProviderAddress: "127.0.0.1:7070", Requester: "key:AAAA",
		RequesterKey: pub, IssuedAt: time.UnixMilli(1_700_000_000_000), Expires: time.UnixMilli(1_700_003_600_000)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bound)
	f.Add("v1.")
	f.Add("v1." + strings.Repeat("A", 100))
	f.Add(good[:len(good)-3] + "AAA")
	f.Fuzz(func(t *testing.T, token string) {
		l, err := transport.ParseLease(token, pub)
		if err != nil {
			var ae *transport.AuthError
			if !errors.As(err, &ae) || !errors.Is(err, transport.ErrUnauthenticated) {
				t.Fatalf("refusal %v is not an unauthenticated *AuthError", err)
			}
			return
		}
		if l.Requester == "" || l.Expires.Before(l.IssuedAt) {
			t.Fatalf("accepted %+v", l)
		}
		again, err := transport.SignLease(key, *l)
		if err != nil {
			t.Fatal(err)
		}
		back, err := transport.ParseLease(again, pub)
		if err != nil || !reflect.DeepEqual(back, l) {
			t.Fatalf("re-signed lease reads %+v, %v; want %+v", back, err, l)
		}
		_ = l.CheckTime(time.UnixMilli(1_700_000_000_000))
	})
}
