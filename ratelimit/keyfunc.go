package ratelimit

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/outgrow/outgrow/internal/clientip"
)

// KeyFunc returns the key a Rule limits a request by. Returning ErrNoKey means the rule does not
// apply to the request (for example no API key header); any other error refuses the request
// (see MiddlewareConfig.OnError), so that a request can never slip past a limit because its key
// could not be found.
type KeyFunc func(r *http.Request) (string, error)

var (
	// ErrNoKey, returned by a KeyFunc, means its Rule does not apply to the request.
	ErrNoKey = errors.New("ratelimit: rule does not apply to the request")
	// ErrNoClientIP is returned by the KeyFunc of KeyByIP when the request has no usable client
	// address (an empty or unparsable RemoteAddr, such as on a Unix socket).
	ErrNoClientIP = clientip.ErrNoClientIP
)

// IPConfig says how [KeyByIP] finds the client's address. The zero value trusts no proxy: the
// key is the TCP peer's address, and forwarding headers are ignored, so a client cannot choose
// its own key.
type IPConfig struct {
	// TrustedProxies are the networks of the proxies in front of the service (load balancers,
	// CDNs). Only when the TCP peer is one of them is the forwarding header read, from the right:
	// the client is the rightmost address that is not a trusted proxy.
	TrustedProxies []netip.Prefix
	// Header is the forwarding header set by those proxies: "X-Forwarded-For", or "Forwarded"
	// (RFC 7239). Only one is read: a proxy that sets one passes the other through from the
	// client untouched. Default: "X-Forwarded-For".
	Header string
	// IPv6Prefix is how many leading bits of an IPv6 address make the key. One subscriber
	// usually holds a whole /56 or /64 and can rotate addresses inside it at will. Default: 56.
	IPv6Prefix int
	// IPv4Prefix is how many leading bits of an IPv4 address make the key. Default: 32.
	IPv4Prefix int
}

// KeyByIP returns a KeyFunc keying requests by client address, as cfg says; it is safe for
// concurrent use. IPv4-mapped IPv6 addresses count as IPv4. A request without a usable address
// gets ErrNoClientIP, which the middleware answers with 400 by default. Its errors wrap
// ErrInvalidConfig.
func KeyByIP(cfg IPConfig) (KeyFunc, error) {
	res, err := clientip.New(clientip.Config{
		TrustedProxies: cfg.TrustedProxies, Header: cfg.Header,
		IPv4Prefix: cfg.IPv4Prefix, IPv6Prefix: cfg.IPv6Prefix,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: IPConfig: %w", ErrInvalidConfig, err)
	}
	return func(r *http.Request) (string, error) {
		var buf [64]byte
		b, err := res.AppendKey(buf[:0], r)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}, nil
}

// KeyByHeader returns a KeyFunc keying requests by the value of header, such as an API key. A
// request without the header is not limited by the rule (ErrNoKey). A client chooses its own
// header values, so key abuse-sensitive limits (login) by IP, not by header, and check API keys
// before or right after limiting by them. Mark the Limiter's keys as secrets
// (Config.SecretKeys) when the header carries a credential.
func KeyByHeader(header string) KeyFunc {
	return func(r *http.Request) (string, error) {
		if v := r.Header.Get(header); v != "" {
			return v, nil
		}
		return "", ErrNoKey
	}
}
