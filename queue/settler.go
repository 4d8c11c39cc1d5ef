package queue

import (
	"context"
	"sync"
	"time"
)

// The settlements of a Worker on a store other than a MemoryStore wait a little in its outbox
// so that many go to the store in one round trip: with the next claim of their queue (a busy
// queue claims again as soon as its runs end, so its settlements cost no round trip of their
// own), or, after settleLinger, in one settle call of the settle loop.
const (
	// settleLinger is how long a settlement waits for a claim of its queue, or for others to
	// go with it. It exceeds claimWindow, the most a busy dispatcher waits before it claims.
	settleLinger = claimWindow + time.Millisecond
	// maxSettleBatch bounds the ops of one call.
	maxSettleBatch = 256
)

// settleReq is a settlement waiting in the outbox; done receives the result.
type settleReq struct {
	ops    []op
	queue  string // the queue of every op; "" when they span queues
	done   func(ok []bool, err error)
	posted time.Time
}

// outbox holds the settlements not sent yet. Its zero value is not usable: kick needs a
// buffer of 1.
type outbox struct {
	mu   sync.Mutex
	reqs []settleReq
	ops  int
	kick chan struct{} // the settle loop has something to send
}

// post adds req to the outbox.
func (w *Worker) post(req settleReq) {
	b := &w.outbox
	req.posted = time.Now()
	b.mu.Lock()
	b.reqs = append(b.reqs, req)
	b.ops += len(req.ops)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// take removes from the outbox and returns up to about maxSettleBatch ops' worth of
// settlements, of queue only unless queue is "", in the order they were posted.
func (w *Worker) take(queue string) []settleReq {
	b := &w.outbox
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []settleReq
	n := 0
	kept := b.reqs[:0]
	for _, req := range b.reqs {
		if n < maxSettleBatch && (queue == "" || req.queue == queue) {
			out = append(out, req)
			n += len(req.ops)
			continue
		}
		kept = append(kept, req)
	}
	clear(b.reqs[len(kept):])
	b.reqs = kept
	b.ops -= n
	return out
}

// oldest returns when the oldest settlement in the outbox was posted (zero when it is empty),
// and how many ops it holds.
func (w *Worker) oldest() (time.Time, int) {
	b := &w.outbox
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.reqs) == 0 {
		return time.Time{}, 0
	}
	return b.reqs[0].posted, b.ops
}

// answer gives each of reqs its part of ok, the results of their ops in order, or err.
func answer(reqs []settleReq, ok []bool, err error) {
	for _, req := range reqs {
		if err != nil {
			req.done(nil, err)
			continue
		}
		req.done(ok[:len(req.ops):len(req.ops)], nil)
		ok = ok[len(req.ops):]
	}
}

func flatten(reqs []settleReq) []op {
	var ops []op
	for _, req := range reqs {
		ops = append(ops, req.ops...)
	}
	return ops
}

// settleClaim claims up to n jobs of queue, sending with the claim the settlements of the
// queue waiting in the outbox.
func (w *Worker) settleClaim(ctx context.Context, queue string, n int) ([]claimed, error) {
	var reqs []settleReq
	if !w.local {
		reqs = w.take(queue)
	}
	got, ok, err := w.store.settleClaim(ctx, queue, flatten(reqs), n, w.cfg.Lease, w.cfg.MaxInterrupted)
	answer(reqs, ok, err)
	return got, err
}

type settleReply struct {
	ok  []bool
	err error
}

// settleMany settles ops and waits for the result.
func (w *Worker) settleMany(ctx context.Context, ops []op) ([]bool, error) {
	if w.local {
		// Nothing to save by batching in process memory: a settlement costs less than the
		// trip through the outbox.
		return w.store.settle(ctx, ops)
	}
	reply, _ := w.replies.Get().(chan settleReply)
	if reply == nil {
		reply = make(chan settleReply, 1)
	}
	queue := ops[0].queue
	for _, o := range ops {
		if o.queue != queue {
			queue = ""
			break
		}
	}
	w.post(settleReq{ops: ops, queue: queue, done: func(ok []bool, err error) { reply <- settleReply{ok, err} }})
	r := <-reply // the settle loop answers within settleLinger plus a call's timeout
	w.replies.Put(reply)
	return r.ok, r.err
}

// settleAsync settles o and calls done with the result, without waiting for it unless the
// store is a MemoryStore (then at once, on this goroutine).
func (w *Worker) settleAsync(o op, done func(ok bool, err error)) {
	if w.local {
		ok, err := w.store.settle(w.background, []op{o})
		done(err == nil && ok[0], err)
		return
	}
	w.post(settleReq{ops: []op{o}, queue: o.queue, done: func(ok []bool, err error) { done(err == nil && ok[0], err) }})
}

// settleLoop sends the settlements that waited settleLinger in the outbox (at once when it
// holds maxSettleBatch ops), until ctx ends. Settlements of finished runs do not hold a slot,
// so their wait costs no throughput.
func (w *Worker) settleLoop(ctx context.Context) {
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		select {
		case <-w.outbox.kick:
		case <-ctx.Done():
			return
		}
		for {
			oldest, n := w.oldest()
			if oldest.IsZero() {
				break // a claim took them
			}
			if wait := time.Until(oldest.Add(settleLinger)); wait > 0 && n < maxSettleBatch {
				linger.Reset(wait)
				select {
				case <-linger.C:
				case <-w.outbox.kick:
					linger.Stop()
				}
				continue
			}
			reqs := w.take("")
			ok, err := w.store.settle(w.background, flatten(reqs))
			answer(reqs, ok, err)
		}
	}
}
