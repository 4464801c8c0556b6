// Package testenv gives tests real PostgreSQL and Redis servers, isolated per
// test: a database cloned from a migrated template, and a key prefix.
//
// The servers come from FLASHSALE_TEST_DATABASE_URL (a role that may create
// databases, connected to any database) and FLASHSALE_TEST_REDIS_URL; `make
// test` starts throwaway ones and sets both. Without them tests are skipped,
// unless FLASHSALE_REQUIRE_SERVICES=1, which makes a missing server a failure.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/postgres"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

func require(tb testing.TB, key string) string {
	tb.Helper()
	v := os.Getenv(key)
	if v == "" {
		if os.Getenv("FLASHSALE_REQUIRE_SERVICES") == "1" {
			tb.Fatalf("%s is not set (run `make test`)", key)
		}
		tb.Skipf("%s is not set: skipping a test that needs a real server (run `make test`)", key)
	}
	return v
}

// RandomID returns a short random identifier for names.
func RandomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// withDatabase returns the URL u pointing at database name.
func withDatabase(u, name string) string {
	pu, err := url.Parse(u)
	if err != nil {
		panic(err)
	}
	pu.Path = "/" + name
	return pu.String()
}

// template migrates, once per test binary, a template database. Concurrent
// test binaries (go test runs packages in parallel) each create their own.
func template(adminURL string) (string, error) {
	templateOnce.Do(func() {
		templateName = "flashsale_tmpl_" + RandomID()
		admin, err := sql.Open("pgx", adminURL)
		if err != nil {
			templateErr = err
			return
		}
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+templateName); err != nil {
			templateErr = fmt.Errorf("create template: %w", err)
			return
		}
		db, err := postgres.Open(withDatabase(adminURL, templateName), postgres.Options{
			MaxOpenConns: 2, MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider(),
		})
		if err != nil {
			templateErr = err
			return
		}
		templateErr = db.Migrate(ctx)
		db.Close()
	})
	return templateName, templateErr
}

// MustDatabase returns the URL of a fresh, migrated database that is dropped
// when the test ends.
func MustDatabase(tb testing.TB) string {
	tb.Helper()
	adminURL := require(tb, "FLASHSALE_TEST_DATABASE_URL")
	tmpl, err := template(adminURL)
	if err != nil {
		tb.Fatalf("template database: %v", err)
	}
	return mustCreateDatabase(tb, adminURL, "TEMPLATE "+tmpl)
}

// MustLocaleDatabase returns the URL of a fresh, empty (not migrated)
// database created with the given locale, as a server initialised with it
// would create it; it is dropped when the test ends.
func MustLocaleDatabase(tb testing.TB, locale string) string {
	tb.Helper()
	adminURL := require(tb, "FLASHSALE_TEST_DATABASE_URL")
	return mustCreateDatabase(tb, adminURL, "TEMPLATE template0 LOCALE '"+locale+"'")
}

func mustCreateDatabase(tb testing.TB, adminURL, options string) string {
	tb.Helper()
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		tb.Fatal(err)
	}
	name := "flashsale_test_" + RandomID()
	ctx := context.Background()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" "+options); err != nil {
		admin.Close()
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("drop test database: %v", err)
		}
	})
	return withDatabase(adminURL, name)
}

// MustOpenSQL opens a plain connection pool to url, closed when the test ends.
func MustOpenSQL(tb testing.TB, url string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// MustRedis returns the Redis URL and a key prefix of the test's own. The
// prefix's keys are deleted when the test ends.
func MustRedis(tb testing.TB) (redisURL, prefix string) {
	tb.Helper()
	redisURL = require(tb, "FLASHSALE_TEST_REDIS_URL")
	prefix = "t" + RandomID()
	tb.Cleanup(func() {
		rdb := MustRedisClient(tb, redisURL)
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	return redisURL, prefix
}

// MustRedisClient returns a plain client for url, closed when the test ends.
func MustRedisClient(tb testing.TB, redisURL string) *redis.Client {
	tb.Helper()
	o, err := redis.ParseURL(redisURL)
	if err != nil {
		tb.Fatal(err)
	}
	rdb := redis.NewClient(o)
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}

// DeletePrefix deletes every key under prefix: the service's Redis data lost,
// as by FLUSHALL, without touching other tests' keys.
func DeletePrefix(ctx context.Context, rdb *redis.Client, prefix string) (int, error) {
	n := 0
	iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	for iter.Next(ctx) {
		if strings.HasPrefix(iter.Val(), prefix+":") {
			if err := rdb.Del(ctx, iter.Val()).Err(); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, iter.Err()
}
