package store

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sharded pub/sub. On a Redis Cluster a PUBLISH is broadcast over the
// Cluster bus to every node, so every master pays for every record write's
// notice. With sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7.0+) a message
// stays on the master (and its replicas) that owns the channel's slot. A
// script may only SPUBLISH on a channel of its keys' slot, so on a Cluster
// the channels are per job and per queue, named with the same hash tag as
// the keys the publisher touches:
//
//	staged:ev:{id}      a job's record writes (the save script)
//	staged:cancel:{id}  a running job's cancel (the cancel script)
//	staged:wake:{q}     a task enqueued on queue q (asynq's keys are {q})
//
// A single server and a Sentinel-managed primary keep the plain channels
// (EventsChannel, CancelChannel, WakeChannel) and PUBLISH/SUBSCRIBE, which
// every Redis version has.

// EventsShardChannel is job id's events channel on a Cluster.
func EventsShardChannel(id string) string { return keyPrefix + "ev:{" + id + "}" }

// CancelShardChannel is job id's cancel channel on a Cluster.
func CancelShardChannel(id string) string { return keyPrefix + "cancel:{" + id + "}" }

// WakeShardChannel is queue q's wake-up channel on a Cluster: in the slot
// of asynq's keys of q (asynq:{q}:...).
func WakeShardChannel(q string) string { return keyPrefix + "wake:{" + q + "}" }

// ShardKey returns what a shard channel is named after (the job id or the
// queue between its braces), or "" for a channel that is not one.
func ShardKey(channel string) string {
	i := strings.IndexByte(channel, '{')
	if i < 0 || !strings.HasSuffix(channel, "}") {
		return ""
	}
	return channel[i+1 : len(channel)-1]
}

// shardedBy caches ShardedPubSub's answer per Cluster client.
var shardedBy sync.Map // *redis.ClusterClient → bool

// ShardedPubSub reports whether staged's pub/sub goes over shard channels
// on rdb: true on a Redis Cluster whose servers know SPUBLISH (7.0+),
// false on a single server, on Sentinel and on an older Cluster (which
// keeps PUBLISH; that is logged once). The first call on a Cluster client
// asks the server (COMMAND INFO SPUBLISH); the answer is kept.
func ShardedPubSub(ctx context.Context, rdb redis.UniversalClient) (bool, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return false, nil
	}
	if v, ok := shardedBy.Load(cc); ok {
		return v.(bool), nil
	}
	res, err := cc.Do(ctx, "COMMAND", "INFO", "SPUBLISH").Slice()
	if err != nil {
		return false, redisErr("store.ShardedPubSub", err)
	}
	sharded := len(res) > 0 && res[0] != nil
	if _, loaded := shardedBy.LoadOrStore(cc, sharded); !loaded && !sharded {
		slog.Warn("this Redis Cluster has no sharded pub/sub (SPUBLISH, Redis 7.0+): staged uses PUBLISH/SUBSCRIBE, which the Cluster bus broadcasts to every node")
	}
	return sharded, nil
}

// shardArg is the id as the save and cancel scripts take it: in braces
// when they must SPUBLISH on the job's own channel.
func (s *Store) shardArg(ctx context.Context, id string) (string, error) {
	if _, ok := s.rdb.(*redis.ClusterClient); !ok {
		return id, nil
	}
	sharded, err := ShardedPubSub(ctx, s.rdb)
	if err != nil || !sharded {
		return id, err
	}
	return "{" + id + "}", nil
}

// ShardSub timings.
const (
	// shardPingEvery is how long a connection may stay silent before it
	// is pinged; a second silence as long closes it.
	shardPingEvery = 15 * time.Second
	// shardOpTimeout bounds one subscription command (a dial included).
	shardOpTimeout = 5 * time.Second
	// shardRetryMax is the longest pause between two attempts to place
	// channels after a failure.
	shardRetryMax = 2 * time.Second
)

// ShardSub holds a process's subscriptions to shard channels on a Redis
// Cluster: one connection per master that owns a subscribed channel's
// slot, opened when first needed. go-redis's ClusterClient.SSubscribe is
// not enough: it opens one connection, to the master of the first channel
// only, and on a reconnect sends every channel in one SSUBSCRIBE, which
// Redis refuses (CROSSSLOT) as soon as they are in two slots. ShardSub
// places each channel itself, sends one SSUBSCRIBE per slot, and places
// channels again when their slot moves:
//
//   - a connection that fails (its node died or failed over, or stayed
//     silent to a PING) is closed, and its channels placed anew on the
//     masters that own their slots then;
//   - so is one that gets an error reply (MOVED after a resharding or a
//     failover, CLUSTERDOWN);
//   - a sunsubscribe that the server sends by itself (Redis does when a
//     slot leaves the node) places that channel anew.
//
// Every (re)subscription comes out of C as a *redis.Subscription of kind
// "ssubscribe" naming the channel: messages published before it may have
// been missed, and the consumer must re-read what the channel is about.
// Messages come out as *redis.Message.
//
// On a Cluster without sharded pub/sub (see ShardedPubSub) it subscribes to
// the fallback channels with SUBSCRIBE instead (reported as kind
// "subscribe"), and SSubscribe and SUnsubscribe do nothing.
type ShardSub struct {
	cc       *redis.ClusterClient
	log      *slog.Logger
	fallback []string
	out      chan any
	kick     chan struct{} // buffered 1: there is placing to do
	ctx      context.Context
	stop     context.CancelFunc
	wg       sync.WaitGroup

	mu       sync.Mutex
	want     map[string]*shardConn // wanted channel → its connection; nil until placed
	conns    map[*redis.Client]*shardConn
	plain    *redis.PubSub // the fallback subscription
	failed   bool          // something failed since the last reconcile
	troubled bool          // failures logged, and not over yet
}

// shardConn is the subscription connection to one master. Its fields but
// ps are guarded by ShardSub.mu.
type shardConn struct {
	node  *redis.Client
	ps    *redis.PubSub
	chans map[string]struct{} // channels sent on it and still wanted
	leave []string            // channels to unsubscribe from on it
	dead  bool                // to close; its channels to place again
}

// NewShardSub starts a ShardSub on cc; fallback are the plain channels to
// subscribe to if the Cluster has no sharded pub/sub. It keeps trying
// while Redis is unreachable. Close it when done.
func NewShardSub(cc *redis.ClusterClient, log *slog.Logger, fallback ...string) *ShardSub {
	p := &ShardSub{cc: cc, log: log, fallback: fallback, out: make(chan any, 1024), kick: make(chan struct{}, 1),
		want: map[string]*shardConn{}, conns: map[*redis.Client]*shardConn{}}
	p.ctx, p.stop = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.manage()
	return p
}

// C returns the channel of messages and subscriptions; it is closed by Close.
func (p *ShardSub) C() <-chan any { return p.out }

// SSubscribe subscribes to channels, in the background: each one's
// "ssubscribe" says when it is done. It never blocks on Redis.
func (p *ShardSub) SSubscribe(channels ...string) {
	p.mu.Lock()
	for _, ch := range channels {
		if _, ok := p.want[ch]; !ok {
			p.want[ch] = nil
		}
	}
	p.mu.Unlock()
	p.poke()
}

// SUnsubscribe unsubscribes from channels, in the background.
func (p *ShardSub) SUnsubscribe(channels ...string) {
	p.mu.Lock()
	for _, ch := range channels {
		c, ok := p.want[ch]
		if !ok {
			continue
		}
		delete(p.want, ch)
		if c != nil {
			delete(c.chans, ch)
			c.leave = append(c.leave, ch)
		}
	}
	p.mu.Unlock()
	p.poke()
}

// Close ends every subscription and closes C.
func (p *ShardSub) Close() error {
	p.stop()
	p.wg.Wait()
	close(p.out)
	return nil
}

func (p *ShardSub) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// manage decides the mode, then places and unsubscribes channels whenever
// asked, and after a failure again with a growing pause.
func (p *ShardSub) manage() {
	defer p.wg.Done()
	defer p.closeAll()
	wait := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(p.ctx, shardOpTimeout)
		sharded, err := ShardedPubSub(ctx, p.cc)
		cancel()
		if err == nil {
			if !sharded {
				p.subscribePlain()
				return
			}
			break
		}
		if !p.pause(wait) {
			return
		}
		wait = min(2*wait, shardRetryMax)
	}
	// After a failure, the next attempt waits, whatever asks for it:
	// failures come in bursts (a node down fails every dial at once), and
	// the client needs a moment to reload the Cluster's slots.
	again := false
	for {
		if !again {
			select {
			case <-p.ctx.Done():
				return
			case <-p.kick:
			}
		}
		ok := p.reconcile()
		p.mu.Lock()
		failed, troubled := p.failed, p.troubled
		p.failed = false
		if ok && !failed {
			p.troubled = false
		}
		p.mu.Unlock()
		if ok && !failed {
			if troubled {
				p.log.Info("sharded pub/sub: every channel is subscribed again")
			}
			wait, again = 0, false
			continue
		}
		wait = min(max(2*wait, 50*time.Millisecond), shardRetryMax)
		if !p.pause(wait) {
			return
		}
		again = true
	}
}

// pause waits d; false once closed.
func (p *ShardSub) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// subscribePlain is the fallback: the plain channels, until Close.
func (p *ShardSub) subscribePlain() {
	ps := p.cc.Subscribe(p.ctx, p.fallback...)
	p.mu.Lock()
	p.plain = ps
	p.mu.Unlock()
	ch := ps.ChannelWithSubscriptions(redis.WithChannelSize(1024))
	for {
		select {
		case <-p.ctx.Done():
			return
		case m := <-ch:
			p.send(m)
		}
	}
}

// reconcile closes dead connections, sends the pending unsubscriptions and
// places the channels not placed. It reports whether all went well.
func (p *ShardSub) reconcile() bool {
	ok := true
	p.mu.Lock()
	var dead []*shardConn
	leave := map[*shardConn][]string{}
	for node, c := range p.conns {
		if c.dead {
			dead = append(dead, c)
			delete(p.conns, node)
			for ch := range c.chans {
				p.want[ch] = nil
			}
			continue
		}
		if len(c.leave) > 0 {
			leave[c], c.leave = c.leave, nil
		}
	}
	var place []string
	for ch, c := range p.want {
		if c == nil {
			place = append(place, ch)
		}
	}
	p.mu.Unlock()

	for _, c := range dead {
		_ = c.ps.Close() // its receiver ends
	}
	ctx, cancel := context.WithTimeout(p.ctx, shardOpTimeout)
	defer cancel()
	for c, chs := range leave {
		for _, g := range bySlot(chs) {
			if err := c.ps.SUnsubscribe(ctx, g...); err != nil {
				p.fail(c, err)
				ok = false
				break
			}
		}
	}
	// Group the channels to place by master, then by slot.
	groups := map[*redis.Client][]string{}
	for _, ch := range place {
		node, err := p.cc.MasterForKey(ctx, ch)
		if err != nil {
			p.log.Debug("sharded pub/sub: no master for a channel yet", "channel", ch, "err", err)
			ok = false
			continue
		}
		groups[node] = append(groups[node], ch)
	}
	for node, chs := range groups {
		p.mu.Lock()
		c := p.conns[node]
		if c == nil {
			c = &shardConn{node: node, ps: node.SSubscribe(p.ctx), chans: map[string]struct{}{}}
			p.conns[node] = c
			p.wg.Add(1)
			go p.receive(c)
		}
		p.mu.Unlock()
		for _, g := range bySlot(chs) {
			p.mu.Lock()
			send := g[:0]
			for _, ch := range g {
				if cur, wanted := p.want[ch]; wanted && cur == nil && !c.dead {
					p.want[ch] = c
					c.chans[ch] = struct{}{}
					send = append(send, ch)
				}
			}
			p.mu.Unlock()
			if len(send) == 0 {
				continue
			}
			if err := c.ps.SSubscribe(ctx, send...); err != nil {
				p.fail(c, err)
				ok = false
				break
			}
		}
	}
	return ok
}

// bySlot splits channels into groups of one slot each (one SSUBSCRIBE or
// SUNSUBSCRIBE may name channels of one slot only).
func bySlot(chs []string) [][]string {
	by := map[int][]string{}
	var order []int
	for _, ch := range chs {
		slot := Slot(ch)
		if _, ok := by[slot]; !ok {
			order = append(order, slot)
		}
		by[slot] = append(by[slot], ch)
	}
	out := make([][]string, 0, len(order))
	for _, s := range order {
		out = append(out, by[s])
	}
	return out
}

// Slot is the Redis Cluster hash slot of a key or shard channel: CRC16
// (XMODEM) of its hash tag (the part between the first { and the next },
// if not empty) or of the whole key, modulo 16384.
func Slot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// fail marks c dead: the manager closes it and places its channels again,
// once the client has reloaded the Cluster's slots.
func (p *ShardSub) fail(c *shardConn, err error) {
	p.mu.Lock()
	first, n := !c.dead && !p.troubled, len(c.chans)
	c.dead, p.failed, p.troubled = true, true, true
	p.mu.Unlock()
	if first && p.ctx.Err() == nil {
		p.log.Info("sharded pub/sub: connection to a master lost or redirected; its channels are placed again",
			"node", c.node.Options().Addr, "channels", n, "err", err)
	}
	p.cc.ReloadState(p.ctx)
	p.poke()
}

// moved places channel ch again: the server unsubscribed c from it by
// itself, as Redis does when the channel's slot leaves the node.
func (p *ShardSub) moved(c *shardConn, ch string) {
	p.mu.Lock()
	cur, wanted := p.want[ch]
	if wanted && cur == c {
		p.want[ch] = nil
		delete(c.chans, ch)
		p.failed = true // place it once the client has the new slots
	}
	p.mu.Unlock()
	if wanted && cur == c {
		p.cc.ReloadState(p.ctx)
		p.poke()
	}
}

// redirected places again the channels of c in the slot that a MOVED or
// ASK reply names: an SSUBSCRIBE went to a master that no longer owns it.
// It reports false for any other reply.
func (p *ShardSub) redirected(c *shardConn, err error) bool {
	msg := err.Error()
	if !strings.HasPrefix(msg, "MOVED ") && !strings.HasPrefix(msg, "ASK ") {
		return false
	}
	f := strings.Fields(msg)
	if len(f) < 2 {
		return false
	}
	slot, perr := strconv.Atoi(f[1])
	if perr != nil {
		return false
	}
	p.mu.Lock()
	for ch := range c.chans {
		if Slot(ch) == slot {
			delete(c.chans, ch)
			if p.want[ch] == c {
				p.want[ch] = nil
			}
		}
	}
	p.failed = true
	p.mu.Unlock()
	p.cc.ReloadState(p.ctx)
	p.poke()
	return true
}

// receive reads c's messages until c is closed or fails.
func (p *ShardSub) receive(c *shardConn) {
	defer p.wg.Done()
	pinged := false
	for {
		m, err := c.ps.ReceiveTimeout(p.ctx, shardPingEvery)
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, redis.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				pinged = true
				if c.ps.Ping(p.ctx) == nil {
					continue
				}
			}
			var re redis.Error
			if errors.As(err, &re) && p.redirected(c, err) {
				continue
			}
			p.fail(c, err)
			return
		}
		pinged = false
		switch m := m.(type) {
		case *redis.Message:
			p.send(m)
		case *redis.Subscription:
			switch m.Kind {
			case "ssubscribe":
				p.send(m)
			case "sunsubscribe":
				p.moved(c, m.Channel)
			}
		}
	}
}

func (p *ShardSub) send(m any) {
	select {
	case p.out <- m:
	case <-p.ctx.Done():
	}
}

// closeAll closes every connection (the manager's last act).
func (p *ShardSub) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.ps.Close()
	}
	if p.plain != nil {
		_ = p.plain.Close()
	}
}
