package extensions

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A patch changes the fields it sends and keeps the others; an empty
// outbound_caller_id clears it; a password is set only when sent.
func TestPatchApply(t *testing.T) {
	ptr := func(s string) *string { return &s }
	off := false
	cur := Spec{Number: "1001", Name: "Alice", Enabled: true, OutboundCallerID: ptr("+15551230001")}
	require.Equal(t, cur, Patch{}.Apply(cur), "nothing sent")
	got := Patch{Name: ptr("Alice B."), Enabled: &off}.Apply(cur)
	require.Equal(t, Spec{Number: "1001", Name: "Alice B.", Enabled: false, OutboundCallerID: ptr("+15551230001")}, got)
	got = Patch{OutboundCallerID: ptr("")}.Apply(cur)
	require.Nil(t, got.OutboundCallerID, "an empty caller id clears it")
	got = Patch{Password: ptr("correct horse battery")}.Apply(cur)
	require.Equal(t, ptr("correct horse battery"), got.Password)
	require.Nil(t, Patch{Number: ptr("1002")}.Apply(cur).Password, "left out, the password is kept (not set again)")
}
