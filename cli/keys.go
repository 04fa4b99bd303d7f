package cli

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/staged-dev/staged/server"
)

// The API keys file (STAGED_API_KEYS_FILE, --api-keys-file) holds only the
// SHA-256 of each secret, one key per line:
//
//	# name  digest                   [admin]
//	acme    sha256:9f86d081884c7d65...
//	ops     sha256:60303ae22b998861...  admin
//
// Blank lines and everything after '#' are ignored. A name may appear on
// several lines (to rotate its secret); a digest only once. The digest of a
// secret: printf %s "$SECRET" | sha256sum.

// maxKeysFile bounds the size of the keys file.
const maxKeysFile = 1 << 20

// loadKeysFile reads the keys file named by STAGED_API_KEYS_FILE or
// --api-keys-file, if any, into c.FileKeys. Only the processes that serve
// the API (api, dev) read it.
func loadKeysFile(s *source, c *Config) error {
	path, from, ok := s.get(setAPIKeysFile)
	if !ok {
		return nil
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return invalid(from, "cannot read the keys file: %v", err)
	case fi.Size() > maxKeysFile:
		return invalid(from, "%s is larger than %d bytes: is it the keys file?", path, maxKeysFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return invalid(from, "cannot read the keys file: %v", err)
	}
	keys, err := parseKeysFile(b)
	if err != nil {
		return invalid(from, "%s: %v", path, err)
	}
	c.KeysFile, c.FileKeys = path, keys
	return nil
}

// parseKeysFile parses the keys file format. Errors name the line, never
// its content.
func parseKeysFile(b []byte) ([]server.Key, error) {
	var keys []server.Key
	seen := map[[32]byte]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxKeysFile)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 || len(f) > 3 || (len(f) == 3 && f[2] != "admin") {
			return nil, fmt.Errorf("line %d: want \"name sha256:<64 hex digits> [admin]\"", n)
		}
		if !server.ValidKeyName(f[0]) {
			return nil, fmt.Errorf("line %d: the name must be 1-64 letters, digits, '-', '_' or '.'", n)
		}
		hexDigest, ok := strings.CutPrefix(f[1], "sha256:")
		d, err := hex.DecodeString(hexDigest)
		if !ok || err != nil || len(d) != 32 {
			return nil, fmt.Errorf("line %d: the digest must be sha256: and 64 hex digits (the SHA-256 of the secret, not the secret)", n)
		}
		k := server.Key{Name: f[0], Admin: len(f) == 3}
		copy(k.Digest[:], d)
		if prev, dup := seen[k.Digest]; dup {
			return nil, fmt.Errorf("line %d has the same digest as line %d", n, prev)
		}
		seen[k.Digest] = n
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no keys in the file")
	}
	return keys, nil
}

// serverKeys returns every configured key, from STAGED_API_KEYS,
// STAGED_ADMIN_KEYS and the keys file. A secret given twice under the same
// name is one key (an admin key if either says so); under two names it is
// an error, as it could not tell the tenants apart.
func serverKeys(c *Config) ([]server.Key, error) {
	var keys []server.Key
	from := map[[32]byte]string{} // digest -> where it was given
	add := func(k server.Key, where string) error {
		for i := range keys {
			if keys[i].Digest != k.Digest {
				continue
			}
			if keys[i].Name != k.Name {
				return invalid(where, "key %q has the same secret as key %q of %s", k.Name, keys[i].Name, from[k.Digest])
			}
			keys[i].Admin = keys[i].Admin || k.Admin
			return nil
		}
		from[k.Digest] = where
		keys = append(keys, k)
		return nil
	}
	for _, k := range c.APIKeys {
		if err := add(server.KeyFromSecret(k.Name, k.Secret, false), setAPIKeys.env); err != nil {
			return nil, err
		}
	}
	for _, k := range c.AdminKeys {
		if err := add(server.KeyFromSecret(k.Name, k.Secret, true), setAdminKeys.env); err != nil {
			return nil, err
		}
	}
	for _, k := range c.FileKeys {
		if err := add(k, c.KeysFile); err != nil {
			return nil, err
		}
	}
	return keys, nil
}
