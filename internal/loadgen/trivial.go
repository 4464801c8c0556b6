package loadgen

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// trivialItem is an item as GET /sales/{id}/items shows it.
type trivialItem struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	ImageURL string `json:"image_url"`
	Sold     bool   `json:"sold"`
}

// TrivialHandler serves a target with the API's shape and none of its work:
// a checkout is answered from memory with a body like the real one. Driving
// it with the same profile and concurrency as the service shows the ceiling
// of the HTTP stack and the client on this machine: what the service
// reaches is measured against it.
//
// It serves one sale of items started at the hour of now,
// never sold out: GET /sales/active, /sales/{id}, /sales/{id}/items, POST
// /checkout (always accepted) and POST /purchase (always sells nothing).
func TrivialHandler(items int, now time.Time) http.Handler {
	start := now.UTC().Truncate(time.Hour)
	s := Sale{ID: start.Unix(), StartedAt: start, EndedAt: start.Add(time.Hour), TotalItems: items}
	endsAt := s.EndedAt.Format(time.RFC3339)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sales/active", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s)
	})
	mux.HandleFunc("GET /sales/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != strconv.FormatInt(s.ID, 10) {
			writeJSON(w, http.StatusNotFound, apiError{"not_found", "no such sale"})
			return
		}
		writeJSON(w, http.StatusOK, s)
	})
	mux.HandleFunc("GET /sales/{id}/items", func(w http.ResponseWriter, r *http.Request) {
		offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
		if err != nil {
			limit = 100
		}
		page := []trivialItem{}
		for n := max(offset, 0) + 1; n <= min(offset+min(max(limit, 1), 1000), items); n++ {
			page = append(page, trivialItem{
				ID: s.ID*1_000_000 + int64(n), Name: "Trivial item #" + strconv.Itoa(n),
				ImageURL: fmt.Sprintf("https://img.flashsale.example/sales/%d/items/%d.jpg", s.ID, n),
			})
		}
		writeJSON(w, http.StatusOK, page)
	})
	mux.HandleFunc("POST /checkout", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("user_id") == "" {
			writeJSON(w, http.StatusBadRequest, apiError{"invalid_user_id", "user_id is required"})
			return
		}
		if _, err := strconv.ParseInt(q.Get("id"), 10, 64); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{"invalid_item_id", "id must be an integer"})
			return
		}
		// A code as the service makes them: 24 random bytes, URL-safe.
		b := make([]byte, 24)
		_, _ = rand.Read(b)
		writeJSON(w, http.StatusOK, trivialCheckout{Code: base64.RawURLEncoding.EncodeToString(b), ItemsCount: 1, SaleEndsAt: endsAt})
	})
	mux.HandleFunc("POST /purchase", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, PurchaseAnswer{Items: []PurchasedItem{}})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, apiError{"not_found", "no such route"})
	})
	return mux
}

// trivialCheckout is the body of an accepted checkout, as the service's.
type trivialCheckout struct {
	Code       string `json:"code"`
	ItemsCount int    `json:"items_count"`
	SaleEndsAt string `json:"sale_ends_at"`
}

type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal_error","message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
