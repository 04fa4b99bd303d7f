package worker

import (
	"context"
	"sync"

	"github.com/staged-dev/staged/internal/store"

	"github.com/redis/go-redis/v9"
)

// canceler holds the worker's one subscription to store.CancelChannel, on
// which the API publishes the id of each running job it cancels, and stops
// that job's stage if it runs here. The same subscription carries
// store.WakeChannel, the pushes for the waker (wake.go). go-redis resubscribes by itself after a
// lost connection; a cancel published meanwhile still reaches the job
// through its next lease renewal or record write, which report the durable
// cancel flag.
type canceler struct {
	w  *Worker
	ps *redis.PubSub
}

func (c *canceler) start(wg *sync.WaitGroup) {
	c.ps = c.w.rdb.Subscribe(context.Background(), store.CancelChannel, store.WakeChannel)
	ch := c.ps.Channel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for msg := range ch {
			if msg.Channel == store.WakeChannel {
				c.w.waker.wakeUp(msg.Payload)
				continue
			}
			if c.w.runs.stop(msg.Payload, errCanceled) {
				c.w.log.Info("cancel requested: stopping the job's stage", "job_id", msg.Payload)
			}
		}
	}()
}

// shutdown unsubscribes; the goroutine ends when the channel closes.
func (c *canceler) shutdown() {
	if c.ps != nil {
		c.ps.Close()
	}
}
