package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The JSON gateway's calls to SecretService do not cross a connection:
// localConn runs each one in the gateway's goroutine through the same
// server stages a call over a connection to the gateway's gRPC server
// passes, built from the same parts (run wires both): the server's stats
// handler (otelgrpc: the server span and rpc.server metrics), the service
// descriptor wrapped by the front door (authentication, the inbound
// limits; a gateway call's request bytes are paid on the HTTP side, cut
// to the decoded request here, keepDecoded), and the server's chain of unary
// interceptors (the per-call log line, panic recovery), then the service.
// What a connection would carry is carried: the request and the response
// go through the proto codec (the server gets its own copy, as it would
// decode one), the outgoing metadata becomes the server's incoming
// metadata as grpc-go's transport would pass it, and the deadline,
// cancellation and trace context (W3C trace context and baggage, as the
// propagators would send them) reach the server; nothing else of the
// caller's context does. The client-side limits of the connection it
// replaces hold: the send-size limit, the server's header list limit,
// grpc-go's metadata validation and at most maxConcurrentStreams calls in
// progress (more wait for a slot, as they would for a stream).
//
// A connection (HTTP/2 over an in-memory pipe) cost the gateway about
// 40 µs of CPU per call: framing, HPACK, the transport's goroutines and
// their wake-ups on both sides. Methods localConn does not serve (the
// health check) still go over that connection (fallback).

// Client-side defaults of grpc-go that localConn keeps.
const (
	// localMaxRecvBytes is grpc-go's default limit on a received message.
	localMaxRecvBytes = 4 << 20
	// localMsgHeader is the bytes a gRPC message's length prefix adds on
	// the wire, for the payloads' WireLength.
	localMsgHeader = 5
	// localHeaderFieldOverhead is what HTTP/2 counts per header field
	// against a header list limit (RFC 7540, 6.5.2).
	localHeaderFieldOverhead = 32
)

// localUserAgent is the user-agent grpc-go's client sends.
const localUserAgent = "grpc-go/" + grpc.Version

// localServer is what localConn runs a call through: the parts the
// gateway's gRPC server is built from.
type localServer struct {
	// desc is the service as registered on the server (front door
	// included), impl its implementation.
	desc *grpc.ServiceDesc
	impl any
	// interceptors are the server's unary interceptors, outermost first
	// (grpc.ChainUnaryInterceptor's order).
	interceptors []grpc.UnaryServerInterceptor
	// stats is the server's stats handler (nil: none).
	stats stats.Handler
	// maxSendBytes is the client's send limit (grpc.MaxCallSendMsgSize),
	// maxHeaderList the server's (grpc.MaxHeaderListSize), maxStreams
	// the server's bound on calls in progress on one connection
	// (grpc.MaxConcurrentStreams).
	maxSendBytes, maxHeaderList, maxStreams int
	// authority is the :authority the connection's client would send.
	authority string
}

// localConn is a grpc.ClientConnInterface for the gateway: desc's unary
// methods run in process; anything else goes to fallback.
type localConn struct {
	fallback grpc.ClientConnInterface
	s        localServer
	methods  map[string]grpc.MethodDesc // by full method name
	unary    grpc.UnaryServerInterceptor
	peer     *peer.Peer
	slots    chan struct{}
}

// newLocalConn returns the connection for s; fallback serves the methods s
// does not have.
func newLocalConn(fallback grpc.ClientConnInterface, s localServer) *localConn {
	c := &localConn{
		fallback: fallback,
		s:        s,
		methods:  make(map[string]grpc.MethodDesc, len(s.desc.Methods)),
		unary:    chainUnary(s.interceptors),
		peer:     &peer.Peer{Addr: localAddr{}, LocalAddr: localAddr{}},
		slots:    make(chan struct{}, max(s.maxStreams, 1)),
	}
	for _, m := range s.desc.Methods {
		c.methods["/"+s.desc.ServiceName+"/"+m.MethodName] = m
	}
	return c
}

// localAddr is both ends of a local call.
type localAddr struct{}

var _ net.Addr = localAddr{}

func (localAddr) Network() string { return "local" }
func (localAddr) String() string  { return "secretbroker-gateway" }

// NewStream is never local: SecretService has no streaming method.
func (c *localConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.fallback.NewStream(ctx, desc, method, opts...)
}

// callOptions are the grpc.CallOptions localConn honours.
type callOptions struct {
	header, trailer *metadata.MD
	peer            *peer.Peer
	maxSend         int
	maxRecv         int
}

func (c *localConn) callOptions(opts []grpc.CallOption) callOptions {
	o := callOptions{maxSend: c.s.maxSendBytes, maxRecv: localMaxRecvBytes}
	for _, opt := range opts {
		switch opt := opt.(type) {
		case grpc.HeaderCallOption:
			o.header = opt.HeaderAddr
		case grpc.TrailerCallOption:
			o.trailer = opt.TrailerAddr
		case grpc.PeerCallOption:
			o.peer = opt.PeerAddr
		case grpc.MaxSendMsgSizeCallOption:
			o.maxSend = opt.MaxSendMsgSize
		case grpc.MaxRecvMsgSizeCallOption:
			o.maxRecv = opt.MaxRecvMsgSize
		}
	}
	return o
}

// Invoke runs a unary call of s's service in this goroutine, and any
// other over the fallback connection.
func (c *localConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	m, ok := c.methods[method]
	if !ok {
		return c.fallback.Invoke(ctx, method, args, reply, opts...)
	}
	o := c.callOptions(opts)
	out, _ := metadata.FromOutgoingContext(ctx)
	if err := validateMetadata(out); err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	in, ok := args.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "grpc: error while marshaling: %T is not a proto.Message", args)
	}
	req, err := proto.Marshal(in)
	if err != nil {
		return status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
	}
	if len(req) > o.maxSend {
		return status.Errorf(codes.ResourceExhausted, "trying to send message larger than max (%d vs. %d)", len(req), o.maxSend)
	}
	md, listSize := c.incomingMetadata(out, method)
	if c.s.maxHeaderList > 0 && listSize > c.s.maxHeaderList {
		// grpc-go's client says INTERNAL; the metadata is what the JSON
		// caller sent (its Grpc-Metadata-* headers, 32 bytes more each
		// as gRPC counts them), so its answer is 431.
		return httpError(http.StatusRequestHeaderFieldsTooLarge, status.Errorf(codes.InvalidArgument,
			"the request's headers come to %d bytes as gRPC metadata, over the %d-byte limit: send fewer or shorter Grpc-Metadata-* headers", listSize, c.s.maxHeaderList))
	}
	r, err := c.serveInSlot(ctx, m, method, md, req)
	if err != nil {
		return err
	}

	if o.peer != nil {
		*o.peer = *c.peer
	}
	if o.header != nil {
		*o.header = r.header
	}
	if o.trailer != nil {
		*o.trailer = r.trailer
	}
	// The caller's own deadline or cancellation is what it sees once its
	// context is done, whatever the server answered after that.
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	if r.status != nil {
		return status.ErrorProto(r.status.Proto())
	}
	if len(r.resp) > o.maxRecv {
		return status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", len(r.resp), o.maxRecv)
	}
	dst, ok := reply.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %T is not a proto.Message", reply)
	}
	if err := proto.Unmarshal(r.resp, dst); err != nil {
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	return nil
}

// incomingMetadata is the metadata the server would see for a call with
// outgoing metadata out, and the size of the header list it would take.
// grpc-go's client sends every key but the reserved ones, and its server
// drops host, which :authority replaces. The keys grpc-go's transport
// adds itself (:authority, content-type, user-agent) are left out: no
// part of the server reads them, and each key costs every copy of the
// metadata (the front door's, the stats handler's); with at most eight
// keys a copy is one small map.
//
// out must be the call's own copy (metadata.FromOutgoingContext): it
// becomes the server's metadata, without those keys.
func (c *localConn) incomingMetadata(out metadata.MD, method string) (metadata.MD, int) {
	size := 0
	for _, f := range [...][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", c.s.authority},
		{"content-type", "application/grpc"}, {"user-agent", localUserAgent}, {"te", "trailers"}} {
		size += len(f[0]) + len(f[1]) + localHeaderFieldOverhead
	}
	for k, vs := range out {
		if reservedHeader(k) {
			delete(out, k)
			continue
		}
		for _, v := range vs {
			size += len(k) + len(v) + localHeaderFieldOverhead
		}
		if k == "host" {
			delete(out, k)
		}
	}
	return out, size
}

// reservedHeader reports whether grpc-go's client leaves metadata key k
// out of a call's headers: it sets those itself.
func reservedHeader(k string) bool {
	if k != "" && k[0] == ':' {
		return true
	}
	switch k {
	case "content-type", "user-agent", "grpc-message-type", "grpc-encoding", "grpc-message", "grpc-status", "grpc-timeout", "te":
		return true
	}
	return false
}

// validateMetadata is grpc-go's check of a call's outgoing metadata: keys
// of [0-9a-z-_.], and text values (keys not ending in -bin) of printable
// ASCII.
func validateMetadata(md metadata.MD) error {
	for k, vs := range md {
		if k == "" {
			return fmt.Errorf("there is an empty key in the header")
		}
		if k[0] == ':' {
			continue
		}
		for i := range len(k) {
			if r := k[i]; (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '.' && r != '-' && r != '_' {
				return fmt.Errorf("header key %q contains illegal characters not in [0-9a-z-_.]", k)
			}
		}
		if len(k) > 4 && k[len(k)-4:] == "-bin" {
			continue
		}
		for _, v := range vs {
			for i := range len(v) {
				if v[i] < 0x20 || v[i] > 0x7E {
					return fmt.Errorf("header key %q contains value with non-printable ASCII characters", k)
				}
			}
		}
	}
	return nil
}

// serveInSlot serves the call once a slot is free, or returns the
// context's error if it ends first. The slot is freed even if the call
// panics outside the interceptors' recovery (net/http recovers a
// handler's panic and serves on).
func (c *localConn) serveInSlot(ctx context.Context, m grpc.MethodDesc, method string, md metadata.MD, req []byte) (localResult, error) {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return localResult{}, status.FromContextError(ctx.Err()).Err()
	}
	defer func() { <-c.slots }()
	return c.serve(ctx, m, method, md, req), nil
}

// localResult is what the server sent back.
type localResult struct {
	status          *status.Status // nil: OK
	resp            []byte
	header, trailer metadata.MD
}

// serve is the server's side of a call: what grpc-go's server does for a
// unary call from the moment its headers arrive.
func (c *localConn) serve(cctx context.Context, m grpc.MethodDesc, method string, md metadata.MD, req []byte) localResult {
	ctx := metadata.NewIncomingContext(serverContext(cctx), md)
	ctx = peer.NewContext(ctx, c.peer)
	sh := c.s.stats
	var begin time.Time
	if sh != nil {
		ctx = sh.TagRPC(ctx, &stats.RPCTagInfo{FullMethodName: method})
		sh.HandleRPC(ctx, &stats.InHeader{FullMethod: method, RemoteAddr: c.peer.Addr, LocalAddr: c.peer.LocalAddr, Header: md})
		begin = time.Now()
		sh.HandleRPC(ctx, &stats.Begin{BeginTime: begin})
	}
	stream := &localStream{method: method, ctx: ctx, stats: sh}
	ctx = grpc.NewContextWithServerTransportStream(ctx, stream)
	stream.ctx = ctx

	dec := func(v any) error {
		msg, ok := v.(proto.Message)
		if !ok {
			return status.Errorf(codes.Internal, "grpc: error unmarshalling request: %T is not a proto.Message", v)
		}
		if err := proto.Unmarshal(req, msg); err != nil {
			return status.Errorf(codes.Internal, "grpc: error unmarshalling request: %v", err)
		}
		// The gateway's copies of the request (its JSON body, its message,
		// req) are no longer kept: the call's JSON body now costs the
		// request decoded, once.
		keepDecoded(cctx, len(req))
		if sh != nil {
			sh.HandleRPC(ctx, &stats.InPayload{Payload: v, Length: len(req), CompressedLength: len(req),
				WireLength: len(req) + localMsgHeader, RecvTime: time.Now()})
		}
		return nil
	}
	reply, err := m.Handler(c.s.impl, ctx, dec, c.unary)
	var r localResult
	if err == nil {
		if msg, ok := reply.(proto.Message); !ok {
			err = status.Errorf(codes.Internal, "grpc: error while marshaling: %T is not a proto.Message", reply)
		} else if r.resp, err = proto.Marshal(msg); err != nil {
			err = status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
		}
	}
	if err != nil {
		st, ok := status.FromError(err)
		if !ok {
			st = status.FromContextError(err)
			err = st.Err()
		}
		r.status = st
	} else {
		stream.sendHeader()
		if sh != nil {
			sh.HandleRPC(ctx, &stats.OutPayload{Payload: reply, Length: len(r.resp), CompressedLength: len(r.resp),
				WireLength: len(r.resp) + localMsgHeader, SentTime: time.Now()})
		}
	}
	r.header, r.trailer = stream.finish(r.status)
	if sh != nil {
		end := &stats.End{BeginTime: begin, EndTime: time.Now()}
		if err != nil {
			end.Error = err
		}
		sh.HandleRPC(ctx, end)
	}
	return r
}

// serverContext is the context a server's call starts from: cctx's
// deadline and cancellation, and of its values only the trace context
// and baggage, as the propagators would carry them. (A server cancels a
// call's context when the call ends; this one ends with the gateway's,
// which grpc-gateway cancels as soon as it has written the answer.)
func serverContext(cctx context.Context) context.Context {
	values := context.Background()
	if sc := trace.SpanContextFromContext(cctx); sc.IsValid() {
		values = trace.ContextWithRemoteSpanContext(values, sc)
	}
	if b := baggage.FromContext(cctx); b.Len() > 0 {
		values = baggage.ContextWithBaggage(values, b)
	}
	return callContext{Context: cctx, values: values}
}

// callContext is a context with the deadline and cancellation of its
// Context and the values of values.
type callContext struct {
	context.Context
	values context.Context
}

func (c callContext) Value(key any) any { return c.values.Value(key) }

// AfterFunc lets context.WithCancel and WithTimeout on a callContext hook
// into its cancellation without a goroutine of their own.
func (c callContext) AfterFunc(f func()) func() bool { return context.AfterFunc(c.Context, f) }

// localStream is the call's grpc.ServerTransportStream: it keeps the
// header and trailer metadata the handler sets (grpc.SetHeader,
// grpc.SendHeader, grpc.SetTrailer).
type localStream struct {
	method string
	ctx    context.Context
	stats  stats.Handler

	mu         sync.Mutex
	header     metadata.MD
	trailer    metadata.MD
	headerSent bool
	done       bool
}

// errIllegalHeaderWrite is grpc-go's answer to a header set too late.
var errIllegalHeaderWrite = status.Error(codes.Internal, "transport: SendHeader called multiple times")

func (s *localStream) Method() string { return s.method }

func (s *localStream) SetHeader(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.headerSent || s.done {
		return errIllegalHeaderWrite
	}
	if md.Len() > 0 {
		s.header = metadata.Join(s.header, md)
	}
	return nil
}

func (s *localStream) SendHeader(md metadata.MD) error {
	if err := s.SetHeader(md); err != nil {
		return err
	}
	s.sendHeader()
	return nil
}

func (s *localStream) SetTrailer(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return errIllegalHeaderWrite
	}
	if md.Len() > 0 {
		s.trailer = metadata.Join(s.trailer, md)
	}
	return nil
}

// sendHeader sends the header metadata, if it was not sent yet: the
// server's content-type and what the handler set.
func (s *localStream) sendHeader() {
	s.mu.Lock()
	if s.headerSent {
		s.mu.Unlock()
		return
	}
	s.headerSent = true
	set := s.header
	h := metadata.MD{"content-type": {"application/grpc"}}
	if set != nil {
		h = metadata.Join(h, set)
	}
	s.header = h
	s.mu.Unlock()
	if s.stats != nil {
		// As grpc-go's server reports it: what the handler set.
		s.stats.HandleRPC(s.ctx, &stats.OutHeader{FullMethod: s.method, Header: copyMD(set)})
	}
}

// copyMD is md.Copy, nil for none.
func copyMD(md metadata.MD) metadata.MD {
	if md == nil {
		return nil
	}
	return md.Copy()
}

// finish ends the stream with st (nil: OK) and returns the header and trailer
// metadata its client receives. An error sent before any header is a
// "trailers-only" answer: no header metadata, and the trailer holds the
// content-type.
func (s *localStream) finish(st *status.Status) (header, trailer metadata.MD) {
	s.mu.Lock()
	pending := !s.headerSent && s.header.Len() > 0
	s.mu.Unlock()
	if pending {
		s.sendHeader()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	if s.stats != nil {
		// As grpc-go's server reports it: what the handler set.
		s.stats.HandleRPC(s.ctx, &stats.OutTrailer{Trailer: copyMD(s.trailer)})
	}
	trailer = s.trailer
	if !s.headerSent {
		trailer = metadata.Join(metadata.MD{"content-type": {"application/grpc"}}, trailer)
	}
	if p := st.Proto(); len(p.GetDetails()) > 0 { // nil for OK
		if b, err := proto.Marshal(p); err == nil {
			trailer = metadata.Join(metadata.MD{"grpc-status-details-bin": {string(b)}}, trailer)
		}
	}
	if s.headerSent {
		header = s.header
	}
	return header, trailer
}

var _ grpc.ClientConnInterface = (*localConn)(nil)

// chainUnary chains interceptors as grpc.ChainUnaryInterceptor does: the
// first is the outermost.
func chainUnary(interceptors []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	switch len(interceptors) {
	case 0:
		return nil
	case 1:
		return interceptors[0]
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return interceptors[0](ctx, req, info, chainedHandler(interceptors, 0, info, handler))
	}
}

func chainedHandler(interceptors []grpc.UnaryServerInterceptor, curr int, info *grpc.UnaryServerInfo, final grpc.UnaryHandler) grpc.UnaryHandler {
	if curr == len(interceptors)-1 {
		return final
	}
	return func(ctx context.Context, req any) (any, error) {
		return interceptors[curr+1](ctx, req, info, chainedHandler(interceptors, curr+1, info, final))
	}
}
