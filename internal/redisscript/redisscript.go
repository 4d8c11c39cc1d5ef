// Package redisscript runs the Lua scripts of outgrow's Redis stores: EVALSHA with a fallback to
// EVAL, pipelined across entities, never resent after it may have run, and bounded by a timeout.
package redisscript

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Script is a Lua script known by its source and its SHA1. The zero value is not usable; a
// Script is safe for concurrent use.
type Script struct {
	src, sha string
}

// New returns the Script of src.
func New(src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{src: src, sha: hex.EncodeToString(sum[:])}
}

// Call is one invocation of a script. Args are numkeys, the KEYS and the ARGV; after [Script.Run],
// Cmd holds the reply.
type Call struct {
	Args []any
	Cmd  *redis.Cmd
}

// PartialError reports a pipeline in which some calls ran and others failed: whatever the
// scripts changed must be undone or accepted by the caller.
type PartialError struct{ Err error }

func (e *PartialError) Error() string { return e.Err.Error() }
func (e *PartialError) Unwrap() error { return e.Err }

// noRetry keeps go-redis from sending a script again after a network error: the first attempt
// may have run.
type noRetry struct{ *redis.Cmd }

func (noRetry) NoRetry() bool { return true }

// Run sends one script call per element of calls, pipelined when there are several. Calls
// refused with NOSCRIPT did not run, so they are sent again with the script's source. It returns
// the first error; a *PartialError when other calls ran.
func (s *Script) Run(ctx context.Context, rdb redis.UniversalClient, calls []*Call) error {
	for _, eval := range []bool{false, true} {
		var pending []*Call
		for _, c := range calls {
			if eval && (c.Cmd == nil || !isNoScript(c.Cmd.Err())) {
				continue
			}
			c.Cmd = s.cmd(ctx, c.Args, eval)
			pending = append(pending, c)
		}
		switch len(pending) {
		case 0:
			return nil
		case 1:
			_ = rdb.Process(ctx, noRetry{pending[0].Cmd})
		default:
			pipe := rdb.Pipeline()
			for _, c := range pending {
				_ = pipe.Process(ctx, noRetry{c.Cmd})
			}
			_, _ = pipe.Exec(ctx)
		}
		var failed error
		noScript, ran := false, false
		for _, c := range calls {
			switch err := c.Cmd.Err(); {
			case isNoScript(err):
				noScript = true
			case err != nil:
				if failed == nil {
					failed = err
				}
			default:
				ran = true
			}
		}
		if failed != nil {
			if ran {
				return &PartialError{failed}
			}
			return failed
		}
		if !noScript {
			return nil
		}
	}
	return nil
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

func (s *Script) cmd(ctx context.Context, args []any, eval bool) *redis.Cmd {
	full := make([]any, 0, 2+len(args))
	if eval {
		full = append(full, "eval", s.src)
	} else {
		full = append(full, "evalsha", s.sha)
	}
	return redis.NewCmd(ctx, append(full, args...)...)
}

// ContextTimeouts reports whether rdb was created with ContextTimeoutEnabled, so that go-redis
// itself stops at a context's deadline.
func ContextTimeouts(rdb redis.UniversalClient) bool {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// Bound runs fn and waits for it at most timeout. When go-redis honours context deadlines
// (ctxTimeouts), fn gets a context that ends after timeout. Otherwise a deadline would change
// nothing for go-redis, so fn runs with ctx on its own goroutine while the caller waits at most
// the timeout (returning context.DeadlineExceeded); fn then finishes in the background within
// the client's ReadTimeout.
func Bound(ctx context.Context, timeout time.Duration, ctxTimeouts bool, fn func(context.Context) error) error {
	if ctxTimeouts {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return fn(ctx)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w := waiters.Get().(*waiter)
	w.t.Reset(timeout)
	go func() { w.ch <- fn(ctx) }()
	select {
	case err := <-w.ch:
		w.t.Stop() // since Go 1.23, no stale tick can be received after Stop
		waiters.Put(w)
		return err
	case <-w.t.C:
		return context.DeadlineExceeded // w stays with fn, which still sends on w.ch
	case <-ctx.Done():
		w.t.Stop()
		return ctx.Err()
	}
}

// waiter is what Bound needs per call, pooled: most calls end in time and give it back.
type waiter struct {
	ch chan error
	t  *time.Timer
}

var waiters = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &waiter{ch: make(chan error, 1), t: t}
}}
