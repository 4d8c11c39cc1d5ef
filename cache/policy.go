package cache

import (
	"fmt"
	"time"
)

// defaultTTL is how long data stays fresh when a Policy's TTL is zero.
const defaultTTL = 300 * time.Second

// Policy says how long data stays fresh and how long it may then be served stale. [Cache] and
// the HTTP [Middleware] read the same fields, so one Policy can drive both the data cache and
// the Cache-Control header of the responses built from it.
//
// The zero value is ready to use: fresh for 300 s, never served stale. A Policy is a plain
// value, safe to copy and to share.
type Policy struct {
	// TTL is how long data stays fresh after it was stored. Default: 300s.
	TTL time.Duration
	// StaleWhileRevalidate is how long after TTL the data is still served at once while one
	// refresh runs in the background (RFC 5861). Default: 0 (never).
	StaleWhileRevalidate time.Duration
	// StaleIfError is how long after TTL the data is still served when a refresh fails (the
	// loader or the origin returned an error). Default: 0 (never).
	StaleIfError time.Duration
}

// ttl returns the fresh TTL with its default.
func (p Policy) ttl() time.Duration {
	if p.TTL == 0 {
		return defaultTTL
	}
	return p.TTL
}

func (p Policy) check(what string) error {
	switch {
	case p.TTL < 0:
		return fmt.Errorf("%w: %s.TTL %v is negative", ErrInvalidConfig, what, p.TTL)
	case p.StaleWhileRevalidate < 0:
		return fmt.Errorf("%w: %s.StaleWhileRevalidate %v is negative", ErrInvalidConfig, what, p.StaleWhileRevalidate)
	case p.StaleIfError < 0:
		return fmt.Errorf("%w: %s.StaleIfError %v is negative", ErrInvalidConfig, what, p.StaleIfError)
	}
	return nil
}
