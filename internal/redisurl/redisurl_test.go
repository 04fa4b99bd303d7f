package redisurl

import (
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

func TestParseSingle(t *testing.T) {
	tests := []struct {
		url              string
		addr, user, pass string
		db               int
		tls              bool
		tlsServerName    string
	}{
		{url: "redis://127.0.0.1:6379/0", addr: "127.0.0.1:6379"},
		{url: "redis://:pw@localhost/3", addr: "localhost:6379", pass: "pw", db: 3},
		{url: "rediss://app:pw@redis.example.com:6380/1", addr: "redis.example.com:6380", user: "app", pass: "pw", db: 1,
			tls: true, tlsServerName: "redis.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c, err := Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			o := c.Options.Simple()
			if c.Kind != Single || o.Addr != tt.addr || o.Username != tt.user || o.Password != tt.pass || o.DB != tt.db || (o.TLSConfig != nil) != tt.tls {
				t.Errorf("kind %v options = %+v", c.Kind, o)
			}
			if o.DialTimeout != Timeout || o.ReadTimeout != Timeout || o.WriteTimeout != Timeout {
				t.Errorf("timeouts %v %v %v", o.DialTimeout, o.ReadTimeout, o.WriteTimeout)
			}
			a := c.AsynqOpt().(asynq.RedisClientOpt)
			if a.Addr != tt.addr || a.Username != tt.user || a.Password != tt.pass || a.DB != tt.db || (a.TLSConfig != nil) != tt.tls {
				t.Errorf("asynq options = %+v", a)
			}
			if tt.tls && o.TLSConfig.ServerName != tt.tlsServerName {
				t.Errorf("TLS server name %q", o.TLSConfig.ServerName)
			}
			rdb := c.NewClient()
			defer rdb.Close()
			if _, ok := rdb.(*redis.Client); !ok {
				t.Errorf("client %T", rdb)
			}
		})
	}
}

func TestParseSentinel(t *testing.T) {
	c, err := Parse("redis-sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26379/2?master=mymaster&tls=true")
	if err != nil {
		t.Fatal(err)
	}
	o := c.Options
	if c.Kind != Sentinel || o.MasterName != "mymaster" || len(o.Addrs) != 2 || o.Addrs[1] != "10.0.0.2:26379" ||
		o.DB != 2 || o.Password != "s3cret" || o.SentinelPassword != "s3cret" || o.TLSConfig == nil {
		t.Errorf("options = %+v", o)
	}
	a := c.AsynqOpt().(asynq.RedisFailoverClientOpt)
	if a.MasterName != "mymaster" || len(a.SentinelAddrs) != 2 || a.Password != "s3cret" || a.SentinelPassword != "s3cret" || a.DB != 2 || a.TLSConfig == nil {
		t.Errorf("asynq options = %+v", a)
	}
	if strings.Contains(c.Shown, "s3cret") {
		t.Errorf("Shown has the password: %s", c.Shown)
	}
	rdb := c.NewClient()
	defer rdb.Close()
	// A failover client is a *redis.Client that asks the sentinels.
	if _, ok := rdb.(*redis.Client); !ok {
		t.Errorf("client %T", rdb)
	}
	c, err = Parse("redis-sentinel://:pw@h:26379?master=m&sentinel_password=other")
	if err != nil || c.Options.SentinelPassword != "other" || c.Options.Password != "pw" {
		t.Errorf("sentinel_password: %+v %v", c, err)
	}
}

func TestParseCluster(t *testing.T) {
	for _, u := range []string{"redis+cluster://app:pw@n1:7000,n2:7001,n3:7002", "rediss+cluster://app:pw@n1:7000,n2:7001,n3:7002/0"} {
		c, err := Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		o := c.Options
		tls := strings.HasPrefix(u, "rediss")
		if c.Kind != Cluster || len(o.Addrs) != 3 || o.Addrs[2] != "n3:7002" || o.Username != "app" || o.Password != "pw" || (o.TLSConfig != nil) != tls {
			t.Errorf("%s: options = %+v", u, o)
		}
		a := c.AsynqOpt().(asynq.RedisClusterClientOpt)
		if len(a.Addrs) != 3 || a.Password != "pw" || (a.TLSConfig != nil) != tls {
			t.Errorf("asynq options = %+v", a)
		}
		rdb := c.NewClient()
		rdb.Close()
		if _, ok := rdb.(*redis.ClusterClient); !ok {
			t.Errorf("client %T", rdb)
		}
	}
	// One seed node is a Cluster too (go-redis's NewUniversalClient would make it a plain client).
	c, err := Parse("redis+cluster://n1:7000")
	if err != nil {
		t.Fatal(err)
	}
	if rdb := c.NewClient(); rdb != nil {
		defer rdb.Close()
		if _, ok := rdb.(*redis.ClusterClient); !ok {
			t.Errorf("one seed: client %T", rdb)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ url, want string }{
		{"http://localhost:6379", "the scheme must be redis://, rediss://, redis-sentinel:// or redis+cluster://"},
		{"redis://", "no host"},
		{"redis://:hunter2@localhost:6379/x", "redis://:xxxxx@localhost:6379/x"},
		{"redis://a:1,b:2", "for a Cluster use redis+cluster://a:1,b:2"},
		{"redis://a:1?addr=b:2", "staged's is redis+cluster://"},
		{"redis-sentinel://:hunter2@a:26379", "no ?master=NAME"},
		{"redis-sentinel://a:26379/x?master=m", "database \"x\" is not a number"},
		{"redis+cluster://a:1/3", "only database 0"},
		{"redis+cluster://a", "\"a\" is not host:port"},
		{"redis+cluster://a:1?tls=maybe", "tls=\"maybe\""},
	}
	for _, tt := range tests {
		_, err := Parse(tt.url)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want %q", tt.url, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%q) shows the password: %v", tt.url, err)
		}
	}
}
