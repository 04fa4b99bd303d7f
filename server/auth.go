package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/staged-dev/staged/tasks"
)

// Key is one API key: its name, which is the tenant that owns the jobs it
// submits, the SHA-256 digest of its secret (the secret itself is never
// kept), and whether it may open the dashboard. Several keys may share a
// name (to rotate a tenant's secret); no two may share a secret.
type Key struct {
	Name   string
	Digest [sha256.Size]byte
	Admin  bool
}

// KeyFromSecret returns the Key of name with the plain secret.
func KeyFromSecret(name, secret string, admin bool) Key {
	return Key{Name: name, Digest: sha256.Sum256([]byte(secret)), Admin: admin}
}

// String never shows the digest.
func (k Key) String() string {
	if k.Admin {
		return k.Name + " (admin)"
	}
	return k.Name
}

// ValidKeyName reports whether name can name a key: 1 to 64 letters,
// digits, '-', '_' or '.'. The name is the tenant, which goes into Redis
// key names.
func ValidKeyName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// keyring is the set of configured keys. An empty keyring is an open API.
type keyring struct {
	keys []Key
}

func newKeyring(keys []Key) (*keyring, error) {
	seen := make(map[[sha256.Size]byte]string, len(keys))
	for i, k := range keys {
		if !ValidKeyName(k.Name) {
			return nil, fmt.Errorf("server: Config.Keys[%d]: the name must be 1-64 letters, digits, '-', '_' or '.'", i)
		}
		if other, ok := seen[k.Digest]; ok {
			return nil, fmt.Errorf("server: Config.Keys: keys %q and %q have the same secret", other, k.Name)
		}
		seen[k.Digest] = k.Name
	}
	return &keyring{keys: append([]Key(nil), keys...)}, nil
}

// open reports whether no keys are configured.
func (r *keyring) open() bool { return len(r.keys) == 0 }

// match returns the key whose secret is secret. It hashes secret and
// compares the digest with every configured digest in constant time,
// without stopping at a match, so the time taken says nothing about which
// key (if any) matched or how much of it did.
func (r *keyring) match(secret string) (Key, bool) {
	d := sha256.Sum256([]byte(secret))
	found, idx := 0, 0
	for i := range r.keys {
		eq := subtle.ConstantTimeCompare(d[:], r.keys[i].Digest[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		found |= eq
	}
	if found == 0 {
		return Key{}, false
	}
	return r.keys[idx], true
}

// credentials returns the secret of an "Authorization: Bearer <secret>"
// header, or with basic=true also the password of "Authorization: Basic
// ..." (the user name is ignored). present is false when the request
// carries no Authorization header at all.
func credentials(r *http.Request, basic bool) (secret string, present bool) {
	h := r.Header.Get(echo.HeaderAuthorization)
	if h == "" {
		return "", false
	}
	scheme, rest, _ := strings.Cut(h, " ")
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return rest, true
	case basic && strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", true
		}
		_, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", true
		}
		return pass, true
	}
	return "", true
}

// Challenges sent with a 401.
const (
	bearerChallenge = `Bearer realm="staged"`
	basicChallenge  = `Basic realm="staged", charset="UTF-8"`
)

// authenticate requires a valid API key on every request it guards, when
// keys are configured: the key's name becomes the request's tenant
// (tenantOf). Without keys the API is open and every request sees every
// job. A missing or wrong key is a 401 problem with a Bearer challenge.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	if s.keys.open() {
		return next
	}
	return func(c echo.Context) error {
		if err := s.guardAuthFailures(c); err != nil {
			return err
		}
		secret, present := credentials(c.Request(), false)
		k, ok := s.keys.match(secret)
		if !ok || secret == "" {
			if secret != "" { // a guess; no or an empty key is not
				s.authFails.failed(c.RealIP(), time.Now())
			}
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, bearerChallenge)
			return unauthorized(present, "this API needs a key: send it as \"Authorization: Bearer <secret>\" (the CLI sends STAGED_API_KEY)",
				"the API key is not valid: check the secret sent in the Authorization header")
		}
		c.Set("tenant", k.Name)
		return next(c)
	}
}

// requireAdmin guards the dashboard when keys are configured: it takes
// an admin key as a bearer token or, so that a person can open it in a
// browser, as the password of HTTP Basic auth (any user name). Anything
// else is a 401 with both challenges, so the browser asks again.
func (s *Server) requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	if s.keys.open() {
		return next
	}
	return func(c echo.Context) error {
		if err := s.guardAuthFailures(c); err != nil {
			return err
		}
		secret, present := credentials(c.Request(), true)
		k, ok := s.keys.match(secret)
		if ok && secret != "" && k.Admin {
			return next(c)
		}
		if secret != "" && !ok {
			s.authFails.failed(c.RealIP(), time.Now())
		}
		h := c.Response().Header()
		h.Add(echo.HeaderWWWAuthenticate, basicChallenge)
		h.Add(echo.HeaderWWWAuthenticate, bearerChallenge)
		if ok && secret != "" {
			return tasks.Errorf(tasks.EUNAUTHORIZED, "the dashboard needs an admin key; key %q is not one", k.Name)
		}
		return unauthorized(present, "the dashboard needs an admin key: give it as the password when the browser asks, or send \"Authorization: Bearer <secret>\"",
			"that is not a valid admin key: the dashboard needs an admin key's secret (as the password, or as a bearer token)")
	}
}

// unauthorized is the 401 error for a request without a usable key: the
// detail missing when it sent no Authorization header, else invalid.
func unauthorized(present bool, missing, invalid string) error {
	if !present {
		return &tasks.Error{Code: tasks.EUNAUTHORIZED, Message: missing}
	}
	return &tasks.Error{Code: tasks.EUNAUTHORIZED, Message: invalid}
}
