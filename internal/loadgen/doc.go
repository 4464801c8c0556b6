// Package loadgen drives the flashsale service over HTTP the way its buyers
// do, and measures it: the load generator of cmd/loadgen, as a library the
// tests share.
//
//   - [Client] speaks the API (checkout, purchase, sales and their items)
//     and tells an observer of every answer; [Response] says whether a
//     refusal may be retried and how long to wait first. [NewFastClient]
//     sends through fasthttp, the lean client [Run]'s load uses; [NewClient]
//     through any *http.Client, for tests that check the wire in a
//     RoundTripper.
//   - [Run] runs a profile of a [Config] — flash (a crowd released at once),
//     steady (closed loop), realistic (a mix of shoppers) or open (a fixed
//     rate) — and returns a [Report], which [WriteReport] prints as text or
//     JSON and [WriteHTMLFile] draws as a self-contained page.
//   - [Ledger] keeps what buyers were told and checks it against the
//     answers that follow and, with [Ledger.Check], against PostgreSQL;
//     [Crowd] releases the flash profile's crowd for a test.
//   - [TrivialHandler] is a target with the API's shape and none of its
//     work: the ceiling the service is measured against.
package loadgen
