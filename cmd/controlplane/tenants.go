package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/laracopilot/controlplane/migrations"
)

func newTenants() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tenants",
		Short: "Tenant maintenance",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate-role-passwords",
		Short: "Set every database-mode tenant's role password from the current role secret",
		Long: `Database-mode tenants each have a login role whose password is derived from
the role secret: TENANT_ROLE_SECRET, or without it a random secret kept in the
catalog database. serve sets every role's password itself when it starts with
another secret than the one they were last set from; this command does it
unconditionally (say, after a replica still on an older secret created
tenants), then records the secret as the one the roles were set from.
Connections already open keep working; new ones need the new password.
Run it with the same TENANT_ROLE_SECRET (or none) as the servers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			app, err := openCore(cmd.Context(), cfg, log, migrations.Tenant)
			if err != nil {
				return err
			}
			defer app.Close()
			r, err := app.RolePasswords.Sync(cmd.Context(), true)
			if r.Ran {
				fmt.Fprintf(cmd.OutOrStdout(), "%d tenant roles updated, %d failed\n", r.Rotated, r.Failed)
			}
			return err
		},
	})
	return cmd
}
