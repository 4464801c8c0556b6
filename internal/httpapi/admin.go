package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// createSaleRequest is the body of POST /admin/sales. Both fields are
// required; pointers tell a missing field from a zero.
type createSaleRequest struct {
	TotalItems *int    `json:"total_items"`
	Duration   *string `json:"duration"` // a Go duration, e.g. "10m"
}

// authorized reports whether r carries "Authorization: Bearer <admin token>".
// It compares SHA-256 digests in constant time, so neither the token nor its
// length leaks through timing.
func (s *Server) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], s.adminHash[:]) == 1
}

// decodeCreateSale reads and validates the body of POST /admin/sales. It
// returns EInvalid or eTooLarge.
func decodeCreateSale(w http.ResponseWriter, r *http.Request) (flashsale.NewSale, error) {
	var n flashsale.NewSale
	if r.ContentLength > maxBodyBytes {
		return n, tooLarge()
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	var req createSaleRequest
	if err := dec.Decode(&req); err != nil {
		return n, jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return n, jsonError(err)
		}
		return n, flashsale.Errorf(flashsale.EInvalid, "the body must hold one JSON object")
	}
	if req.TotalItems == nil || req.Duration == nil {
		return n, flashsale.Errorf(flashsale.EInvalid, "total_items and duration are required")
	}
	d, err := time.ParseDuration(*req.Duration)
	if err != nil {
		return n, flashsale.Errorf(flashsale.EInvalid, "duration must be a Go duration such as \"10m\"")
	}
	// The service validates the sale with the limit it applies.
	return flashsale.NewSale{TotalItems: *req.TotalItems, Duration: d}, nil
}

// handleCreateSale serves POST /admin/sales: it creates a sale starting now,
// outside the schedule. It answers 401 before reading the body unless the
// admin token is presented.
func (s *Server) handleCreateSale(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		s.writeError(w, r, flashsale.Errorf(flashsale.EUnauthorized, "a valid admin bearer token is required"))
		return
	}
	n, err := decodeCreateSale(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sale, err := s.svc.CreateSale(r.Context(), n.TotalItems, n.Duration)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/sales/"+strconv.FormatInt(sale.ID, 10))
	s.writeJSON(w, r, http.StatusCreated, newSaleResponse(sale))
}

// jsonError turns an error decoding a JSON body into an *flashsale.Error.
// The decoder's message is safe to show: it names only the body's syntax,
// types and fields.
func jsonError(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return tooLarge()
	case errors.Is(err, io.EOF):
		return flashsale.Errorf(flashsale.EInvalid, "the request body is empty")
	}
	return &flashsale.Error{Code: flashsale.EInvalid, Message: "malformed JSON body: " + err.Error(), Err: err}
}
