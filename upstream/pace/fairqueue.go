package pace

// An Item is one entry of a FairQueue. Set Value, Caller and Write, then
// Push it; the queue keeps its place in the Item itself (no allocation
// per item), so an Item is in at most one queue at a time.
type Item[T any] struct {
	Value T
	// Caller is the key of fairness: items of one caller wait in their
	// caller's lanes.
	Caller string
	// Write selects the caller's write lane; otherwise its read lane.
	Write bool

	key         itemKey
	queued      bool
	left, right *Item[T] // in its lane's treap
	prio        uint64
	size        int // of its subtree
}

// itemKey is an item's place in its lane: the turn (round) it is served
// in, then its caller's place in every turn, then push order.
type itemKey struct {
	round, join, seq uint64
}

func (a itemKey) less(b itemKey) bool {
	if a.round != b.round {
		return a.round < b.round
	}
	if a.join != b.join {
		return a.join < b.join
	}
	return a.seq < b.seq
}

// FairQueue holds waiting items in one FIFO per caller and kind (a read
// lane and a write lane) and serves the callers in turn.
//
// Within a kind it is exact round robin, in rounds: every caller with
// items of that kind waiting gets one per round, in the order the callers
// joined. A caller's next item goes in the round after its previous one.
// A caller that joins (has nothing of that kind waiting) is served in the
// current round, behind the callers still waiting for their turn in it;
// if it was served in the current round already, in the next one. So a
// caller's 1,000 items wait one per round while another caller's single
// item goes in the current round, and a caller cannot jump the line by
// emptying its lane and pushing again.
//
// The two kinds are served apart so that a read can always be found when
// writes may not go (the write slot is busy): Pop takes the kinds that
// may go. A read may pass its own caller's waiting writes; a write never
// passes an earlier write. When both kinds may go, the item whose caller
// was served less recently goes first (the older item, for one caller),
// so one caller's stream of reads does not hold up another caller's
// write, nor the reverse.
//
// Each lane is a treap ordered by (round, caller's join order, push
// order), with subtree sizes: Push, Pop, Remove, Ahead and Before are
// O(log n) in the items of the kind. Removing an item does not move its
// caller's later items up; the caller skips that round.
//
// The zero FairQueue is empty and ready to use. It is not safe for
// concurrent use.
type FairQueue[T any] struct {
	lanes      [2]lane[T] // reads, writes
	callers    map[string]callerState
	seq        uint64 // items pushed
	joins      uint64 // lanes that callers joined
	served     uint64 // items popped: the callers' service clock
	lastServed string // the caller of the last pop
	rng        uint64 // treap priorities
}

// A lane is one kind's items, of every caller.
type lane[T any] struct {
	root  *Item[T]
	round uint64 // the current round: that of the item popped last
	// done holds the callers whose lane emptied when their item of the
	// current round was popped: they rejoin in the next round.
	done map[string]struct{}
}

// callerState is one caller's bookkeeping while it has items queued.
type callerState struct {
	join   [2]uint64 // its place in every round, per kind, while count > 0
	count  [2]int    // items queued, per kind
	next   [2]uint64 // the round of its next item, per kind, while count > 0
	round  [2]uint64 // 1 + the round it was served in last, per kind; 0: never
	served uint64    // the service clock when it was last served
}

func kind(write bool) int {
	if write {
		return 1
	}
	return 0
}

// Len returns how many items of the kind are queued.
func (q *FairQueue[T]) Len(write bool) int { return q.lanes[kind(write)].root.len() }

// Head returns the item of the kind that goes next, or nil.
func (q *FairQueue[T]) Head(write bool) *Item[T] {
	t := q.lanes[kind(write)].root
	for t != nil && t.left != nil {
		t = t.left
	}
	return t
}

// keyFor returns the key a new item of caller's, of kind k, would get.
func (q *FairQueue[T]) keyFor(caller string, k int) itemKey {
	l := &q.lanes[k]
	if c, ok := q.callers[caller]; ok && c.count[k] > 0 {
		return itemKey{round: max(l.round, c.next[k]), join: c.join[k], seq: q.seq + 1}
	}
	key := itemKey{round: l.round, join: q.joins + 1, seq: q.seq + 1}
	if _, ok := l.done[caller]; ok {
		key.round++
	}
	return key
}

// Ahead returns how many queued items of the kind go before an item that
// caller would push now.
func (q *FairQueue[T]) Ahead(caller string, write bool) int {
	k := kind(write)
	return q.lanes[k].root.rank(q.keyFor(caller, k))
}

// Before returns how many queued items of its kind go before it, which is
// queued.
func (q *FairQueue[T]) Before(it *Item[T]) int {
	return q.lanes[kind(it.Write)].root.rank(it.key)
}

// Push queues it at the end of its caller's lane of its kind.
func (q *FairQueue[T]) Push(it *Item[T]) {
	k := kind(it.Write)
	l := &q.lanes[k]
	it.key = q.keyFor(it.Caller, k)
	q.seq++
	c, ok := q.callers[it.Caller]
	if !ok {
		if q.callers == nil {
			q.callers = map[string]callerState{}
		}
		// Ahead of the caller served last, behind the others.
		switch {
		case q.served == 0:
		case it.Caller == q.lastServed:
			c.served = q.served
		default:
			c.served = q.served - 1
		}
	}
	if c.count[k] == 0 {
		q.joins++
		c.join[k] = q.joins
	}
	c.count[k]++
	c.next[k] = it.key.round + 1
	q.callers[it.Caller] = c
	q.rng += 0x9E3779B97F4A7C15 // splitmix64
	z := q.rng
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	it.prio = z ^ z>>31
	it.left, it.right, it.size, it.queued = nil, nil, 1, true
	l.root = l.root.insert(it)
}

// Pop removes and returns the next item among the kinds that may go
// (reads when readOK, writes when writeOK), or nil when none may.
func (q *FairQueue[T]) Pop(readOK, writeOK bool) *Item[T] {
	var r, w *Item[T]
	if readOK {
		r = q.Head(false)
	}
	if writeOK {
		w = q.Head(true)
	}
	it := r
	switch {
	case r == nil:
		it = w
	case w == nil:
	default:
		cr, cw := q.callers[r.Caller].served, q.callers[w.Caller].served
		if cw < cr || (cw == cr && w.key.seq < r.key.seq) {
			it = w
		}
	}
	if it == nil {
		return nil
	}
	k := kind(it.Write)
	l := &q.lanes[k]
	l.root = l.root.remove(it)
	if it.key.round > l.round {
		l.round = it.key.round
		clear(l.done)
	}
	c := q.callers[it.Caller]
	q.served++
	c.served = q.served
	c.round[k] = l.round + 1
	q.lastServed = it.Caller
	q.forget(it, c)
	return it
}

// Remove takes it out of the queue, wherever it waits; it reports whether
// it was queued.
func (q *FairQueue[T]) Remove(it *Item[T]) bool {
	if !it.queued {
		return false
	}
	l := &q.lanes[kind(it.Write)]
	l.root = l.root.remove(it)
	q.forget(it, q.callers[it.Caller])
	return true
}

// forget drops the bookkeeping of it, which has left its lane; c is its
// caller's state. A caller whose lane empties after it was served in the
// current round is remembered until the round ends.
func (q *FairQueue[T]) forget(it *Item[T], c callerState) {
	it.queued, it.left, it.right = false, nil, nil
	k := kind(it.Write)
	l := &q.lanes[k]
	c.count[k]--
	if c.count[k] == 0 && c.round[k] == l.round+1 {
		if l.done == nil {
			l.done = map[string]struct{}{}
		}
		l.done[it.Caller] = struct{}{}
	}
	if c.count[0] == 0 && c.count[1] == 0 {
		delete(q.callers, it.Caller)
		return
	}
	q.callers[it.Caller] = c
}

// The treap: a binary search tree by key, a heap by prio, with subtree
// sizes. Its expected depth is O(log n) whatever order the keys come in.

func (t *Item[T]) len() int {
	if t == nil {
		return 0
	}
	return t.size
}

func (t *Item[T]) resize() { t.size = 1 + t.left.len() + t.right.len() }

// insert returns the treap t with it added.
func (t *Item[T]) insert(it *Item[T]) *Item[T] {
	if t == nil {
		return it
	}
	if it.prio > t.prio {
		it.left, it.right = t.split(it.key)
		it.resize()
		return it
	}
	if it.key.less(t.key) {
		t.left = t.left.insert(it)
	} else {
		t.right = t.right.insert(it)
	}
	t.resize()
	return t
}

// split returns the items of t below key and the others.
func (t *Item[T]) split(key itemKey) (below, rest *Item[T]) {
	if t == nil {
		return nil, nil
	}
	if t.key.less(key) {
		t.right, rest = t.right.split(key)
		t.resize()
		return t, rest
	}
	below, t.left = t.left.split(key)
	t.resize()
	return below, t
}

// remove returns the treap t without it, which is in t.
func (t *Item[T]) remove(it *Item[T]) *Item[T] {
	if t == it {
		return merge(t.left, t.right)
	}
	if it.key.less(t.key) {
		t.left = t.left.remove(it)
	} else {
		t.right = t.right.remove(it)
	}
	t.resize()
	return t
}

// merge joins treaps a and b, every key of a below every key of b.
func merge[T any](a, b *Item[T]) *Item[T] {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		a.right = merge(a.right, b)
		a.resize()
		return a
	default:
		b.left = merge(a, b.left)
		b.resize()
		return b
	}
}

// rank returns how many items of t have a key below key.
func (t *Item[T]) rank(key itemKey) int {
	n := 0
	for t != nil {
		if t.key.less(key) {
			n += 1 + t.left.len()
			t = t.right
		} else {
			t = t.left
		}
	}
	return n
}
