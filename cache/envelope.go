package cache

import (
	"encoding/binary"
	"errors"
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
