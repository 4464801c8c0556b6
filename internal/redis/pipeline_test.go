package redis

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/testenv"
)

// TestPipelinerRepliesInOrder runs concurrent script calls through pipelines
// against a real Redis and checks each gets its own reply, also after the
// server forgot its scripts (EVALSHA fails with NOSCRIPT, EVAL takes over).
func TestPipelinerRepliesInOrder(t *testing.T) {
	url, _ := testenv.MustRedis(t)
	rdb := testenv.MustRedisClient(t, url)
	p := newPipeliner(rdb, 16, 2, 3*time.Second)
	defer p.close()
	echo := redis.NewScript(`return ARGV[1] .. ':' .. KEYS[1]`)
	for round := range 2 {
		if round == 1 {
			if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() {
				arg := strconv.Itoa(i)
				got, err := p.run(context.Background(), echo, []string{"k" + arg}, arg).Text()
				if err != nil || got != arg+":k"+arg {
					t.Errorf("round %d call %d: %q, %v", round, i, got, err)
				}
			})
		}
		wg.Wait()
	}
}
