package pace

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// pushAll pushes items named like "A1" (caller A, a read) or "A1w" (a
// write) and returns them by name.
func pushAll(q *FairQueue[string], names ...string) map[string]*Item[string] {
	m := map[string]*Item[string]{}
	for _, n := range names {
		it := &Item[string]{Value: n, Caller: n[:1], Write: strings.HasSuffix(n, "w")}
		q.Push(it)
		m[n] = it
	}
	return m
}

// popAll pops while the kinds may go and returns the values in order.
func popAll(q *FairQueue[string], readOK, writeOK bool) string {
	var out []string
	for it := q.Pop(readOK, writeOK); it != nil; it = q.Pop(readOK, writeOK) {
		out = append(out, it.Value)
	}
	return strings.Join(out, " ")
}

func TestFairQueueOrder(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ops     []string // "push X..." pushes; "pop N" pops N of any kind
		readOK  bool
		writeOK bool
		want    string // the rest, popped
	}{
		{"round robin", []string{"push A1 A2 A3 B1 B2 B3"}, true, true, "A1 B1 A2 B2 A3 B3"},
		{"three callers, uneven", []string{"push A1 A2 A3 A4 B1 C1 C2"}, true, true, "A1 B1 C1 A2 C2 A3 A4"},
		{"writes round robin", []string{"push A1w A2w B1w B2w"}, true, true, "A1w B1w A2w B2w"},
		// After A1 goes, B joins the turn ahead of A (served last) but
		// behind C, who was waiting.
		{"newcomer behind waiting, ahead of last served", []string{"push A1 A2 C1", "pop 1", "push B1"}, true, true, "C1 B1 A2"},
		// A, served last with nothing left, joins behind B.
		{"served last rejoins last", []string{"push A1", "pop 1", "push B1 A2"}, true, true, "B1 A2"},
		// The write slot is busy: reads go, any caller's, past their own
		// caller's writes.
		{"reads pass waiting writes", []string{"push A1w A2 B1w B2"}, true, false, "A2 B2"},
		{"only writes may go", []string{"push A1w A2 B1w B2"}, false, true, "A1w B1w"},
		{"nothing may go", []string{"push A1w A2"}, false, false, ""},
		// Across kinds, the caller served less recently goes first: B's
		// write is not held up by A's reads.
		{"write of a caller not served yet", []string{"push A1 A2 A3", "pop 1", "push B1w"}, true, true, "B1w A2 A3"},
		{"one caller, older first", []string{"push A1w A2 A3w"}, true, true, "A1w A2 A3w"},
		// A's reads do not give its first write a place ahead of B's.
		{"joining the write lane with reads queued", []string{"push A1 B1w B2w A2w"}, false, true, "B1w A2w B2w"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q FairQueue[string]
			for _, op := range tc.ops {
				f := strings.Fields(op)
				switch f[0] {
				case "push":
					pushAll(&q, f[1:]...)
				case "pop":
					var n int
					fmt.Sscan(f[1], &n)
					for range n {
						if q.Pop(true, true) == nil {
							t.Fatal("nothing to pop")
						}
					}
				}
			}
			if got := popAll(&q, tc.readOK, tc.writeOK); got != tc.want {
				t.Errorf("order %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFairQueueRemove(t *testing.T) {
	var q FairQueue[string]
	m := pushAll(&q, "A1", "A2", "A3", "B1", "A4w", "B2w")
	if !q.Remove(m["A2"]) || !q.Remove(m["B2w"]) {
		t.Fatal("Remove of a queued item reported false")
	}
	if q.Remove(m["A2"]) {
		t.Error("Remove of an item removed already reported true")
	}
	if got, want := q.Len(false)+q.Len(true), 4; got != want {
		t.Errorf("Len %d, want %d", got, want)
	}
	// The head goes away too: the next is the one after it.
	if !q.Remove(m["A1"]) {
		t.Fatal("Remove of the head reported false")
	}
	// B1 first (older than A's); then A's read, pushed before its write.
	if got, want := popAll(&q, true, true), "B1 A3 A4w"; got != want {
		t.Errorf("order %q, want %q", got, want)
	}
	if q.Remove(m["B1"]) {
		t.Error("Remove of a popped item reported true")
	}
	if len(q.callers) != 0 {
		t.Errorf("%d callers remembered with nothing queued", len(q.callers))
	}
}

func TestFairQueueAhead(t *testing.T) {
	for _, tc := range []struct {
		name   string
		queued []string
		pop    int
		caller string
		write  bool
		want   int
	}{
		{"empty", nil, 0, "A", true, 0},
		{"newcomer behind everyone's turn", []string{"A1w", "A2w", "A3w", "B1w"}, 0, "C", true, 2},
		{"own writes and one per other caller per turn", []string{"A1w", "A2w", "A3w", "B1w"}, 0, "A", true, 4},
		{"caller with one waiting", []string{"A1w", "A2w", "A3w", "B1w"}, 0, "B", true, 3},
		{"reads are counted apart", []string{"A1w", "A2", "B1"}, 0, "C", true, 1},
		// A1w went; A waits with 3 more, B with one: B's new write comes
		// in the next turn, after B1w and A2w.
		{"after a pop", []string{"A1w", "A2w", "A3w", "A4w", "B1w"}, 1, "B", true, 2},
		{"served last goes behind", []string{"A1w", "B1w"}, 1, "A", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q FairQueue[string]
			pushAll(&q, tc.queued...)
			for range tc.pop {
				q.Pop(true, true)
			}
			got := q.Ahead(tc.caller, tc.write)
			if got != tc.want {
				t.Errorf("Ahead = %d, want %d", got, tc.want)
			}
			// It is the number of items popped before it.
			name := tc.caller + "new"
			if tc.write {
				name += "w"
			}
			pushAll(&q, name)
			order := strings.Fields(popAll(&q, !tc.write, tc.write))
			if i := slices.Index(order, name); i != got {
				t.Errorf("%s went after %d items (%v), Ahead said %d", name, i, order, got)
			}
		})
	}
}

// checkTreap verifies a lane's treap (order, heap, sizes) and returns its
// items in order.
func checkTreap[T any](t *testing.T, root *Item[T]) []*Item[T] {
	t.Helper()
	var out []*Item[T]
	var walk func(n *Item[T]) int
	walk = func(n *Item[T]) int {
		if n == nil {
			return 0
		}
		for _, ch := range []*Item[T]{n.left, n.right} {
			if ch != nil && ch.prio > n.prio {
				t.Fatalf("heap order broken")
			}
		}
		size := walk(n.left)
		out = append(out, n)
		size += 1 + walk(n.right)
		if size != n.size {
			t.Fatalf("size %d, want %d", n.size, size)
		}
		return size
	}
	walk(root)
	for i := 1; i < len(out); i++ {
		if !out[i-1].key.less(out[i].key) {
			t.Fatalf("keys out of order at %d", i)
		}
	}
	return out
}

// Random pushes, pops and removals of both kinds: the treaps stay valid,
// each caller's lanes stay FIFO, Ahead is where a pushed item lands,
// every item comes out once and the bookkeeping empties.
func TestFairQueueRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var q FairQueue[int]
	queued := map[int]*Item[int]{}
	last := map[string]int{} // caller and kind -> last popped id
	id := 0
	for step := range 20000 {
		switch r := rng.IntN(10); {
		case r < 5 || len(queued) == 0:
			it := &Item[int]{Value: id, Caller: fmt.Sprint(rng.IntN(8)), Write: rng.IntN(2) == 0}
			ahead := q.Ahead(it.Caller, it.Write)
			q.Push(it)
			if got := q.Before(it); got != ahead {
				t.Fatalf("step %d: Ahead said %d, the pushed item has %d before it", step, ahead, got)
			}
			queued[id] = it
			id++
		case r < 7:
			for k, it := range queued { // a random one
				if !q.Remove(it) {
					t.Fatalf("step %d: Remove of queued %d failed", step, k)
				}
				delete(queued, k)
				break
			}
		default:
			it := q.Pop(rng.IntN(4) != 0, rng.IntN(4) != 0)
			if it == nil {
				continue
			}
			if _, ok := queued[it.Value]; !ok {
				t.Fatalf("step %d: popped %d, not queued", step, it.Value)
			}
			delete(queued, it.Value)
			key := fmt.Sprint(it.Caller, it.Write)
			if p, ok := last[key]; ok && p > it.Value {
				t.Fatalf("step %d: %s popped %d after %d", step, key, it.Value, p)
			}
			last[key] = it.Value
		}
		if got := q.Len(false) + q.Len(true); got != len(queued) {
			t.Fatalf("step %d: Len %d, want %d", step, got, len(queued))
		}
		if step%500 == 0 {
			for k := range q.lanes {
				items := checkTreap(t, q.lanes[k].root)
				for i, it := range items {
					if got := q.Before(it); got != i {
						t.Fatalf("step %d: Before = %d, want %d", step, got, i)
					}
				}
			}
		}
	}
	for q.Pop(true, true) != nil {
	}
	if len(q.callers) != 0 || q.Len(false)+q.Len(true) != 0 {
		t.Errorf("bookkeeping left: %d callers", len(q.callers))
	}
}

// Round robin: between two pops of a caller that stayed backlogged, no
// other caller is popped twice, however the callers come and go (each
// pushing and emptying its lane at random).
func TestFairQueueFairness(t *testing.T) {
	for seed := range uint64(10) {
		rng := rand.New(rand.NewPCG(seed, 3))
		var q FairQueue[int]
		queued := map[string]int{}           // per caller
		since := map[string]map[string]int{} // backlogged caller -> pops of others since its last pop
		for step := range 5000 {
			if rng.IntN(2) == 0 {
				c := fmt.Sprint(rng.IntN(6))
				q.Push(&Item[int]{Value: step, Caller: c})
				queued[c]++
				continue
			}
			it := q.Pop(true, false)
			if it == nil {
				continue
			}
			c := it.Caller
			queued[c]--
			for o, m := range since {
				if o != c {
					if m[c]++; m[c] > 1 {
						t.Fatalf("seed %d step %d: %s popped twice while %s waited", seed, step, c, o)
					}
				}
			}
			if queued[c] > 0 {
				since[c] = map[string]int{}
			} else {
				delete(since, c)
			}
		}
	}
}

// BenchmarkFairQueue pushes and pops one item per op with 10,000 items
// queued across 100 callers, half of them writes.
func BenchmarkFairQueue(b *testing.B) {
	const callers, queued = 100, 10000
	names := make([]string, callers)
	for i := range names {
		names[i] = fmt.Sprint("caller-", i)
	}
	items := make([]Item[int], queued+1)
	var q FairQueue[int]
	for i := range queued {
		items[i] = Item[int]{Value: i, Caller: names[i%callers], Write: i%2 == 0}
		q.Push(&items[i])
	}
	free := &items[queued]
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		*free = Item[int]{Value: i, Caller: names[i%callers], Write: i%2 == 0}
		q.Push(free)
		free = q.Pop(true, true)
	}
}
