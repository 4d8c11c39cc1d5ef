// Command worker is the article's queue pattern: the API does the minimum at once (check the
// input, enqueue a job) and answers 202 Accepted; the heavy work (sending an email, rendering a
// PDF) runs in a worker, in another process when they share Redis.
//
//	go run ./examples/worker                   # API on :8080 and worker in one process, in memory
//	go run ./examples/worker -role api    -redis redis://127.0.0.1:6379/0
//	go run ./examples/worker -role worker -redis redis://127.0.0.1:6379/0   # as many as you like
//
//	curl -i -d '{"to":"ada@example.com","subject":"Welcome"}' localhost:8080/emails
//	curl -i -H 'Idempotency-Key: order-42' -d '{"id":"2026-Q4"}' localhost:8080/reports  # twice: one job
//	curl -i -d '{"to":"bob@example.invalid","subject":"Hi"}' localhost:8080/emails      # dead at once
//	curl -s localhost:8080/queues                                                      # jobs by state
//
// The work is simulated: sendEmail and renderReport wait a while, and the pretend mail provider
// refuses every address at the .invalid domain. REDIS_URL sets -redis's default. On SIGINT or
// SIGTERM the API stops taking requests and the worker lets its running jobs finish for
// -shutdown-timeout, then gives the rest back to the queue: another worker runs them.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/queue"
)

// Email and Report are the jobs' payloads, as JSON: the API and the worker share these types,
// so add fields rather than rename them while jobs of the old shape may still be waiting.
type Email struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

type Report struct {
	ID string `json:"id"`
}

// The queues. Workers serve queues by name: each gets its own concurrency and timeout.
const (
	emailsQueue  = "emails"
	reportsQueue = "reports"
)

// config is the program's flags, plus the handlers' work (nil: simulated), which tests replace.
type config struct {
	Role            string // api, worker or all
	Addr            string
	RedisURL        string // "": in memory
	Prefix          string // starts every Redis key, then "queue:"
	ShutdownTimeout time.Duration
	RedisTimeout    time.Duration // bounds one call to Redis; 0: the store's default, 100ms

	Send   func(ctx context.Context, d *queue.Delivery, e Email) error
	Render func(ctx context.Context, d *queue.Delivery, r Report) error
}

func main() {
	var cfg config
	flag.StringVar(&cfg.Role, "role", "all", "api (takes requests, enqueues), worker (runs jobs) or all (both)")
	flag.StringVar(&cfg.Addr, "addr", ":8080", "the API's address")
	flag.StringVar(&cfg.RedisURL, "redis", os.Getenv("REDIS_URL"), "Redis shared by API and workers, redis://host:port/db (empty: in memory, -role all only)")
	flag.StringVar(&cfg.Prefix, "prefix", "", "starts every Redis key")
	flag.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 25*time.Second, "how long running jobs may finish after SIGTERM (Kubernetes kills 30s after it)")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // a second Ctrl-C kills at once
	if err := run(ctx, cfg, logger, nil); err != nil {
		logger.Error("stopped", "error", err)
		os.Exit(1)
	}
}

// run serves cfg.Role until ctx ends, then shuts down gracefully. It reports the API's address
// on listening, if not nil, once it accepts connections.
func run(ctx context.Context, cfg config, logger *slog.Logger, listening chan<- string) error {
	serveAPI, runWorker := cfg.Role == "api" || cfg.Role == "all", cfg.Role == "worker" || cfg.Role == "all"
	switch {
	case !serveAPI && !runWorker:
		return fmt.Errorf("-role %q: want api, worker or all", cfg.Role)
	case cfg.RedisURL == "" && cfg.Role != "all":
		return fmt.Errorf("-role %s needs -redis: jobs in memory never leave their process", cfg.Role)
	}

	var store queue.Store
	if cfg.RedisURL == "" {
		// Jobs live and die with this process: fine on one machine, and for trying it out.
		mem, err := queue.NewMemoryStore(queue.MemoryConfig{})
		if err != nil {
			return err
		}
		store = mem
	} else {
		opt, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("-redis: %w", err)
		}
		// go-redis then stops each call at its context's deadline, so the store's short
		// timeouts hold without a goroutine per call.
		opt.ContextTimeoutEnabled = true
		rdb := redis.NewClient(opt)
		defer rdb.Close() // after the worker below has settled its last jobs
		shared, err := queue.NewRedisStore(rdb, queue.RedisConfig{Prefix: cfg.Prefix + "queue:", Timeout: cfg.RedisTimeout, Logger: logger})
		if err != nil {
			return err
		}
		store = shared
	}

	// Build everything first, so that nothing runs if a part cannot start.
	var w *queue.Worker
	if runWorker {
		var err error
		if w, err = newWorker(store, cfg, logger); err != nil {
			return err
		}
	}
	var api http.Handler
	var ln net.Listener
	if serveAPI {
		q, err := queue.New(store, queue.Config{})
		if err != nil {
			return err
		}
		api = newAPI(q, logger)
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return err
		}
	}

	// The worker stops after the API: a request accepted during the API's shutdown still has
	// its job claimed here (what matters in memory, where waiting jobs die with the process).
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var wg sync.WaitGroup
	var apiErr, workErr error
	if w != nil {
		wg.Go(func() {
			workErr = w.Run(workCtx)
			st := w.Stats()
			// Released jobs were cut short by the shutdown and wait for the next worker.
			logger.Info("worker stopped", "succeeded", st.Succeeded, "failed", st.Failed, "released", st.Released)
		})
		logger.Info("worker running", "queues", []string{emailsQueue, reportsQueue}, "redis", cfg.RedisURL != "")
	}
	if ln != nil {
		wg.Go(func() {
			defer stopWork()
			apiErr = serve(ctx, ln, api)
			logger.Info("api stopped")
		})
		logger.Info("api listening", "addr", ln.Addr().String(), "redis", cfg.RedisURL != "")
		if listening != nil {
			listening <- ln.Addr().String()
		}
	} else {
		context.AfterFunc(ctx, stopWork)
	}
	wg.Wait()
	if mem, ok := store.(*queue.MemoryStore); ok {
		warnLost(mem, logger)
	}
	return errors.Join(apiErr, workErr)
}

// warnLost logs the jobs that die with the process: those of a MemoryStore not run yet.
func warnLost(mem *queue.MemoryStore, logger *slog.Logger) {
	q, err := queue.New(mem, queue.Config{})
	if err != nil {
		return
	}
	for _, name := range []string{emailsQueue, reportsQueue} {
		st, err := q.QueueStats(context.Background(), name)
		if n := st.Due + st.Scheduled; err == nil && n > 0 {
			logger.Warn("jobs lost: they were in memory", "queue", name, "jobs", n)
		}
	}
}

// serve serves h on ln until ctx ends, then lets the requests in flight finish.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err // the listener failed on its own
	case <-ctx.Done():
	}
	// Behind a load balancer, fail readiness and wait a little first (see examples/api and
	// package health), so that no new request comes while the server closes.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-served
	return err
}

// newAPI returns the API's routes: POST /emails and POST /reports enqueue a job and answer 202
// at once; GET /queues counts the jobs of each queue by state.
func newAPI(q *queue.Queue, logger *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /emails", func(w http.ResponseWriter, r *http.Request) {
		var e Email
		if !decode(w, r, &e) {
			return
		}
		// Check here what can be checked cheaply, so that bad input fails now, with a 400,
		// rather than later in a worker, where nobody sees it.
		a, err := mail.ParseAddress(e.To)
		switch {
		case err != nil || a.Address != e.To:
			writeError(w, http.StatusBadRequest, `"to" must be an email address, such as ada@example.com.`)
		case e.Subject == "" || len(e.Subject) > 200:
			writeError(w, http.StatusBadRequest, `"subject" must have 1 to 200 bytes.`)
		case strings.ContainsAny(e.Subject, "\r\n"):
			// It becomes a mail header: a line break would let the caller add headers (Bcc).
			writeError(w, http.StatusBadRequest, `"subject" must be one line.`)
		default:
			enqueue(w, r, q, logger, emailsQueue, e)
		}
	})
	mux.HandleFunc("POST /reports", func(w http.ResponseWriter, r *http.Request) {
		var rep Report
		if !decode(w, r, &rep) {
			return
		}
		if !reportID.MatchString(rep.ID) {
			writeError(w, http.StatusBadRequest, `"id" must be 1 to 64 letters, digits, '-' or '_'.`)
			return
		}
		enqueue(w, r, q, logger, reportsQueue, rep)
	})
	mux.HandleFunc("GET /queues", func(w http.ResponseWriter, r *http.Request) {
		out := map[string]queueView{}
		for _, name := range []string{emailsQueue, reportsQueue} {
			st, err := q.QueueStats(r.Context(), name)
			if err != nil {
				logger.Warn("queue stats", "queue", name, "error", err)
				writeError(w, http.StatusServiceUnavailable, "Service temporarily unavailable.")
				return
			}
			out[name] = queueView{st.Due, st.Scheduled, st.Running, st.Dead, st.Lag.Seconds()}
		}
		writeJSON(w, http.StatusOK, out)
	})
	return mux
}

var reportID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// queueView is queue.QueueStats as JSON.
type queueView struct {
	Due        int     `json:"due"`
	Scheduled  int     `json:"scheduled"` // delayed, or waiting to be retried
	Running    int     `json:"running"`
	Dead       int     `json:"dead"`
	LagSeconds float64 `json:"lag_seconds"` // how long the oldest due job has waited
}

// idempotencyWindow is how long a request's Idempotency-Key holds: a retry within it is
// answered with the first request's job, even once that job is done.
const idempotencyWindow = 24 * time.Hour

// enqueue stores v as a job of queue name and answers 202 Accepted with its ID: the work
// happens in a worker, and the client does not wait for it.
func enqueue[T any](w http.ResponseWriter, r *http.Request, q *queue.Queue, logger *slog.Logger, name string, v T) {
	job := queue.Job{Queue: name}
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if len(key) > 128 {
			writeError(w, http.StatusBadRequest, "Idempotency-Key must have at most 128 bytes.")
			return
		}
		// A client that timed out retries with the same key, and must not send two emails.
		// As the job's UniqueKey, the key makes a retry a duplicate for idempotencyWindow,
		// while the job waits or runs and after it is done, and the retry is answered with
		// the first job's ID. In a service with users, prefix the key with the user's ID, so
		// that one client's key cannot swallow another's job.
		job.UniqueKey, job.UniqueFor = key, idempotencyWindow
	}
	res, err := queue.EnqueueJSON(r.Context(), q, job, v)
	if err != nil {
		// The store is down or slow (ErrUnavailable). The job may have been stored even so:
		// a retry with the same Idempotency-Key stores it at most once.
		logger.Warn("enqueue failed", "queue", name, "error", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "Service temporarily unavailable.")
		return
	}
	if res.Duplicate {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	// The queue has no lookup of one job's state: the location is the queues' counts. A service
	// whose clients need the outcome records it itself, under the job's ID, in the handler.
	w.Header().Set("Location", "/queues")
	writeJSON(w, http.StatusAccepted, map[string]string{"job": res.ID, "queue": name})
}

// decode reads the request's JSON body into v, or answers 400.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields() // a misspelt field is an error, not silently ignored
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "The body must be a JSON object of at most 64 KiB with the documented fields.")
		return false
	}
	return true
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// newWorker returns the worker of both queues, its outcomes logged.
func newWorker(store queue.Store, cfg config, logger *slog.Logger) (*queue.Worker, error) {
	send, render := cfg.Send, cfg.Render
	if send == nil {
		send = sendEmail
	}
	if render == nil {
		render = renderReport
	}
	return queue.NewWorker(store, queue.WorkerConfig{
		Queues: map[string]queue.QueueConfig{
			// Sending waits on the network: many at once. A provider that hangs fails the run
			// after 30s, and the job is retried later, with backoff.
			emailsQueue: {Handler: queue.JSONHandler(send), Concurrency: 20, Timeout: 30 * time.Second},
			// Rendering takes CPU: a few at once, so that a burst of reports leaves the machine
			// to the emails.
			reportsQueue: {Handler: queue.JSONHandler(render), Concurrency: 2, Timeout: 2 * time.Minute},
		},
		ShutdownTimeout: cfg.ShutdownTimeout,
		Logger:          logger,
		Hooks:           logOutcomes(logger),
	})
}

// logOutcomes logs how each run ended: one line per job run, which is what an operator of a
// worker wants to read (an API would not log each request this way).
func logOutcomes(logger *slog.Logger) queue.Hooks {
	return queue.Hooks{
		OnDone: func(ctx context.Context, d *queue.Delivery, took time.Duration, err error, retryAt time.Time) {
			attrs := []any{"queue", d.Queue, "job", d.ID, "attempt", d.Attempt, "took", took.Round(time.Millisecond)}
			switch {
			case err == nil:
				logger.InfoContext(ctx, "job done", attrs...)
			case retryAt.IsZero(): // no next run: NonRetryable, or out of attempts
				logger.ErrorContext(ctx, "job dead", append(attrs, "error", err)...)
			default:
				logger.WarnContext(ctx, "job failed; will retry", append(attrs, "error", err, "retry_in", time.Until(retryAt).Round(time.Millisecond))...)
			}
		},
		OnLeaseLost: func(ctx context.Context, d *queue.Delivery) {
			// This worker stalled past its lease: another may be running the job now.
			logger.WarnContext(ctx, "job lease lost", "queue", d.Queue, "job", d.ID)
		},
	}
}

// errNoMailbox is the pretend provider's answer for an address that does not exist.
var errNoMailbox = errors.New("mail provider: no such mailbox")

// sendEmail pretends to send e. Jobs run at least once (a worker may die after sending and
// before recording it), so a real one passes d.ID to the provider as its idempotency key.
func sendEmail(ctx context.Context, d *queue.Delivery, e Email) error {
	if strings.HasSuffix(e.To, ".invalid") {
		// Retrying cannot make the address exist: the job dies now, kept for Queue.Dead,
		// rather than failing 25 times over a day.
		return queue.NonRetryable(errNoMailbox)
	}
	return pretend(ctx, 300*time.Millisecond)
}

// renderReport pretends to render report r as a PDF and to store it under r.ID: running it
// twice overwrites one file, so it is idempotent as it stands.
func renderReport(ctx context.Context, d *queue.Delivery, r Report) error {
	return pretend(ctx, 2*time.Second)
}

// pretend works for d, or stops when ctx ends (the run's Timeout, or a shutdown past
// ShutdownTimeout): a handler must return then, and its job runs again later.
func pretend(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
