package state

import (
	"container/heap"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Memory is the in-memory Store, the default: lost when the process ends.
// It keeps the same encoded bytes as the file store (records in a map per
// parent, operations with their values sealed), so its contents hold no
// value either.
//
// A done operation expires OperationRetention after it was stored done
// (see Operations): a min-heap of expiry times finds the expired ones, and
// each write or list deletes at most pruneBatch of them.
type Memory struct {
	now func() time.Time // the clock; tests replace it

	mu      sync.RWMutex
	closed  bool
	key     []byte
	sealer  *sealer
	records map[string]map[string][]byte // parent -> name -> encoded Record
	ops     map[string][]byte            // ID -> encoded Operation
	opIndex map[string]opEntry           // ID -> what ListOperations filters on
	expiry  expiryHeap                   // done operations by expiry (entries may be stale)
}

type opEntry struct {
	caller  string
	done    bool
	expires time.Time // when done: when it expires
}

// expired reports whether the entry is of a done operation whose
// retention ended at now.
func (e opEntry) expired(now time.Time) bool { return e.done && !now.Before(e.expires) }

// expiryItem is one entry of expiryHeap: operation id expires at at. It
// is stale when the operation was deleted or stored again since.
type expiryItem struct {
	at time.Time
	id string
}

// expiryHeap is a container/heap of expiryItems, soonest first.
type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store. Its key is opts.HMACKey
// when given, else random.
func NewMemory(opts Options) (*Memory, error) {
	key := slices.Clone(opts.HMACKey)
	if key == nil {
		key = make([]byte, generatedKeyLen)
		_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+).
	}
	s, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	return &Memory{
		now:     time.Now,
		key:     key,
		sealer:  s,
		records: map[string]map[string][]byte{},
		ops:     map[string][]byte{},
		opIndex: map[string]opEntry{},
	}, nil
}

func (m *Memory) check(ctx context.Context, op string) error {
	if err := ctxErr(ctx, op); err != nil {
		return err
	}
	if m.closed {
		return fmt.Errorf("state: %s: %w", op, ErrClosed)
	}
	return nil
}

// Key implements Store.
func (m *Memory) Key(ctx context.Context) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx, "key"); err != nil {
		return nil, err
	}
	return slices.Clone(m.key), nil
}

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.records, m.ops, m.opIndex, m.expiry = nil, nil, nil, nil
	return nil
}

// GetRecord implements Records.
func (m *Memory) GetRecord(ctx context.Context, name string) (Record, error) {
	parent, _, ok := ParentOf(name)
	if !ok {
		return Record{}, checkName(name)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx, "get record"); err != nil {
		return Record{}, err
	}
	b, ok := m.records[parent][name]
	if !ok {
		return Record{}, fmt.Errorf("state: record %s: %w", name, ErrNotFound)
	}
	return decodeRecord(b)
}

// PutRecord implements Records.
func (m *Memory) PutRecord(ctx context.Context, r Record) error {
	b, err := encodeRecord(r)
	if err != nil {
		return err
	}
	parent, _, _ := ParentOf(r.Name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx, "put record"); err != nil {
		return err
	}
	p := m.records[parent]
	if p == nil {
		p = map[string][]byte{}
		m.records[parent] = p
	}
	p[r.Name] = b
	return nil
}

// DeleteRecord implements Records.
func (m *Memory) DeleteRecord(ctx context.Context, name string) error {
	parent, _, ok := ParentOf(name)
	if !ok {
		return checkName(name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx, "delete record"); err != nil {
		return err
	}
	if p := m.records[parent]; p != nil {
		delete(p, name)
		if len(p) == 0 {
			delete(m.records, parent)
		}
	}
	return nil
}

// ListRecords implements Records.
func (m *Memory) ListRecords(ctx context.Context, parent string) ([]Record, error) {
	if err := checkParent(parent); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx, "list records"); err != nil {
		return nil, err
	}
	p := m.records[parent]
	names := make([]string, 0, len(p))
	for name := range p {
		names = append(names, name)
	}
	slices.Sort(names)
	out := make([]Record, 0, len(names))
	for _, name := range names {
		r, err := decodeRecord(p[name])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// PutOperation implements Operations.
func (m *Memory) PutOperation(ctx context.Context, op *Operation) error {
	b, err := encodeOperation(m.sealer, op)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx, "put operation"); err != nil {
		return err
	}
	now := m.now()
	m.store(op, b, now)
	m.prune(now)
	return nil
}

// store keeps encoded operation b and its index entry, its expiry starting
// at now when it is done. m.mu is held for writing.
func (m *Memory) store(op *Operation, b []byte, now time.Time) {
	e := opEntry{caller: op.Caller, done: op.Done}
	if op.Done {
		e.expires = now.Add(OperationRetention)
		heap.Push(&m.expiry, expiryItem{at: e.expires, id: op.ID})
	}
	m.ops[op.ID] = b
	m.opIndex[op.ID] = e
}

// prune deletes up to pruneBatch expired operations, soonest first,
// skipping stale heap entries (each counts towards the bound). m.mu is
// held for writing.
func (m *Memory) prune(now time.Time) {
	for range pruneBatch {
		if len(m.expiry) == 0 || now.Before(m.expiry[0].at) {
			return
		}
		it := heap.Pop(&m.expiry).(expiryItem)
		if e, ok := m.opIndex[it.id]; ok && e.done && e.expires.Equal(it.at) {
			delete(m.ops, it.id)
			delete(m.opIndex, it.id)
		}
	}
}

// GetOperation implements Operations.
func (m *Memory) GetOperation(ctx context.Context, id string) (*Operation, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx, "get operation"); err != nil {
		return nil, err
	}
	b, ok := m.ops[id]
	if !ok || m.opIndex[id].expired(m.now()) {
		return nil, fmt.Errorf("state: operation %s: %w", id, ErrNotFound)
	}
	return decodeOperation(m.sealer, b)
}

// UpdateOperation implements Operations.
func (m *Memory) UpdateOperation(ctx context.Context, id string, fn func(*Operation) error) (*Operation, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx, "update operation"); err != nil {
		return nil, err
	}
	now := m.now()
	m.prune(now)
	b, ok := m.ops[id]
	if !ok || m.opIndex[id].expired(now) {
		return nil, fmt.Errorf("state: operation %s: %w", id, ErrNotFound)
	}
	op, err := decodeOperation(m.sealer, b)
	if err != nil {
		return nil, err
	}
	if err := fn(op); err != nil {
		return nil, fmt.Errorf("state: update operation %s: %w", id, err)
	}
	if op.ID != id {
		return nil, fmt.Errorf("state: update operation %s: %w: the update changed the ID", id, ErrInvalid)
	}
	if b, err = encodeOperation(m.sealer, op); err != nil {
		return nil, err
	}
	m.store(op, b, now)
	return op, nil
}

// ListOperations implements Operations. It prunes expired operations
// first, under the write lock.
func (m *Memory) ListOperations(ctx context.Context, f OperationFilter) ([]*Operation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx, "list operations"); err != nil {
		return nil, err
	}
	now := m.now()
	m.prune(now)
	var ids []string
	for id, e := range m.opIndex {
		if id > f.After && (f.Caller == "" || e.caller == f.Caller) && (!f.NotDone || !e.done) && !e.expired(now) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := []*Operation{}
	for _, id := range ids {
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
		op, err := decodeOperation(m.sealer, m.ops[id])
		if err != nil {
			if f.skip(id, err) {
				continue
			}
			return nil, err
		}
		out = append(out, op)
	}
	return out, nil
}

// DeleteOperation implements Operations.
func (m *Memory) DeleteOperation(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx, "delete operation"); err != nil {
		return err
	}
	delete(m.ops, id)
	delete(m.opIndex, id)
	return nil
}
