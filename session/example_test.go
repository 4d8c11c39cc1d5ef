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
	store, _ := session.NewMemoryStore(session.MemoryConfig{})
	sm, _ := session.New(store, session.Config{})

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

// Login ties the session to a user under a new ID, keeping what the visitor put in it before.
func ExampleSession_Login() {
	store, _ := session.NewMemoryStore(session.MemoryConfig{})
	sm, _ := session.New(store, session.Config{})
	h := sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		switch r.URL.Path {
		case "/cart":
			_ = s.Put("cart", 3)
		case "/login":
			// ... check the credentials ...
			_ = s.Login("ada")
		}
		fmt.Fprintf(w, "user %q, cart %d", s.User(), s.Int("cart"))
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/cart", nil))
	anonymous := rec.Result().Cookies()[0]

	req := httptest.NewRequest("POST", "/login", nil)
	req.AddCookie(anonymous)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	loggedIn := rec.Result().Cookies()[0]
	fmt.Println("new ID:", loggedIn.Value != anonymous.Value)

	// The cart followed the login; the ID from before the login opens nothing.
	for _, cookie := range []*http.Cookie{loggedIn, anonymous} {
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println(rec.Body.String())
	}
	// Output:
	// new ID: true
	// user "ada", cart 3
	// user "", cart 0
}

// List shows a user's sessions ("your devices"); Handle tells which one is the current
// request's, and Revoke ends another by its handle ("sign out other devices").
func ExampleManager_List() {
	store, _ := session.NewMemoryStore(session.MemoryConfig{})
	sm, _ := session.New(store, session.Config{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		_ = session.FromContext(r.Context()).Login("ada")
	})
	mux.HandleFunc("POST /sign-out-others", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		sessions, err := sm.List(r.Context(), s.User())
		if err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, len(sessions), "sessions")
		for _, in := range sessions {
			if in.Handle != s.Handle() {
				ended, _ := sm.Revoke(r.Context(), s.User(), in.Handle)
				fmt.Fprintln(w, "signed out another device:", ended)
			}
		}
	})
	h := sm.Middleware(mux)
	login := func() *http.Cookie {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
		return rec.Result().Cookies()[0]
	}
	laptop := login()
	_ = login() // the phone

	req := httptest.NewRequest("POST", "/sign-out-others", nil)
	req.AddCookie(laptop)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Print(rec.Body.String())

	sessions, _ := sm.List(context.Background(), "ada")
	fmt.Println(len(sessions), "session left")
	// Output:
	// 2 sessions
	// signed out another device: true
	// 1 session left
}

// DestroyAll signs a user out everywhere, for example after a password change: every session of
// the user ends, on every device.
func ExampleManager_DestroyAll() {
	store, _ := session.NewMemoryStore(session.MemoryConfig{})
	sm, _ := session.New(store, session.Config{})
	h := sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		if r.Method == http.MethodPost {
			_ = s.Login("ada")
		}
		fmt.Fprintf(w, "user %q", s.User())
	}))
	var devices []*http.Cookie
	for range 3 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
		devices = append(devices, rec.Result().Cookies()[0])
	}

	// ... the new password is stored first, then:
	n, err := sm.DestroyAll(context.Background(), "ada")
	fmt.Println(n, "sessions ended", err)

	for _, cookie := range devices {
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println(rec.Body.String())
	}
	// Output:
	// 3 sessions ended <nil>
	// user ""
	// user ""
	// user ""
}

// CookieName is the name the Manager really sends, "__Host-" included: the name to give a cache
// that must not store logged-in pages as public.
func ExampleManager_CookieName() {
	store, _ := session.NewMemoryStore(session.MemoryConfig{})
	sm, _ := session.New(store, session.Config{HostPrefix: true})
	fmt.Println(sm.CookieName())
	// Output:
	// __Host-session
}

// In production every instance creates its store on a shared Redis.
func ExampleNewRedisStore() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
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
