// Package session will keep server-side sessions in Redis (or memory), never in process memory,
// so that every instance of a service is interchangeable.
//
// It is not implemented yet; see the project's issue tracker.
package session
