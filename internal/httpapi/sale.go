package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// Bounds of the items paging parameters.
const (
	defaultItemsLimit = 100
	maxItemsLimit     = 1000
	// maxItemsOffset is the largest useful offset: no sale has more items.
	maxItemsOffset = flashsale.MaxSaleItems
)

// saleResponse is the JSON of a sale, with times in RFC 3339 UTC.
type saleResponse struct {
	ID         int64  `json:"id"`
	StartedAt  string `json:"started_at"`
	EndedAt    string `json:"ended_at"`
	TotalItems int    `json:"total_items"`
	ItemsSold  int    `json:"items_sold"`
}

func newSaleResponse(s *flashsale.Sale) saleResponse {
	return saleResponse{
		ID:         s.ID,
		StartedAt:  s.StartedAt.UTC().Format(time.RFC3339),
		EndedAt:    s.EndedAt.UTC().Format(time.RFC3339),
		TotalItems: s.TotalItems,
		ItemsSold:  s.ItemsSold,
	}
}

// itemsPage is the parsed query of GET /sales/{id}/items.
type itemsPage struct {
	Offset int
	Limit  int
}

// parseItemsPage parses "offset=&limit=": offset 0 to maxItemsOffset, default
// 0; limit 1 to maxItemsLimit, default defaultItemsLimit. It returns EInvalid.
func parseItemsPage(raw string) (itemsPage, error) {
	p := itemsPage{Offset: 0, Limit: defaultItemsLimit}
	v, err := parseQuery(raw)
	if err != nil {
		return p, err
	}
	if s, ok, err := queryValue(v, "offset", flashsale.EInvalid); err != nil {
		return p, err
	} else if ok {
		if p.Offset, ok = parseBounded(s, 0, maxItemsOffset); !ok {
			return p, flashsale.Errorf(flashsale.EInvalid, "offset must be an integer from 0 to %d", maxItemsOffset)
		}
	}
	if s, ok, err := queryValue(v, "limit", flashsale.EInvalid); err != nil {
		return p, err
	} else if ok {
		if p.Limit, ok = parseBounded(s, 1, maxItemsLimit); !ok {
			return p, flashsale.Errorf(flashsale.EInvalid, "limit must be an integer from 1 to %d", maxItemsLimit)
		}
	}
	return p, nil
}

// parseBounded parses a decimal integer of ASCII digits within [lo, hi].
func parseBounded(s string, lo, hi int) (int, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, false
	}
	return n, true
}

// parseSaleID parses the {id} path value. It returns EInvalid.
func parseSaleID(r *http.Request) (int64, error) {
	id, ok := parseID(r.PathValue("id"))
	if !ok {
		return 0, flashsale.Errorf(flashsale.EInvalid, "sale id must be a positive integer")
	}
	return id, nil
}

// handleActiveSale serves GET /sales/active: the running sale, or 404, as
// read at most readingMaxAge ago.
func (s *Server) handleActiveSale(w http.ResponseWriter, r *http.Request) {
	sale, err := s.sale(r.Context(), activeSaleKey)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, newSaleResponse(sale))
}

// handleSale serves GET /sales/{id}, as read at most readingMaxAge ago.
func (s *Server) handleSale(w http.ResponseWriter, r *http.Request) {
	id, err := parseSaleID(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	sale, err := s.sale(r.Context(), strconv.FormatInt(id, 10))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, newSaleResponse(sale))
}

// handleSaleItems serves GET /sales/{id}/items?offset=&limit=, a page of the
// sale's items ordered by id.
func (s *Server) handleSaleItems(w http.ResponseWriter, r *http.Request) {
	id, err := parseSaleID(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	p, err := parseItemsPage(r.URL.RawQuery)
	if err != nil {
		writeError(w, r, err)
		return
	}
	items, err := s.svc.Items(r.Context(), id, p.Offset, p.Limit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	page := make([]itemResponse, len(items))
	for i, it := range items {
		page[i] = itemResponse{ID: it.ID, Name: it.Name, ImageURL: it.ImageURL, Sold: it.Sold}
	}
	writeJSON(w, r, http.StatusOK, page)
}

// itemResponse is the JSON of an item.
type itemResponse struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	ImageURL string `json:"image_url"`
	Sold     bool   `json:"sold"`
}
