package httpapi

// RefusalLog durably counts the checkouts refused before the sale's rules
// looked at them (internal/postgres.CartStore counts them per minute in
// checkout_refusals). Such refusals are cheap by design — no attempt row, no
// wait on PostgreSQL — so RecordRefusal must not block: it counts in memory
// and writes later.
type RefusalLog interface {
	// RecordRefusal counts one checkout refused for reason and, when the
	// refusal is per user, userID (else "").
	RecordRefusal(reason, userID string)
}

// Reasons a checkout is refused before its decision, as RefusalLog records
// them.
const (
	// RefusedOverloaded: shed by admission (503 overloaded), before the
	// request was read: counted whatever its query, without its user.
	RefusedOverloaded = "overloaded"
	// RefusedUserRate: over the user's checkout budget (429), per user.
	RefusedUserRate = "rate_limited_user"
	// RefusedAddrRate: over the client address's budget (429), without
	// its user (the budget is the address's).
	RefusedAddrRate = "rate_limited_addr"
)

// refuse counts a refused checkout; without a RefusalLog it does nothing.
func (s *Server) refuse(reason, userID string) {
	if s.refusals != nil {
		s.refusals.RecordRefusal(reason, userID)
	}
}
