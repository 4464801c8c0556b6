package testenv

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Private servers: a PostgreSQL cluster or a Redis server of the test's own,
// which the test may stop, crash, flush and restart without disturbing the
// shared servers other tests use. They listen on 127.0.0.1 only and are
// removed when the test ends.

// PostgresBin is where the PostgreSQL 15 server binaries are looked for;
// FLASHSALE_PG_BIN overrides it.
const PostgresBin = "/usr/lib/postgresql/15/bin"

// RedisServerBin is the redis-server looked for when it is not on PATH.
const RedisServerBin = "/usr/bin/redis-server"

// skipOrFail skips the test because a server binary is missing, or fails it
// when FLASHSALE_REQUIRE_SERVICES=1.
func skipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("FLASHSALE_REQUIRE_SERVICES") == "1" {
		tb.Fatal(msg)
	}
	tb.Skip(msg + ": skipping a test that needs a private server (apt-get install postgresql-15 redis-server)")
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// WaitTCP waits until addr accepts TCP connections or the timeout elapses.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not accept connections after %s: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RedisServer is a private redis-server without persistence: a restart
// starts it empty, as a crashed cache node comes back. Snapshot and
// StartFrom take it back in time instead, as a failover to a replica that
// lagged.
type RedisServer struct {
	Port int
	bin  string
	dir  string
	args []string // after the binary: a config file and options
	log  *Buffer

	mu  sync.Mutex
	cmd *exec.Cmd
	// exited is closed when cmd has been waited for.
	exited chan struct{}
}

// StartRedis starts a private redis-server on a free loopback port; it is
// killed when the test ends.
func StartRedis(tb testing.TB) *RedisServer {
	tb.Helper()
	return startRedis(tb, FreePort(tb))
}

// redisServerBin is the redis-server binary: $FLASHSALE_REDIS_SERVER, else
// the one on PATH, else RedisServerBin. It skips or fails the test when
// there is none.
func redisServerBin(tb testing.TB) string {
	tb.Helper()
	if v := os.Getenv("FLASHSALE_REDIS_SERVER"); v != "" {
		bin, err := exec.LookPath(v)
		if err != nil {
			tb.Fatalf("FLASHSALE_REDIS_SERVER=%s: %v", v, err)
		}
		return bin
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		bin = RedisServerBin
		if _, err := os.Stat(bin); err != nil {
			skipOrFail(tb, "redis-server not found")
		}
	}
	return bin
}

// startRedis starts a private redis-server on port with options added to
// the defaults (a later option overrides an earlier one).
func startRedis(tb testing.TB, port int, options ...string) *RedisServer {
	tb.Helper()
	s := &RedisServer{Port: port, bin: redisServerBin(tb), dir: tb.TempDir(), log: &Buffer{}}
	s.args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--protected-mode", "yes"}, options...)
	return s.mustStart(tb)
}

// mustStart starts s and kills it when the test ends.
func (s *RedisServer) mustStart(tb testing.TB) *RedisServer {
	tb.Helper()
	if err := s.Start(); err != nil {
		tb.Fatalf("redis-server: %v\n%s", err, s.log)
	}
	tb.Cleanup(func() { s.Kill() })
	return s
}

// URL is the server's redis:// URL.
func (s *RedisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port) }

// Addr is host:port.
func (s *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Start starts the server (again) on its port and waits until it accepts
// connections.
func (s *RedisServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("redis-server already running")
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	if err := WaitTCP(s.Addr(), 15*time.Second); err != nil {
		return err
	}
	return nil
}

// Kill kills the server at once (SIGKILL): its data, held in memory only,
// is gone. It does nothing when the server is not running.
func (s *RedisServer) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Log is the server's output.
func (s *RedisServer) Log() string { return s.log.String() }

// Snapshot writes the dataset to an RDB file in the background (BGSAVE), as
// Redis persistence or a replica's copy would, waits until the file is
// complete, and returns its path. The server keeps serving meanwhile; a
// plain Start still starts it empty.
func (s *RedisServer) Snapshot(ctx context.Context) (string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	saves := func() (n int, busy bool, err error) {
		info, err := rdb.Info(ctx, "persistence").Result()
		if err != nil {
			return 0, false, err
		}
		for line := range strings.Lines(info) {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			switch k {
			case "rdb_saves":
				n, _ = strconv.Atoi(v)
			case "rdb_bgsave_in_progress":
				busy = v == "1"
			}
		}
		return n, busy, nil
	}
	before, _, err := saves()
	if err != nil {
		return "", fmt.Errorf("redis snapshot: %w", err)
	}
	if err := rdb.BgSave(ctx).Err(); err != nil {
		return "", fmt.Errorf("redis snapshot: BGSAVE: %w", err)
	}
	for {
		n, busy, err := saves()
		if err != nil {
			return "", fmt.Errorf("redis snapshot: %w", err)
		}
		if n > before && !busy {
			break
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("redis snapshot: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if st, err := rdb.Info(ctx, "persistence").Result(); err != nil || !strings.Contains(st, "rdb_last_bgsave_status:ok") {
		return "", fmt.Errorf("redis snapshot: BGSAVE failed (%v)\n%s", err, s.Log())
	}
	// Out of the way of the next start, which loads dump.rdb when it exists.
	path := filepath.Join(s.dir, fmt.Sprintf("snapshot-%d.rdb", time.Now().UnixNano()))
	if err := os.Rename(filepath.Join(s.dir, "dump.rdb"), path); err != nil {
		return "", fmt.Errorf("redis snapshot: %w", err)
	}
	return path, nil
}

// StartFrom starts the stopped server with the dataset of snapshot (a path
// Snapshot returned) and waits until it has loaded it.
func (s *RedisServer) StartFrom(ctx context.Context, snapshot string) error {
	raw, err := os.ReadFile(snapshot)
	if err != nil {
		return fmt.Errorf("redis start from snapshot: %w", err)
	}
	dump := filepath.Join(s.dir, "dump.rdb")
	if err := os.WriteFile(dump, raw, 0o600); err != nil {
		return fmt.Errorf("redis start from snapshot: %w", err)
	}
	// Loaded at start: a later restart starts empty again.
	defer os.Remove(dump)
	if err := s.Start(); err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	// A loading server accepts connections and answers LOADING.
	for {
		err := rdb.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		if !strings.HasPrefix(err.Error(), "LOADING") {
			return fmt.Errorf("redis start from snapshot: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis start from snapshot: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Running reports whether the server process runs (it was not killed).
func (s *RedisServer) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// PostgresServer is a private PostgreSQL 15 cluster with trust
// authentication on loopback. Superuser "postgres"; the database
// "flashsale" exists.
type PostgresServer struct {
	Port    int
	bin     string
	dataDir string
	logFile string
	asPG    bool // run the server binaries as the postgres OS user (we are root)
}

// StartPostgres creates (initdb) and starts a private cluster on a free
// loopback port; it is stopped and removed when the test ends. initdb takes
// a few seconds.
func StartPostgres(tb testing.TB) *PostgresServer {
	tb.Helper()
	bin := os.Getenv("FLASHSALE_PG_BIN")
	if bin == "" {
		bin = PostgresBin
	}
	for _, b := range []string{"initdb", "pg_ctl"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			skipOrFail(tb, "%s not found in %s", b, bin)
		}
	}
	s := &PostgresServer{Port: FreePort(tb), bin: bin, asPG: os.Geteuid() == 0}
	// Not t.TempDir: the postgres OS user must be able to reach the
	// directory, and a Unix socket's path must stay short.
	base, err := os.MkdirTemp("", "flashsale-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(base) })
	s.dataDir = filepath.Join(base, "data")
	s.logFile = filepath.Join(base, "postgresql.log")
	if err := os.Chmod(base, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.Mkdir(s.dataDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	if s.asPG {
		u, err := user.Lookup("postgres")
		if err != nil {
			skipOrFail(tb, "running as root and there is no postgres OS user to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, p := range []string{base, s.dataDir} {
			if err := os.Chown(p, uid, gid); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if out, err := s.run("initdb", "-D", s.dataDir, "-U", "postgres", "-E", "UTF8", "--locale=C", "-A", "trust", "--no-sync"); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	conf := `
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 64MB
fsync = on
synchronous_commit = on
max_worker_processes = 4
max_parallel_workers_per_gather = 0
timezone = 'UTC'
`
	f, err := os.OpenFile(filepath.Join(s.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Stop("immediate") })
	db, err := sql.Open("pgx", s.URL("postgres"))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), "CREATE DATABASE flashsale"); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	return s
}

func (s *PostgresServer) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if s.asPG {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = "/" // the postgres OS user may not reach the working directory
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// URL is the pgx URL of database name as the superuser.
func (s *PostgresServer) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, name)
}

// Addr is host:port.
func (s *PostgresServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Start starts the cluster and waits until it accepts connections.
func (s *PostgresServer) Start() error {
	out, err := s.run("pg_ctl", "start", "-D", s.dataDir, "-l", s.logFile, "-w", "-t", "60",
		"-o", fmt.Sprintf("-p %d -k %s", s.Port, s.dataDir))
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, s.Log())
	}
	return nil
}

// Stop stops the cluster with pg_ctl's mode: "immediate" is a crash (every
// connection dropped, WAL recovery at the next start), "fast" a clean
// shutdown that still disconnects every client.
func (s *PostgresServer) Stop(mode string) error {
	out, err := s.run("pg_ctl", "stop", "-D", s.dataDir, "-m", mode, "-w", "-t", "60")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// Log is the tail of the server's log.
func (s *PostgresServer) Log() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b[max(0, len(b)-4000):])
}
