package testenv

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterNodeTimeout is the cluster-node-timeout of StartRedisCluster: a
// master unreachable this long is failed over to its replica.
const ClusterNodeTimeout = 2 * time.Second

// RedisCluster is a private Redis Cluster on loopback: masters with their
// replicas, each a redis-server process that the test may kill.
type RedisCluster struct {
	Nodes []*RedisServer
}

// StartRedisCluster starts masters*(1+replicas) redis-server processes with
// cluster-enabled on loopback and joins them with `redis-cli --cluster
// create`, each master with replicas replicas; it returns once every node
// sees every slot served. The nodes are killed when the test ends.
func StartRedisCluster(tb testing.TB, masters, replicas int) *RedisCluster {
	tb.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		skipOrFail(tb, "redis-cli not found")
	}
	c := &RedisCluster{}
	var addrs []string
	for range masters * (1 + replicas) {
		n := startRedis(tb, clusterPort(tb), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(ClusterNodeTimeout.Milliseconds(), 10))
		c.Nodes = append(c.Nodes, n)
		addrs = append(addrs, n.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range c.Nodes {
		if err := waitClusterOK(ctx, n.Addr()); err != nil {
			tb.Fatalf("cluster node %s: %v\n%s", n.Addr(), err, n.Log())
		}
	}
	// A replica that has not synced with its master yet cannot take over.
	for _, n := range c.Nodes {
		if info, err := infoOf(ctx, n.Addr(), "replication"); err != nil || !strings.Contains(info, "role:slave") {
			continue
		}
		if err := waitInfo(ctx, n.Addr(), "replication", "master_link_status:up"); err != nil {
			tb.Fatalf("cluster replica %s: %v\n%s", n.Addr(), err, n.Log())
		}
	}
	return c
}

// clusterPort returns a loopback port p, free a moment ago, whose cluster
// bus port p+10000 is free too. Both lie below the ephemeral range (32768
// and up on Linux), where FreePort's ports come from.
func clusterPort(tb testing.TB) int {
	tb.Helper()
	for range 100 {
		p := 10000 + mrand.IntN(12700)
		a, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return p
	}
	tb.Fatal("no free port pair for a cluster node")
	return 0
}

// waitClusterOK waits until the node at addr reports cluster_state:ok.
func waitClusterOK(ctx context.Context, addr string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	var last string
	for {
		info, err := rdb.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		last = fmt.Sprint(info, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ok: %s", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// URL is the cluster's REDIS_URL for the service: every node's address.
func (c *RedisCluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr()
	for i, n := range c.Nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + n.Addr()
	}
	return u
}

// MasterOf returns the node that serves key's slot, as a running node sees
// it.
func (c *RedisCluster) MasterOf(ctx context.Context, key string) (*RedisServer, error) {
	addr, err := c.masterAddr(ctx, key)
	if err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		if n.Addr() == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("the master of %q is %s, not one of the cluster's nodes", key, addr)
}

// masterAddr asks the running nodes in turn which one serves key's slot.
func (c *RedisCluster) masterAddr(ctx context.Context, key string) (string, error) {
	var lastErr error
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		addr, err := func() (string, error) {
			rdb := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
			defer rdb.Close()
			slot, err := rdb.ClusterKeySlot(ctx, key).Result()
			if err != nil {
				return "", err
			}
			slots, err := rdb.ClusterSlots(ctx).Result()
			if err != nil {
				return "", err
			}
			for _, s := range slots {
				if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
					return s.Nodes[0].Addr, nil
				}
			}
			return "", fmt.Errorf("slot %d is not served", slot)
		}()
		if err == nil {
			return addr, nil
		}
		lastErr = err
	}
	return "", fmt.Errorf("no running node answered: %w", lastErr)
}

// WaitFailover waits until the running nodes name a master other than old
// for key's slot, that master says it is one, and the cluster is ok again,
// and returns the new master.
func (c *RedisCluster) WaitFailover(ctx context.Context, key string, old *RedisServer) (*RedisServer, error) {
	var last error
	for {
		n, err := c.MasterOf(ctx, key)
		if err == nil && n != old && n.Running() {
			if err = waitClusterOK(ctx, n.Addr()); err == nil {
				return n, nil
			}
		}
		if err == nil {
			err = fmt.Errorf("the master is still %s", old.Addr())
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no failover: %w", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
