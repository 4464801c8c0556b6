package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
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

// Why an admin request was refused, as logged.
const (
	authMissing   = "missing"   // no Authorization header
	authMalformed = "malformed" // not "Bearer <token>", or more than one header
	authWrong     = "wrong"     // a bearer token that is not the admin token
)

// authorize checks that r carries "Authorization: Bearer <admin token>"; the
// scheme is case-insensitive and spaces around the token are ignored. It
// returns "" when it does, else why not. It compares SHA-256 digests in
// constant time, so neither the token nor its length leaks through timing.
func (s *Server) authorize(r *http.Request) (refused string) {
	vals := r.Header.Values("Authorization")
	switch {
	case len(vals) == 0:
		return authMissing
	case len(vals) > 1:
		return authMalformed
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return authMalformed
	}
	got := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(got[:], s.adminHash[:]) != 1 {
		return authWrong
	}
	return ""
}

// checkJSONContentType returns eUnsupportedMediaType unless r's body is
// declared JSON or not declared at all.
func checkJSONContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == "application/json" {
		return nil
	}
	return flashsale.Errorf(eUnsupportedMediaType, "the request body must be application/json")
}

// decodeCreateSale reads and validates the body of POST /admin/sales. It
// returns EInvalid, eTooLarge or eUnsupportedMediaType.
func decodeCreateSale(w http.ResponseWriter, r *http.Request) (flashsale.NewSale, error) {
	var n flashsale.NewSale
	if err := checkJSONContentType(r); err != nil {
		return n, err
	}
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
// admin token is presented. Refusals are logged at Warn with their reason and
// the client's address, never with what the client sent, and counted in
// http_requests_total{handler="/admin/sales",status_code="401"}. A client
// address that failed adminFailureLimit times in the window is answered 429
// until the window ends, whatever it sends (see adminGuard).
func (s *Server) handleCreateSale(w http.ResponseWriter, r *http.Request) {
	addr := s.limits.clientAddr(r)
	if wait := s.adminGuard.blocked(addr); wait > 0 {
		writeError(w, r, &flashsale.Error{Code: flashsale.ERateLimited,
			Message: "too many failed admin authentications from this address, retry later", Err: flashsale.RetryAfter(wait)})
		return
	}
	if refused := s.authorize(r); refused != "" {
		spent := s.adminGuard.fail(addr)
		s.log.WarnContext(r.Context(), "admin request refused",
			slog.String("reason", refused), slog.String("remote_addr", r.RemoteAddr), slog.String("client_addr", addr))
		if spent {
			s.log.WarnContext(r.Context(), "admin authentication failures over the limit: address refused until the window ends",
				slog.String("client_addr", addr), slog.Int("failures", adminFailureLimit), slog.Duration("window", adminFailureWindow))
		}
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, r, flashsale.Errorf(flashsale.EUnauthorized, "a valid admin bearer token is required"))
		return
	}
	n, err := decodeCreateSale(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	sale, err := s.svc.CreateSale(r.Context(), n.TotalItems, n.Duration)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/sales/"+strconv.FormatInt(sale.ID, 10))
	writeJSON(w, r, http.StatusCreated, newSaleResponse(sale))
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
