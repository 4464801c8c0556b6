package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestAdmissionSheds checks that with every slot taken an API request waits
// at most QueueWait and is then answered 503 overloaded with Retry-After,
// that probes are never held back, and that a freed slot admits again.
func TestAdmissionSheds(t *testing.T) {
	h := newHarness(t, Options{MaxInFlight: 1, QueueWait: 50 * time.Millisecond})
	h.svc.block, h.svc.entered = make(chan struct{}), make(chan struct{}, 1)
	checkout := func(user string) string {
		return fmt.Sprintf("/checkout?user_id=%s&id=%d", user, h.sale.ID*1_000_000+1)
	}

	var wg sync.WaitGroup
	var first *httptest.ResponseRecorder
	wg.Go(func() { first = h.do(http.MethodPost, checkout("holder"), nil) })
	<-h.svc.entered // the first request holds the only slot

	start := time.Now()
	w := h.do(http.MethodPost, checkout("shed"), nil)
	waited := time.Since(start)
	wantError(t, w, http.StatusServiceUnavailable, "overloaded")
	if w.Header().Get("Retry-After") == "" {
		t.Error("overloaded answer without Retry-After")
	}
	if waited < 50*time.Millisecond {
		t.Errorf("shed after %v, before QueueWait", waited)
	}
	for _, probe := range []string{"/livez", "/readyz", "/health"} {
		if w := h.do(http.MethodGet, probe, nil); w.Code != http.StatusOK {
			t.Errorf("%s held back while the API is full: %d %s", probe, w.Code, w.Body)
		}
	}

	close(h.svc.block)
	wg.Wait()
	if first.Code != http.StatusOK {
		t.Errorf("the admitted request got %d: %s", first.Code, first.Body)
	}
	h.svc.block = nil
	if w := h.do(http.MethodPost, checkout("after"), nil); w.Code != http.StatusOK {
		t.Errorf("after the slot was freed: %d %s", w.Code, w.Body)
	}
}
