package migrations_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/migrations"
)

// migrate create writes the next numbered pair after the highest version
// in the folder, in golang-migrate's names, never over a file, and refuses
// a name that is not lower-case words joined by underscores.
func TestCreate(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"000001_init.up.sql", "000001_init.down.sql", "000007_later.up.sql", "000007_later.down.sql", "README.md"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte("SELECT 1;\n"), 0o644))
	}
	up, down, err := migrations.Create(dir, "extension_department")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "000008_extension_department.up.sql"), up)
	require.Equal(t, filepath.Join(dir, "000008_extension_department.down.sql"), down)
	body, err := os.ReadFile(up)
	require.NoError(t, err)
	require.Contains(t, string(body), "-- up 8: extension department")

	h, err := migrations.ReadHistory(os.DirFS(dir))
	require.NoError(t, err)
	require.Equal(t, uint(8), h.Latest)
	require.True(t, h.Transactional, "the header does not make the file non-transactional")

	up2, _, err := migrations.Create(dir, "next_one")
	require.NoError(t, err)
	require.Contains(t, up2, "000009_next_one.up.sql")
	for _, bad := range []string{"Extension", "has space", "dash-name", "", "_x", "x__y", "../x"} {
		_, _, err := migrations.Create(dir, bad)
		require.Error(t, err, bad)
	}
	_, _, err = migrations.Create(filepath.Join(dir, "missing"), "x")
	require.ErrorContains(t, err, "--dir")
}
