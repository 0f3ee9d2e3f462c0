package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/cmd/controlplane/internal/apiclient"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/docs"
)

// TestGeneratedClient drives a real server with the client oapi-codegen
// made from docs/openapi.yaml alone: the operator creates a tenant (with an
// Idempotency-Key, and its replay), the tenant adds an extension with its
// own API key under /t/{slug}, posts a batch of CDRs (and again: nothing new
// is stored) and lists them; the operator reads the spec itself at
// /openapi.json. Its requests go through http.DefaultClient, so every
// answer is also checked against the spec (serveChecked).
func TestGeneratedClient(t *testing.T) {
	t.Parallel()
	const token = "generated-client-operator-token"
	b := setup(t, controlplane.IsolationDatabase, "ADMIN_TOKEN="+token)
	ctx := context.Background()
	bearer := func(secret string) apiclient.ClientOption {
		return apiclient.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Bearer "+secret)
			return nil
		})
	}
	operator, err := apiclient.NewClientWithResponses(b.srv.URL, apiclient.WithHTTPClient(http.DefaultClient), bearer(token))
	require.NoError(t, err)

	// The operator creates the tenant.
	key := "create-acme-1"
	spec := apiclient.TenantSpec{Name: "Acme Corp", Slug: "acme-corp", Domain: "acme.example.com", Timezone: ptr("America/New_York")}
	created, err := operator.CreateTenantWithResponse(ctx, &apiclient.CreateTenantParams{IdempotencyKey: &key}, spec)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, created.StatusCode(), "%s", created.Body)
	tenant := created.JSON201
	require.Equal(t, "acme-corp", tenant.Slug)
	require.Equal(t, apiclient.ProvisionStateReady, tenant.Provisioning)
	require.Equal(t, apiclient.Isolation("database"), tenant.Isolation)
	require.Equal(t, "America/New_York", tenant.Timezone)
	require.Equal(t, fmt.Sprintf("/api/tenants/%d", tenant.Id), created.HTTPResponse.Header.Get("Location"))
	require.NotNil(t, tenant.ApiKey)
	require.Regexp(t, `^lc_[0-9a-f]{64}$`, tenant.ApiKey.Key)
	apiKey := tenant.ApiKey.Key

	replay, err := operator.CreateTenantWithResponse(ctx, &apiclient.CreateTenantParams{IdempotencyKey: &key}, spec)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, replay.StatusCode(), "%s", replay.Body)
	require.Equal(t, "true", replay.HTTPResponse.Header.Get("Idempotent-Replayed"))
	require.Equal(t, tenant.Id, replay.JSON201.Id)
	require.Nil(t, replay.JSON201.ApiKey, "the key's secret is shown once")

	// The tenant, with its own key, under /t/{slug}.
	acme, err := apiclient.NewClientWithResponses(b.srv.URL+"/t/acme-corp", apiclient.WithHTTPClient(http.DefaultClient), bearer(apiKey))
	require.NoError(t, err)
	ext, err := acme.CreateExtensionWithResponse(ctx, apiclient.ExtensionSpec{Number: "1001", Name: ptr("Reception"), Password: ptr("s3cret-pass")})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, ext.StatusCode(), "%s", ext.Body)
	require.Equal(t, "1001", ext.JSON201.Number)
	require.Equal(t, "Reception", ext.JSON201.Name)
	require.True(t, ext.JSON201.Enabled)
	require.True(t, ext.JSON201.PasswordSet)
	require.Nil(t, ext.JSON201.OutboundCallerId)
	extID := ext.JSON201.Id

	var batch apiclient.CDRPost
	require.NoError(t, batch.FromCDRBatch(apiclient.CDRBatch{Cdrs: []apiclient.CDRSpec{
		{Uuid: "0b5a2c1e-51f4-4a4e-9c1d-2f6f0c7f9a01", Direction: apiclient.CDRDirection("outbound"), Src: ptr("1001"), Dst: "+442071838750",
			StartAt: "2025-11-02T05:30:00Z", AnswerAt: ptr("2025-11-02T05:30:03Z"), EndAt: "2025-11-02T05:30:50Z",
			Duration: 50, Billsec: ptr(47), Disposition: apiclient.CDRDisposition("ANSWERED"), ExtensionId: &extID},
		{Uuid: "0b5a2c1e-51f4-4a4e-9c1d-2f6f0c7f9a02", Direction: apiclient.CDRDirection("outbound"), Src: ptr("1001"), Dst: "+4930123456",
			StartAt: "2025-11-02T14:00:00Z", EndAt: "2025-11-02T14:00:25Z",
			Duration: 25, Disposition: apiclient.CDRDisposition("NO ANSWER"), ExtensionId: &extID},
	}}))
	posted, err := acme.PostCDRsWithResponse(ctx, batch)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, posted.StatusCode(), "%s", posted.Body)
	reply, err := posted.JSON201.AsCDRBatchReply()
	require.NoError(t, err)
	require.Equal(t, 2, reply.Created)
	require.Equal(t, 0, reply.Existing)
	require.Len(t, reply.Results, 2)
	require.Nil(t, reply.Results[0].RateId, "no rate covers +44 in this tenant")
	require.Equal(t, "no_rate", deref(reply.Results[0].UnratedReason))
	require.Equal(t, "not_answered", deref(reply.Results[1].UnratedReason))

	again, err := acme.PostCDRsWithResponse(ctx, batch)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, again.StatusCode(), "a re-posted batch stores nothing: %s", again.Body)
	replyAgain, err := again.JSON200.AsCDRBatchReply()
	require.NoError(t, err)
	require.Equal(t, 0, replyAgain.Created)
	require.Equal(t, 2, replyAgain.Existing)
	require.Equal(t, reply.Results[0].Id, replyAgain.Results[0].Id)

	list, err := acme.ListCDRsWithResponse(ctx, &apiclient.ListCDRsParams{ExtensionId: &extID})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, list.StatusCode(), "%s", list.Body)
	require.Len(t, list.JSON200.Data, 2)
	require.Nil(t, list.JSON200.NextCursor)
	require.Equal(t, "0b5a2c1e-51f4-4a4e-9c1d-2f6f0c7f9a02", list.JSON200.Data[0].Uuid.String(), "newest first")
	require.Equal(t, 47, list.JSON200.Data[1].Billsec)
	require.Equal(t, extID, *list.JSON200.Data[1].ExtensionId)

	// A wrong key is refused with the error object; the operator API is
	// not reachable under /t/{slug}.
	stranger, err := apiclient.NewClientWithResponses(b.srv.URL+"/t/acme-corp", apiclient.WithHTTPClient(http.DefaultClient), bearer("lc_"+fmt.Sprintf("%064d", 0)))
	require.NoError(t, err)
	refused, err := stranger.ListExtensionsWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, refused.StatusCode())
	require.Equal(t, apiclient.ErrorCode("unauthorized"), refused.JSON401.Error.Code)
	hidden, err := acme.GetOpenAPIWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, hidden.StatusCode())

	// The operator reads the spec, as JSON: the embedded docs/openapi.yaml.
	served, err := operator.GetOpenAPIWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, served.StatusCode())
	require.Equal(t, "application/json", served.HTTPResponse.Header.Get("Content-Type"))
	want, err := docs.OpenAPIJSON()
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(served.Body))
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(served.Body, &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)
	require.Contains(t, doc.Paths, "/api/cdrs")
	anonymous, err := apiclient.NewClientWithResponses(b.srv.URL, apiclient.WithHTTPClient(http.DefaultClient))
	require.NoError(t, err)
	noToken, err := anonymous.GetOpenAPIWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, noToken.StatusCode(), "the operator API's gate: %s", noToken.Body)
}

func ptr[T any](v T) *T { return &v }

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
