package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/laracopilot/controlplane/tenantdb/queues"
	"github.com/stretchr/testify/require"
)

func fields(body map[string]any) map[string]any {
	e, _ := body["error"].(map[string]any)
	f, _ := e["fields"].(map[string]any)
	return f
}

func TestQueuesAndMembers(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		b.twoTenants()
		h := "acme.example.com"
		for _, n := range []string{"1001", "1002", "1003"} {
			status, _, _ := b.req("POST", h, "/api/extensions", map[string]any{"number": n})
			require.Equal(t, http.StatusCreated, status)
		}
		status, _, other := b.req("POST", "beta.example.org", "/api/extensions", map[string]any{"number": "5000"})
		require.Equal(t, http.StatusCreated, status)
		_ = other

		status, hdr, q := b.req("POST", h, "/api/queues", map[string]any{"name": "Support", "extension": "500"})
		require.Equal(t, http.StatusCreated, status, "%v", q)
		require.Equal(t, "/api/queues/1", hdr.Get("Location"))
		require.Equal(t, "longest-idle-agent", q["strategy"], "the documented default")
		require.EqualValues(t, 0, q["max_wait_seconds"])

		bad := []struct {
			body   map[string]any
			status int
			field  string
		}{
			{map[string]any{"name": "X", "strategy": "ringall"}, 422, "strategy"},
			{map[string]any{"name": "X", "strategy": ""}, 422, "strategy"},
			{map[string]any{"name": ""}, 422, "name"},
			{map[string]any{"name": "X", "max_wait_seconds": 86401}, 422, "max_wait_seconds"},
			{map[string]any{"name": "X", "extension": "5"}, 422, "extension"},
			{map[string]any{"name": "X", "extension": "1001"}, 409, "extension"},
			{map[string]any{"name": "X", "extension": "500"}, 409, "extension"},
			{map[string]any{"name": "Support"}, 409, "name"},
		}
		for _, tc := range bad {
			status, _, got := b.req("POST", h, "/api/queues", tc.body)
			require.Equal(t, tc.status, status, "%v: %v", tc.body, got)
			require.Contains(t, fields(got), tc.field, "%v", tc.body)
		}
		status, _, got := b.req("POST", h, "/api/queues", map[string]any{"name": "X", "strategy": "ringall"})
		require.Equal(t, http.StatusUnprocessableEntity, status)
		require.Equal(t, "must be one of: "+strings.Join(queues.Strategies, ", "), fields(got)["strategy"], "the message lists queues.Strategies")
		// An extension cannot take a queue's dial number either.
		status, _, got = b.req("POST", h, "/api/extensions", map[string]any{"number": "500"})
		require.Equal(t, http.StatusConflict, status, "%v", got)
		require.Contains(t, fields(got), "number")
		status, _, got = b.req("PATCH", h, "/api/extensions/1", map[string]any{"number": "500"})
		require.Equal(t, http.StatusConflict, status, "%v", got)

		// Members.
		status, _, got = b.req("POST", h, "/api/queues/1/members", map[string]any{"extension_id": 2, "level": 2})
		require.Equal(t, http.StatusCreated, status, "%v", got)
		require.Equal(t, map[string]any{"extension_id": 2.0, "number": "1002", "level": 2.0, "position": 1.0}, got)
		status, _, got = b.req("POST", h, "/api/queues/1/members", map[string]any{"extension_id": 2})
		require.Equal(t, http.StatusConflict, status, "%v", got)
		require.Contains(t, fields(got), "extension_id")
		status, _, got = b.req("POST", h, "/api/queues/1/members", map[string]any{"extension_id": 99})
		require.Equal(t, http.StatusUnprocessableEntity, status, "a missing extension: %v", got)
		status, _, got = b.req("POST", h, "/api/queues/1/members", map[string]any{"extension_id": 1, "level": 0})
		require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
		require.Contains(t, fields(got), "level")
		status, _, _ = b.req("POST", h, "/api/queues/9/members", map[string]any{"extension_id": 1})
		require.Equal(t, http.StatusNotFound, status)

		status, _, got = b.req("PUT", h, "/api/queues/1/members", map[string]any{"members": []any{
			map[string]any{"extension_id": 3, "position": 2}, map[string]any{"extension_id": 1},
		}})
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Len(t, got["data"], 2)
		require.Equal(t, "1001", got["data"].([]any)[0].(map[string]any)["number"], "ordered by level, position")

		status, _, got = b.req("PUT", h, "/api/queues/1/members", map[string]any{"members": []any{
			map[string]any{"extension_id": 1}, map[string]any{"extension_id": 42},
		}})
		require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
		require.Contains(t, fields(got), "members[1].extension_id")
		_, _, got = b.req("GET", h, "/api/queues/1/members", nil)
		require.Len(t, got["data"], 2, "a failed replace changes nothing")

		// Deleting an extension removes its memberships.
		status, _, _ = b.req("DELETE", h, "/api/extensions/3", nil)
		require.Equal(t, http.StatusNoContent, status)
		_, _, got = b.req("GET", h, "/api/queues/1/members", nil)
		require.Len(t, got["data"], 1)
		status, _, _ = b.req("DELETE", h, "/api/queues/1/members/1", nil)
		require.Equal(t, http.StatusNoContent, status)
		status, _, _ = b.req("DELETE", h, "/api/queues/1/members/1", nil)
		require.Equal(t, http.StatusNotFound, status)

		// Update and delete; another tenant sees nothing.
		status, _, got = b.req("PATCH", h, "/api/queues/1", map[string]any{"strategy": "ring-all", "extension": ""})
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Equal(t, "ring-all", got["strategy"])
		require.Nil(t, got["extension"])
		status, _, _ = b.req("PATCH", h, "/api/queues/1", map[string]any{"strategy": "fewestcalls"})
		require.Equal(t, http.StatusUnprocessableEntity, status)
		status, _, _ = b.req("GET", "beta.example.org", "/api/queues/1", nil)
		require.Equal(t, http.StatusNotFound, status)
		_, _, got = b.req("GET", "beta.example.org", "/api/queues", nil)
		require.EqualValues(t, 0, got["total"])
		status, _, _ = b.req("DELETE", h, "/api/queues/1", nil)
		require.Equal(t, http.StatusNoContent, status)
		_, _, got = b.req("GET", h, "/api/queues", nil)
		require.EqualValues(t, 0, got["total"])
	})
}

func TestContacts(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		b.twoTenants()
		h := "acme.example.com"
		status, _, c := b.req("POST", h, "/api/contacts", map[string]any{
			"name": "Grace Hopper", "company": "Navy", "email": "grace@navy.example",
			"phones": []any{map[string]any{"number": "+1 (555) 123-4567", "label": "work"}, map[string]any{"number": "+447700900123", "label": "mobile"}},
			"emails": []any{map[string]any{"email": "gh@cobol.example", "label": "personal"}},
			"tags":   []any{"vip", `said "hi", {twice}`},
		})
		require.Equal(t, http.StatusCreated, status, "%v", c)
		require.Equal(t, []any{map[string]any{"number": "+15551234567", "label": "work"}, map[string]any{"number": "+447700900123", "label": "mobile"}}, c["phones"], "numbers are normalised")
		require.Equal(t, []any{"vip", `said "hi", {twice}`}, c["tags"])
		_, _, again := b.req("GET", h, fmt.Sprintf("/api/contacts/%v", c["id"]), nil)
		require.Equal(t, c["tags"], again["tags"], "tags read back as written")
		b.req("POST", h, "/api/contacts", map[string]any{"name": "Alan Turing", "company": "Bletchley"})

		// Caller-ID lookup and search.
		for _, tc := range []struct {
			query string
			names []string
		}{
			{"?phone=%2B15551234567", []string{"Grace Hopper"}},
			{"?phone=+1-555-123-4567", []string{"Grace Hopper"}},
			{"?phone=%2B15550000000", nil},
			{"?q=bletch", []string{"Alan Turing"}},
			{"?q=COBOL", []string{"Grace Hopper"}},
			{"?q=navy.example", []string{"Grace Hopper"}},
			{"", []string{"Alan Turing", "Grace Hopper"}},
		} {
			status, _, got := b.req("GET", h, "/api/contacts"+tc.query, nil)
			require.Equal(t, http.StatusOK, status, tc.query)
			var names []string
			for _, x := range got["data"].([]any) {
				names = append(names, x.(map[string]any)["name"].(string))
			}
			require.Equal(t, tc.names, names, tc.query)
		}
		// The same number in another tenant is fine; in this one it is taken.
		status, _, got := b.req("POST", "beta.example.org", "/api/contacts", map[string]any{"name": "Other", "phones": []any{map[string]any{"number": "+15551234567"}}})
		require.Equal(t, http.StatusCreated, status, "%v", got)
		_, _, got = b.req("GET", "beta.example.org", "/api/contacts?phone=%2B15551234567", nil)
		require.Equal(t, "Other", got["data"].([]any)[0].(map[string]any)["name"])
		status, _, got = b.req("POST", h, "/api/contacts", map[string]any{"name": "Dup", "phones": []any{map[string]any{"number": "+15551234567"}}})
		require.Equal(t, http.StatusConflict, status, "%v", got)
		require.Contains(t, fields(got), "phones")

		for _, tc := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"name": " "}, "name"},
			{map[string]any{"name": "X", "email": "not-an-email"}, "email"},
			{map[string]any{"name": "X", "phones": []any{map[string]any{"number": "555-1234"}}}, "phones[0].number"},
			{map[string]any{"name": "X", "phones": []any{map[string]any{"number": "+15550001111"}, map[string]any{"number": "+1 555 000 1111"}}}, "phones[1].number"},
			{map[string]any{"name": "X", "emails": []any{map[string]any{"email": "@x"}}}, "emails[0].email"},
			{map[string]any{"name": "X", "nickname": "x"}, "nickname"},
		} {
			status, _, got := b.req("POST", h, "/api/contacts", tc.body)
			require.Equal(t, http.StatusUnprocessableEntity, status, "%v: %v", tc.body, got)
			require.Contains(t, fields(got), tc.field, "%v", tc.body)
		}

		// PATCH replaces a list only when it is sent.
		status, _, got = b.req("PATCH", h, "/api/contacts/1", map[string]any{"notes": "admiral"})
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Len(t, got["phones"], 2)
		status, _, got = b.req("PATCH", h, "/api/contacts/1", map[string]any{"phones": []any{map[string]any{"number": "+15559998888"}}})
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Len(t, got["phones"], 1)
		_, _, got = b.req("GET", h, "/api/contacts?phone=%2B15551234567", nil)
		require.EqualValues(t, 0, got["total"], "the old number is free again")
		status, _, got = b.req("PUT", h, "/api/contacts/1", map[string]any{"name": "G. Hopper"})
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, []any{}, got["phones"])
		require.Equal(t, "", got["company"])

		status, _, _ = b.req("GET", "beta.example.org", "/api/contacts/2", nil)
		require.Equal(t, http.StatusNotFound, status, "beta has one contact, id 1")
		status, _, _ = b.req("DELETE", h, "/api/contacts/1", nil)
		require.Equal(t, http.StatusNoContent, status)
		status, _, _ = b.req("GET", h, "/api/contacts/1", nil)
		require.Equal(t, http.StatusNotFound, status)
	})
}
