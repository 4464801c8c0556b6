package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// transact runs fn in a transaction and commits it, retrying the whole
// transaction a few times on serialization failures and deadlocks, which a
// correct transaction may meet and which leave nothing behind.
func (db *DB) transact(ctx context.Context, opts *sql.TxOptions, fn func(*sql.Tx) error) error {
	const attempts = 3
	var err error
	for range attempts {
		if err = db.transactOnce(ctx, opts, fn); !retryable(err) {
			return err
		}
	}
	return err
}

func (db *DB) transactOnce(ctx context.Context, opts *sql.TxOptions, fn func(*sql.Tx) error) (err error) {
	tx, err := db.sql.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin: %w", translate(err))
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", translate(err))
	}
	return nil
}

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}
