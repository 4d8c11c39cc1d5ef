package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// An envelope is how a value is stored in Redis: a small header, then the payload.
//
//	byte 0    version (1)
//	byte 1    flags: flagNegative, flagRaw
//	uvarints  fresh until, stale-while-revalidate until, kept until (Unix ms, the writer's
//	          clock), and how long the value took to load (ms)
//	rest      the payload: the value's bytes (raw, or from the Codec)
//
// The times make an L2 hit carry everything the local layer needs, read with a plain GET. They
// are absolute, so instances whose clocks differ by d see freshness shifted by d (NTP keeps d in
// milliseconds); the key's own expiry in Redis is relative (PX), so Redis removes it on time.
type envelope struct {
	flags                    byte
	fresh, stale, hard, load int64 // Unix ms; load is a duration in ms
	payload                  []byte
}

const envelopeVersion = 1

const (
	flagNegative = 1 << iota // "not found", cached; no payload
	flagRaw                  // payload is the value itself ([]byte or string)
)

var errEnvelope = errors.New("cache: malformed entry in Redis")

func (e *envelope) append(dst []byte) []byte {
	dst = append(dst, envelopeVersion, e.flags)
	dst = binary.AppendUvarint(dst, uint64(max(0, e.fresh)))
	dst = binary.AppendUvarint(dst, uint64(max(0, e.stale)))
	dst = binary.AppendUvarint(dst, uint64(max(0, e.hard)))
	dst = binary.AppendUvarint(dst, uint64(max(0, e.load)))
	return append(dst, e.payload...)
}

// decodeEnvelope parses b. The payload aliases b.
func decodeEnvelope(b []byte) (envelope, error) {
	var e envelope
	if len(b) < 2 || b[0] != envelopeVersion {
		return e, errEnvelope
	}
	e.flags = b[1]
	b = b[2:]
	var times [4]int64
	for i := range times {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > 1<<62 {
			return envelope{}, errEnvelope
		}
		times[i] = int64(v)
		b = b[n:]
	}
	e.fresh, e.stale, e.hard, e.load = times[0], times[1], times[2], times[3]
	if e.fresh > e.stale || e.stale > e.hard || (e.flags&flagNegative != 0 && len(b) > 0) {
		return envelope{}, errEnvelope
	}
	e.payload = b
	return e, nil
}

// encode builds e's envelope, with its times on the wall clock (now and wall are one instant
// on the two clocks).
func (r *redisLayer) encode(e *entry, now, wall int64) ([]byte, error) {
	env := envelope{
		fresh: wall + (e.fresh-now)/1e6, stale: wall + (e.stale-now)/1e6, hard: wall + (e.hard-now)/1e6,
		load: e.load / 1e6,
	}
	switch {
	case e.neg:
		env.flags = flagNegative
	case r.raw:
		env.flags = flagRaw
		switch x := e.value.(type) {
		case []byte:
			env.payload = x
		case string:
			// Appended as it is: no []byte copy of the string first.
			return append(env.append(make([]byte, 0, 24+len(x))), x...), nil
		}
	default:
		b, err := r.codec.Marshal(e.value)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errEncoding, err)
		}
		env.payload = b
	}
	return env.append(make([]byte, 0, 24+len(env.payload))), nil
}

// decode turns an envelope read from Redis into an entry of key (hashed to h) on the local
// clock; nil when b is nil or does not decode (it then counts as a miss, and the next load
// overwrites it).
func (c *Cache[V]) decode(key string, h uint64, b []byte, now, wall int64) *entry {
	if b == nil {
		return nil
	}
	env, err := decodeEnvelope(b)
	if err != nil {
		return nil
	}
	e := &entry{key: key, hash: h, neg: env.flags&flagNegative != 0, load: env.load * 1e6, weight: int64(len(env.payload))}
	if !e.neg {
		switch {
		case env.flags&flagRaw != 0:
			switch any(*new(V)).(type) {
			case []byte:
				e.value = env.payload
			case string:
				e.value = string(env.payload)
			default:
				return nil // stored raw by a cache of another type
			}
		case c.raw:
			return nil
		default:
			var v V // on the heap, through the Codec: only on this path
			if c.codec.Unmarshal(env.payload, &v) != nil {
				return nil
			}
			e.value = v
		}
	}
	// Clamped, so that no time written by another instance can overflow.
	local := func(ms int64) int64 { return now + min(max(ms-wall, -maxTTLms), maxTTLms)*1e6 }
	e.fresh, e.stale, e.hard = local(env.fresh), local(env.stale), local(env.hard)
	return e
}
