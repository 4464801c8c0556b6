package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/flashsale/flashsale/internal/flashsale"
)

var (
	qXactID     = newQuery("select", "transaction", `SELECT pg_current_xact_id()::text`)
	qXactStatus = newQuery("select", "transaction", `SELECT pg_xact_status($1::text::xid8)`)
)

// transact runs fn in a transaction and commits it, retrying the whole
// transaction a few times on the failures a correct transaction may meet
// and which leave nothing behind (see retryable).
//
// A write transaction learns its id before it commits, so that a commit
// whose outcome is unknown — the connection dropped or the deadline passed
// while COMMIT was in flight — is resolved by asking the server whether that
// transaction committed, never by guessing: transact then returns nil when it
// did, and EUnavailable when it did not or the server cannot say. fn may set
// the id itself (tx.xid, from pg_current_xact_id() in one of its statements)
// to save the round trip of asking for it.
func (db *DB) transact(ctx context.Context, opts *sql.TxOptions, fn func(*txn) error) error {
	const attempts = 3
	var err error
	for range attempts {
		if err = db.transactOnce(ctx, opts, fn); !retryable(err) {
			return err
		}
	}
	return err
}

// txn is a transaction of transact.
type txn struct {
	*sql.Tx
	xid string // the transaction's id, once known
}

func (db *DB) transactOnce(ctx context.Context, opts *sql.TxOptions, fn func(*txn) error) (err error) {
	sqlTx, err := db.sql.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin: %w", translate(err))
	}
	tx := &txn{Tx: sqlTx}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if tx.xid == "" && (opts == nil || !opts.ReadOnly) {
		if err := db.queryRow(ctx, tx, qXactID).Scan(&tx.xid); err != nil {
			return fmt.Errorf("transaction id: %w", translate(err))
		}
	}
	xid := tx.xid
	cerr := tx.Commit()
	if cerr == nil {
		return nil
	}
	if xid == "" {
		return fmt.Errorf("commit: %w", translate(cerr))
	}
	committed, err := db.committed(context.WithoutCancel(ctx), xid)
	switch {
	case err != nil:
		return flashsale.Unavailable("database", fmt.Errorf("commit outcome unknown: %w (reading it back: %w)", cerr, err))
	case committed:
		return nil
	}
	return fmt.Errorf("commit: %w", translate(cerr))
}

// committed reads back whether transaction xid committed. A transaction
// whose commit is still in progress on the server is asked about again, for
// a few seconds at most.
func (db *DB) committed(ctx context.Context, xid string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		var status sql.NullString
		err := db.queryRow(ctx, db.sql, qXactStatus, xid).Scan(&status)
		switch {
		case err == nil && status.String == "committed":
			return true, nil
		case err == nil && status.String == "aborted":
			return false, nil
		case err == nil && !status.Valid:
			return false, fmt.Errorf("transaction %s is too old to tell", xid)
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("transaction %s still %s", xid, status.String)
			}
			return false, err
		case <-time.After(wait):
		}
	}
}

// retryable reports whether err leaves nothing behind and the transaction
// may succeed when run again: a serialization failure, a deadlock, or a
// checkout batch that opened a cart with the code a concurrent batch was
// opening the same user's cart with (the cache gives out one code per
// user). That one waits for the other batch's commit before failing; run
// again, it finds the code taken and the cart by its user.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "40001", "40P01":
		return true
	case "23505":
		return pgErr.ConstraintName == "carts_pkey"
	}
	return false
}
