package auth

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// burstIdle is how long hashing must stay idle before its memory is given
// back to the operating system.
const burstIdle = time.Second

// hashLimiter bounds the memory and the CPU that password verifications
// take together, garbage included.
//
// Each verification holds a weight, in KiB, of the semaphore of capacity
// max_hash_memory_mib: the memory it allocates (argon2id: m KiB), at least
// capacity/(2*GOMAXPROCS) so that no more than 2*GOMAXPROCS run at once,
// and at most the whole capacity (it then runs alone).
//
// A verification that ends leaves its memory behind as garbage, and the
// collector (GOGC=100) lets the heap grow to about twice what it found
// live, more when hashes start during a slow mark phase: releasing the
// weight as soon as the hash is done would let a flood of logins grow the
// heap well past the capacity. So a memory-bound verification (its memory
// is more than half its weight) keeps its weight until a garbage collection
// that started after it ended has reclaimed the memory; when logins wait
// for weight, a goroutine forces that collection (runtime.GC, one for all
// the garbage so far). Hash memory, live and dead, then never exceeds the
// capacity. A CPU-bound one (bcrypt's 4 KiB, small argon2id) holds at
// least twice its memory and gives it back at once: the margin covers the
// collector's doubling without a collection per login.
//
// After a burst, when nothing has hashed for idle, freeOSMemory returns
// the memory to the operating system.
type hashLimiter struct {
	sem       *semaphore.Weighted
	capacity  int64 // KiB
	minWeight int64 // KiB

	idle         time.Duration // after a burst, before freeOSMemory
	gc           func()        // runtime.GC (tests replace it)
	freeOSMemory func()        // debug.FreeOSMemory (tests replace it)

	mu         sync.Mutex
	running    int       // verifications holding weight and not done
	waiting    int       // acquire calls blocked on the semaphore
	garbage    int64     // weight of done verifications whose memory awaits a collection
	collecting bool      // the collect goroutine runs
	dirty      bool      // a verification ran since memory was last freed
	idleSince  time.Time // when running last dropped to 0
	timer      *time.Timer
}

// grant is the weight one verification holds.
type grant struct {
	weight  int64
	collect bool // memory-bound: the weight waits for a collection
}

func newHashLimiter(maxMemoryMiB, procs int) *hashLimiter {
	capacity := max(int64(maxMemoryMiB)*1024, 1)
	return &hashLimiter{
		sem:          semaphore.NewWeighted(capacity),
		capacity:     capacity,
		minWeight:    max(capacity/int64(2*max(procs, 1)), 1),
		idle:         burstIdle,
		gc:           runtime.GC,
		freeOSMemory: debug.FreeOSMemory,
	}
}

// grantFor is what a verification allocating memKiB holds.
func (l *hashLimiter) grantFor(memKiB uint64) grant {
	if memKiB >= uint64(l.capacity) {
		return grant{weight: l.capacity, collect: true}
	}
	w := max(int64(memKiB), l.minWeight)
	return grant{weight: w, collect: 2*int64(memKiB) > w}
}

// acquire waits until a verification allocating memKiB may run, or returns
// ctx.Err().
func (l *hashLimiter) acquire(ctx context.Context, memKiB uint64) (grant, error) {
	g := l.grantFor(memKiB)
	if !l.sem.TryAcquire(g.weight) {
		l.mu.Lock()
		l.waiting++
		l.collectLocked()
		l.mu.Unlock()
		err := l.sem.Acquire(ctx, g.weight)
		l.mu.Lock()
		l.waiting--
		l.mu.Unlock()
		if err != nil {
			return grant{}, err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running++
	l.dirty = true
	return g, nil
}

// release ends a verification. When the last one ends it arms the timer
// that frees memory if nothing starts for l.idle.
func (l *hashLimiter) release(g grant) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if g.collect {
		l.garbage += g.weight
		l.collectLocked()
	} else {
		l.sem.Release(g.weight)
	}
	l.running--
	if l.running > 0 {
		return
	}
	l.idleSince = time.Now()
	if l.timer == nil {
		l.timer = time.AfterFunc(l.idle, l.burstOver)
	} else {
		l.timer.Reset(l.idle)
	}
}

// collectLocked starts the collect goroutine if logins wait while garbage
// holds weight.
func (l *hashLimiter) collectLocked() {
	if l.garbage > 0 && l.waiting > 0 && !l.collecting {
		l.collecting = true
		go l.collect()
	}
}

// collect forces collections and gives their weight back for as long as
// logins wait and garbage holds weight. One collection reclaims all the
// garbage that existed when it started.
func (l *hashLimiter) collect() {
	for {
		l.mu.Lock()
		g := l.garbage
		if g == 0 || l.waiting == 0 {
			l.collecting = false
			l.mu.Unlock()
			return
		}
		l.garbage = 0
		l.mu.Unlock()
		l.gc()
		l.sem.Release(g)
	}
}

// burstOver returns the memory of the last burst to the operating system
// if hashing has been idle for l.idle. Without it, the heap keeps the size
// the burst gave it and the runtime's background scavenger returns the
// pages only slowly: a flood of wrong passwords would leave the process at
// its peak size for minutes. FreeOSMemory runs a full collection, which
// also reclaims the garbage still holding weight; it runs once per burst,
// never once per login.
func (l *hashLimiter) burstOver() {
	l.mu.Lock()
	free := l.running == 0 && l.dirty && time.Since(l.idleSince) >= l.idle
	var g int64
	if free {
		l.dirty = false
		g, l.garbage = l.garbage, 0
	}
	l.mu.Unlock()
	if free {
		l.freeOSMemory()
		if g > 0 {
			l.sem.Release(g)
		}
	}
}
