// Package clientip is the library's one parser of the client's IP address. ratelimit uses it to
// key per-IP limits and balancer to hash clients onto backends, so both agree on who a client is.
//
// # Trust
//
// It is secure by default: a [Resolver] built from the zero [Config] uses the TCP peer
// (http.Request.RemoteAddr) and never reads a forwarding header, because any client can send
// X-Forwarded-For or Forwarded with whatever value it likes.
//
// Only when the peer is inside one of Config.TrustedProxies is the configured header read: either
// X-Forwarded-For (the default) or the standardised Forwarded (RFC 7239), never both, so that a
// client cannot pick whichever header a proxy forgets to overwrite. All lines of the header are
// merged in order and the hops are walked from the right. Each proxy appends the address it received
// the request from, so the rightmost hops were written by our own proxies and everything to their
// left was supplied by the client. The first hop from the right that is not a trusted proxy is
// therefore the last address a trusted party vouched for: the client. Taking the leftmost hop, as
// many libraries do, lets a client choose its own key.
//
// A hop that cannot be parsed (empty, "unknown", an obfuscated "_name", garbage) ends the walk, and
// the nearest trusted address already seen is returned instead; at worst that is the peer itself.
// The garbage is never returned, and a broken header can only merge clients into their proxy's key,
// never let a client choose a key. If every hop is trusted, the leftmost one is returned.
//
// Trusting 0.0.0.0/0 or ::/0 makes every hop trusted, so the leftmost hop (chosen by the client)
// wins: list only the proxies in front of the service.
//
// # Normalisation
//
// IPv4-mapped IPv6 addresses (::ffff:192.0.2.1) are unmapped to IPv4, and IPv6 zones (%eth0) are
// dropped. A dual-stack listener reports IPv4 clients in the mapped form, and a client must not get
// two keys (and twice the limit) depending on which socket it reached.
//
// # Keys
//
// [Resolver.Prefix] and [Resolver.AppendKey] group addresses into networks: IPv4 by /32 (the address
// itself) and IPv6 by /56 by default. An IPv6 subscriber is usually delegated a /56 (sometimes a
// /48 or a /64) and may pick any of its 2^72 addresses per request, so keying by the full address
// would let one user rotate past any per-IP limit. The /56 default follows express-rate-limit's
// security fix for that bypass. Both widths are configurable.
package clientip
