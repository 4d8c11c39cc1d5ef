package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/outgrow/outgrow/internal/redistest"
	"github.com/outgrow/outgrow/queue"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestAPIAndWorker drives the API's handler and runs the jobs with Worker.Work, in a synctest
// bubble so that the simulated work (2 s a PDF) and the timeouts take no time.
func TestAPIAndWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		store, err := queue.NewMemoryStore(queue.MemoryConfig{})
		if err != nil {
			t.Fatal(err)
		}
		q, err := queue.New(store, queue.Config{})
		if err != nil {
			t.Fatal(err)
		}
		logs := newLogs()
		api := newAPI(q, logs.logger())
		w, err := newWorker(store, config{}, logs.logger())
		if err != nil {
			t.Fatal(err)
		}

		// Bad input is refused at once, with a JSON error, and enqueues nothing.
		for _, c := range []struct{ path, body, key string }{
			{"/emails", `{`, ""},
			{"/emails", `{"to":"ada","subject":"Hi"}`, ""},
			{"/emails", `{"to":"Ada <ada@example.com>","subject":"Hi"}`, ""},
			{"/emails", `{"to":"ada@example.com"}`, ""},
			{"/emails", `{"to":"ada@example.com","subject":"Hi\r\nBcc: eve@example.com"}`, ""},
			{"/emails", `{"to":"ada@example.com","subject":"Hi","cc":"eve@example.com"}`, ""},
			{"/emails", `{"to":"ada@example.com","subject":"` + strings.Repeat("x", 70<<10) + `"}`, ""},
			{"/emails", `{"to":"ada@example.com","subject":"Hi"}`, strings.Repeat("k", 129)},
			{"/reports", `{}`, ""},
			{"/reports", `{"id":"../../etc/passwd"}`, ""},
		} {
			code, h, body := call(api, "POST", c.path, c.body, c.key)
			if code != http.StatusBadRequest || h.Get("Content-Type") != "application/json" || body["error"] == "" {
				t.Errorf("POST %s %.40q: %d %s %v, want 400 with a JSON error", c.path, c.body, code, h.Get("Content-Type"), body)
			}
		}
		wantQueues(t, api, queueView{}, queueView{})

		// Good input: 202 at once, with the job's ID; nothing has run.
		code, h, ok := call(api, "POST", "/emails", `{"to":"ada@example.com","subject":"Welcome"}`, "")
		if code != http.StatusAccepted || ok["job"] == "" || h.Get("Location") != "/queues" {
			t.Fatalf("POST /emails: %d %v %v, want 202 with a job", code, h, ok)
		}
		// The API cannot know that this address does not exist: the provider tells the worker.
		_, _, bad := call(api, "POST", "/emails", `{"to":"bob@example.invalid","subject":"Hi"}`, "")
		// A retried request with its Idempotency-Key is answered with the first one's job.
		var report string
		for i := range 2 {
			code, h, rep := call(api, "POST", "/reports", `{"id":"2026-Q4"}`, "order-42")
			if i == 0 {
				report = rep["job"]
			}
			if code != http.StatusAccepted || report == "" || rep["job"] != report || (h.Get("Idempotent-Replayed") == "true") != (i == 1) {
				t.Fatalf("POST /reports #%d: %d %v %v, want 202 for job %s, replayed the second time", i+1, code, h, rep, report)
			}
		}
		wantQueues(t, api, queueView{Due: 2}, queueView{Due: 1})

		// The worker runs the three jobs: two succeed, and the unknown address is dead at once
		// (NonRetryable), after one attempt.
		if n, err := w.Work(ctx); n != 3 || err != nil {
			t.Fatalf("Work: %d runs, %v; want 3", n, err)
		}
		got := map[string]string{}
		for range 3 {
			r := logs.next(t)
			got[attr(r, "job")] = r.Message
		}
		if want := map[string]string{ok["job"]: "job done", bad["job"]: "job dead", report: "job done"}; !maps.Equal(got, want) {
			t.Errorf("outcomes logged %v, want %v", got, want)
		}
		wantQueues(t, api, queueView{Dead: 1}, queueView{})
		dead, err := q.Dead(ctx, emailsQueue, 10)
		if err != nil || len(dead) != 1 || dead[0].ID != bad["job"] || dead[0].LastError != errNoMailbox.Error() || dead[0].Attempt != 1 {
			t.Errorf("dead emails %+v, %v; want %s, failed once with %q", dead, err, bad["job"], errNoMailbox)
		}

		// The key holds after its job is done: a late retry does not render the report again.
		code, h, rep := call(api, "POST", "/reports", `{"id":"2026-Q4"}`, "order-42")
		if code != http.StatusAccepted || rep["job"] != report || h.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("POST /reports once done: %d %v %v, want 202 replayed", code, h, rep)
		}
		if n, err := w.Work(ctx); n != 0 || err != nil {
			t.Fatalf("Work after a replayed request: %d runs, %v; want none", n, err)
		}
	})
}

// TestHandlerTimeout: a render that hangs is stopped at the reports' Timeout (2 minutes) and
// retried later.
func TestHandlerTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, err := queue.NewMemoryStore(queue.MemoryConfig{})
		if err != nil {
			t.Fatal(err)
		}
		q, err := queue.New(store, queue.Config{})
		if err != nil {
			t.Fatal(err)
		}
		logs := newLogs()
		var took time.Duration
		w, err := newWorker(store, config{Render: func(ctx context.Context, d *queue.Delivery, r Report) error {
			start := time.Now()
			<-ctx.Done()
			took = time.Since(start)
			return ctx.Err()
		}}, logs.logger())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := queue.EnqueueJSON(t.Context(), q, queue.Job{Queue: reportsQueue}, Report{ID: "big"}); err != nil {
			t.Fatal(err)
		}
		if n, err := w.Work(t.Context()); n != 1 || err != nil {
			t.Fatalf("Work: %d runs, %v", n, err)
		}
		if r := logs.next(t); r.Message != "job failed; will retry" || took != 2*time.Minute {
			t.Errorf("logged %q after %v, want a retry after 2m0s", r.Message, took)
		}
		if st, _ := q.QueueStats(t.Context(), reportsQueue); st.Scheduled != 1 {
			t.Errorf("reports %+v, want the job scheduled for a retry", st)
		}
	})
}

// TestRun runs the program: in memory as one process (-role all), and on Redis as an API
// process and a worker process that share nothing but Redis (miniredis, and a real Redis when
// OUTGROW_REDIS_URL is set). The API answers 202 while the email is still being sent; the
// worker then finishes it; on shutdown a job still running is cut short and given back.
func TestRun(t *testing.T) {
	kinds := []redistest.Kind{redistest.Memory, redistest.Miniredis}
	if os.Getenv(redistest.EnvURL) != "" {
		kinds = append(kinds, redistest.Redis)
	}
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			b := redistest.Open(t, kind)
			roles := []string{"all"}
			var url string
			switch kind {
			case redistest.Miniredis:
				url, roles = "redis://"+b.Mini.Addr(), []string{"api", "worker"}
			case redistest.Redis:
				url, roles = os.Getenv(redistest.EnvURL), []string{"api", "worker"}
			}

			// Each email is sent once the test says so; "hang" hangs until the worker stops it.
			started := make(chan string, 10)
			release := make(chan struct{})
			stopped := make(chan error, 1)
			send := func(ctx context.Context, d *queue.Delivery, e Email) error {
				started <- d.ID
				if e.Subject == "hang" {
					<-ctx.Done()
					stopped <- context.Cause(ctx)
					return ctx.Err()
				}
				<-release
				return nil
			}

			logs := newLogs()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			listening := make(chan string, 1)
			done := make(chan error, len(roles))
			for _, role := range roles {
				cfg := config{Role: role, Addr: "127.0.0.1:0", RedisURL: url, Prefix: b.Prefix, ShutdownTimeout: 50 * time.Millisecond, Send: send,
					RedisTimeout: 5 * time.Second} // miniredis runs Lua slowly under -race on a busy machine
				go func() { done <- run(ctx, cfg, logs.logger(), listening) }()
			}
			var addr string
			select {
			case addr = <-listening:
			case err := <-done:
				t.Fatalf("run: %v", err)
			}
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			api := func(method, path, body string) (int, http.Header, map[string]string) {
				t.Helper()
				req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				out := map[string]string{}
				_ = json.NewDecoder(resp.Body).Decode(&out)
				return resp.StatusCode, resp.Header, out
			}

			// 202 while the handler cannot have finished: it waits for release.
			code, _, job := api("POST", "/emails", `{"to":"ada@example.com","subject":"Welcome"}`)
			if code != http.StatusAccepted || job["job"] == "" {
				t.Fatalf("POST /emails: %d %v", code, job)
			}
			if id := <-started; id != job["job"] {
				t.Fatalf("the worker started job %s, want %s", id, job["job"])
			}
			queues := func() map[string]queueView {
				t.Helper()
				resp, err := client.Get("http://" + addr + "/queues")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var v map[string]queueView
				if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("GET /queues: %d, %v", resp.StatusCode, err)
				}
				return v
			}
			if v := queues(); v[emailsQueue].Running != 1 {
				t.Errorf("queues while the email is sent: %+v, want 1 running", v)
			}
			close(release)
			logs.waitFor(t, "job done", job["job"])
			if v := queues(); v[emailsQueue] != (queueView{}) {
				t.Errorf("queues once the email is sent: %+v, want none left", v)
			}

			// Shutdown: the hanging job gets ShutdownTimeout, then is stopped and given back.
			_, _, hang := api("POST", "/emails", `{"to":"ada@example.com","subject":"hang"}`)
			if id := <-started; id != hang["job"] {
				t.Fatalf("the worker started job %s, want %s", id, hang["job"])
			}
			cancel()
			for range roles {
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("run returned %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("run did not return after its context ended")
				}
			}
			if err := <-stopped; err == nil {
				t.Error("the hanging handler's context did not end")
			}
			if b.Client == nil {
				// In memory the job dies with the process, and the program says so.
				logs.waitFor(t, "jobs lost: they were in memory", "")
				return
			}
			// On Redis the next worker runs it.
			rs, err := queue.NewRedisStore(b.Client, queue.RedisConfig{Prefix: b.Prefix + "queue:"})
			if err != nil {
				t.Fatal(err)
			}
			q, err := queue.New(rs, queue.Config{})
			if err != nil {
				t.Fatal(err)
			}
			if st, err := q.QueueStats(context.Background(), emailsQueue); err != nil || st.Due != 1 || st.Running != 0 {
				t.Errorf("emails after the shutdown: %+v, %v; want the hanging job due again", st, err)
			}
		})
	}
}

func TestRunRefuses(t *testing.T) {
	for _, cfg := range []config{
		{Role: "both", Addr: "127.0.0.1:0"},
		{Role: "worker"}, // in memory, a worker alone would never see a job
		{Role: "api", Addr: "127.0.0.1:0"},
		{Role: "all", Addr: "127.0.0.1:0", RedisURL: "not a url"},
		{Role: "all", Addr: "not an address"},
	} {
		if err := run(context.Background(), cfg, slog.New(slog.DiscardHandler), nil); err == nil {
			t.Errorf("run(%+v) started", cfg)
		}
	}
}

// call sends a request to h and returns the response's status, headers and JSON object.
func call(h http.Handler, method, path, body, key string) (int, http.Header, map[string]string) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	out := map[string]string{}
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, rec.Header(), out
}

func wantQueues(t *testing.T, api http.Handler, emails, reports queueView) {
	t.Helper()
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, httptest.NewRequest("GET", "/queues", nil))
	var got map[string]queueView
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET /queues: %d %s", rec.Code, rec.Body)
	}
	if got[emailsQueue] != emails || got[reportsQueue] != reports {
		t.Errorf("GET /queues: %+v, want emails %+v, reports %+v", got, emails, reports)
	}
}

// logs collects the program's log records about jobs (their outcomes, jobs lost).
type logs chan slog.Record

func newLogs() logs { return make(logs, 100) }

func (l logs) logger() *slog.Logger { return slog.New(l) }

func (l logs) Enabled(context.Context, slog.Level) bool { return true }

func (l logs) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "job") {
		select {
		case l <- r.Clone():
		default:
			return errors.New("test log full")
		}
	}
	return nil
}

func (l logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logs) WithGroup(string) slog.Handler      { return l }

// next returns the next record.
func (l logs) next(t *testing.T) slog.Record {
	t.Helper()
	select {
	case r := <-l:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("nothing logged in 10s")
		return slog.Record{}
	}
}

// waitFor skips records until one says msg about job ("": any).
func (l logs) waitFor(t *testing.T, msg, job string) {
	t.Helper()
	for {
		if r := l.next(t); r.Message == msg && (job == "" || attr(r, "job") == job) {
			return
		}
	}
}

func attr(r slog.Record, key string) string {
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}
