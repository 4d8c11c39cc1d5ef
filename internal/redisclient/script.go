package redisclient

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Script is a Lua script known by its source and its SHA1. The zero value is not usable; a
// Script is safe for concurrent use.
type Script struct {
	src, sha string
}

// NewScript returns the Script of src.
func NewScript(src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{src: src, sha: hex.EncodeToString(sum[:])}
}

// ScriptCall is one invocation of a script. Args are numkeys, the KEYS and the ARGV. After
// [Client.Run], Cmd holds the reply when the call ran; it is nil when the run failed as a
// whole (nothing may be read then).
type ScriptCall struct {
	Args []any
	Cmd  *redis.Cmd
}

// PartialError reports a pipeline in which some calls ran and others failed: whatever the
// scripts changed must be undone or accepted by the caller. The calls that ran have a Cmd
// without error.
type PartialError struct{ Err error }

func (e *PartialError) Error() string { return e.Err.Error() }
func (e *PartialError) Unwrap() error { return e.Err }

// Run sends one call of s per element of calls, pipelined when there are several, within the
// client's Timeout, with EVALSHA and, for calls refused with NOSCRIPT (they did not run), EVAL.
// A script is never sent again after it may have run. On success every call's Cmd holds its
// reply; on an error wrapping a *PartialError the calls that ran have theirs; on any other
// error every Cmd is nil.
func (c *Client) Run(ctx context.Context, s *Script, calls []*ScriptCall) error {
	return c.RunFor(ctx, c.cfg.Timeout, s, calls)
}

// RunFor is [Client.Run] with a timeout of its own (see [CallFor]).
func (c *Client) RunFor(ctx context.Context, timeout time.Duration, s *Script, calls []*ScriptCall) error {
	args := make([][]any, len(calls))
	for i, call := range calls {
		args[i] = call.Args
		call.Cmd = nil
	}
	cmds, err := CallFor(ctx, c, timeout, func(ctx context.Context, rdb redis.UniversalClient) ([]*redis.Cmd, error) {
		return s.run(ctx, rdb, args)
	})
	var partial *PartialError
	if err == nil || errors.As(err, &partial) {
		for i, call := range calls {
			call.Cmd = cmds[i]
		}
	}
	return err
}

// noRetry keeps go-redis from sending a script again after a network error: the first attempt
// may have run.
type noRetry struct{ *redis.Cmd }

func (noRetry) NoRetry() bool { return true }

// run sends the calls and returns their commands: all of them when it returns nil or a
// *PartialError.
func (s *Script) run(ctx context.Context, rdb redis.UniversalClient, args [][]any) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(args))
	for _, eval := range []bool{false, true} {
		var pending []*redis.Cmd
		for i := range args {
			if eval && !isNoScript(cmds[i].Err()) {
				continue
			}
			cmds[i] = s.cmd(ctx, args[i], eval)
			pending = append(pending, cmds[i])
		}
		switch len(pending) {
		case 0:
			return cmds, nil
		case 1:
			_ = rdb.Process(ctx, noRetry{pending[0]})
		default:
			pipe := rdb.Pipeline()
			for _, cmd := range pending {
				_ = pipe.Process(ctx, noRetry{cmd})
			}
			_, _ = pipe.Exec(ctx)
		}
		var failed error
		noScript, ran := false, false
		for _, cmd := range cmds {
			switch err := cmd.Err(); {
			case isNoScript(err):
				noScript = true
			case err != nil && err != redis.Nil:
				if failed == nil {
					failed = err
				}
			default:
				ran = true
			}
		}
		if failed != nil {
			if ran {
				return cmds, &PartialError{failed}
			}
			return cmds, failed
		}
		if !noScript {
			return cmds, nil
		}
	}
	return cmds, nil
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
