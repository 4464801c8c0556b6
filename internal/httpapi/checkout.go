package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// checkoutPattern is the route of checkouts.
const checkoutPattern = "POST /checkout"

// checkoutQuery is the parsed query of POST /checkout.
type checkoutQuery struct {
	UserID string
	ItemID int64
}

// parseCheckoutQuery parses "user_id=U&id=ITEM"; item_id is an alias of id.
// It returns EInvalidUserID, EInvalidItemID or EInvalid.
func parseCheckoutQuery(raw string) (checkoutQuery, error) {
	var q checkoutQuery
	v, err := parseQuery(raw)
	if err != nil {
		return q, err
	}
	userID, _, err := queryValue(v, "user_id", flashsale.EInvalidUserID)
	if err != nil {
		return q, err
	}
	if err := flashsale.ValidateUserID(userID); err != nil {
		return q, err
	}
	var found bool
	for _, key := range []string{"id", "item_id"} {
		s, ok, err := queryValue(v, key, flashsale.EInvalidItemID)
		if err != nil {
			return q, err
		}
		if !ok {
			continue
		}
		id, valid := parseID(s)
		if !valid {
			return q, flashsale.Errorf(flashsale.EInvalidItemID, "%s must be a positive integer of at most %d digits", key, flashsale.MaxIDLen)
		}
		if found && id != q.ItemID {
			return q, flashsale.Errorf(flashsale.EInvalidItemID, "id and item_id differ")
		}
		q.ItemID, found = id, true
	}
	if !found {
		return q, flashsale.Errorf(flashsale.EInvalidItemID, "id is required")
	}
	q.UserID = userID
	return q, nil
}

// checkoutResponse is the body of a successful checkout.
type checkoutResponse struct {
	Code       string `json:"code"`
	ItemsCount int    `json:"items_count"`
	SaleEndsAt string `json:"sale_ends_at"`
}

// appendJSON writes the response as json.Marshal does, without reflection:
// it is the API's most frequent answer.
func (c checkoutResponse) appendJSON(b []byte) []byte {
	b = append(b, `{"code":`...)
	b = appendJSONString(b, c.Code)
	b = append(b, `,"items_count":`...)
	b = strconv.AppendInt(b, int64(c.ItemsCount), 10)
	b = append(b, `,"sale_ends_at":`...)
	b = appendJSONString(b, c.SaleEndsAt)
	return append(b, '}')
}

// handleCheckout serves POST /checkout?user_id=U&id=ITEM. Every request that
// reaches it counts as an attempt, and as exactly one success or failure.
func (s *Server) handleCheckout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s.metrics.checkoutAttempts.Add(ctx, 1)
	res, err := s.checkout(ctx, r)
	if err != nil {
		s.metrics.checkoutFailure.Add(ctx, 1, s.metrics.reason(flashsale.ErrorCode(err))...)
		writeError(w, r, err)
		return
	}
	s.metrics.checkoutSuccess.Add(ctx, 1)
	writeJSON(w, r, http.StatusOK, checkoutResponse{
		Code:       res.Code,
		ItemsCount: res.ItemsCount,
		SaleEndsAt: res.SaleEndsAt.UTC().Format(time.RFC3339),
	})
}

// checkout validates the request and runs the checkout in a "sale.checkout"
// span, whose attributes never hold the user id or the code.
func (s *Server) checkout(ctx context.Context, r *http.Request) (flashsale.CheckoutResult, error) {
	q, err := parseCheckoutQuery(r.URL.RawQuery)
	if err != nil {
		return flashsale.CheckoutResult{}, err
	}
	if err := s.limits.checkAddr(ctx, r); err != nil {
		s.refuse(RefusedAddrRate, "")
		return flashsale.CheckoutResult{}, err
	}
	ctx, span := s.tracer.Start(ctx, "sale.checkout")
	defer span.End()
	// The user's checkout budget is taken by the service's fast path, in
	// the same Redis script as the checkout's other checks.
	res, saleID, err := s.svc.Checkout(ctx, q.UserID, q.ItemID)
	if err == nil {
		// One call: each call grows the span's attributes anew.
		span.SetAttributes(attribute.Int64("sale.id", saleID),
			attribute.String("sale.outcome", flashsale.OutcomeAccepted),
			attribute.Int("cart.items_count", res.ItemsCount))
		return res, nil
	}
	if saleID > 0 {
		span.SetAttributes(attribute.Int64("sale.id", saleID))
	}
	if flashsale.ErrorCode(err) == flashsale.ERateLimited {
		s.refuse(RefusedUserRate, q.UserID)
	}
	endWithError(span, err)
	return res, err
}
