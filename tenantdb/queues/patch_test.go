package queues

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A patch changes the fields it sends and keeps the others; an empty
// extension clears the queue's dial number.
func TestPatchApply(t *testing.T) {
	ptr := func(s string) *string { return &s }
	wait := 60
	cur := Spec{Name: "Support", Extension: ptr("500"), Strategy: DefaultStrategy, MaxWaitSeconds: 300}
	require.Equal(t, cur, Patch{}.Apply(cur), "nothing sent")
	require.Equal(t, Spec{Name: "Support", Extension: ptr("500"), Strategy: "ring-all", MaxWaitSeconds: 60},
		Patch{Strategy: ptr("ring-all"), MaxWaitSeconds: &wait}.Apply(cur))
	require.Nil(t, Patch{Extension: ptr("")}.Apply(cur).Extension, "an empty extension clears the dial number")
	require.Equal(t, ptr("501"), Patch{Extension: ptr("501")}.Apply(cur).Extension)
}
