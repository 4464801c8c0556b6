package testenv

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestPrivateRedis checks that a private Redis serves, loses its data when
// killed, and serves again on the same port after Start.
func TestPrivateRedis(t *testing.T) {
	rs := StartRedis(t)
	rdb := MustRedisClient(t, rs.URL())
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	rs.Kill()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("a killed Redis answered PING")
	}
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET k after a restart without persistence: %v, want redis.Nil", err)
	}
}

// TestRedisSnapshot checks that a private Redis started from a snapshot
// holds the data of the moment of the snapshot, not what was written after.
func TestRedisSnapshot(t *testing.T) {
	rs := StartRedis(t)
	rdb := MustRedisClient(t, rs.URL())
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	snap, err := rs.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, "k", "after", 0).Err(); err != nil {
		t.Fatal(err)
	}
	rs.Kill()
	if err := rs.StartFrom(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "before" {
		t.Fatalf("GET k after a start from the snapshot: %q, %v; want \"before\"", v, err)
	}
	rs.Kill()
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET k after a plain restart: %v, want redis.Nil", err)
	}
}

// TestPrivatePostgres checks that a private cluster serves the flashsale
// database, refuses connections while stopped, and keeps committed rows
// across a crash (immediate stop) and restart.
func TestPrivatePostgres(t *testing.T) {
	pg := StartPostgres(t)
	db, err := sql.Open("pgx", pg.URL("flashsale"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (n int); INSERT INTO t VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop("immediate"); err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(ctx); err == nil {
		t.Fatal("a stopped PostgreSQL answered")
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT n FROM t`).Scan(&n); err != nil || n != 42 {
		t.Fatalf("after crash and restart: n = %d, %v; want 42", n, err)
	}
}

// TestPrivateRedisCluster checks the cluster launcher: a cluster client
// serves a key, and when the key's master is killed its replica takes over
// with the data.
func TestPrivateRedisCluster(t *testing.T) {
	rc := StartRedisCluster(t, 3, 1)
	o, err := redis.ParseClusterURL(rc.URL())
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Addrs) != 6 {
		t.Fatalf("URL %s names %d nodes, want 6", rc.URL(), len(o.Addrs))
	}
	rdb := redis.NewClusterClient(o)
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "{k}", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	m, err := rc.MasterOf(ctx, "{k}")
	if err != nil {
		t.Fatal(err)
	}
	if err := redis.NewClient(&redis.Options{Addr: m.Addr()}).Wait(ctx, 1, time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	m.Kill()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := rc.WaitFailover(wctx, "{k}", m)
	if err != nil {
		for _, n := range rc.Nodes {
			out := n.Log()
			t.Logf("node %s:\n%s", n.Addr(), out[max(0, len(out)-1500):])
		}
		t.Fatal(err)
	}
	got, err := redis.NewClient(&redis.Options{Addr: n.Addr()}).Get(ctx, "{k}").Result()
	if err != nil || got != "v" {
		t.Fatalf("GET {k} on the new master %s: %q, %v", n.Addr(), got, err)
	}
}

// TestPrivateRedisSentinel checks the Sentinel launcher: a failover client
// serves a key, and when the master is killed the sentinels promote the
// replica, which has the data.
func TestPrivateRedisSentinel(t *testing.T) {
	rs := StartRedisSentinel(t)
	o, err := redis.ParseFailoverURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	if len(o.SentinelAddrs) != 3 || o.MasterName != rs.MasterName {
		t.Fatalf("URL %s: %v, %q", rs.URL(), o.SentinelAddrs, o.MasterName)
	}
	rdb := redis.NewFailoverClient(o)
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Wait(ctx, 1, time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if a, err := rs.MasterAddr(ctx); err != nil || a != rs.Master.Addr() {
		t.Fatalf("master %q, %v; want %s", a, err, rs.Master.Addr())
	}
	rs.Master.Kill()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := rs.WaitFailover(wctx); err != nil {
		t.Fatal(err)
	}
	got, err := redis.NewClient(&redis.Options{Addr: rs.Replica.Addr()}).Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("GET k on the promoted replica: %q, %v", got, err)
	}
}
