package auth

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

func TestHashLimiterGrant(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		memMiB, procs int
		memKiB        uint64
		want          grant
	}{
		// 256 MiB with 8 CPUs: at least 256/(2*8) = 16 MiB each.
		{"bcrypt", 256, 8, 4, grant{16 << 10, false}},
		{"small argon2id", 256, 8, 1 << 10, grant{16 << 10, false}},
		{"half the minimum is CPU-bound", 256, 8, 8 << 10, grant{16 << 10, false}},
		{"more than half is memory-bound", 256, 8, 8<<10 + 1, grant{16 << 10, true}},
		{"default argon2id", 256, 8, 64 << 10, grant{64 << 10, true}},
		{"exactly the capacity", 256, 8, 256 << 10, grant{256 << 10, true}},
		{"larger than the capacity runs alone", 256, 8, 1 << 20, grant{256 << 10, true}},
		{"fewer CPUs, larger minimum", 256, 2, 4, grant{64 << 10, false}},
		{"fewer CPUs, default argon2id", 256, 2, 64 << 10, grant{64 << 10, true}},
		{"tiny budget, bcrypt", 1, 8, 4, grant{64, false}},
		{"tiny budget, default argon2id", 1, 8, 64 << 10, grant{1 << 10, true}},
	} {
		l := newHashLimiter(tc.memMiB, tc.procs)
		if got := l.grantFor(tc.memKiB); got != tc.want {
			t.Errorf("%s: grantFor(%d KiB) with %d MiB, %d procs = %+v; want %+v", tc.name, tc.memKiB, tc.memMiB, tc.procs, got, tc.want)
		}
	}
}

// TestHashLimiterBound models the heap: a verification's memory is live
// while it runs and, when it is memory-bound, dead until a collection. Live
// and dead memory together never exceed the capacity (a hash larger than
// the capacity counts as the capacity: it runs alone), and no more than
// 2*GOMAXPROCS verifications run at once.
func TestHashLimiterBound(t *testing.T) {
	t.Parallel()
	const procs = 4
	l := newHashLimiter(64, procs) // 64 MiB; at least 8 MiB each
	l.freeOSMemory = func() {}
	var live, dead, running, most, mostRunning, gcs atomic.Int64
	l.gc = func() {
		gcs.Add(1)
		dead.Store(0) // a collection reclaims whatever was dead when it started
		time.Sleep(100 * time.Microsecond)
	}
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			mem := []uint64{4, 1 << 10, 16 << 10, 40 << 10, 80 << 10}[i%5]
			size := min(int64(mem), l.capacity)
			for range 5 {
				g, err := l.acquire(t.Context(), mem)
				if err != nil {
					t.Error(err)
					return
				}
				n, r := live.Add(size)+dead.Load(), running.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				for m := mostRunning.Load(); r > m && !mostRunning.CompareAndSwap(m, r); m = mostRunning.Load() {
				}
				time.Sleep(200 * time.Microsecond)
				live.Add(-size)
				running.Add(-1)
				if g.collect {
					dead.Add(size)
				}
				l.release(g)
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m > l.capacity {
		t.Errorf("%d KiB of hash memory, live or dead, at once; capacity %d", m, l.capacity)
	}
	if r := mostRunning.Load(); r > 2*procs {
		t.Errorf("%d verifications at once; want at most %d", r, 2*procs)
	}
	if gcs.Load() == 0 {
		t.Error("no collection forced")
	}
}

// TestHashLimiterCollectsOnlyWhenNeeded: garbage keeps its weight without a
// collection until a verification has to wait for it.
func TestHashLimiterCollectsOnlyWhenNeeded(t *testing.T) {
	t.Parallel()
	l := newHashLimiter(256, 8) // four 64 MiB verifications fit
	l.freeOSMemory = func() {}
	var gcs atomic.Int32
	l.gc = func() { gcs.Add(1) }
	for i := range 4 {
		g, err := l.acquire(t.Context(), 64<<10)
		if err != nil {
			t.Fatal(err)
		}
		l.release(g)
		if n := gcs.Load(); n != 0 {
			t.Fatalf("verification %d: %d collections; want none while there is room", i, n)
		}
	}
	// The fifth waits for the garbage of the four: one collection frees it.
	g, err := l.acquire(t.Context(), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	l.release(g)
	if n := gcs.Load(); n != 1 {
		t.Errorf("%d collections; want 1", n)
	}
	// A CPU-bound verification leaves no garbage behind.
	l2 := newHashLimiter(256, 8)
	l2.gc = func() { t.Error("collection for bcrypt") }
	for range 100 {
		g, err := l2.acquire(t.Context(), 4)
		if err != nil {
			t.Fatal(err)
		}
		l2.release(g)
	}
}

func TestHashLimiterFreesMemoryOncePerBurst(t *testing.T) {
	t.Parallel()
	l := newHashLimiter(64, 4)
	l.idle = 20 * time.Millisecond
	l.gc = func() {}
	var freed atomic.Int32
	l.freeOSMemory = func() { freed.Add(1) }
	burst := func() {
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				for range 5 {
					g, err := l.acquire(t.Context(), []uint64{4, 16 << 10}[i%2])
					if err != nil {
						t.Error(err)
						return
					}
					time.Sleep(100 * time.Microsecond)
					l.release(g)
				}
			})
		}
		wg.Wait()
	}

	// Nothing is freed while a verification runs, however long.
	g, err := l.acquire(t.Context(), 4)
	if err != nil {
		t.Fatal(err)
	}
	burst()
	time.Sleep(5 * l.idle)
	if n := freed.Load(); n != 0 {
		t.Fatalf("memory freed %d times while hashing", n)
	}
	l.release(g)
	testutil.WaitFor(t, 10*time.Second, "memory freed after the burst", func() bool { return freed.Load() == 1 })

	burst()
	testutil.WaitFor(t, 10*time.Second, "memory freed after the second burst", func() bool { return freed.Load() == 2 })
	time.Sleep(5 * l.idle)
	if n := freed.Load(); n != 2 {
		t.Errorf("memory freed %d times after two bursts; want 2", n)
	}
	// Freeing collected the garbage: the whole capacity is available.
	if !l.sem.TryAcquire(l.capacity) {
		t.Error("garbage still holds weight after the burst")
	}
}
