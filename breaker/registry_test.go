package breaker

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRegistryPerHost(t *testing.T) {
	r, err := NewRegistry(RegistryConfig{Config: Config{Failures: 2}})
	require.NoError(t, err)
	rt := r.Transport(roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.URL.Host == "bad.test" {
			return nil, errors.New("connection refused")
		}
		return respond(http.StatusOK)(req)
	}))
	for range 3 {
		req, _ := http.NewRequest("GET", "http://bad.test/", nil)
		_, _ = rt.RoundTrip(req)
	}
	req, _ := http.NewRequest("GET", "http://bad.test/", nil)
	_, err = rt.RoundTrip(req)
	assert.ErrorIs(t, err, ErrOpen)
	assert.ErrorContains(t, err, "breaker bad.test: open", "each breaker is named after its key")
	req, _ = http.NewRequest("GET", "http://good.test/", nil)
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err, "one host's breaker does not refuse another's requests")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Same(t, r.Get("bad.test"), r.Get("bad.test"))
	assert.Equal(t, 2, r.Len())
	_, err = NewRegistry(RegistryConfig{MaxKeys: -1})
	assert.Error(t, err)
	_, err = NewRegistry(RegistryConfig{Config: Config{Probes: -1}})
	assert.Error(t, err)
}

// TestRegistryBounded: a flood of keys never holds more than MaxKeys breakers, and open breakers
// outlive the flood.
func TestRegistryBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := NewRegistry(RegistryConfig{Config: Config{Failures: 1}, MaxKeys: 100, IdleTimeout: time.Minute})
		require.NoError(t, err)
		open := r.Get("failing")
		_ = call(open, errDown)
		require.Equal(t, StateOpen, open.State())
		for i := range 10_000 {
			r.Get("flood-" + strconv.Itoa(i))
			require.LessOrEqual(t, r.Len(), 100)
		}
		assert.Same(t, open, r.Get("failing"), "the open breaker was kept")

		time.Sleep(2 * time.Minute)
		for i := range 50 {
			r.Get("new-" + strconv.Itoa(i))
		}
		assert.LessOrEqual(t, r.Len(), 100)
		assert.Same(t, open, r.Get("failing"))
	})
}
