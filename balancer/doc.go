// Package balancer will spread requests across backends with the article's algorithms: round
// robin, least connections, IP hash and weighted round robin, with health checks that follow the
// states of package health.
//
// It is not implemented yet; see the project's issue tracker.
package balancer
