// Package faults holds the fault suite: end-to-end tests that run the real
// service binary (one or three instances) against real PostgreSQL and Redis
// under a flash crowd, inject a fault for real — an instance killed with
// SIGKILL, Redis flushed and restarted, Redis restored from an older
// snapshot, PostgreSQL crashed and restarted, dependencies slowed down or
// stalled by a TCP proxy, SIGTERM under load, overload, the Redis master
// killed under Redis Cluster and under Sentinel — and then check the sale's
// guarantees in PostgreSQL and in the answers the crowd received. The
// crowd's buyers race their own purchases (a checkout while the purchase is
// in flight, a purchase fired twice); every user's recorded history of
// requests and answers is checked for linearizability against a model of
// carts and purchases (history_test.go).
//
// `go test ./internal/faults` runs it with small sales (1,000 items, a few
// hundred buyers); FLASHSALE_FAULTS=full (`make test-faults`) runs it with
// 10,000 items and 3,000 buyers. Scenarios that crash or flush a server start
// private PostgreSQL and Redis servers (internal/testenv); the others use the
// shared test servers of FLASHSALE_TEST_DATABASE_URL and
// FLASHSALE_TEST_REDIS_URL.
package faults
