package worker

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/redistest"
)

// asynq's task-ending scripts, sent together by the hook, each get their
// own reply or error, also a script Redis does not have yet (NOSCRIPT,
// then EVAL, as go-redis's Script.Run does); other commands pass through;
// after stop, everything goes straight on.
func TestTaskEndsBatches(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	te := newTaskEnds(rdb)
	rdb.AddHook(te)
	te.start()
	ok := redis.NewScript(`redis.call('SET', KEYS[2], ARGV[1], 'EX', 60) return ARGV[1]`)
	bad := redis.NewScript(`return redis.error_reply('no ' .. ARGV[1])`)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Go(func() {
			keys := []string{"asynq:{q}:active", fmt.Sprintf("asynq:{q}:x%d", i)}
			arg := fmt.Sprint(i)
			if i%10 == 0 {
				if err := bad.Run(ctx, rdb, keys, arg).Err(); err == nil || err.Error() != "no "+arg {
					errs <- fmt.Errorf("script %d: err %v, want \"no %s\"", i, err, arg)
				}
				return
			}
			if v, err := ok.Run(ctx, rdb, keys, arg).Text(); err != nil || v != arg {
				errs <- fmt.Errorf("script %d: %q %v, want %q", i, v, err, arg)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if v := rdb.Get(ctx, "asynq:{q}:x7").Val(); v != "7" {
		t.Errorf("x7 = %q, want 7", v)
	}
	if !endsTask(redis.NewCmd(ctx, "evalsha", "sha", 2, "asynq:{q}:active", "asynq:{q}:lease")) ||
		endsTask(redis.NewCmd(ctx, "evalsha", "sha", 4, "asynq:{q}:pending", "asynq:{q}:paused", "asynq:{q}:active", "asynq:{q}:lease")) ||
		endsTask(redis.NewCmd(ctx, "get", "asynq:{q}:active")) {
		t.Errorf("endsTask picks the wrong commands")
	}
	te.stop()
	if v, err := ok.Run(ctx, rdb, []string{"asynq:{q}:active", "asynq:{q}:y"}, "after").Text(); err != nil || v != "after" {
		t.Errorf("after stop: %q %v", v, err)
	}
}
