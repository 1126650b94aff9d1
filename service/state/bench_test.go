package state

import (
	"fmt"
	"testing"
)

func benchStores(b *testing.B) map[string]func(b *testing.B) Store {
	return map[string]func(b *testing.B) Store{
		"memory": func(b *testing.B) Store {
			m, err := NewMemory(Options{})
			if err != nil {
				b.Fatal(err)
			}
			return m
		},
		"bolt": func(b *testing.B) Store { return openBolt(b, b.TempDir(), Options{}) },
	}
}

func BenchmarkPutRecord(b *testing.B) {
	for name, open := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			s := open(b)
			ctx := b.Context()
			i := 0
			for b.Loop() {
				if err := s.PutRecord(ctx, record(fmt.Sprintf("orgs/acme/actions/secrets/S%d", i%1000))); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkGetRecord(b *testing.B) {
	for name, open := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			s := open(b)
			ctx := b.Context()
			for i := range 1000 {
				if err := s.PutRecord(ctx, record(fmt.Sprintf("orgs/acme/actions/secrets/S%d", i))); err != nil {
					b.Fatal(err)
				}
			}
			i := 0
			for b.Loop() {
				if _, err := s.GetRecord(ctx, fmt.Sprintf("orgs/acme/actions/secrets/S%d", i%1000)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkListRecords lists one scope of 100 records among 10 scopes.
func BenchmarkListRecords(b *testing.B) {
	for name, open := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			s := open(b)
			ctx := b.Context()
			for scope := range 10 {
				for i := range 100 {
					if err := s.PutRecord(ctx, record(fmt.Sprintf("orgs/acme%d/actions/secrets/S%d", scope, i))); err != nil {
						b.Fatal(err)
					}
				}
			}
			for b.Loop() {
				recs, err := s.ListRecords(ctx, "orgs/acme5/actions")
				if err != nil || len(recs) != 100 {
					b.Fatal(len(recs), err)
				}
			}
		})
	}
}

func BenchmarkUpdateOperation(b *testing.B) {
	for name, open := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			s := open(b)
			ctx := b.Context()
			if err := s.PutOperation(ctx, operation("op", "alice")); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := s.UpdateOperation(ctx, "op", func(op *Operation) error { op.Metadata.Written++; return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
