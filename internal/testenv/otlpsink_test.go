package testenv

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestOTLPSink: a POST is read, answered 200 with an empty body and
// counted; /stats shows the counts.
func TestOTLPSink(t *testing.T) {
	base := StartOTLPSink(t)
	for range 2 {
		resp, err := http.Post(base+"/v1/traces", "application/x-protobuf", strings.NewReader("abc"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ContentLength != 0 {
			t.Errorf("POST: %d with %d bytes", resp.StatusCode, resp.ContentLength)
		}
	}
	resp, err := http.Get(base + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]OTLPCount
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if c := got["/v1/traces"]; len(got) != 1 || c.Requests != 2 || c.Bytes != 6 {
		t.Errorf("stats %+v", got)
	}
}
