// Package replica will route writes to a primary and reads to replicas (secondaryPreferred), with
// a per-query override to read from the primary.
//
// It is not implemented yet; see the project's issue tracker.
package replica
