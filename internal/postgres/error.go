package postgres

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"io/fs"
	"net"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/jackc/pgx/v5/pgconn"
)

// translate maps a database error to the domain's error codes, by SQLSTATE
// for server errors. Failures to reach or keep a connection are EUnavailable;
// server errors that a correct caller cannot cause stay internal.
func translate(err error) error {
	if err == nil {
		return nil
	}
	var fe *flashsale.Error
	if errors.As(err, &fe) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505":
			return &flashsale.Error{Code: flashsale.EConflict, Message: "already exists", Err: err}
		case pgErr.Code == "40001", pgErr.Code == "40P01", pgErr.Code == "55P03":
			return flashsale.Unavailable("database", err) // contention: retryable
		case pgErr.Code[:2] == "08", pgErr.Code[:2] == "53", pgErr.Code[:2] == "57", pgErr.Code == "25006":
			// connection exceptions, insufficient resources, operator
			// intervention (shutdown, cancel), read-only (failover).
			return flashsale.Unavailable("database", err)
		}
		return err
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &netErr), errors.As(err, &connErr),
		pgconn.Timeout(err), pgconn.SafeToRetry(err):
		return flashsale.Unavailable("database", err)
	}
	return err
}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}
