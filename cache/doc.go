// Package cache will provide the article's layered cache: an in-process layer with a 300 s TTL,
// Redis as the layer shared by every instance, and Cache-Control for the CDN layer.
//
// It is not implemented yet; see the project's issue tracker.
package cache
