package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// CreateSale creates a sale of items lasting d, starting now, through POST
// /admin/sales of the service at base with the admin token, and decodes the
// 201 answer into out. Sales are keyed by their start second: a sale created
// in the second another one (or the hourly sale) starts in is a 409, which
// the next second cures, so a 409 is tried again twice, a second apart.
func CreateSale(tb testing.TB, base, token string, items int, d time.Duration, out any) {
	tb.Helper()
	body := fmt.Sprintf(`{"total_items": %d, "duration": %q}`, items, d.String())
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequest(http.MethodPost, base+"/admin/sales", strings.NewReader(body))
		if err != nil {
			tb.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			tb.Fatal(err)
		}
		if resp.StatusCode == http.StatusConflict && attempt < 3 {
			time.Sleep(time.Second)
			continue
		}
		if resp.StatusCode != http.StatusCreated {
			tb.Fatalf("create sale: %d %s", resp.StatusCode, raw)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			tb.Fatalf("create sale: Content-Type %q, body %q", ct, raw)
		}
		if err := json.Unmarshal(raw, out); err != nil {
			tb.Fatalf("create sale: %v: %s", err, raw)
		}
		return
	}
}
