// Package httpjson writes the JSON responses outgrow's middleware sends on its own: errors as
// {"error":"..."}, never cached, with their length.
package httpjson

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Write sends v as JSON with status.
func Write(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v) // outgrow's bodies are strings and numbers: cannot fail
	WriteBytes(w, status, b)
}

// WriteBytes sends body, already JSON, with status and a final newline.
func WriteBytes(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	_, _ = w.Write(newline)
}

var newline = []byte("\n")

var unavailable = []byte(`{"error":"Service temporarily unavailable."}`)

// Unavailable answers 503 {"error":"Service temporarily unavailable."} with Retry-After in
// whole seconds (at least 1).
func Unavailable(w http.ResponseWriter, retryAfter int64) {
	w.Header().Set("Retry-After", strconv.FormatInt(max(1, retryAfter), 10))
	WriteBytes(w, http.StatusServiceUnavailable, unavailable)
}
