package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// Publisher keeps one worker's entry in the catalogue: its definitions and
// its instance, refreshed every Heartbeat.
type Publisher struct {
	rdb       redis.UniversalClient
	inst      Instance
	defs      []api.Definition
	heartbeat time.Duration
	defTTL    time.Duration
	log       *slog.Logger
	now       func() time.Time

	quit, done chan struct{}
	started    bool
	once       sync.Once
}

// PublisherConfig configures a Publisher; zero durations mean the
// defaults.
type PublisherConfig struct {
	Heartbeat     time.Duration
	DefinitionTTL time.Duration
	Logger        *slog.Logger
}

// NewPublisher returns a publisher of reg's pipelines for a new instance.
func NewPublisher(rdb redis.UniversalClient, reg *tasks.Registry, cfg PublisherConfig) *Publisher {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = HeartbeatDefault
	}
	if cfg.DefinitionTTL <= 0 {
		cfg.DefinitionTTL = DefinitionTTLDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Publisher{rdb: rdb, defs: Definitions(reg), heartbeat: cfg.Heartbeat, defTTL: cfg.DefinitionTTL,
		log: cfg.Logger, now: time.Now, quit: make(chan struct{}), done: make(chan struct{})}
	host, _ := os.Hostname()
	p.inst = Instance{ID: NewInstanceID(), Host: host, PID: os.Getpid(), StartedAt: time.Now().UTC()}
	for _, d := range p.defs {
		p.inst.Pipelines = append(p.inst.Pipelines, PipelineRef{Name: d.Name, Digest: d.Digest})
	}
	return p
}

// ID is the instance id.
func (p *Publisher) ID() string { return p.inst.ID }

// InstanceTTL is how long the instance counts as live after a heartbeat.
func (p *Publisher) InstanceTTL() time.Duration { return 3 * p.heartbeat }

// Publish writes the definitions and the instance once, and tells the API
// processes when something changed (first is the start of the instance).
func (p *Publisher) Publish(ctx context.Context, first bool) error {
	now := p.now().UTC()
	n, err := publishDefinitions(ctx, p.rdb, p.defs, now, p.defTTL)
	if err != nil {
		return err
	}
	inst := p.inst
	inst.Heartbeat, inst.ExpiresAt = now, now.Add(p.InstanceTTL())
	b, err := json.Marshal(inst)
	if err != nil {
		return err
	}
	pipe := p.rdb.Pipeline()
	pipe.Set(ctx, instanceKey(inst.ID), b, p.InstanceTTL())
	pipe.ZAdd(ctx, instancesKey, redis.Z{Score: float64(now.UnixMilli()), Member: inst.ID})
	pipe.PExpire(ctx, instancesKey, p.defTTL)
	pipe.ZRemRangeByScore(ctx, instancesKey, "-inf", fmt.Sprint(now.Add(-p.InstanceTTL()).UnixMilli()))
	if first || n > 0 {
		pipe.Publish(ctx, Channel, "changed")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("catalog: publish instance: %w", err)
	}
	return nil
}

// Start publishes once (so that the API knows the worker before it takes
// a job), then keeps publishing every heartbeat until Stop. A failed first
// publish is logged, not fatal: Redis may come back.
func (p *Publisher) Start(ctx context.Context) {
	p.started = true
	if err := p.Publish(ctx, true); err != nil {
		p.log.Warn("cannot publish this worker's pipelines in the catalogue yet; retrying every heartbeat", "err", err)
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(p.heartbeat)
		defer t.Stop()
		var lastErr time.Time
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
			}
			c, cancel := context.WithTimeout(context.Background(), p.heartbeat)
			if err := p.Publish(c, false); err != nil && time.Since(lastErr) > 10*p.heartbeat {
				lastErr = time.Now()
				p.log.Warn("catalogue heartbeat failed", "err", err)
			}
			cancel()
		}
	}()
}

// Stop ends the heartbeat and removes the instance from the catalogue
// (its definitions stay until their TTL), telling the API processes.
func (p *Publisher) Stop() {
	p.once.Do(func() {
		close(p.quit)
		if p.started {
			<-p.done
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		pipe := p.rdb.Pipeline()
		pipe.Del(ctx, instanceKey(p.inst.ID))
		pipe.ZRem(ctx, instancesKey, p.inst.ID)
		pipe.Publish(ctx, Channel, "changed")
		if _, err := pipe.Exec(ctx); err != nil {
			p.log.Warn("cannot remove this worker from the catalogue; it drops out when its heartbeat expires", "err", err)
		}
	})
}
