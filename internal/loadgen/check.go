package loadgen

import (
	"context"
	"database/sql"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/flashsale/flashsale/internal/invariants"
)

// InvariantsReport is the result of the invariant check in PostgreSQL.
type InvariantsReport struct {
	Result string             `json:"result"`          // PASS, FAIL (a guarantee is broken) or ERROR (could not check)
	Error  string             `json:"error,omitempty"` // why the check could not run
	Check  *invariants.Report `json:"check,omitempty"` // the counts and violations
}

// checkInvariants checks the sale's guarantees in the database at url. It
// only reads.
func checkInvariants(ctx context.Context, url string, saleID int64) *InvariantsReport {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return &InvariantsReport{Result: ResultError, Error: err.Error()}
	}
	defer db.Close()
	r, err := invariants.Check(ctx, db, saleID)
	if err != nil {
		return &InvariantsReport{Result: ResultError, Error: err.Error()}
	}
	res := ResultPass
	if !r.OK() {
		res = ResultFail
	}
	return &InvariantsReport{Result: res, Check: &r}
}
