package contacts

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Tags go to PostgreSQL in the text form of a text[] and come back from
// it: whatever a tag holds (quotes, commas, braces, backslashes, the word
// NULL, spaces, non-ASCII) survives the round trip, and no tags are an
// empty array, not NULL (the column is NOT NULL).
func TestTextArrayRoundTrip(t *testing.T) {
	for _, tags := range [][]string{
		nil,
		{},
		{"vip"},
		{`a "quoted" tag`, "comma, inside", "{braces}", `back\slash`, "NULL", "null", " spaced ", "émigré ☎", ""},
	} {
		v, err := textArray(tags).Value()
		require.NoError(t, err)
		var back textArray
		require.NoError(t, back.Scan(v))
		want := tags
		if want == nil {
			want = []string{}
		}
		require.Equal(t, want, []string(back), "%q as %q", tags, v)
		require.NotNil(t, back)
		// The driver hands the column's text as bytes too.
		var fromBytes textArray
		require.NoError(t, fromBytes.Scan([]byte(v.(string))))
		require.Equal(t, want, []string(fromBytes))
	}
}
