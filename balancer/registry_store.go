package balancer

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Store keeps the membership of a [Registry]: a [MemoryStore] in this process, or a
// [RedisStore] shared by every instance of a service. It is sealed: a Registry and its store
// work as one protocol, with the same semantics on every store:
//
//   - A heartbeat registers a backend, or renews it, until one TTL from the store's time (the
//     process clock in memory, Redis TIME on Redis), in one round trip; a backend whose
//     heartbeats stop expires, and the next call that meets it removes it.
//   - Joins (a backend new, back after it expired, or with another weight), deregistrations
//     and expiries are announced to the store's watchers as they happen; an announcement may
//     be lost (on Redis, while a subscription is down), so watchers also read the members.
//   - A deregistration removes a backend only if the Registration that asks holds it: an
//     instance replaced by another of the same ID does not remove the new one.
type Store interface {
	registry() registryBackend
}

// StoreStats is a snapshot of a registry store's counters, a plain value. The zero value is a
// store that has done nothing.
type StoreStats struct {
	// Calls counts the operations sent: round trips to Redis (a heartbeat, a deregistration
	// and a read of the members are one each), or operations on a MemoryStore.
	Calls uint64
	// Failures counts the calls that failed or timed out; FastFails, the calls refused at once
	// during an outage (RedisStore only).
	Failures, FastFails uint64
	// Down reports that the store is failing fast right now (RedisStore only).
	Down bool
}

// ErrUnavailable is wrapped by the errors of a registry whose store failed: Redis did not
// answer in time, answered with an error, or failed recently (the store then fails fast). A
// watched Balancer keeps its set meanwhile.
var ErrUnavailable = errors.New("balancer: registry store unavailable")

// registryBackend is the protocol of a registry store. Every method but subscribe is one round
// trip on Redis.
type registryBackend interface {
	// heartbeat registers m in service until ttl from now, announcing a join when m was absent
	// or expired or its weight changed, and removes (announcing them) members that expired.
	heartbeat(ctx context.Context, service string, m member, ttl time.Duration) (joined bool, err error)
	// deregister removes id from service, announcing it, if the Registration of token holds it.
	deregister(ctx context.Context, service, id, token string) (removed bool, err error)
	// members returns the live members of service, by ID, after removing (announcing them)
	// members that expired.
	members(ctx context.Context, service string) (view, error)
	// subscribe starts delivering the announcements of service to l, until stop is called.
	subscribe(service string, l listener) (stop func())
}

// member is a backend as a Registration registers it.
type member struct {
	Backend
	token string // the Registration's, random
}

// view is what a read of the members returns.
type view struct {
	members []Backend // by ID
	epoch   string    // changes when the store lost the registry; "" when it holds none
}

// eventKind says what an announcement says.
type eventKind byte

const (
	evJoin   eventKind = 'j' // a backend joined, or its weight changed
	evLeave  eventKind = 'l' // a backend deregistered
	evExpire eventKind = 'x' // a backend expired
)

// event is one announcement.
type event struct {
	kind   eventKind
	id     string
	weight int
}

// String is the announcement as Redis carries it (see registry_lib.lua).
func (e event) String() string {
	if e.kind == evJoin {
		return "j " + strconv.Itoa(e.weight) + " " + e.id
	}
	return string(e.kind) + " " + e.id
}

// parseEvent reads an announcement; ok is false for anything else.
func parseEvent(s string) (e event, ok bool) {
	if len(s) < 3 || s[1] != ' ' {
		return event{}, false
	}
	e.kind, s = eventKind(s[0]), s[2:]
	switch e.kind {
	case evJoin:
		w, id, found := strings.Cut(s, " ")
		n, err := strconv.Atoi(w)
		if !found || err != nil || id == "" {
			return event{}, false
		}
		e.id, e.weight = id, clampWeight(n)
	case evLeave, evExpire:
		e.id = s
	default:
		return event{}, false
	}
	return e, true
}

// clampWeight keeps a weight read from a store within what Balancer.Update accepts.
func clampWeight(w int) int { return min(max(w, 0), maxWeight) }

// listener receives a store's announcements. Its methods must not block.
type listener interface {
	// event delivers one announcement.
	event(e event)
	// subscribed says that the store confirmed the subscription; announcements may have been
	// lost before (always true after the first, which may come late).
	subscribed(first bool)
}

// MemoryConfig configures a [MemoryStore]. The zero value is the only configuration.
type MemoryConfig struct{}

// MemoryStore is a registry [Store] in process memory, with the semantics of a [RedisStore]:
// expiry on the process clock, announcements delivered to the watchers at once (never lost).
// Use it for a service on one machine (several components that register and watch in one
// process) and as the fake of application tests.
//
// The zero value is not usable; create a MemoryStore with [NewMemoryStore]. It is safe for
// concurrent use and has no goroutine.
type MemoryStore struct {
	epoch string
	calls atomic.Uint64

	mu       sync.Mutex
	services map[string]*memService
}

// memService is one service's registry in a MemoryStore.
type memService struct {
	members   map[string]memMember
	listeners map[*listener]struct{}
}

type memMember struct {
	weight  int
	token   string
	expires time.Time
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore. Its error is always nil: MemoryConfig has
// nothing to check yet.
func NewMemoryStore(MemoryConfig) (*MemoryStore, error) {
	return &MemoryStore{epoch: rand.Text(), services: map[string]*memService{}}, nil
}

func (s *MemoryStore) registry() registryBackend { return s }

// Stats returns a snapshot of the store's counters: Calls only.
func (s *MemoryStore) Stats() StoreStats { return StoreStats{Calls: s.calls.Load()} }

// service returns the registry of name, created if need be. s.mu is held.
func (s *MemoryStore) service(name string) *memService {
	svc := s.services[name]
	if svc == nil {
		svc = &memService{members: map[string]memMember{}, listeners: map[*listener]struct{}{}}
		s.services[name] = svc
	}
	return svc
}

// announce delivers e to the service's listeners, under s.mu: they never block, and every
// listener gets the announcements in the order of the changes.
func (svc *memService) announce(e event) {
	for l := range svc.listeners {
		(*l).event(e)
	}
}

// trim removes the members expired at now, but keep.
func (svc *memService) trim(now time.Time, keep string) {
	for id, m := range svc.members {
		if id != keep && !m.expires.After(now) {
			delete(svc.members, id)
			svc.announce(event{kind: evExpire, id: id})
		}
	}
}

func (s *MemoryStore) heartbeat(ctx context.Context, service string, m member, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, now := s.service(service), time.Now()
	svc.trim(now, m.ID)
	old, found := svc.members[m.ID]
	joined := !found || !old.expires.After(now)
	svc.members[m.ID] = memMember{weight: m.Weight, token: m.token, expires: now.Add(ttl)}
	if joined || old.weight != m.Weight {
		svc.announce(event{kind: evJoin, id: m.ID, weight: m.Weight})
	}
	return joined, nil
}

func (s *MemoryStore) deregister(ctx context.Context, service, id, token string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	svc := s.service(service)
	m, found := svc.members[id]
	if !found || m.token != token {
		return false, nil
	}
	delete(svc.members, id)
	svc.announce(event{kind: evLeave, id: id})
	return true, nil
}

func (s *MemoryStore) members(ctx context.Context, service string) (view, error) {
	if err := ctx.Err(); err != nil {
		return view{}, err
	}
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	svc := s.service(service)
	svc.trim(time.Now(), "")
	v := view{members: make([]Backend, 0, len(svc.members)), epoch: s.epoch} // it never loses them
	for id, m := range svc.members {
		v.members = append(v.members, Backend{ID: id, Weight: m.weight})
	}
	slices.SortFunc(v.members, func(a, b Backend) int { return strings.Compare(a.ID, b.ID) })
	return v, nil
}

func (s *MemoryStore) subscribe(service string, l listener) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := &l
	s.service(service).listeners[key] = struct{}{}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.service(service).listeners, key)
	}
}
