package dids

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A patch changes the fields it sends and keeps the others; a new target
// type drops the old target id unless one comes with it, and "none"
// always drops it.
func TestPatchApply(t *testing.T) {
	ptr := func(s string) *string { return &s }
	id := func(n int64) *int64 { return &n }
	cur := Spec{Number: "+15551230001", TargetType: "extension", TargetID: id(7), Description: "front desk"}
	for _, tc := range []struct {
		name  string
		patch Patch
		want  Spec
	}{
		{"nothing sent", Patch{}, cur},
		{"description only", Patch{Description: ptr("lobby")}, Spec{Number: "+15551230001", TargetType: "extension", TargetID: id(7), Description: "lobby"}},
		{"to a queue, with its id", Patch{TargetType: ptr("queue"), TargetID: id(3)}, Spec{Number: "+15551230001", TargetType: "queue", TargetID: id(3), Description: "front desk"}},
		{"to a queue, no id sent", Patch{TargetType: ptr("queue")}, Spec{Number: "+15551230001", TargetType: "queue", Description: "front desk"}},
		{"to none with an id: the id sent stands, for validation to judge", Patch{TargetType: ptr("none"), TargetID: id(3)}, Spec{Number: "+15551230001", TargetType: "none", TargetID: id(3), Description: "front desk"}},
		{"to none", Patch{TargetType: ptr("none")}, Spec{Number: "+15551230001", TargetType: "none", Description: "front desk"}},
		{"another extension", Patch{TargetID: id(9)}, Spec{Number: "+15551230001", TargetType: "extension", TargetID: id(9), Description: "front desk"}},
	} {
		require.Equal(t, tc.want, tc.patch.Apply(cur), tc.name)
	}
	require.Equal(t, id(7), cur.TargetID, "the current spec is not changed")
}
