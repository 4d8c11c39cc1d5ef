package redisclient

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/internal/failfast"
)

// defaultPingInterval is how long a subscription may stay silent before it is checked.
const defaultPingInterval = time.Second

// SubscribeConfig configures a [Subscription]. The callbacks run on the subscription's
// goroutine, one at a time; they must not block.
type SubscribeConfig struct {
	// Channel is the channel to listen to.
	Channel string
	// PingInterval is how long the subscription may stay silent before it is checked with a
	// PING; one that does not answer within PingInterval more is dropped and made again.
	// Default: 1s.
	PingInterval time.Duration
	// OnMessage receives each message's payload.
	OnMessage func(payload string)
	// OnSubscribed is called each time Redis confirms the subscription. first is false when an
	// earlier subscription was lost: messages may have been lost in between, and whatever
	// they would have said must be found out again (a cache flushes its local layer, a breaker
	// reads the shared state).
	OnSubscribed func(first bool)
	// OnLost is called when a confirmed subscription is lost: from now until the next
	// OnSubscribed, messages are not heard.
	OnLost func(err error)
}

// Subscription listens to one channel on its own goroutine, for as long as it is open: it
// detects a silent connection, subscribes again after every loss, and says when messages may
// have been lost. A confirmation ends the client's outage, so an idle store sees Redis come
// back without any call. (A PONG does not: a Redis that answers PING may still fail every
// script, and the outage would flap.) Create it with [Client.Subscribe]; stop it
// with Close.
type Subscription struct {
	c       *Client
	cfg     SubscribeConfig
	stop    context.CancelFunc
	ready   chan struct{}
	done    chan struct{}
	hearing atomic.Bool

	mu     sync.Mutex
	sub    *redis.PubSub // the current one; closed by Close to end a blocked read
	closed bool
}

// Subscribe starts listening to cfg.Channel.
func (c *Client) Subscribe(cfg SubscribeConfig) *Subscription {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = defaultPingInterval
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Subscription{c: c, cfg: cfg, stop: stop, ready: make(chan struct{}), done: make(chan struct{})}
	go s.loop(ctx)
	return s
}

// WaitReady waits at most d for the first confirmation and reports whether it came.
func (s *Subscription) WaitReady(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.ready:
		return true
	case <-t.C:
		return false
	}
}

// Hearing reports whether the subscription is confirmed now: messages published from now on
// are heard.
func (s *Subscription) Hearing() bool { return s.hearing.Load() }

// Close stops listening and waits for the goroutine to end. It is idempotent. It returns at
// once unless the goroutine is connecting to a Redis that does not answer: then it waits for
// the connection attempt, which go-redis bounds by the client's DialTimeout and ReadTimeout
// (its handshake does not stop when the context is cancelled).
func (s *Subscription) Close() {
	s.mu.Lock()
	var sub *redis.PubSub
	if !s.closed {
		s.closed = true
		s.stop()
		sub = s.sub
	}
	s.mu.Unlock()
	if sub != nil {
		_ = sub.Close() // outside mu: it may wait for a connection attempt in progress
	}
	<-s.done
}

// subscribe makes a new subscription, unless the Subscription is closed. Its network work is
// done outside mu, so that Close never waits on mu for a Redis that does not answer.
func (s *Subscription) subscribe(ctx context.Context) *redis.PubSub {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	sub := s.c.rdb.Subscribe(ctx) // no channel yet: no I/O
	s.sub = sub
	s.mu.Unlock()
	_ = sub.Subscribe(ctx, s.cfg.Channel) // an error shows in the next Receive
	return sub
}

func (s *Subscription) loop(ctx context.Context) {
	defer close(s.done)
	defer s.hearing.Store(false)
	// Every PubSub made here is closed by this loop before the next one is made, or by Close,
	// which closes the latest (s.sub) and keeps subscribe from making another.
	sub := s.subscribe(ctx)
	if sub == nil {
		return
	}
	logger := s.c.cfg.Logger
	confirmed, pinged := false, false
	for {
		msg, err := sub.ReceiveTimeout(ctx, s.cfg.PingInterval)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() && !pinged && s.hearing.Load() {
				pinged = true
				_ = sub.Ping(ctx)
				continue
			}
			if s.hearing.Swap(false) {
				logger.Warn(s.c.cfg.Component+": subscription lost; messages may be lost until it is made again",
					"channel", s.cfg.Channel, "err", err)
				if s.cfg.OnLost != nil {
					s.cfg.OnLost(err)
				}
			}
			if !s.c.window.Down() {
				s.c.record(failfast.Failed, err) // an idle store learns of an outage too
			}
			pinged = false
			// go-redis does not close a silent connection: drop it and subscribe anew.
			_ = sub.Close()
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.c.cfg.RetryInterval / 5):
			}
			if sub = s.subscribe(ctx); sub == nil {
				return
			}
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			first := !confirmed
			confirmed = true
			s.hearing.Store(true)
			s.c.up()
			if !first {
				logger.Info(s.c.cfg.Component+": subscription made again", "channel", s.cfg.Channel)
			}
			if s.cfg.OnSubscribed != nil {
				s.cfg.OnSubscribed(first)
			}
			if first {
				close(s.ready)
			}
		case *redis.Message:
			if s.cfg.OnMessage != nil {
				s.cfg.OnMessage(m.Payload)
			}
		}
	}
}
