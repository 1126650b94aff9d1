package operation

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
)

// replyDropper is a TCP proxy in front of a redis-server. While armed, it
// forwards a transaction's EXEC to Redis, which runs it, and then closes
// the client's connection instead of passing Redis's answer on: the
// answer is lost, as when a connection drops or the client's read times
// out after Redis applied the write.
type replyDropper struct {
	ln      net.Listener
	target  string
	armed   atomic.Bool
	dropped atomic.Int64
	// refuse closes every connection at once (Redis unreachable);
	// refuseAfterDrop sets it as an answer is dropped.
	refuse, refuseAfterDrop atomic.Bool
	wg                      sync.WaitGroup
}

func newReplyDropper(t *testing.T, target string) *replyDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyDropper{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		_ = ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *replyDropper) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		var execSent atomic.Bool
		p.wg.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if p.armed.Load() && bytes.Contains(bytes.ToUpper(buf[:n]), []byte("\r\nEXEC\r\n")) {
						execSent.Store(true)
					}
					if _, werr := s.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			_ = s.Close()
		})
		p.wg.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 && execSent.Load() {
					// Redis ran the transaction: its answer is lost.
					p.armed.Store(false)
					if p.refuseAfterDrop.Load() {
						p.refuse.Store(true)
					}
					p.dropped.Add(1)
					break
				}
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			_ = c.Close()
			_, _ = io.Copy(io.Discard, s)
		})
	}
}

// Start's contract: when it returns an error, nothing runs. A Redis store whose transaction ran but whose answer was
// lost returns an error, and the operation is stored all the same: the
// caller is told it failed, so the next Resume (the broker runs one every
// lease) must not write its items. The runner withdraws it: at once, or,
// when Redis cannot be reached then, at the next Resume.
func TestStartFailedRunsNothing(t *testing.T) {
	for _, unreachable := range []bool{false, true} {
		name := "answer lost"
		if unreachable {
			name = "answer lost, then Redis unreachable until the next resume"
		}
		t.Run(name, func(t *testing.T) {
			srv := redistest.Start(t)
			proxy := newReplyDropper(t, srv.Addr)
			client := redis.NewClient(&redis.Options{Addr: proxy.ln.Addr().String(), MaxRetries: -1,
				DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, ContextTimeoutEnabled: true})
			t.Cleanup(func() { _ = client.Close() })
			store, err := state.NewRedis(client, state.RedisOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := store.Key(ctx); err != nil { // the key, before the proxy drops anything
				t.Fatal(err)
			}
			f := &fakeExec{}
			r, logs := newRunner(t, store, f.exec, Options{})
			defer closeRunner(t, r)

			op := newOp("alice", 2, "v")
			proxy.refuseAfterDrop.Store(unreachable)
			proxy.armed.Store(true)
			if _, err := r.Start(ctx, op); err == nil {
				t.Fatal("Start succeeded: the proxy dropped no answer, the test shows nothing")
			}
			if proxy.dropped.Load() != 1 {
				t.Fatalf("the proxy dropped %d answers, want 1", proxy.dropped.Load())
			}
			// The proxy refused connections from before the client saw its
			// connection close until here: whatever Start did after its
			// store's failure met Redis unreachable.
			if proxy.refuse.Load() != unreachable {
				t.Fatalf("the proxy refuses connections: %v, want %v", proxy.refuse.Load(), unreachable)
			}
			proxy.refuse.Store(false)
			// The broker's periodic resume.
			var n int
			for range 20 { // go-redis may answer with the last dial error for a while
				if n, err = r.Resume(ctx); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Fatal(err)
			}
			ops, err := store.ListOperations(ctx, state.OperationFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(ops) != 1 {
				t.Fatalf("%d operations stored, want the one the proxy's lost answer hid", len(ops))
			}
			if n > 0 {
				waitDone(t, r, ops[0].ID)
			}
			got := ops[0]
			if f.total() != 0 || !got.Done || got.Error == nil || got.Error.Code != codes.Unavailable || got.Pending != nil {
				t.Errorf("Start failed, yet the operation ran or stays to run: %d items run; stored done %v, error %+v, %d pending\nlogs:\n%s",
					f.total(), got.Done, got.Error, len(got.Pending), logs)
			}
		})
	}
}
