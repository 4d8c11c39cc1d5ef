package ratelimit

import "context"

// Store keeps the state of every key and decides requests atomically. [MemoryStore] and
// [RedisStore] implement it with the same semantics, proven by one test suite; [Limiter] and
// [AllowAll] sit in front of it and are how it is used.
//
// The interface is sealed (its methods are unexported) so that it can grow without breaking
// anyone: only this package's stores satisfy it. Tests of code that uses a Limiter run it on a
// MemoryStore, which decides exactly as a RedisStore does.
type Store interface {
	// take decides every request of reqs as one unit, writing one outcome per request into
	// out (len(out) == len(reqs)): either every request with n > 0 is applied, or, when one is
	// denied, none is; requests with n == 0 are peeks (would one unit be granted?) and change
	// nothing; requests with n < 0 give -n units back and are never denied. A batch never both
	// takes and gives back. take returns ErrUnavailable (wrapped) or the context's error when it
	// could not decide; out is then undefined.
	take(ctx context.Context, reqs []request, out []outcome) error
	// reset forgets the state of the key of q.
	reset(ctx context.Context, q request) error
	// fallback is the store FailLocal decides on while this one is unavailable: nil for a store
	// that never is.
	fallback() *MemoryStore
}

// request asks a store for n units of key under rule, on behalf of the policy policy. The state
// of a request is identified by (policy, key, rule.Strict): the same key under two policies has
// two independent states.
type request struct {
	policy string
	key    string
	rule   *rule
	n      int
}

// outcome is a store's answer to one request.
type outcome struct {
	Result
	// busy marks a denial made only because other requests held the key's units until the
	// decision's deadline (see RedisStore): the key itself had enough, so it is never cached.
	busy bool
	// fell marks, in AllowAll, an outcome decided by the Limiter's failure policy instead of
	// its store. (It takes no room: Result ends in padding.)
	fell bool
}

// indexes returns 0, 1, ... n-1, without allocating for the common sizes. The result must not
// be modified.
func indexes(n int) []int {
	if n <= len(identity) {
		return identity[:n:n]
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

var identity = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
