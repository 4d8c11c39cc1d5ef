package breaker

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/outgrow/outgrow/internal/redisclient"
)

// batcher is the part of a store its breakers talk to. On its own goroutine it sends the
// outcomes of every breaker with news in one batch (every flush interval, or at once when a
// breaker opens or has many failures waiting) and brings each breaker in line with the reply.
// An announcement of another instance's transition makes the breakers of that name read the
// shared state in the next batch. Probe leases and reports, which a call waits for, are single
// calls on the caller's goroutine.
type batcher struct {
	be        backend
	timeout   time.Duration // of a call; a batch gets ten times as long
	retry     time.Duration
	every     time.Duration
	failures  int64 // failures waiting that make a breaker's batch go at once
	loopDone  chan struct{}
	kick      chan struct{}
	stop      chan struct{}
	closeBy   atomic.Pointer[time.Time] // Close's deadline, once it is called
	closeOnce sync.Once
	onClose   func()

	mu     sync.Mutex
	queued []*Breaker // for the next batch
	byName map[string][]weak.Pointer[Breaker]
	closed atomic.Bool // no more batches: breakers decide alone; set under mu

	flushMu sync.Mutex // one batch at a time: the batches of one breaker go out in order

	flushes, calls, errs, notes atomic.Uint64
}

// batcherConfig is what a store's config says about batching.
type batcherConfig struct {
	timeout, retry, every time.Duration
	failures              int
}

// check fills in the defaults; field names the store's config in errors ("RedisConfig").
func (c *batcherConfig) check(field string) error {
	switch {
	case c.every < 0:
		return fmt.Errorf("%w: %s.FlushInterval %v is negative", ErrInvalidConfig, field, c.every)
	case c.failures < 0:
		return fmt.Errorf("%w: %s.FlushOutcomes %d is negative", ErrInvalidConfig, field, c.failures)
	}
	if c.timeout == 0 {
		c.timeout = 50 * time.Millisecond
	}
	if c.retry == 0 {
		c.retry = redisclient.DefaultRetryInterval
	}
	if c.every == 0 {
		c.every = 100 * time.Millisecond
	}
	if c.failures == 0 {
		c.failures = 64
	}
	return nil
}

func newBatcher(be backend, c batcherConfig) *batcher {
	bt := &batcher{
		be: be, timeout: c.timeout, retry: c.retry, every: c.every, failures: int64(c.failures),
		byName: make(map[string][]weak.Pointer[Breaker]),
		kick:   make(chan struct{}, 1), stop: make(chan struct{}), loopDone: make(chan struct{}),
	}
	go bt.loop()
	return bt
}

// register makes b reachable by announcements for its name, until b is garbage.
func (bt *batcher) register(b *Breaker) {
	name := b.cfg.Name
	bt.mu.Lock()
	bt.byName[name] = append(bt.byName[name], weak.Make(b))
	bt.mu.Unlock()
	runtime.AddCleanup(b, bt.prune, name)
}

// prune forgets the collected breakers of name.
func (bt *batcher) prune(name string) {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	ws := bt.byName[name][:0]
	for _, w := range bt.byName[name] {
		if w.Value() != nil {
			ws = append(ws, w)
		}
	}
	if len(ws) == 0 {
		delete(bt.byName, name)
	} else {
		bt.byName[name] = ws
	}
}

// announced is an announcement that the breaker name changed state: its local breakers read
// the new state in the next batch, at once.
func (bt *batcher) announced(name string) {
	bt.notes.Add(1)
	bt.mu.Lock()
	for _, w := range bt.byName[name] {
		bt.queueLocked(w.Value())
	}
	bt.mu.Unlock()
	bt.flushSoon()
}

// resync makes every breaker read the shared state in the next batch, at once: the
// announcements of their changes may have been lost.
func (bt *batcher) resync() {
	bt.mu.Lock()
	for _, ws := range bt.byName {
		for _, w := range ws {
			bt.queueLocked(w.Value())
		}
	}
	bt.mu.Unlock()
	bt.flushSoon()
}

// queueLocked puts b, if alive, in the next batch unless it is there already. bt.mu is held.
func (bt *batcher) queueLocked(b *Breaker) {
	if b != nil && !bt.closed.Load() && b.link.queued.CompareAndSwap(false, true) {
		bt.queued = append(bt.queued, b)
	}
}

// queue puts b, whose queued flag its caller set, in the next batch.
func (bt *batcher) queue(b *Breaker) {
	bt.mu.Lock()
	if !bt.closed.Load() { // a closed store sends no more batches: b decides alone
		bt.queued = append(bt.queued, b)
	}
	bt.mu.Unlock()
}

// flushSoon wakes the loop without waiting for the next tick.
func (bt *batcher) flushSoon() {
	select {
	case bt.kick <- struct{}{}:
	default:
	}
}

func (bt *batcher) loop() {
	defer close(bt.loopDone)
	t := time.NewTicker(bt.every)
	defer t.Stop()
	for {
		select {
		case <-bt.stop:
			bt.flush() // a batch sent again, if any
			bt.flush() // then what is pending
			return
		case <-t.C:
		case <-bt.kick:
		}
		bt.flush()
	}
}

// flush sends the outcomes of every queued breaker in one round trip and brings each breaker in
// line with its reply. Once Close is called, flushes end by its deadline: a batch in flight
// then had ten times the timeout from before Close, and the last ones share what is left.
func (bt *batcher) flush() {
	bt.flushMu.Lock()
	defer bt.flushMu.Unlock()
	bt.mu.Lock()
	bs := bt.queued
	bt.queued = nil
	bt.mu.Unlock()
	if len(bs) == 0 {
		return
	}
	reqs := make([]request, len(bs), len(bs)+1)
	for i, b := range bs {
		reqs[i] = b.link.nextBatch(b)
	}
	var releasing []*Breaker // leases to give back, after the batches
	for _, b := range bs {
		for _, id := range b.link.takeLostLeases() {
			releasing = append(releasing, b)
			reqs = append(reqs, request{name: b.cfg.Name, op: opRelease, policy: &b.link.policy, leaseID: id})
		}
	}
	res := make([]reply, len(reqs))
	bt.flushes.Add(1)
	// No caller waits for a batch: it gets more time than a call, so that a busy CPU does not
	// pass for an outage.
	ctx := context.Background()
	if d := bt.closeBy.Load(); d != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, *d)
		defer cancel()
	}
	if err := bt.be.run(ctx, 10*bt.timeout, reqs, res); err != nil {
		bt.errs.Add(1)
	}
	for j, b := range releasing {
		if res[len(bs)+j].err != nil {
			b.link.loseLease(b, reqs[len(bs)+j].leaseID) // next time
		}
	}
	for i, b := range bs {
		if res[i].err != nil {
			b.link.failed(b, &reqs[i])
			continue
		}
		if b.link.sent(b) {
			bt.flushSoon() // what waited behind a batch sent again
		}
		b.adopt(context.Background(), res[i], false)
	}
}

// errClosed: the store is closed, and nothing was sent.
var errClosed = fmt.Errorf("%w: closed: %w", errStoreDown, redisclient.ErrNotSent)

// call runs one request (a probe lease or report) on the caller's goroutine.
func (bt *batcher) call(ctx context.Context, req request) (reply, error) {
	if bt.closed.Load() {
		return reply{}, errClosed
	}
	bt.calls.Add(1)
	res := make([]reply, 1)
	err := bt.be.run(context.WithoutCancel(ctx), bt.timeout, []request{req}, res)
	if err != nil {
		bt.errs.Add(1)
	}
	return res[0], err
}

func (bt *batcher) stats() StoreStats {
	if bt == nil {
		return StoreStats{}
	}
	return StoreStats{
		Flushes: bt.flushes.Load(), Calls: bt.calls.Load(), Errors: bt.errs.Load(),
		Notifications: bt.notes.Load(), Down: bt.be.down() || bt.closed.Load(),
	}
}

// close sends what is pending, within ten times the timeout whatever the store does, and stops
// the loop; breakers then decide alone.
func (bt *batcher) close() {
	if bt == nil {
		return
	}
	bt.closeOnce.Do(func() {
		deadline := time.Now().Add(10 * bt.timeout)
		bt.closeBy.Store(&deadline)
		close(bt.stop)
		<-bt.loopDone // its last batches may queue breakers again: closed comes after
		bt.mu.Lock()
		bt.closed.Store(true)
		bt.mu.Unlock()
		if bt.onClose != nil {
			bt.onClose()
		}
	})
}
