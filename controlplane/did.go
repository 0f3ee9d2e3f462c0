package controlplane

import (
	"context"
	"time"
)

// DIDTarget is where inbound calls to a DID number go inside its tenant.
type DIDTarget struct {
	Type string `json:"target_type"` // none, extension or queue
	ID   *int64 `json:"target_id"`
}

// DIDState is the state of a DID's row in the global index.
type DIDState string

// Index states: a change is written to the index first (creating, updating,
// deleting), then to the tenant database, then settled (active).
const (
	DIDCreating DIDState = "creating"
	DIDActive   DIDState = "active"
	DIDUpdating DIDState = "updating"
	DIDDeleting DIDState = "deleting"
)

// DIDEntry is one row of the global DID index.
type DIDEntry struct {
	Number    string
	TenantID  int64
	Target    DIDTarget
	State     DIDState
	UpdatedAt time.Time
}

// DIDRoute answers "where does a call to this number go": the operator
// lookup a SIP edge makes per inbound call.
type DIDRoute struct {
	Number string         `json:"number"`
	Tenant DIDRouteTenant `json:"tenant"`
	DIDTarget
}

// DIDRouteTenant is the owning tenant, as the edge needs it.
type DIDRouteTenant struct {
	ID     int64  `json:"id"`
	Slug   string `json:"slug"`
	Domain string `json:"domain"`
	Status Status `json:"status"`
}

// DIDIndex is the global DID → tenant index, in the catalog.
type DIDIndex interface {
	// ClaimDID records number for tenant in state creating; Conflict if any
	// tenant holds it.
	ClaimDID(ctx context.Context, tenantID int64, number string, target DIDTarget) error
	// BeginDIDChange moves tenant's active number to state (updating or
	// deleting) with target, returning the target it had; Conflict if a
	// change is already in flight, NotFound if the tenant does not hold it.
	BeginDIDChange(ctx context.Context, tenantID int64, number string, state DIDState, target DIDTarget) (DIDTarget, error)
	// SettleDID makes number active with target.
	SettleDID(ctx context.Context, number string, target DIDTarget) error
	// ReleaseDID removes number from the index.
	ReleaseDID(ctx context.Context, number string) error
	// LookupDID returns the route of an active (or updating) number.
	LookupDID(ctx context.Context, number string) (*DIDRoute, error)
	// UnsettledDIDs returns rows in flight since before olderThan.
	UnsettledDIDs(ctx context.Context, olderThan time.Time) ([]DIDEntry, error)
}
