package ratelimit

import "context"

// Store keeps the state of every key and makes decisions atomically. [MemoryStore] and
// [RedisStore] implement it with the same semantics; [Limiter] and [AllowAll] sit in front of it.
//
// Implementations must be safe for concurrent use.
type Store interface {
	// Take decides every request of reqs as one unit, writing one Result per request into res
	// (len(res) == len(reqs)): either every request with N != 0 is applied, or, when one with
	// N > 0 is denied, none is. Requests with N == 0 are peeks: they report whether one unit would
	// be granted and change nothing. Requests with N < 0 give -N units back and are never denied.
	// Take returns an error for an invalid batch (ErrInvalidKey, ErrInvalidLimit,
	// ErrExceedsBurst) and when it could not decide (ErrUnavailable, or the context's error);
	// res is then undefined.
	Take(ctx context.Context, reqs []Request, res []Result) error
	// Reset forgets the state of the key of req, as if it had never been seen.
	Reset(ctx context.Context, req Request) error
}

// Request asks a Store for N units of Key under Limit, on behalf of the policy Policy.
//
// Key names the entity (an IP, an API key, a user). The state of a request is identified by the
// pair (Policy, Key): the same key under two policies has two independent states, kept next to
// each other so that the Redis store decides them in one script call.
type Request struct {
	Policy string
	Key    string
	Limit  Limit
	N      int
}
