// Package breaker will implement the circuit breaker of the article: closed, open after 5
// failures, half-open with limited probes after a 30 s cooldown, with its state optionally shared
// across instances through Redis.
//
// It is not implemented yet; see the project's issue tracker.
package breaker
