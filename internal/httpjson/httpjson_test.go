package httpjson

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, http.StatusTooManyRequests, map[string]any{"error": "slow down", "retry_after": 3})
	if rec.Code != http.StatusTooManyRequests || rec.Body.String() != `{"error":"slow down","retry_after":3}`+"\n" {
		t.Fatalf("%d %q", rec.Code, rec.Body.String())
	}
	h := rec.Header()
	if h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" || h.Get("Content-Length") != strconv.Itoa(rec.Body.Len()) {
		t.Fatalf("headers %v", h)
	}
}

func TestUnavailable(t *testing.T) {
	rec := httptest.NewRecorder()
	Unavailable(rec, 0)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" ||
		rec.Body.String() != `{"error":"Service temporarily unavailable."}`+"\n" {
		t.Fatalf("%d %v %q", rec.Code, rec.Header(), rec.Body.String())
	}
}
