package cache

// Store is where a [Cache] keeps its data: a [*MemoryStore] (in process only) or a
// [*RedisStore] (shared through Redis, with an in-process layer in front). A store serves one
// Cache at a time: the in-process layer holds that Cache's decoded values.
//
// The interface is closed: its methods are unexported, so only this package's stores satisfy
// it. Tests of code that uses a Cache run it on a MemoryStore, which has the same semantics
// within one process.
type Store interface {
	layers() (*MemoryStore, *RedisStore)
	attach() bool
	detach()
}
