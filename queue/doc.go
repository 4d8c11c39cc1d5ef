// Package queue will run heavy work (emails, PDFs, analytics) in background workers so that the
// API responds at once, with in-memory and Redis-backed queues.
//
// It is not implemented yet; see the project's issue tracker.
package queue
