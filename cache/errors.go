package cache

import "errors"

var (
	// ErrNotFound reports a key that is not cached. A loader returns it (or an error matching
	// it) to say that the data does not exist; that answer is then cached for
	// Config.NegativeTTL, so that lookups of missing data do not reach the source each time.
	ErrNotFound = errors.New("cache: not found")
	// ErrInvalidConfig is wrapped by the error of a constructor given a configuration that
	// cannot work, and of SetWithTTL given a TTL that is not positive; the message names the
	// field.
	ErrInvalidConfig = errors.New("cache: invalid config")
	// ErrUnavailable reports a shared store (Redis) that failed or did not answer in time.
	ErrUnavailable = errors.New("cache: store unavailable")
	// ErrClosed reports a call on a closed Cache or store.
	ErrClosed = errors.New("cache: closed")
	// ErrLoaderPanic reports a loader that panicked. Every caller waiting for that load gets
	// it; the panic is logged with its stack, and never crashes a waiter.
	ErrLoaderPanic = errors.New("cache: loader panicked")
)

// errEncoding reports a value the Codec could not encode: nothing was written.
var errEncoding = errors.New("cache: cannot encode the value")
