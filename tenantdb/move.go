package tenantdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/query"
)

// A move copies one tenant from the server it is on (Source) to another
// (Target), then flips the catalog and sets the source aside
// (docs/OPERATIONS.md, "Moving a tenant"). The catalog's flip
// (MoveHooks.Flip) is the commit point: before it the source is the
// tenant's and whatever the move made on the target is dropped by
// UndoMove; after it the target is, and FinishMove closes the source. Both
// are idempotent and read what exists, so a move cut short at any step is
// finished or undone after a restart.
//
// Online (logical replication): a publication of the tenant's tables on
// the source, a subscription on the target (a database or schema made at
// the same schema version), the initial copy and the stream while the
// tenant is served; then the cutover: the tenant's new requests are held
// on every replica (MoveHooks.Hold), its tables locked against writes on
// the source (the fence: a write in flight finishes first, a later one
// waits), the target caught up to the source's WAL position, sequences
// copied, the subscription dropped, the catalog flipped (which releases
// the held requests to the target), and the source closed. A cutover that
// does not fit in CutoverTimeout is abandoned (the requests go on to the
// source) and tried again.
//
// Offline (pg_dump/pg_restore): the tenant answers 503 (MoveHooks.Offline),
// the same fence is taken, the source dumped and restored on the target,
// the catalog flipped, the source closed.
type Move struct {
	Source, Target *Provisioner
	// SourceName and TargetName are the servers' registry names.
	SourceName, TargetName string
	Tenant                 *controlplane.Tenant
	Op                     int64
	Mode                   controlplane.MoveMode
	// Scratch is the file an offline move's archive is written to (and
	// removed from).
	Scratch        string
	CutoverTimeout time.Duration
	// SlotTimeout bounds the wait for the replication slot on the source
	// (makeSlot); 0 waits as long as PostgreSQL does.
	SlotTimeout time.Duration
	Hooks       controlplane.MoveHooks
	Log         *slog.Logger
	// Step, if set, is called at each named step (tests kill the process
	// there).
	Step func(name string)
}

// moveName names what move op of t makes for its replication: the
// publication, the subscription and its slot. Slot names are the
// server's, not a database's: the tenant's name keeps two catalogs'
// moves on one server apart (it is lower-case letters, digits and
// underscores, as slot names must be: TENANT_DB_PREFIX and an id).
func moveName(t *controlplane.Tenant, op int64) string {
	return t.DBName + "_move_" + strconv.FormatInt(op, 10)
}

// moveMark marks what move op makes on the target until the flip, and the
// source it sets aside after.
func (p *Provisioner) moveMark(t *controlplane.Tenant, op int64) string {
	return p.mark(t) + " move " + strconv.FormatInt(op, 10)
}

// moveAside is the name the source of move op is kept under.
func moveAside(t *controlplane.Tenant, op int64) string {
	return t.DBName + "_m" + strconv.FormatInt(op, 10)
}

// home is where t's data lives on p: its database and schema.
func (p *Provisioner) home(t *controlplane.Tenant) (database, schema string) {
	if t.Isolation == controlplane.IsolationSchema {
		return p.server.Database, t.DBName
	}
	return t.DBName, "public"
}

func (m *Move) step(name string) {
	if m.Step != nil {
		m.Step(name)
	}
}

// errSlotTimeout is a move that waited MOVE_SLOT_TIMEOUT for its slot.
var errSlotTimeout = errors.New("the source server kept a transaction open too long")

// errCutover is a cutover abandoned for time: the move tries again.
var errCutover = errors.New("the cutover did not fit in MOVE_CUTOVER_TIMEOUT")

// Run moves the tenant and returns the name its source is kept under.
// flipped says whether the catalog was flipped (then an error is in
// closing the source, which FinishMove completes). The caller has run
// Check (Operations.StartMove does, under the tenant's lock).
func (m *Move) Run(ctx context.Context) (aside string, flipped bool, err error) {
	t := m.Tenant
	if err := m.Source.checkName(t); err != nil {
		return "", false, err
	}
	src, dst := m.Source.openHome(t), m.Target.openHome(t)
	defer src.Close()
	defer func() {
		if dst != nil {
			dst.Close()
		}
	}()
	var fence *sql.Conn
	switch m.Mode {
	case controlplane.MoveOnline:
		fence, err = m.online(ctx, src, func() *sql.DB { return dst })
	case controlplane.MoveOffline:
		fence, err = m.offline(ctx, src)
	default:
		err = fmt.Errorf("unknown move mode %q", m.Mode)
	}
	if err != nil {
		return "", false, err
	}
	// Flipped: the tenant is the target's now.
	m.step("move:flipped")
	dst.Close()
	dst = nil
	aside, err = m.finish(ctx, fence)
	err = errors.Join(err, m.Target.adoptMoved(ctx, t, m.Op))
	if m.Scratch != "" {
		_ = os.Remove(m.Scratch)
	}
	return aside, true, err
}

// Check refuses early a move the servers cannot do: an online move needs
// logical replication on the source and the right to subscribe on the
// target (docs/OPERATIONS.md, "Privileges a move needs").
func (m *Move) Check(ctx context.Context) error {
	if m.Mode != controlplane.MoveOnline {
		return nil
	}
	if err := m.Source.checkPublisher(ctx, m.SourceName); err != nil {
		return err
	}
	return m.Target.checkSubscriber(ctx, m.TargetName)
}

// checkPublisher says why p cannot be the source of an online move.
func (p *Provisioner) checkPublisher(ctx context.Context, name string) error {
	var level string
	var replication bool
	err := p.admin.QueryRowContext(ctx, `SELECT current_setting('wal_level'), rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user`).Scan(&level, &replication)
	if err != nil {
		return err
	}
	refuse := func(why string) error {
		return controlplane.Errorf(controlplane.Conflict, "tenant server %s cannot be the source of an online move: %s; move offline instead ({\"mode\": \"offline\"})", name, why)
	}
	if level != "logical" {
		return refuse("its wal_level is " + level + ", not logical (set wal_level = logical and restart it)")
	}
	if !replication {
		return refuse("the control plane's role has neither SUPERUSER nor REPLICATION there, which the target's subscription connects with")
	}
	return nil
}

// checkSubscriber says why p cannot be the target of an online move:
// CREATE SUBSCRIPTION takes a superuser before PostgreSQL 16, and from 16
// a member of pg_create_subscription.
func (p *Provisioner) checkSubscriber(ctx context.Context, name string) error {
	var version int
	var super, member bool
	err := p.admin.QueryRowContext(ctx, `SELECT current_setting('server_version_num')::int, r.rolsuper,
			EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'pg_create_subscription' AND pg_has_role(current_user, g.oid, 'MEMBER'))
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&version, &super, &member)
	if err != nil {
		return err
	}
	if super || (version >= 160000 && member) {
		return nil
	}
	need := "SUPERUSER (PostgreSQL " + strconv.Itoa(version/10000) + " lets only a superuser create a subscription)"
	if version >= 160000 {
		need = "membership of pg_create_subscription"
	}
	return controlplane.Errorf(controlplane.Conflict, "tenant server %s cannot be the target of an online move: the control plane's role there lacks %s; grant it, or move offline ({\"mode\": \"offline\"})", name, need)
}

// openHome opens an admin pool on the database holding t's data on p.
func (p *Provisioner) openHome(t *controlplane.Tenant) *sql.DB {
	database, _ := p.home(t)
	return p.open(database, "", "")
}

// online copies the tenant by logical replication and cuts over; it
// returns the fence (the source's tables locked) once the catalog is
// flipped.
func (m *Move) online(ctx context.Context, src *sql.DB, dst func() *sql.DB) (*sql.Conn, error) {
	t := m.Tenant
	h, err := m.Target.history()
	if err != nil {
		return nil, err
	}
	if t.SchemaVersion != h.Latest || t.SchemaDirty {
		return nil, controlplane.Errorf(controlplane.Conflict, "tenant %d is at schema version %d%s; an online move makes the target at %d: migrate it first (controlplane migrate tenants up --tenant %s)",
			t.ID, t.SchemaVersion, map[bool]string{true: " (dirty)"}[t.SchemaDirty], h.Latest, t.Slug)
	}
	m.progress("preparing", nil)
	if err := m.Target.prepareTarget(ctx, t, m.Op, h); err != nil {
		return nil, err
	}
	m.step("move:target")
	_, schema := m.Source.home(t)
	want, err := fingerprint(ctx, dst(), t.Isolation, schema)
	if err != nil {
		return nil, err
	}
	if err := m.compare(ctx, src, want); err != nil {
		return nil, err
	}
	tables := publishedTables(want)
	// The initial copy fills tables without the indexes it does not
	// need, built after it in one pass each, as pg_restore builds them.
	indexes, err := deferIndexes(ctx, dst(), schema)
	if err != nil {
		return nil, err
	}
	name := moveName(t, m.Op)
	if _, err := src.ExecContext(ctx, `CREATE PUBLICATION `+quote(name)+` FOR TABLE `+strings.Join(tables, ", ")); err != nil && !isDuplicateObject(err) {
		return nil, fmt.Errorf("publication on the source: %w", err)
	}
	m.step("move:published")
	// The slot first, made on the source by the control plane, then a
	// subscription that uses it (create_slot = false). A new logical
	// slot waits for every transaction running on the source server to
	// end. Made by CREATE SUBSCRIPTION, that wait happens inside the
	// subscription's own transaction on the target, so two moves crossing
	// between the same two servers at once (a drain of each into the
	// other) each waited for the other's transaction: forever, with
	// nothing to say why (PostgreSQL documents this hang). Made here, the
	// wait holds nothing open on the target; it still lasts as long as
	// the longest transaction on the source (a tenant's included), and a
	// cancel of the operation ends it (makeSlot).
	if err := m.makeSlot(ctx, src, name); err != nil {
		return nil, err
	}
	database, _ := m.Source.home(t)
	if _, err := dst().ExecContext(ctx, `CREATE SUBSCRIPTION `+quote(name)+` CONNECTION `+literal(m.Source.conninfo(database))+
		` PUBLICATION `+quote(name)+` WITH (slot_name = `+literal(name)+`, create_slot = false, synchronous_commit = 'on')`); err != nil && !isDuplicateObject(err) {
		if m.Log != nil {
			m.Log.Error("creating a move's subscription failed", "operation_id", m.Op, "err", err)
		}
		return nil, fmt.Errorf("the target server could not subscribe to the source (can it reach the source at the address the control plane uses? the log has the cause): %s", pgMessage(err))
	}
	m.step("move:subscribed")
	if err := m.copy(ctx, src, dst(), len(tables)); err != nil {
		return nil, err
	}
	if len(indexes) > 0 {
		m.progress("indexing", map[string]any{"indexes": len(indexes)})
		if err := buildIndexes(ctx, dst(), indexes); err != nil {
			return nil, err
		}
		// The target is the template's again, to the last constraint, or
		// the move stops here, before the tenant is held.
		if err := m.rebuilt(ctx, dst(), want); err != nil {
			return nil, err
		}
		m.step("move:indexed")
		// The stream waited behind the builds: catch up again.
		if err := m.copy(ctx, src, dst(), len(tables)); err != nil {
			return nil, err
		}
	}
	for attempt := 1; ; attempt++ {
		fence, err := m.cutover(ctx, src, dst(), tables, want, schema)
		if !errors.Is(err, errCutover) {
			return fence, err
		}
		if attempt == 5 {
			return nil, fmt.Errorf("%w five times: the tenant's writes or the target keep it from catching up; try again at a quieter time or raise MOVE_CUTOVER_TIMEOUT", errCutover)
		}
		if m.Log != nil {
			m.Log.Warn("a move's cutover was abandoned (the tenant's requests went on to the source); trying again", "operation_id", m.Op, "tenant_id", t.ID, "attempt", attempt)
		}
		select {
		case <-time.After(time.Duration(attempt) * time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// deferredIndex is an index of a move's target built after the initial
// copy rather than maintained row by row during it.
type deferredIndex struct {
	build string // CREATE [UNIQUE] INDEX …, the index as the template made it
	// attach, for the index of a unique constraint, makes it the
	// constraint again (ALTER TABLE … ADD CONSTRAINT … UNIQUE USING INDEX).
	attach string
}

// moveIndexJobs is how many of a target's indexes a move builds at once:
// two keep both CPUs of a small server busy (the builds are CPU-bound
// sorts) without taking over a large one, as pg_restore -j 2 would.
const moveIndexJobs = 2

// deferIndexes drops the indexes of schema's tables on a move's target
// that the stream does not need during the initial copy, and returns how
// to build them again after it. The primary keys stay (the stream's
// updates and deletes find rows by them, the replica identity), and so
// does every index a foreign key or a replica identity uses. Unique
// constraints go with their index: the source has checked every row the
// copy brings, and rebuilding them checks again. Maintaining the
// indexes row by row made the copy take about twice as long, the unique
// index on cdrs.uuid (random keys) most of all (docs/BENCHMARKS.md,
// benchmark 9).
func deferIndexes(ctx context.Context, dst *sql.DB, schema string) ([]deferredIndex, error) {
	rows, err := dst.QueryContext(ctx, `SELECT quote_ident(n.nspname) || '.' || quote_ident(t.relname), quote_ident(n.nspname) || '.' || quote_ident(x.relname),
			quote_ident(x.relname), pg_get_indexdef(i.indexrelid), k.conname IS NOT NULL
		FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = x.relnamespace
		LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype <> 'f'
		WHERE n.nspname = $1 AND NOT i.indisprimary AND NOT i.indisreplident AND t.relkind = 'r'
			AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.conindid = i.indexrelid AND f.contype = 'f')
			AND (k.oid IS NULL OR (k.contype = 'u' AND NOT k.condeferrable AND k.conname = x.relname))
		ORDER BY pg_relation_size(i.indrelid) DESC, 2`, schema)
	if err != nil {
		return nil, err
	}
	var indexes, constraints []string
	var out []deferredIndex
	for rows.Next() {
		var table, index, name, def string
		var constraint bool
		if err := rows.Scan(&table, &index, &name, &def, &constraint); err != nil {
			rows.Close()
			return nil, err
		}
		d := deferredIndex{build: def}
		if constraint {
			constraints = append(constraints, `ALTER TABLE `+table+` DROP CONSTRAINT `+name)
			d.attach = `ALTER TABLE ` + table + ` ADD CONSTRAINT ` + name + ` UNIQUE USING INDEX ` + name
		} else {
			indexes = append(indexes, index)
		}
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(indexes) > 0 {
		constraints = append(constraints, `DROP INDEX `+strings.Join(indexes, ", "))
	}
	for _, drop := range constraints {
		if _, err := dst.ExecContext(ctx, drop); err != nil {
			return nil, fmt.Errorf("drop the target's indexes for the copy: %w", err)
		}
	}
	return out, nil
}

// buildIndexes builds the indexes deferIndexes dropped, moveIndexJobs at
// a time, and makes the unique ones constraints again.
func buildIndexes(ctx context.Context, dst *sql.DB, indexes []deferredIndex) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(moveIndexJobs)
	for _, d := range indexes {
		g.Go(func() error {
			if _, err := dst.ExecContext(gctx, d.build); err != nil {
				return fmt.Errorf("build an index on the target: %w", err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, d := range indexes {
		if d.attach == "" {
			continue
		}
		if _, err := dst.ExecContext(ctx, d.attach); err != nil {
			return fmt.Errorf("make a unique index a constraint again on the target: %w", err)
		}
	}
	return nil
}

// makeSlot makes the move's replication slot on the source, waiting, as
// PostgreSQL does, for every transaction running there to end. A cancel of
// the operation, looked for each second meanwhile, ends the wait, and so
// does SlotTimeout: the move is then undone like any cancelled or failed
// one (a slot made at that very moment with it).
func (m *Move) makeSlot(ctx context.Context, src *sql.DB, name string) error {
	sctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	if m.SlotTimeout > 0 {
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeoutCause(sctx, m.SlotTimeout, errSlotTimeout)
		defer cancel()
	}
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
				if m.progress("preparing", nil) {
					stop(controlplane.ErrCancelled)
					return
				}
			}
		}
	}()
	_, err := src.ExecContext(sctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, name)
	// Why the wait ended first: the slot may have been made at that very
	// moment, and the undo drops it.
	switch cause := context.Cause(sctx); {
	case errors.Is(cause, controlplane.ErrCancelled):
		return controlplane.ErrCancelled
	case errors.Is(cause, errSlotTimeout):
		return fmt.Errorf("%w: waited %s (MOVE_SLOT_TIMEOUT) for the transactions open on the source server, which a move's replication slot must outlast; end the long one (docs/OPERATIONS.md, \"Open transactions on the source\"), or move the tenant offline", errSlotTimeout, m.SlotTimeout)
	case err != nil && !isDuplicateObject(err):
		return fmt.Errorf("replication slot on the source: %w", err)
	}
	return nil
}

// progress records a phase; it says whether a cancel was asked for.
func (m *Move) progress(phase string, counters map[string]any) bool {
	if m.Hooks.Progress == nil {
		return false
	}
	return m.Hooks.Progress(phase, counters)
}

// copy waits for the subscription's initial copy and for the stream to
// come close to the source, recording tables synced, rows and lag.
func (m *Move) copy(ctx context.Context, src, dst *sql.DB, tables int) error {
	name := moveName(m.Tenant, m.Op)
	last := time.Time{}
	for {
		var synced int
		var rows int64
		err := dst.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE r.srsubstate IN ('r', 's')),
				coalesce((SELECT sum(n_tup_ins) FROM pg_stat_user_tables u JOIN pg_subscription_rel x ON x.srrelid = u.relid JOIN pg_subscription y ON y.oid = x.srsubid WHERE y.subname = $1), 0)
			FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = $1`, name).Scan(&synced, &rows)
		if err != nil {
			return err
		}
		lag, err := slotLag(ctx, src, name)
		if err != nil {
			return err
		}
		phase := "copying"
		if synced == tables {
			phase = "catching-up"
		}
		if time.Since(last) >= time.Second {
			last = time.Now()
			if m.progress(phase, map[string]any{"tables": tables, "tables_synced": synced, "rows": rows, "lag_bytes": lag}) {
				return controlplane.ErrCancelled
			}
		}
		if synced == tables && lag >= 0 && lag < 16<<20 {
			return nil
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// slotLag is how far behind the source's WAL the move's slot confirmed,
// in bytes (-1: no slot yet).
func slotLag(ctx context.Context, src *sql.DB, name string) (int64, error) {
	var lag sql.NullInt64
	err := src.QueryRowContext(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&lag)
	if errors.Is(err, sql.ErrNoRows) || !lag.Valid {
		return -1, nil
	}
	return lag.Int64, err
}

// cutover holds the tenant's requests, fences its writes on the source,
// waits for the target to catch up, copies the sequences, drops the
// subscription and flips the catalog: within CutoverTimeout, or it gives
// up (errCutover) with the tenant served from the source again. On
// success it returns the fence, still held.
func (m *Move) cutover(ctx context.Context, src, dst *sql.DB, tables []string, want []string, schema string) (fence *sql.Conn, err error) {
	t := m.Tenant
	timeout := m.CutoverTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	m.progress("cutover", nil)
	start := time.Now()
	deadline := start.Add(timeout)
	if err := m.Hooks.Hold(ctx, deadline); err != nil {
		return nil, err
	}
	m.step("move:held")
	flipped := false
	conn, err := src.Conn(ctx)
	if err != nil {
		_ = m.Hooks.Release(context.WithoutCancel(ctx))
		return nil, err
	}
	defer func() {
		if flipped {
			return
		}
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
		_ = conn.Close()
		if rerr := m.Hooks.Release(context.WithoutCancel(ctx)); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	// The requests that came in before the hold end (their transactions
	// commit) before the fence: a write that meets the fence fails once
	// the source closes.
	m.Source.waitQuiet(ctx, t, start.Add(timeout/2))
	quiet := time.Since(start)
	remaining := time.Until(deadline)
	if remaining <= 0 {
		return nil, errCutover
	}
	if _, err := conn.ExecContext(ctx, `BEGIN; SET LOCAL lock_timeout = `+strconv.FormatInt(remaining.Milliseconds()+1, 10)+`;
		LOCK TABLE `+strings.Join(tables, ", ")+` IN EXCLUSIVE MODE`); err != nil {
		if isLockTimeout(err) {
			return nil, errCutover
		}
		return nil, fmt.Errorf("fence the source: %w", err)
	}
	m.step("move:fenced")
	fenced := time.Since(start)
	// Under the fence nothing changes the tables' shape: what differs now
	// was made during the copy.
	if err := m.compare(ctx, conn, want); err != nil {
		return nil, err
	}
	if err := catchUp(ctx, conn, src, moveName(t, m.Op), deadline); err != nil {
		return nil, err
	}
	caught := time.Since(start)
	if err := copySequences(ctx, conn, dst, schema); err != nil {
		return nil, err
	}
	if time.Now().After(deadline) {
		return nil, errCutover
	}
	if err := dropSubscription(ctx, dst, m.Tenant, m.Op); err != nil {
		return nil, err
	}
	m.step("move:caught-up")
	if err := m.Target.login(ctx, t, true); err != nil {
		return nil, err
	}
	if err := m.Hooks.Flip(ctx); err != nil {
		return nil, err
	}
	flipped = true
	if m.Log != nil {
		// The pause and where it went, each mark from the hold: requests
		// in flight ended, fence taken, target caught up.
		m.Log.Info("a move's cutover flipped the tenant to its new server", "operation_id", m.Op, "tenant_id", t.ID, "pause", time.Since(start).Round(time.Millisecond),
			"quiet_at", quiet.Round(time.Millisecond), "fenced_at", fenced.Round(time.Millisecond), "caught_up_at", caught.Round(time.Millisecond))
	}
	return conn, nil
}

// catchUp waits, until deadline (else errCutover), for the move's slot
// (name) to confirm the source's WAL up to its insert position, read on
// the fence's session under the fence. The insert
// position, not the write one: with synchronous_commit off (a server's or
// a session's) a commit is acknowledged before its WAL is written, and
// the write position can be behind it. A commit of our own, synchronous,
// then flushes the WAL up to there, which the walsender sends only once
// flushed: waiting for the WAL writer instead added 200 to 400 ms (one or
// two wal_writer_delay) to the cutover under load (benchmark 9).
func catchUp(ctx context.Context, fence *sql.Conn, src *sql.DB, name string, deadline time.Time) error {
	var lsn string
	if err := fence.QueryRowContext(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn); err != nil {
		return err
	}
	// The commit must write WAL of its own (a logical decoding message,
	// which the subscription ignores): a transaction that wrote none is
	// committed asynchronously whatever synchronous_commit says, and then
	// nothing wakes the walsender before the WAL writer's next cycle.
	if _, err := src.ExecContext(ctx, `BEGIN; SET LOCAL synchronous_commit = on; SELECT pg_logical_emit_message(true, 'laracopilot_move', ''); COMMIT`); err != nil {
		return fmt.Errorf("flush the source's WAL: %w", err)
	}
	for {
		var caught bool
		err := src.QueryRowContext(ctx, `SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`, name, lsn).Scan(&caught)
		if err != nil {
			return fmt.Errorf("read the move's slot: %w", err)
		}
		if caught {
			return nil
		}
		if time.Now().After(deadline) {
			return errCutover
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitQuiet waits, until deadline, for t's requests in flight on p to
// end, seen quiet for quietFor on end: a database tenant's role with no
// session busy in a statement or a transaction; a schema tenant's tables
// and number-space lock held by no session. A request that passed the
// hold but had not reached the server yet when the wait ended meets the
// fence and fails once the source closes (docs/OPERATIONS.md).
func (p *Provisioner) waitQuiet(ctx context.Context, t *controlplane.Tenant, deadline time.Time) {
	const quietFor = 50 * time.Millisecond
	q, args := `SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND datname = $1 AND state <> 'idle'`, []any{t.DBName}
	if t.Isolation == controlplane.IsolationSchema {
		q = `SELECT count(*) FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE l.pid <> pg_backend_pid() AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND (n.nspname = $1 OR (l.locktype = 'advisory' AND l.classid = ` + strconv.Itoa(query.NumberSpaceLock) + ` AND l.objid = $2::int4::oid AND l.objsubid = 2))`
		args = append(args, int32(t.ID))
	}
	var quietSince time.Time
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var busy int
		if err := p.admin.QueryRowContext(ctx, q, args...).Scan(&busy); err != nil {
			return
		}
		switch {
		case busy > 0:
			quietSince = time.Time{}
		case quietSince.IsZero():
			quietSince = time.Now()
		case time.Since(quietSince) >= quietFor:
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// copySequences sets the target's sequences to the source's values (read
// on conn, under the fence); logical replication carries rows, not
// sequences.
func copySequences(ctx context.Context, conn *sql.Conn, dst *sql.DB, schema string) error {
	rows, err := conn.QueryContext(ctx, `SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = $1 AND last_value IS NOT NULL`, schema)
	if err != nil {
		return err
	}
	type seq struct {
		name  string
		value int64
	}
	var seqs []seq
	for rows.Next() {
		var s seq
		if err := rows.Scan(&s.name, &s.value); err != nil {
			rows.Close()
			return err
		}
		seqs = append(seqs, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, s := range seqs {
		if _, err := dst.ExecContext(ctx, `SELECT setval($1::regclass, $2, true)`, quote(schema)+"."+quote(s.name), s.value); err != nil {
			return fmt.Errorf("copy sequence %s: %w", s.name, err)
		}
	}
	return nil
}

// offline copies the tenant with pg_dump and pg_restore while it answers
// 503; it returns the fence once the catalog is flipped.
func (m *Move) offline(ctx context.Context, src *sql.DB) (fence *sql.Conn, err error) {
	t := m.Tenant
	_, schema := m.Source.home(t)
	if err := m.Hooks.Offline(ctx); err != nil {
		return nil, err
	}
	m.step("move:offline")
	if m.Source.BeforeDrop != nil {
		m.Source.BeforeDrop(t) // this process's pools; the fence waits for the others' writes
	}
	conn, err := src.Conn(ctx)
	if err != nil {
		return nil, err
	}
	flipped := false
	defer func() {
		if !flipped {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
			_ = conn.Close()
		}
	}()
	tables, err := userTables(ctx, src, schema)
	if err != nil {
		return nil, err
	}
	m.progress("fencing", nil)
	if _, err := conn.ExecContext(ctx, `BEGIN; LOCK TABLE `+strings.Join(tables, ", ")+` IN EXCLUSIVE MODE`); err != nil {
		return nil, fmt.Errorf("fence the source: %w", err)
	}
	m.step("move:fenced")
	m.progress("dumping", nil)
	if err := m.Source.DumpFile(ctx, t, m.Scratch); err != nil {
		return nil, err
	}
	m.step("move:dumped")
	m.progress("restoring", map[string]any{"bytes": fileSize(m.Scratch)})
	if err := m.Target.restoreMoved(ctx, t, m.Op, m.Scratch); err != nil {
		return nil, err
	}
	m.step("move:restored")
	if err := m.Target.login(ctx, t, true); err != nil {
		return nil, err
	}
	if err := m.Hooks.Flip(ctx); err != nil {
		return nil, err
	}
	flipped = true
	return conn, nil
}

// userTables lists the tables in schema, quoted and qualified.
func userTables(ctx context.Context, db *sql.DB, schema string) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1`, schema)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		out = append(out, quote(schema)+"."+quote(name))
	}
	return out, rows.Err()
}

// finish closes the source after the flip: the fence's session ends the
// others (a write waiting on the fence fails, it is not applied), the
// publication goes, and the database (or schema) is set aside, closed.
func (m *Move) finish(ctx context.Context, fence *sql.Conn) (string, error) {
	t := m.Tenant
	defer fence.Close()
	if m.Source.BeforeDrop != nil {
		m.Source.BeforeDrop(t)
	}
	var pid int
	if err := fence.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		return "", err
	}
	aside := moveAside(t, m.Op)
	mark := m.Source.moveMark(t, m.Op)
	switch t.Isolation {
	case controlplane.IsolationDatabase:
		if _, err := m.Source.admin.ExecContext(ctx, `ALTER DATABASE `+quote(t.DBName)+` WITH ALLOW_CONNECTIONS false`); err != nil {
			return "", err
		}
		if _, err := m.Source.admin.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> $2`, t.DBName, pid); err != nil {
			return "", err
		}
		if _, err := fence.ExecContext(ctx, `DROP PUBLICATION IF EXISTS `+quote(moveName(t, m.Op))+`; COMMIT`); err != nil {
			return "", err
		}
		_ = fence.Close()
		m.step("move:closed")
		return aside, m.Source.setAsideDatabase(ctx, t, aside, mark)
	default:
		// The rename commits with the fence: a write waiting on it looks
		// its table up again and finds none.
		_, err := fence.ExecContext(ctx, `DROP PUBLICATION IF EXISTS `+quote(moveName(t, m.Op))+`;
			ALTER SCHEMA `+quote(t.DBName)+` RENAME TO `+quote(aside)+`;
			COMMENT ON SCHEMA `+quote(aside)+` IS `+literal(mark)+`;
			COMMIT`)
		m.step("move:closed")
		return aside, err
	}
}

// setAsideDatabase renames t's closed database to aside, marked, and
// closes the server to t's role (the tenant lives elsewhere now).
func (p *Provisioner) setAsideDatabase(ctx context.Context, t *controlplane.Tenant, aside, mark string) error {
	if err := p.renameClosed(ctx, t.DBName, aside); err != nil {
		return err
	}
	if _, err := p.admin.ExecContext(ctx, `COMMENT ON DATABASE `+quote(aside)+` IS `+literal(mark)); err != nil {
		return err
	}
	return p.login(ctx, t, false)
}

// login lets t's role log in on p, or not (and ends its sessions). A
// schema tenant has no role.
func (p *Provisioner) login(ctx context.Context, t *controlplane.Tenant, on bool) error {
	if t.Isolation != controlplane.IsolationDatabase {
		return nil
	}
	if on {
		return p.Unseal(ctx, t)
	}
	if exists, err := p.checkOwner(ctx, t, "role", roleMarkQuery); err != nil || !exists {
		return err
	}
	_, err := p.admin.ExecContext(ctx, `ALTER ROLE `+quote(t.DBName)+` NOLOGIN`)
	if err == nil {
		_, err = p.admin.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, t.DBName)
	}
	return err
}

// compare fails, naming them, when the source (read through db: its pool,
// or the fence's session) has objects the target lacks or lacks some it
// has (want): logical replication carries rows, not objects.
func (m *Move) compare(ctx context.Context, db queryer, want []string) error {
	extra, missing, err := m.differences(ctx, db, want)
	if err != nil || len(extra)+len(missing) == 0 {
		return err
	}
	var parts []string
	if len(extra) > 0 {
		parts = append(parts, "it has objects the migrations did not make: "+listSome(extra))
	}
	if len(missing) > 0 {
		parts = append(parts, "it lacks or changed objects the migrations made: "+listSome(missing))
	}
	return controlplane.Errorf(controlplane.Conflict, "tenant %d cannot move online: %s. Logical replication carries rows, not objects; move it offline ({\"mode\": \"offline\"}), which copies everything, or remove them",
		m.Tenant.ID, strings.Join(parts, "; "))
}

// rebuilt checks that the target has every object of want again once
// its deferred indexes are built: a build that made something else (a
// name, a constraint's form) fails the move before its cutover, not the
// tenant's queries after it.
func (m *Move) rebuilt(ctx context.Context, dst queryer, want []string) error {
	extra, missing, err := m.differences(ctx, dst, want)
	if err != nil || len(extra)+len(missing) == 0 {
		return err
	}
	return fmt.Errorf("the target's indexes, built again after the copy, are not the template's: it has [%s] and lacks [%s]",
		listSome(extra), listSome(missing))
}

// differences reads the tenant's objects in db and says what it has that
// want lacks, and what want has that it lacks.
func (m *Move) differences(ctx context.Context, db queryer, want []string) (extra, missing []string, err error) {
	_, schema := m.Source.home(m.Tenant)
	have, err := fingerprint(ctx, db, m.Tenant.Isolation, schema)
	if err != nil {
		return nil, nil, err
	}
	return diff(have, want), diff(want, have), nil
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// diff is what a has and b lacks (both sorted).
func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if _, found := slices.BinarySearch(b, x); !found {
			out = append(out, x)
		}
	}
	return out
}

// listSome joins the first ten of names.
func listSome(names []string) string {
	if len(names) <= 10 {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:10], ", ") + fmt.Sprintf(" and %d more", len(names)-10)
}

// fingerprint lists, one line each and sorted, the objects of a tenant's
// database (every schema but PostgreSQL's own; and its extensions and
// large objects) or of its schema: relations with their kind, replica
// identity, row security and grants; columns with type, nullability and
// default; constraints, triggers, policies, rules, functions, types,
// operators and the like. It reads the system catalogs only: nothing of
// the tenant's runs.
func fingerprint(ctx context.Context, db queryer, isolation controlplane.Isolation, schema string) ([]string, error) {
	in := `n.nspname = $1`
	extra := ``
	if isolation == controlplane.IsolationDatabase {
		in = `n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' AND $1 <> ''`
		extra = `
		UNION ALL SELECT 'extension ' || extname FROM pg_extension WHERE extname <> 'plpgsql'
		UNION ALL SELECT 'large objects: ' || count(*) FROM pg_largeobject_metadata HAVING count(*) > 0
		UNION ALL SELECT 'schema ' || n.nspname FROM pg_namespace n WHERE ` + in
	}
	q := `
		SELECT 'relation ' || n.nspname || '.' || c.relname || ' (kind ' || c.relkind::text || ', replica identity ' || c.relreplident::text
			|| CASE WHEN c.relrowsecurity THEN ', row security' ELSE '' END || coalesce(', grants ' || c.relacl::text, '') || ')'
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ` + in + ` AND c.relkind <> 't'
		UNION ALL SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
			|| CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
			FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
			LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
			WHERE ` + in + ` AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
		UNION ALL SELECT 'constraint ' || n.nspname || '.' || c.relname || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid)
			FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ` + in + `
		UNION ALL SELECT 'trigger ' || n.nspname || '.' || c.relname || '.' || g.tgname || ' (' || g.tgenabled::text || ')'
			FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ` + in + ` AND NOT g.tgisinternal
		UNION ALL SELECT 'policy ' || n.nspname || '.' || c.relname || '.' || p.polname
			FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ` + in + `
		UNION ALL SELECT 'rule ' || n.nspname || '.' || c.relname || '.' || r.rulename
			FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ` + in + ` AND r.rulename <> '_RETURN'
		UNION ALL SELECT 'function ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
			FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ` + in + `
		UNION ALL SELECT 'type ' || n.nspname || '.' || y.typname
			FROM pg_type y JOIN pg_namespace n ON n.oid = y.typnamespace LEFT JOIN pg_class c ON c.oid = y.typrelid
			WHERE ` + in + ` AND y.typtype <> 'b' AND (y.typtype <> 'c' OR c.relkind = 'c')
		UNION ALL SELECT 'operator ' || n.nspname || '.' || o.oprname FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE ` + in + `
		UNION ALL SELECT 'collation ' || n.nspname || '.' || x.collname FROM pg_collation x JOIN pg_namespace n ON n.oid = x.collnamespace WHERE ` + in + `
		UNION ALL SELECT 'text search configuration ' || n.nspname || '.' || x.cfgname FROM pg_ts_config x JOIN pg_namespace n ON n.oid = x.cfgnamespace WHERE ` + in + `
		UNION ALL SELECT 'statistics ' || n.nspname || '.' || x.stxname FROM pg_statistic_ext x JOIN pg_namespace n ON n.oid = x.stxnamespace WHERE ` + in + extra
	rows, err := db.QueryContext(ctx, q, schema)
	if err != nil {
		return nil, fmt.Errorf("read the tenant's objects: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out, rows.Err()
}

// publishedTables is the tables of a fingerprint that a move replicates:
// every one but the migrations table, which the target has already.
func publishedTables(fp []string) []string {
	var out []string
	for _, line := range fp {
		rest, ok := strings.CutPrefix(line, "relation ")
		if !ok {
			continue
		}
		name, kind, _ := strings.Cut(rest, " (kind ")
		if !strings.HasPrefix(kind, "r,") && !strings.HasPrefix(kind, "p,") {
			continue
		}
		schema, table, _ := strings.Cut(name, ".")
		if table == "schema_migrations" {
			continue
		}
		out = append(out, quote(schema)+"."+quote(table))
	}
	return out
}

// conninfo is how the target server reaches database on p, as the control
// plane does (host, port, role, password, TLS mode), in libpq's keyword
// form. It is stored in the target's pg_subscription (readable by
// superusers only) until the subscription is dropped, at the cutover.
func (p *Provisioner) conninfo(database string) string {
	kv := func(k, v string) string {
		return k + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	parts := []string{kv("host", p.server.Host), kv("port", strconv.Itoa(int(p.server.Port))), kv("user", p.server.User), kv("dbname", database)}
	if p.server.Password != "" {
		parts = append(parts, kv("password", p.server.Password))
	}
	for _, env := range p.tls {
		if v, ok := strings.CutPrefix(env, "PGSSLMODE="); ok {
			parts = append(parts, kv("sslmode", v))
		}
	}
	return strings.Join(parts, " ")
}

// dropSubscription drops move op's subscription on dst, and its slot on
// the source with it; a source out of reach leaves the slot (UndoMove
// drops it from the source's side).
func dropSubscription(ctx context.Context, dst *sql.DB, t *controlplane.Tenant, op int64) error {
	name := quote(moveName(t, op))
	var exists bool
	if err := dst.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()))`, moveName(t, op)).Scan(&exists); err != nil || !exists {
		return err
	}
	if _, err := dst.ExecContext(ctx, `DROP SUBSCRIPTION IF EXISTS `+name); err == nil {
		return nil
	}
	_, err := dst.ExecContext(ctx, `ALTER SUBSCRIPTION `+name+` DISABLE`)
	if err == nil {
		_, err = dst.ExecContext(ctx, `ALTER SUBSCRIPTION `+name+` SET (slot_name = NONE)`)
	}
	if err == nil {
		_, err = dst.ExecContext(ctx, `DROP SUBSCRIPTION IF EXISTS `+name)
	}
	return err
}

func isDuplicateObject(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == pgerrcode.DuplicateObject
}

func isLockTimeout(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == pgerrcode.LockNotAvailable
}

// pgMessage is a server error's message alone (no detail, which may name
// hosts).
func pgMessage(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		if strings.HasPrefix(pg.Message, "could not connect to the publisher") {
			return "could not connect to the publisher"
		}
		return pg.Message
	}
	return "connection failed"
}
