package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
)

func newTenants() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tenants",
		Short: "Tenant maintenance",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate-role-passwords",
		Short: "Reset every database-mode tenant's role password to the current TENANT_ROLE_SECRET",
		Long: `Database-mode tenants each have a login role whose password is derived from
TENANT_ROLE_SECRET. After changing the secret, run this command with the new
one, then restart the servers with it: connections already open keep working,
new ones use the new password.`,
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
			var ts []*controlplane.Tenant
			app.Store.Cache().Each(func(t *controlplane.Tenant) {
				if t.Isolation == controlplane.IsolationDatabase && t.Provisioning == controlplane.ProvisionReady {
					ts = append(ts, t)
				}
			})
			controlplane.SortBySlug(ts)
			var errs []error
			for _, t := range ts {
				if err := app.Provisioner.RotateRolePassword(cmd.Context(), t); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", t.Slug, err))
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d tenant roles updated, %d failed\n", len(ts)-len(errs), len(errs))
			return errors.Join(errs...)
		},
	})
	return cmd
}
