// Package ratelimit will implement the article's layered rate limits: 1000 requests per minute per
// IP globally, 5 login attempts per minute per IP, and 100 calls per minute per API key, in memory
// or shared through Redis.
//
// It is not implemented yet; see the project's issue tracker.
package ratelimit
