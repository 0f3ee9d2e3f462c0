package controlplane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// IdempotencyKeyHeader makes POST /api/tenants retry-safe: a create sent
// again with the same key (by the same actor, within IdempotencyTTL) gets
// the first one's outcome instead of a second tenant or a 409 for its own
// slug. See docs/API.md.
const IdempotencyKeyHeader = "Idempotency-Key"

// DefaultIdempotencyTTL is how long a key's outcome is kept: a day, as
// Stripe does, is far longer than any client's retries of one request, and
// short enough that the table stays small.
const DefaultIdempotencyTTL = 24 * time.Hour

// MaxIdempotencyKeyLength bounds a key, in bytes (a UUID is 36; 255 leaves
// room for a client's own prefixes).
const MaxIdempotencyKeyLength = 255

// ParseIdempotencyKey returns the key in a request's Idempotency-Key header
// lines (http.Header.Values): "" when there are none, an Invalid error
// naming the header when the key is empty, longer than 255, not printable
// ASCII, or sent twice (two keys make no one request).
func ParseIdempotencyKey(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", FieldError(IdempotencyKeyHeader, "must be sent once")
	}
	if err := checkIdempotencyKey(values[0]); err != nil {
		return "", err
	}
	return values[0], nil
}

func checkIdempotencyKey(key string) error {
	bad := len(key) == 0 || len(key) > MaxIdempotencyKeyLength
	for i := 0; i < len(key) && !bad; i++ {
		bad = key[i] < 0x20 || key[i] > 0x7e
	}
	if bad {
		return FieldError(IdempotencyKeyHeader, "must be 1 to "+strconv.Itoa(MaxIdempotencyKeyLength)+" printable ASCII characters")
	}
	return nil
}

// IdempotencyRecord is what the catalog keeps of a keyed create: who sent
// which key with what request, and the outcome, either the tenant it
// inserted or the client error it answered. Never a secret: the initial API
// key is not part of it.
type IdempotencyRecord struct {
	Actor, Key  string
	Fingerprint [32]byte
	// TenantID is the tenant the create inserted (0 with Err).
	TenantID int64
	// Err is the client error (4xx) the create answered.
	Err       *Error
	CreatedAt time.Time
}

// IdempotencyStore keeps keyed creates' outcomes (catalog). The record of
// a create that inserts a tenant is written by Catalog.CreateTenantLocked
// with the tenant row (CreateOptions.Idempotency), in its transaction.
type IdempotencyStore interface {
	// IdempotencyRecord returns actor's record of key, nil if there is none
	// younger than ttl. Expired records may be deleted on the way.
	IdempotencyRecord(ctx context.Context, actor, key string, ttl time.Duration) (*IdempotencyRecord, error)
	// RecordIdempotencyError stores rec, an error outcome, unless actor's
	// key has a record already; it returns the record stored, and whether
	// it is rec.
	RecordIdempotencyError(ctx context.Context, rec *IdempotencyRecord) (*IdempotencyRecord, bool, error)
}

// Created is the answer to a create.
type Created struct {
	Tenant *Tenant
	// Key is the tenant's first API key with its secret, shown this once:
	// nil on a replay (only its hash is stored), unless the replay is the
	// one that finished the tenant's provisioning.
	Key *NewAPIKey
	// Replayed says the tenant was created by an earlier request with the
	// same Idempotency-Key.
	Replayed bool
}

// Replayed reports whether err is the stored outcome of an earlier request
// with the same Idempotency-Key, answered again.
func Replayed(err error) bool {
	var r replayedError
	return errors.As(err, &r)
}

type replayedError struct{ err *Error }

func (r replayedError) Error() string { return r.err.Error() }
func (r replayedError) Unwrap() error { return r.err }

// fingerprint identifies a normalised create request, so that a key sent
// again with another request is recognised: the same fields after
// Normalize, settings compared as JSON values (key order and spacing do not
// count), make the same fingerprint.
func (s *TenantSpec) fingerprint() [32]byte {
	h := sha256.New()
	for _, f := range []string{"POST /api/tenants", s.Name, s.Slug, s.Domain, string(s.Status), s.Timezone,
		strconv.Itoa(s.MaxExtensions), string(canonicalJSON(s.Settings)), string(s.Isolation)} {
		// Length-prefixed, so that no two field lists hash alike.
		h.Write([]byte(strconv.Itoa(len(f)) + ":" + f + ";"))
	}
	return [32]byte(h.Sum(nil))
}

// canonicalJSON re-encodes a JSON value with object keys sorted and no
// spaces (numbers kept as written); anything it cannot parse is returned as
// is, which Validate refuses anyway.
func canonicalJSON(raw json.RawMessage) []byte {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return raw
	}
	out, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return out
}

func (s *Tenants) idempotencyTTL() time.Duration {
	if s.IdempotencyTTL > 0 {
		return s.IdempotencyTTL
	}
	return DefaultIdempotencyTTL
}

// CreateIdempotent is Create made retry-safe by key, the request's
// Idempotency-Key ("" for none: a plain Create). The key belongs to the
// actor of ctx. The first request with a key creates as Create does and
// records the key with the tenant row, in the transaction that inserts it,
// or records the client error it answers; a later one with the same key
// and the same (normalised) request gets that outcome again:
//
//   - the tenant, as it is now (its provisioning visible: pending while the
//     first request is still provisioning it), without the initial key's
//     secret, which only the first answer carries;
//   - if its provisioning failed (a 5xx, which is never replayed), the
//     provisioning run again, as POST /api/tenants/{id}/provision would,
//     with the initial key if that run finishes the tenant;
//   - the same 422 or 409.
//
// The same key with another request is 422. Two requests with one key at
// once make one tenant: the second waits in the catalog for the first's
// insert to commit (milliseconds: provisioning comes after) and answers
// with its outcome.
func (s *Tenants) CreateIdempotent(ctx context.Context, key string, spec TenantSpec) (*Created, error) {
	if key == "" {
		t, k, err := s.Create(ctx, spec)
		if err != nil {
			return nil, err
		}
		return &Created{Tenant: t, Key: k}, nil
	}
	if err := checkIdempotencyKey(key); err != nil {
		return nil, err
	}
	if s.Idempotency == nil {
		return nil, &Error{Code: Internal, Err: errors.New("Tenants.Idempotency is not wired")}
	}
	spec.Normalize(s.DefaultIsolation)
	req := &IdempotencyRecord{Actor: ActorFrom(ctx), Key: key, Fingerprint: spec.fingerprint()}
	prev, err := s.Idempotency.IdempotencyRecord(ctx, req.Actor, key, s.idempotencyTTL())
	if err != nil {
		return nil, err
	}
	if prev != nil {
		return s.replay(ctx, req, prev)
	}
	err = spec.Validate()
	if err == nil {
		t, k, inserted, cerr := s.create(ctx, spec, req)
		if cerr == nil {
			return &Created{Tenant: t, Key: k}, nil
		}
		if inserted {
			// The key is recorded with the tenant. What failed after the
			// insert (provisioning) is a server error: not stored, and a
			// retry with the key provisions the tenant again.
			return nil, cerr
		}
		err = cerr
	}
	return s.settle(ctx, req, err)
}

// settle answers a keyed create that failed before inserting a tenant:
// with the outcome of a request with the same key that got there first (a
// concurrent one, whose tenant may well be why this one's slug was taken),
// or else with err, stored if it is a client error.
func (s *Tenants) settle(ctx context.Context, req *IdempotencyRecord, err error) (*Created, error) {
	prev, lerr := s.Idempotency.IdempotencyRecord(ctx, req.Actor, req.Key, s.idempotencyTTL())
	if lerr != nil {
		return nil, lerr
	}
	if prev != nil {
		return s.replay(ctx, req, prev)
	}
	var de *Error
	if !errors.As(err, &de) || !storable(de) {
		return nil, err
	}
	rec := *req
	rec.Err = &Error{Code: de.Code, Message: de.Message, Fields: de.Fields}
	stored, ours, serr := s.Idempotency.RecordIdempotencyError(ctx, &rec)
	switch {
	case serr != nil:
		// Unrecorded, the answer could change on a retry: better a 5xx,
		// which says to retry, than a 4xx the key does not stand for.
		return nil, serr
	case ours:
		return nil, err
	}
	return s.replay(ctx, req, stored)
}

// storable says whether a create's error is a client error to answer again
// to retries: a broken rule, or a slug or domain taken (a conflict naming
// its field). Server errors are not, nor conflicts of timing (an id locked
// by another request, a key being recorded by another): a retry should
// try again.
func storable(e *Error) bool {
	return e.Code == Invalid || (e.Code == Conflict && len(e.Fields) > 0)
}

// replay answers req with prev, the outcome of the first request with its
// key.
func (s *Tenants) replay(ctx context.Context, req, prev *IdempotencyRecord) (*Created, error) {
	if prev.Fingerprint != req.Fingerprint {
		return nil, &Error{Code: Invalid, Message: IdempotencyKeyHeader + " reused with a different request",
			Fields: map[string]string{IdempotencyKeyHeader: "was sent before with a different request; a new request needs a new key"}}
	}
	if prev.Err != nil {
		return nil, replayedError{prev.Err}
	}
	t, err := s.Catalog.Tenant(ctx, prev.TenantID)
	if ErrorCode(err) == NotFound {
		return nil, replayedError{Errorf(NotFound, "tenant %d, created by the first request with this %s, has since been deleted", prev.TenantID, IdempotencyKeyHeader)}
	}
	if err != nil {
		return nil, err
	}
	var key *NewAPIKey
	if t.Provisioning == ProvisionFailed {
		if t, key, err = s.reprovision(ctx, t.ID); err != nil {
			return nil, err
		}
	}
	return &Created{Tenant: t, Key: key, Replayed: true}, nil
}

// reprovision provisions again tenant id, whose keyed create failed to
// provision it, for a retry of that create. The create never issued the
// initial API key; if this run finishes the tenant and it has no key yet,
// the retry gets it, as the create would have.
func (s *Tenants) reprovision(ctx context.Context, id int64) (*Tenant, *NewAPIKey, error) {
	ctx, cancel := s.detach(ctx)
	defer cancel()
	unlock, err := s.Catalog.LockTenant(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	t, err := s.Catalog.Tenant(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if t.Provisioning != ProvisionFailed {
		return t, nil, nil // another request provisioned it meanwhile
	}
	if err := s.Catalog.Record(ctx, "tenant.provision", id, t.Slug, nil); err != nil {
		return nil, nil, err
	}
	if t, err = s.Catalog.SetProvisioning(ctx, id, ProvisionPending, 0, ""); err != nil {
		return nil, nil, err
	}
	if t, err = s.provisionLocked(ctx, t); err != nil {
		return nil, nil, err
	}
	keys, err := s.Keys.APIKeys(ctx, id)
	if err != nil || len(keys) > 0 {
		if err != nil {
			s.Log.Error("tenant provisioned again; its API keys could not be listed, so no initial key was issued", "tenant_id", id, "err", err)
		}
		return t, nil, nil
	}
	key, err := s.CreateKey(ctx, id, KeySpec{Name: "initial"})
	if err != nil {
		// The tenant is fine; an operator can issue a key at any time.
		s.Log.Error("tenant provisioned again without its initial API key", "tenant_id", id, "err", err)
	}
	return t, key, nil
}
