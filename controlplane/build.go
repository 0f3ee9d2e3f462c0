package controlplane

// Build says which control plane is running: what `controlplane version`
// prints, what /healthz and the controlplane_build_info metric show and
// what serve logs first. A tenant newer than the binary is refused (503),
// so an operator needs to know which binary is deployed where.
type Build struct {
	Version   string `json:"version"`    // a release tag (make build: git describe), or "dev"
	Commit    string `json:"commit"`     // the git commit, "-dirty" when built from a changed checkout
	Date      string `json:"build_date"` // when it was built (RFC 3339), or the commit's time
	GoVersion string `json:"go_version"`
	// The latest migrations the binary carries: a catalog or a tenant at a
	// higher version was migrated by a newer binary.
	CatalogSchema uint `json:"catalog_schema"`
	TenantSchema  uint `json:"tenant_schema"`
}
