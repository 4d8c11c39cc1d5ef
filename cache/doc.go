// Package cache is the article's layered cache: typed data in process memory (node-cache's
// 300 s TTL), Redis as the layer shared by every instance, and Cache-Control headers for
// browsers and CDNs.
package cache
