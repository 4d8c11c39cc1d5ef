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

// Bound runs fn with a context that ends after timeout. go-redis always honours a context's
// deadline while it waits for a pooled connection or dials one; with ContextTimeoutEnabled
// (ctxTimeouts) it also does for reads and writes. Otherwise fn runs on its own goroutine, so that
// the caller still waits at most the timeout; fn then finishes in the background, within the
// client's ReadTimeout.
func Bound(ctx context.Context, timeout time.Duration, ctxTimeouts bool, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if ctxTimeouts {
		return fn(ctx)
	}
	ch := results.Get().(chan error)
	go func() { ch <- fn(ctx) }()
	select {
	case err := <-ch:
		results.Put(ch) // empty again: its one send was received
		return err
	case <-ctx.Done():
		return ctx.Err() // ch stays with fn, which still sends on it
	}
}

// results pools Bound's channels: most calls end in time and give theirs back.
var results = sync.Pool{New: func() any { return make(chan error, 1) }}
