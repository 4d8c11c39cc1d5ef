package cache

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
)

// state is how far a response has gone.
type state uint8

const (
	idle       state = iota // nothing written yet
	buffering               // a 200 whose body is held back to compute its ETag
	streaming               // status sent: writes go straight through
	discarding              // 304 sent in place of a 200: the body is dropped
	hijacked                // the handler took the connection over
)

// writer is the http.ResponseWriter handed to the handler. It is used by one request's
// goroutine, like any ResponseWriter.
type writer struct {
	http.ResponseWriter
	m     *middleware
	r     *http.Request
	state state
	buf   *[]byte // pooled, while buffering
	hv    [hvCount]string
}

// begin starts the response with the handler's status.
func (w *writer) begin(code int) {
	h := w.Header()
	switch code {
	case http.StatusOK:
	case http.StatusNotModified:
		w.decorate()
		fallthrough
	default:
		w.state = streaming
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.m.disableETag || len(h["Etag"]) > 0 || len(h["Trailer"]) > 0 {
		w.commit() // nothing to learn from the body: no need to hold it back
		return
	}
	w.state = buffering
	w.buf = bufPool.Get().(*[]byte)
}

// commit sends the status of a 200, or 304 when the request's conditions say the client's
// copy is current. Any ETag is in the header by now.
func (w *writer) commit() {
	h := w.Header()
	w.decorate()
	if notModified(w.r, h) {
		for _, k := range [...]string{"Content-Length", "Content-Type", "Content-Encoding", "Transfer-Encoding"} {
			delete(h, k)
		}
		w.state = discarding
		w.ResponseWriter.WriteHeader(http.StatusNotModified)
		return
	}
	w.state = streaming
	w.ResponseWriter.WriteHeader(http.StatusOK)
}

// stream gives up on the ETag: the response is sent with what was held back so far.
func (w *writer) stream() error {
	w.commit()
	defer w.release()
	if b := *w.buf; w.state == streaming && len(b) > 0 {
		_, err := w.ResponseWriter.Write(b)
		return err
	}
	return nil
}

// release puts the body buffer back in the pool, once nothing reads it any more.
func (w *writer) release() {
	if w.buf == nil {
		return
	}
	if cap(*w.buf) <= maxPooled {
		*w.buf = (*w.buf)[:0]
		bufPool.Put(w.buf)
	}
	w.buf = nil
}

// finish completes the response when the handler returns.
func (w *writer) finish() {
	if w.state == idle {
		w.begin(http.StatusOK) // the handler wrote nothing: an empty 200
	}
	if w.state != buffering {
		return
	}
	body := *w.buf
	h := w.Header()
	if len(body) > 0 || w.r.Method != http.MethodHead {
		h["Etag"] = w.value(hvETag, strongETag(body, h["Content-Encoding"]))
		if len(h["Content-Length"]) == 0 {
			h["Content-Length"] = w.value(hvContentLength, strconv.Itoa(len(body)))
		}
	}
	w.commit()
	if w.state == streaming && len(body) > 0 && w.r.Method != http.MethodHead {
		_, _ = w.ResponseWriter.Write(body) // the handler has returned: nobody to tell
	}
	w.release()
}

// WriteHeader implements http.ResponseWriter. Informational statuses (103 Early Hints) pass
// through at once.
func (w *writer) WriteHeader(code int) {
	if w.state != idle {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.begin(code)
}

// Write implements http.ResponseWriter.
func (w *writer) Write(p []byte) (int, error) {
	if w.state == idle {
		w.begin(http.StatusOK)
	}
	if w.state == buffering {
		if len(*w.buf)+len(p) <= w.m.maxBody {
			*w.buf = append(*w.buf, p...)
			return len(p), nil
		}
		if err := w.stream(); err != nil {
			return 0, err
		}
	}
	switch w.state {
	case streaming:
		return w.ResponseWriter.Write(p)
	case discarding:
		return len(p), nil
	}
	return 0, http.ErrHijacked
}

// ReadFrom lets the server's writer copy from r (sendfile for files) once the response
// streams.
func (w *writer) ReadFrom(r io.Reader) (int64, error) {
	if w.state == idle {
		w.begin(http.StatusOK)
	}
	if w.state == streaming {
		return io.Copy(w.ResponseWriter, r)
	}
	return io.Copy(struct{ io.Writer }{w}, r) // hides ReadFrom: no recursion
}

// Flush implements http.Flusher.
func (w *writer) Flush() { _ = w.FlushError() }

// FlushError flushes for http.ResponseController. A flushed response is a streamed one: it is
// sent at once, without a computed ETag.
func (w *writer) FlushError() error {
	if w.state == idle {
		w.begin(http.StatusOK)
	}
	if w.state == buffering {
		if err := w.stream(); err != nil {
			return err
		}
	}
	if w.state == hijacked {
		return http.ErrHijacked
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker (WebSocket upgrades arrive as GET requests); after it, the
// middleware writes nothing more.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.state = hijacked
		w.release()
	}
	return c, rw, err
}

// Unwrap gives http.ResponseController the server's writer.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// maxPooled is the largest buffer kept for reuse: a rare huge body must not pin its memory.
const maxPooled = 64 << 10

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 4<<10)
	return &b
}}
