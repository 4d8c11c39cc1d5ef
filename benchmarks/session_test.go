package benchmarks

import (
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"
	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/benchmarks/internal/harness"
	"github.com/outgrow/outgrow/session"
)

// Sessions side by side: one HTTP request through each library's middleware with a session of
// three values, idle timeout 30 minutes and lifetime 24 hours in both. "read" reads one value;
// "write" changes one. Redis runs report roundtrips/op (commands or pipelines the client sent,
// counted by a go-redis hook) besides rediscmds/op. lib=outgrow runs on a client with default
// options, lib=outgrow-ctxtimeout on one with ContextTimeoutEnabled (the recommended setting).

// sessionLib is one library's handler and a cookie naming a session it created.
type sessionLib struct {
	read, write http.Handler
	cookie      *http.Cookie
}

func outgrowSessions(b *testing.B, st session.Store) sessionLib {
	sm, err := session.New(st, session.Config{})
	if err != nil {
		b.Fatal(err)
	}
	read := sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if session.FromContext(r.Context()).String("user") != "ada" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	write := sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		if err := s.Put("cart", s.Int("cart")+1); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	seed := sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		_ = s.Put("user", "ada")
		_ = s.Put("cart", 0)
		_ = s.Put("theme", "dark")
	}))
	return sessionLib{read: read, write: write, cookie: seedCookie(b, seed)}
}

func scsSessions(b *testing.B, st scs.Store) sessionLib {
	sm := scs.New()
	sm.Store = st
	sm.IdleTimeout = 30 * time.Minute
	sm.Lifetime = 24 * time.Hour
	read := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sm.GetString(r.Context(), "user") != "ada" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	write := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "cart", sm.GetInt(r.Context(), "cart")+1)
	}))
	seed := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "user", "ada")
		sm.Put(r.Context(), "cart", 0)
		sm.Put(r.Context(), "theme", "dark")
	}))
	return sessionLib{read: read, write: write, cookie: seedCookie(b, seed)}
}

func seedCookie(b *testing.B, h http.Handler) *http.Cookie {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	cs := rec.Result().Cookies()
	if len(cs) != 1 {
		b.Fatalf("no session cookie: %v", rec.Header())
	}
	return cs[0]
}

func serveSession(b *testing.B, h http.Handler, cookie *http.Cookie) {
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(cookie)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("status %d", rec.Code)
	}
}

func benchSessions(b *testing.B, lib sessionLib, write bool, rdb redis.UniversalClient, rt *harness.RoundTrips) {
	h := lib.read
	if write {
		h = lib.write
	}
	serveSession(b, h, lib.cookie)
	var c *cmdCounter
	var trips int64
	if rdb != nil {
		c = countCommands(b, rdb)
		trips = rt.Load()
	}
	cpu := processCPU()
	b.ReportAllocs()
	for b.Loop() {
		serveSession(b, h, lib.cookie)
	}
	// On a shared machine the wall clock also measures the neighbours' work; the CPU this
	// process spent (GC and go-redis included, Redis itself excluded) is less exposed to it.
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	if rdb != nil {
		b.StopTimer()
		b.ReportMetric(float64(rt.Load()-trips)/float64(b.N), "roundtrips/op")
		c.report(b)
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkSessionRedis(b *testing.B) {
	for _, op := range []string{"read", "write"} {
		b.Run("op="+op+"/lib=outgrow", func(b *testing.B) {
			rdb, prefix := harness.Redis(b)
			rt := harness.CountRoundTrips(rdb)
			st, err := session.NewRedisStore(rdb, session.RedisConfig{Prefix: prefix})
			if err != nil {
				b.Fatal(err)
			}
			benchSessions(b, outgrowSessions(b, st), op == "write", rdb, rt)
		})
		b.Run("op="+op+"/lib=outgrow-ctxtimeout", func(b *testing.B) {
			// The client setting the README recommends.
			def, prefix := harness.Redis(b)
			opt := *def.(*redis.Client).Options()
			opt.ContextTimeoutEnabled = true
			rdb := redis.NewClient(&opt)
			b.Cleanup(func() { _ = rdb.Close() })
			rt := harness.CountRoundTrips(rdb)
			st, err := session.NewRedisStore(rdb, session.RedisConfig{Prefix: prefix})
			if err != nil {
				b.Fatal(err)
			}
			benchSessions(b, outgrowSessions(b, st), op == "write", rdb, rt)
		})
		b.Run("op="+op+"/lib=scs", func(b *testing.B) {
			rdb, prefix := harness.Redis(b)
			rt := harness.CountRoundTrips(rdb)
			benchSessions(b, scsSessions(b, goredisstore.NewWithPrefix(rdb.(*redis.Client), prefix)), op == "write", rdb, rt)
		})
	}
}

func BenchmarkSessionMemory(b *testing.B) {
	for _, op := range []string{"read", "write"} {
		b.Run("op="+op+"/lib=outgrow", func(b *testing.B) {
			st, err := session.NewMemoryStore(session.MemoryConfig{})
			if err != nil {
				b.Fatal(err)
			}
			benchSessions(b, outgrowSessions(b, st), op == "write", nil, nil)
		})
		b.Run("op="+op+"/lib=scs", func(b *testing.B) {
			st := memstore.NewWithCleanupInterval(0)
			benchSessions(b, scsSessions(b, st), op == "write", nil, nil)
		})
	}
}
