package cache

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
)

// strongETag hashes the body and its Content-Encoding: the same bytes labelled with another
// encoding are another representation, and a cache must not match one against the other.
func strongETag(body []byte, encodings []string) string {
	sum := sha256.Sum256(body)
	if len(encodings) > 0 {
		var in [sha256.Size + 32]byte
		b := append(in[:0], sum[:]...)
		for _, e := range encodings {
			b = append(append(b, e...), ',')
		}
		sum = sha256.Sum256(b)
	}
	// 128 bits keep collisions out of reach; base64url needs no escaping in a quoted tag.
	const n = 16
	var out [2 + (n*8+5)/6]byte
	out[0], out[len(out)-1] = '"', '"'
	base64.RawURLEncoding.Encode(out[1:len(out)-1], sum[:n])
	return string(out[:])
}

// notModified evaluates If-None-Match, or else If-Modified-Since, against the response header
// (RFC 9110 §13.2.2).
func notModified(r *http.Request, h http.Header) bool {
	if inm := r.Header["If-None-Match"]; len(inm) > 0 {
		etag := ""
		if v := h["Etag"]; len(v) > 0 {
			etag = v[0]
		}
		return matchETag(inm, etag)
	}
	ims, lm := r.Header["If-Modified-Since"], h["Last-Modified"]
	if len(ims) == 0 || len(lm) == 0 {
		return false
	}
	since, err := http.ParseTime(ims[0])
	if err != nil {
		return false
	}
	mod, err := http.ParseTime(lm[0])
	if err != nil {
		return false
	}
	return !mod.Truncate(time.Second).After(since)
}

// matchETag reports whether an If-None-Match list matches etag by weak comparison (W/ is
// ignored on both sides), or is "*". Members that are not entity-tags are skipped.
func matchETag(lines []string, etag string) bool {
	etag = strings.TrimPrefix(etag, "W/")
	for _, s := range lines {
		i := 0
		for i < len(s) {
			switch c := s[i]; {
			case c == ' ' || c == '\t' || c == ',':
				i++
				continue
			case c == '*':
				j := i + 1
				for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
					j++
				}
				if j == len(s) || s[j] == ',' {
					return true
				}
			default:
				j := i
				if strings.HasPrefix(s[j:], "W/") {
					j += 2
				}
				if j < len(s) && s[j] == '"' {
					k := strings.IndexByte(s[j+1:], '"')
					if k < 0 {
						break // unterminated: skipped below
					}
					if tag := s[j : j+k+2]; etag != "" && tag == etag {
						return true
					}
					i = j + k + 2
					continue
				}
			}
			// Not an entity-tag: skip the member.
			k := strings.IndexByte(s[i:], ',')
			if k < 0 {
				break
			}
			i += k + 1
		}
	}
	return false
}
