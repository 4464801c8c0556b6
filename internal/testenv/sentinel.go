package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelDownAfter is the down-after-milliseconds of StartRedisSentinel: a
// master unreachable this long is failed over to its replica.
const SentinelDownAfter = 2 * time.Second

// RedisSentinel is a private Sentinel set-up on loopback: a master, its
// replica, and three sentinels (quorum 2) that watch the master under the
// name MasterName. Each is a redis-server process the test may kill.
type RedisSentinel struct {
	MasterName      string
	Master, Replica *RedisServer
	Sentinels       []*RedisServer
}

// StartRedisSentinel starts a master, a replica of it and three sentinels,
// and returns once the replica is in sync and every sentinel knows the
// replica and the other two sentinels, so that a failover can start. They
// are killed when the test ends.
func StartRedisSentinel(tb testing.TB) *RedisSentinel {
	tb.Helper()
	s := &RedisSentinel{MasterName: "flashsale"}
	s.Master = StartRedis(tb)
	s.Replica = startRedis(tb, FreePort(tb), "--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := waitInfo(ctx, s.Replica.Addr(), "replication", "master_link_status:up"); err != nil {
		tb.Fatalf("replica: %v\n%s", err, s.Replica.Log())
	}
	for range 3 {
		port := FreePort(tb)
		dir := tb.TempDir()
		// Sentinel rewrites its configuration file: it lives in the
		// sentinel's own directory.
		conf := filepath.Join(dir, "sentinel.conf")
		text := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel resolve-hostnames no
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, port, dir, s.MasterName, s.Master.Port, s.MasterName, SentinelDownAfter.Milliseconds(), s.MasterName, s.MasterName)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			tb.Fatal(err)
		}
		// redis-server in sentinel mode: Debian's redis-sentinel package
		// only adds a symlink and a system service.
		sn := &RedisServer{Port: port, bin: redisServerBin(tb), dir: dir, log: &Buffer{}, args: []string{conf, "--sentinel"}}
		s.Sentinels = append(s.Sentinels, sn.mustStart(tb))
	}
	for _, sn := range s.Sentinels {
		if err := s.waitKnown(ctx, sn.Addr()); err != nil {
			tb.Fatalf("sentinel %s: %v\n%s", sn.Addr(), err, sn.Log())
		}
	}
	return s
}

// waitKnown waits until the sentinel at addr knows the replica and the two
// other sentinels.
func (s *RedisSentinel) waitKnown(ctx context.Context, addr string) error {
	sc := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer sc.Close()
	var last string
	for {
		replicas, err1 := sc.Replicas(ctx, s.MasterName).Result()
		sentinels, err2 := sc.Sentinels(ctx, s.MasterName).Result()
		if err1 == nil && err2 == nil && len(replicas) == 1 && len(sentinels) == 2 {
			return nil
		}
		last = fmt.Sprintf("%d replicas (%v), %d other sentinels (%v)", len(replicas), err1, len(sentinels), err2)
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %s", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// infoOf returns INFO section of the server at addr.
func infoOf(ctx context.Context, addr, section string) (string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer rdb.Close()
	return rdb.Info(ctx, section).Result()
}

// waitInfo waits until INFO section of the server at addr contains want.
func waitInfo(ctx context.Context, addr, section, want string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	var last string
	for {
		info, err := rdb.Info(ctx, section).Result()
		if err == nil && strings.Contains(info, want) {
			return nil
		}
		last = fmt.Sprint(info, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("no %q in INFO %s: %s", want, section, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// URL is the REDIS_URL for the service: the sentinels and the master's name.
func (s *RedisSentinel) URL() string {
	u := "redis://" + s.Sentinels[0].Addr() + "/0?master_name=" + s.MasterName
	for _, sn := range s.Sentinels[1:] {
		u += "&addr=" + sn.Addr()
	}
	return u
}

// MasterAddr is the master's address as a running sentinel names it.
func (s *RedisSentinel) MasterAddr(ctx context.Context) (string, error) {
	var lastErr error
	for _, sn := range s.Sentinels {
		if !sn.Running() {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
		a, err := sc.GetMasterAddrByName(ctx, s.MasterName).Result()
		sc.Close()
		if err == nil && len(a) == 2 {
			return net.JoinHostPort(a[0], a[1]), nil
		}
		lastErr = err
	}
	return "", fmt.Errorf("no sentinel named the master: %w", lastErr)
}

// WaitFailover waits until every running sentinel names the replica as
// the master and the replica says it is one.
func (s *RedisSentinel) WaitFailover(ctx context.Context) error {
	var last string
	for {
		info, err := infoOf(ctx, s.Replica.Addr(), "replication")
		done := err == nil && strings.Contains(info, "role:master")
		last = "the replica is not a master yet"
		for _, sn := range s.Sentinels {
			if !done || !sn.Running() {
				continue
			}
			sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
			a, err := sc.GetMasterAddrByName(ctx, s.MasterName).Result()
			sc.Close()
			if err != nil || len(a) != 2 || net.JoinHostPort(a[0], a[1]) != s.Replica.Addr() {
				done, last = false, fmt.Sprintf("sentinel %s names %v (%v)", sn.Addr(), a, err)
			}
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no failover to %s: %s", s.Replica.Addr(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Switchover asks a sentinel to fail the master over to the replica at once
// (SENTINEL FAILOVER): the old master becomes the new master's replica.
func (s *RedisSentinel) Switchover(ctx context.Context) error {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0].Addr(), MaxRetries: -1})
	defer sc.Close()
	return sc.Failover(ctx, s.MasterName).Err()
}
