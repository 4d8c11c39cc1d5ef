package session_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/session"
)

// Log in, read the session on later requests, log out; and sign a user out everywhere. With
// NewRedisStore instead of NewMemoryStore, any instance can serve any of these requests.
func Example() {
	sm, _ := session.New(session.NewMemoryStore(), session.Config{})

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		// ... check the credentials ...
		_ = s.Login("ada") // a new ID: an ID seen before login is worth nothing after
		_ = s.Put("name", "Ada Lovelace")
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		if s.User() == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "%s (%s)", s.String("name"), s.User())
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		_ = session.FromContext(r.Context()).Destroy()
	})
	h := sm.Middleware(mux)

	browser := func(cookie *http.Cookie, method, path string) (*http.Cookie, string) {
		req := httptest.NewRequest(method, path, nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if cs := rec.Result().Cookies(); len(cs) > 0 {
			cookie = cs[0]
		}
		return cookie, fmt.Sprint(rec.Code, " ", rec.Body.String())
	}

	laptop, _ := browser(nil, "POST", "/login")
	phone, _ := browser(nil, "POST", "/login")
	_, me := browser(laptop, "GET", "/me")
	fmt.Println(me)

	sessions, _ := sm.List(context.Background(), "ada")
	fmt.Println(len(sessions), "sessions")

	laptop, _ = browser(laptop, "POST", "/logout")
	fmt.Println(laptop.MaxAge < 0) // the cookie is cleared

	n, _ := sm.DestroyAll(context.Background(), "ada") // "sign out everywhere"
	_, me = browser(phone, "GET", "/me")
	fmt.Println(n, "signed out;", me)
	// Output:
	// 200 Ada Lovelace (ada)
	// 2 sessions
	// true
	// 1 signed out; 401 not logged in
}

// In production every instance creates its store on a shared Redis.
func ExampleNewRedisStore() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	store, err := session.NewRedisStore(rdb, session.RedisConfig{Prefix: "myapp:session:"})
	if err != nil {
		panic(err)
	}
	sm, err := session.New(store, session.Config{HostPrefix: true})
	if err != nil {
		panic(err)
	}
	_ = http.ListenAndServe // http.ListenAndServe(":8080", sm.Middleware(mux))
	_ = sm
}
