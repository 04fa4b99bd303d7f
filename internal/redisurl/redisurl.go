// Package redisurl parses STAGED_REDIS_URL, the one place every staged
// process (api, worker, dev, a team's program through cli.Main, the benchmark) learns how to reach
// Redis: a single server, a Sentinel-managed primary, or a Redis Cluster.
//
//	redis://[[user]:password@]host:port[/db]           one server
//	rediss://...                                        the same over TLS
//	redis-sentinel://[[user]:password@]s1:p1,s2:p2[/db]?master=NAME
//	redis+cluster://[[user]:password@]n1:p1,n2:p2,n3:p3
//	rediss+cluster://...                                a Cluster over TLS
//
// The Sentinel form is asynq's own (asynq.ParseRedisURI); staged also reads
// its database number, ?tls=true and ?sentinel_password= (asynq gives the
// password to the sentinels only; here it is the primary's, and the
// sentinels' too unless sentinel_password is given).
//
// The Cluster form is a scheme of its own rather than go-redis's
// redis://h1:p1?addr=h2:p2: with the latter, a plain redis:// URL and a
// Cluster URL differ only by a query parameter, so a URL naming one Cluster
// node with its addr list lost looks like a single server and fails at the
// first write to another node's slot. A scheme says what is meant, lists
// the seed nodes alike, and lets staged refuse a plain URL that points at a
// Cluster node (see Check).
package redisurl

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Kind is the topology a URL names.
type Kind int

// Kinds of Redis deployment.
const (
	Single   Kind = iota // one server (maybe a primary with replicas)
	Sentinel             // a primary found through Sentinel, followed across failovers
	Cluster              // a Redis Cluster
)

func (k Kind) String() string {
	return [...]string{"single", "sentinel", "cluster"}[k]
}

// Default is the URL used when none is given.
const Default = "redis://127.0.0.1:6379/0"

// Timeout bounds dialing, reading and writing Redis, so that the API
// answers 503 quickly when Redis is away.
const Timeout = 2 * time.Second

// Conn is a parsed URL.
type Conn struct {
	Kind Kind
	// Shown is the URL with any password replaced by "xxxxx", for logs
	// and messages.
	Shown string
	// Options hold everything go-redis needs, for any Kind.
	Options redis.UniversalOptions
}

// Parse parses raw. Its errors never contain the password.
func Parse(raw string) (*Conn, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL, password included
		}
		return nil, fmt.Errorf("not a valid URL: %v", err)
	}
	c := &Conn{Shown: raw}
	if u.User != nil {
		c.Shown = u.Redacted()
	}
	fail := func(format string, args ...any) (*Conn, error) {
		return nil, fmt.Errorf("%s: %s", c.Shown, fmt.Sprintf(format, args...))
	}
	o := &c.Options
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = Timeout, Timeout, Timeout
	q := u.Query()
	useTLS := false
	switch u.Scheme {
	case "redis", "rediss":
		if u.Host == "" {
			return fail("no host, as in %s", Default)
		}
		if strings.Contains(u.Host, ",") {
			return fail("several hosts in a redis:// URL: for a Cluster use redis+cluster://%s, for Sentinel redis-sentinel://%s/0?master=NAME", u.Host, u.Host)
		}
		if q.Has("addr") {
			return fail("redis://…?addr= is go-redis's Cluster form; staged's is redis+cluster://host1:port1,host2:port2")
		}
		ro, err := redis.ParseURL(raw)
		if err != nil {
			return fail("%s", strings.TrimPrefix(err.Error(), "redis: "))
		}
		o.Addrs, o.Username, o.Password, o.DB, o.TLSConfig = []string{ro.Addr}, ro.Username, ro.Password, ro.DB, ro.TLSConfig
		return c, nil
	case "redis-sentinel":
		c.Kind = Sentinel
		o.MasterName = q.Get("master")
		if o.MasterName == "" {
			return fail("no ?master=NAME: name the primary the sentinels watch, as in redis-sentinel://127.0.0.1:26379,127.0.0.2:26379/0?master=mymaster")
		}
		if db := strings.Trim(u.Path, "/"); db != "" {
			n, err := strconv.Atoi(db)
			if err != nil || n < 0 {
				return fail("database %q is not a number", db)
			}
			o.DB = n
		}
		o.SentinelPassword = o.Password
		if q.Has("sentinel_password") {
			o.SentinelPassword = q.Get("sentinel_password")
		}
	case "redis+cluster", "rediss+cluster":
		c.Kind = Cluster
		useTLS = u.Scheme == "rediss+cluster"
		if db := strings.Trim(u.Path, "/"); db != "" && db != "0" {
			return fail("a Redis Cluster has only database 0")
		}
	default:
		return fail("the scheme must be redis://, rediss://, redis-sentinel:// or redis+cluster://, as in %s", Default)
	}
	// Sentinel and Cluster: a list of host:port, credentials, tls.
	for _, a := range strings.Split(u.Host, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return fail("%q is not host:port", a)
		}
		o.Addrs = append(o.Addrs, a)
	}
	if len(o.Addrs) == 0 {
		return fail("no host:port")
	}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
		if c.Kind == Sentinel && !q.Has("sentinel_password") {
			o.SentinelPassword = o.Password
		}
	}
	if v := q.Get("tls"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fail("tls=%q is not true or false", v)
		}
		useTLS = useTLS || b
	}
	if useTLS {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if v := q.Get("skip_verify"); v == "true" {
			o.TLSConfig.InsecureSkipVerify = true
		}
	}
	return c, nil
}

// NewClient returns a go-redis client for c: a ClusterClient, a
// FailoverClient (following the primary across failovers) or a Client.
func (c *Conn) NewClient() redis.UniversalClient {
	o := c.Options // copy: the option methods fill in defaults
	switch c.Kind {
	case Cluster:
		return redis.NewClusterClient(o.Cluster())
	case Sentinel:
		return redis.NewFailoverClient(o.Failover())
	}
	return redis.NewClient(o.Simple())
}

// AsynqOpt returns asynq's connection options for the same Redis.
func (c *Conn) AsynqOpt() asynq.RedisConnOpt {
	o := c.Options
	switch c.Kind {
	case Cluster:
		return asynq.RedisClusterClientOpt{Addrs: o.Addrs, Username: o.Username, Password: o.Password,
			DialTimeout: o.DialTimeout, TLSConfig: o.TLSConfig}
	case Sentinel:
		return asynq.RedisFailoverClientOpt{MasterName: o.MasterName, SentinelAddrs: o.Addrs,
			SentinelPassword: o.SentinelPassword, Username: o.Username, Password: o.Password, DB: o.DB,
			DialTimeout: o.DialTimeout, TLSConfig: o.TLSConfig}
	}
	return asynq.RedisClientOpt{Addr: o.Addrs[0], Username: o.Username, Password: o.Password, DB: o.DB,
		DialTimeout: o.DialTimeout, TLSConfig: o.TLSConfig}
}
