package httpapi

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// Span outcomes of a purchase that answered 200; failures record their code.
const (
	outcomePurchased = "purchased"
	outcomeNothing   = reasonNothingAvailable
)

// purchaseQuery is the parsed query of POST /purchase.
type purchaseQuery struct {
	Code   string
	SaleID int64 // the sale the code belongs to
}

// parsePurchaseQuery parses "code=C" and checks the code's form. It returns
// EInvalidCode or EInvalid.
func parsePurchaseQuery(raw string) (purchaseQuery, error) {
	var q purchaseQuery
	v, err := parseQuery(raw)
	if err != nil {
		return q, err
	}
	code, ok, err := queryValue(v, "code", flashsale.EInvalidCode)
	if err != nil {
		return q, err
	}
	if !ok || code == "" {
		return q, flashsale.Errorf(flashsale.EInvalidCode, "code is required")
	}
	saleID, err := flashsale.ParseCode(code)
	if err != nil {
		return q, err
	}
	return purchaseQuery{Code: code, SaleID: saleID}, nil
}

// handlePurchase serves POST /purchase?code=C.
//
// Metrics: every request that reaches the handler is an attempt. A 200 counts
// as a success when it bought at least one item, else as a failure with
// reason "nothing_available"; errors are failures with their code. A replay
// answers the original result and is counted like the original (a success if
// the original bought something) because the client sees the same answer,
// but only non-replays add to sale_items_sold_total, so that it counts each
// item this instance sold exactly once.
func (s *Server) handlePurchase(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s.metrics.purchaseAttempts.Add(ctx, 1)
	p, err := s.purchase(ctx, r)
	if err != nil {
		s.metrics.purchaseFailure.Add(ctx, 1, s.metrics.reason(flashsale.ErrorCode(err))...)
		writeError(w, r, err)
		return
	}
	res := p.Result
	if res.TotalPurchased > 0 {
		s.metrics.purchaseSuccess.Add(ctx, 1)
	} else {
		s.metrics.purchaseFailure.Add(ctx, 1, s.metrics.reason(reasonNothingAvailable)...)
	}
	if !p.Replay && res.TotalPurchased > 0 {
		s.metrics.itemsSold.Add(ctx, int64(res.TotalPurchased))
	}
	writeJSON(w, r, http.StatusOK, newPurchaseResponse(res))
}

// purchaseResponse is the body of a purchase that answered 200, a replay's
// included.
type purchaseResponse struct {
	Success        bool                    `json:"success"`
	Items          []purchasedItemResponse `json:"items"` // never null
	TotalPurchased int                     `json:"total_purchased"`
	FailedCount    int                     `json:"failed_count"`
}

type purchasedItemResponse struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Sold bool   `json:"sold"`
}

func newPurchaseResponse(res flashsale.PurchaseResult) purchaseResponse {
	items := make([]purchasedItemResponse, len(res.Items))
	for i, it := range res.Items {
		items[i] = purchasedItemResponse{ID: it.ID, Name: it.Name, Sold: it.Sold}
	}
	return purchaseResponse{Success: res.Success, Items: items, TotalPurchased: res.TotalPurchased, FailedCount: res.FailedCount}
}

// purchase validates the request and runs the purchase in a "sale.purchase"
// span, whose attributes never hold the code or the user id.
func (s *Server) purchase(ctx context.Context, r *http.Request) (*flashsale.Purchase, error) {
	q, err := parsePurchaseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	if err := s.limits.check(ctx, r, "purchase:code:"+q.Code); err != nil {
		return nil, err
	}
	ctx, span := s.tracer.Start(ctx, "sale.purchase")
	defer span.End()
	span.SetAttributes(attribute.Int64("sale.id", q.SaleID))
	p, err := s.svc.Purchase(ctx, q.Code, s.limits.clientAddr(r))
	if err != nil {
		endWithError(span, err)
		return nil, err
	}
	outcome := outcomePurchased
	if p.Result.TotalPurchased == 0 {
		outcome = outcomeNothing
	}
	span.SetAttributes(
		attribute.String("sale.outcome", outcome),
		attribute.Int("purchase.items_purchased", p.Result.TotalPurchased),
		attribute.Int("purchase.items_failed", p.Result.FailedCount),
		attribute.Bool("purchase.replay", p.Replay))
	return p, nil
}
