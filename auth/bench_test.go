package auth

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// Benchmarks of a login's password check, on demand (docs/performance.md),
// next to BenchmarkVerifyArgon2idDefault (hash_test.go), what every cold
// login, wrong password and unknown user pays:
//
//	go test -run='^$' -bench='Verify|Argon2Memory|LoginCache' -count=3 ./auth/

// productionHash is a hash at HashPassword's cost (argon2id m=64 MiB, t=3,
// p=2), made once per benchmark.
func productionHash(b *testing.B, password string) string {
	b.Helper()
	h, err := HashPassword(password)
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// BenchmarkArgon2Memory is the part of BenchmarkVerifyArgon2idDefault that
// a pool of work buffers could save: x/crypto/argon2 allocates its m KiB (make,
// zeroed by the runtime, or fresh pages from the kernel) on every call,
// then writes every block. Here: the allocation and one write per page.
func BenchmarkArgon2Memory(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		buf := make([]uint64, int(argonMemory)*1024/8)
		for i := 0; i < len(buf); i += 512 { // one word per 4 KiB page
			buf[i] = uint64(i)
		}
	}
}

// BenchmarkLoginCacheHit is a repeated login of the same user with the
// right password through Store.Authenticate: the throttle, the HMAC and
// the lookup, no hash.
func BenchmarkLoginCacheHit(b *testing.B) {
	users := []UserConfig{{Name: "alice", PasswordHash: productionHash(b, "alice-pw"), Home: filepath.Join(b.TempDir(), "alice")}}
	ttl := time.Hour
	s, err := New(Config{LoginCacheTTL: &ttl}, users, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Authenticate(ctx, "alice", "alice-pw", ip1); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Authenticate(ctx, "alice", "alice-pw", ip1); err != nil {
			b.Fatal(err)
		}
	}
	if st := s.LoginCacheStats(); st.Misses != 1 {
		b.Fatalf("LoginCacheStats = %+v, want 1 miss (the first login)", st)
	}
}
