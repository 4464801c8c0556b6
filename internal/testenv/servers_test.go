package testenv

import (
	"context"
	"database/sql"
	"errors"
	"testing"

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
