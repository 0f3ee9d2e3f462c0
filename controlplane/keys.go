package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// APIKey is a tenant's API key as listed: never its secret.
type APIKey struct {
	ID         int64      `json:"id"`
	TenantID   int64      `json:"-"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// NewAPIKey is a key just created: the only time its secret is shown.
type NewAPIKey struct {
	APIKey
	Key string `json:"key"`
}

// KeyPrefix starts every tenant API key, so a leaked one is recognisable
// (secret scanners, logs).
const KeyPrefix = "lc_"

// GenerateKey returns a new key (256 random bits), its SHA-256 hash (what is
// stored) and the prefix shown in lists.
func GenerateKey() (key string, hash [32]byte, shown string) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	key = KeyPrefix + hex.EncodeToString(b[:])
	return key, HashKey(key), key[:len(KeyPrefix)+8]
}

// HashKey is the stored form of a key.
func HashKey(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// KeyStore keeps tenants' API keys (catalog).
type KeyStore interface {
	CreateAPIKey(ctx context.Context, tenantID int64, name, prefix string, hash [32]byte) (*APIKey, error)
	APIKeys(ctx context.Context, tenantID int64) ([]APIKey, error)
	DeleteAPIKey(ctx context.Context, tenantID, keyID int64) error
}

// KeySpec names a new key.
type KeySpec struct {
	Name string `json:"name" validate:"max=200"`
}
