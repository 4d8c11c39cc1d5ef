package queue

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/outgrow/outgrow/internal/httpjson"
)

// HandlerConfig configures the inspection handler returned by [Queue.Handler].
type HandlerConfig struct {
	// Authorize says whether r may read the queues, for example by checking an operator's
	// session or a bearer token; a request it refuses gets 403. Required: an inspection
	// endpoint left open shows every queue's dead jobs and their errors to anyone.
	Authorize func(r *http.Request) bool
	// ShowPayloads adds the dead jobs' payloads to the listing (as base64). Payloads often
	// hold personal data. Default: false.
	ShowPayloads bool
	// DeadLimit is the most dead jobs one response lists; a request's ?limit= may ask fewer.
	// Default: 100.
	DeadLimit int
}

// Handler returns a read-only JSON http.Handler that shows the queues of q's store: what
// operators look at during an incident, next to Pause and Redrive, which it does not offer
// (changes go through code that can be reviewed and audited). Its paths are relative: mount it
// under a prefix with http.StripPrefix.
//
//	GET /                  {"queues":[{"name":"mail","due":3,"scheduled":0,"running":1,"dead":0,"lag_seconds":0.2,"paused":false}]}
//	GET /{queue}           the same object for one queue
//	GET /{queue}/dead      {"queue":"mail","jobs":[{"id":...,"last_error":...,"died_at":...}]}, the most recent first; ?limit=N
//
// Refused requests get 403, other methods than GET and HEAD 405, bad names or limits 400, and
// a store that cannot be reached 503; error bodies are {"error":"..."} and never carry the
// store's error. Its error wraps ErrInvalidConfig when Authorize is nil or DeadLimit negative.
func (q *Queue) Handler(cfg HandlerConfig) (http.Handler, error) {
	switch {
	case cfg.Authorize == nil:
		return nil, fmt.Errorf("%w: HandlerConfig.Authorize is required", ErrInvalidConfig)
	case cfg.DeadLimit < 0:
		return nil, fmt.Errorf("%w: HandlerConfig.DeadLimit %d is negative", ErrInvalidConfig, cfg.DeadLimit)
	case cfg.DeadLimit == 0:
		cfg.DeadLimit = 100
	}
	h := &inspector{q: q, cfg: cfg, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /{$}", h.list)
	h.mux.HandleFunc("GET /{queue}", h.one)
	h.mux.HandleFunc("GET /{queue}/dead", h.dead)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fail(w, http.StatusNotFound, "Not found.")
	})
	return h, nil
}

type inspector struct {
	q   *Queue
	cfg HandlerConfig
	mux *http.ServeMux
}

func (h *inspector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.cfg.Authorize(r) {
		fail(w, http.StatusForbidden, "Forbidden.")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		fail(w, http.StatusMethodNotAllowed, "Method not allowed.")
		return
	}
	h.mux.ServeHTTP(w, r)
}

func fail(w http.ResponseWriter, status int, msg string) {
	httpjson.Write(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

// storeFailed answers a store's error: 400 for a bad queue name, 503 otherwise.
func storeFailed(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrInvalidJob) {
		fail(w, http.StatusBadRequest, "Not a queue name.")
		return
	}
	httpjson.Unavailable(w, 1)
}

// queueJSON is a queue's entry in the handler's responses.
type queueJSON struct {
	Name       string  `json:"name"`
	Due        int     `json:"due"`
	Scheduled  int     `json:"scheduled"`
	Running    int     `json:"running"`
	Dead       int     `json:"dead"`
	LagSeconds float64 `json:"lag_seconds"`
	Paused     bool    `json:"paused"`
}

func (h *inspector) stats(r *http.Request, name string) (queueJSON, error) {
	st, err := h.q.QueueStats(r.Context(), name)
	return queueJSON{Name: name, Due: st.Due, Scheduled: st.Scheduled, Running: st.Running, Dead: st.Dead,
		LagSeconds: st.Lag.Truncate(time.Millisecond).Seconds(), Paused: st.Paused}, err
}

func (h *inspector) list(w http.ResponseWriter, r *http.Request) {
	names, err := h.q.Queues(r.Context())
	if err != nil {
		storeFailed(w, err)
		return
	}
	out := struct {
		Queues []queueJSON `json:"queues"`
	}{Queues: make([]queueJSON, 0, len(names))}
	for _, name := range names {
		st, err := h.stats(r, name)
		if err != nil {
			storeFailed(w, err)
			return
		}
		out.Queues = append(out.Queues, st)
	}
	httpjson.Write(w, http.StatusOK, out)
}

func (h *inspector) one(w http.ResponseWriter, r *http.Request) {
	st, err := h.stats(r, r.PathValue("queue"))
	if err != nil {
		storeFailed(w, err)
		return
	}
	httpjson.Write(w, http.StatusOK, st)
}

// deadJSON is a dead job in the handler's responses.
type deadJSON struct {
	ID          string    `json:"id"`
	Priority    int       `json:"priority"`
	Attempts    int       `json:"attempts"`
	MaxAttempts int       `json:"max_attempts"`
	Deliveries  int       `json:"deliveries"`
	EnqueuedAt  time.Time `json:"enqueued_at"`
	DiedAt      time.Time `json:"died_at"`
	LastError   string    `json:"last_error"`
	Payload     []byte    `json:"payload,omitempty"`
}

func (h *inspector) dead(w http.ResponseWriter, r *http.Request) {
	limit := h.cfg.DeadLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			fail(w, http.StatusBadRequest, "limit must be a positive integer.")
			return
		}
		limit = min(n, limit)
	}
	name := r.PathValue("queue")
	jobs, err := h.q.Dead(r.Context(), name, limit)
	if err != nil {
		storeFailed(w, err)
		return
	}
	out := struct {
		Queue string     `json:"queue"`
		Jobs  []deadJSON `json:"jobs"`
	}{Queue: name, Jobs: make([]deadJSON, 0, len(jobs))}
	for _, j := range jobs {
		d := deadJSON{ID: j.ID, Priority: j.Priority, Attempts: j.Attempt, MaxAttempts: j.MaxAttempts,
			Deliveries: j.Deliveries, EnqueuedAt: j.EnqueuedAt, DiedAt: j.DiedAt, LastError: j.LastError}
		if h.cfg.ShowPayloads {
			d.Payload = j.Payload
		}
		out.Jobs = append(out.Jobs, d)
	}
	httpjson.Write(w, http.StatusOK, out)
}
