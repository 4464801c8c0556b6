// Command loadgen drives the flashsale service over HTTP and reports what it
// measured. It finds the sale and its items through the API only (GET
// /sales/active, GET /sales/{id}/items page by page); the database is read
// only for the optional invariant check at the end.
//
// Usage:
//
//	loadgen [flags]                  run a load profile against -target
//	loadgen serve-trivial [flags]    serve a trivial target (-addr, -items)
//	loadgen summarize DIR            the Markdown summary of a scripts/bench.sh run
//
// Profiles (-profile):
//
//   - flash: a crowd of -users buyers hits the sale at once. Each wants 1 to
//     -want-max items (above the service's limit of 10 for some), checks out
//     random unsold ones, purchases its code (a share -double-fire of
//     purchases is fired twice at once) and goes on until it has what it
//     wants or reaches the limit. The load ends at sell-out (a purchase of
//     the run sold the last item left, or GET /sales/{id} says items_sold ==
//     total_items), when no user can buy more, or after -duration.
//   - steady: closed-loop checkout throughput: -concurrency workers check out
//     random unsold items for fresh users, nothing is purchased, for
//     -duration.
//   - realistic: a mix of -users shoppers: 10 % aggressive (check out
//     at 90 % of visits, purchase at 80 %), 60 % normal (60 %, 40 %), 30 %
//     browsers (30 %, 10 %); each visit browses a page of items first and
//     ends with a pause of up to -think. Ends at sell-out or after -duration.
//   - open: checkouts for fresh users at a fixed -rate per second whatever the
//     latency, at most -max-inflight in flight, for -duration. Latency counts
//     from each request's intended send time, so queueing is not hidden
//     (no coordinated omission); requests sent late or never are counted.
//
// A 503 or 429 is retried after the answer's Retry-After (at most 5 s) by
// the closed-loop profiles and by the discovery before the load, as a
// well-behaved client would; the open profile never waits.
//
// -target may list several instances separated by commas: discovery and
// -create-sale use the first, the load's requests go to each in turn.
//
// With -create-sale (and -admin-token or $ADMIN_TOKEN) a fresh sale of -items
// items starting now is created through POST /admin/sales. With
// -database-url (default $DATABASE_URL; -database-url= turns it off) the
// sale's guarantees are checked in PostgreSQL after the load
// (internal/invariants).
//
// The report goes to stdout as text, or as JSON with -json; -html FILE also
// writes a self-contained HTML report with charts. A progress line is printed
// on stderr every second when stderr is a terminal or with -progress.
// -cpuprofile FILE writes a CPU profile of the generator during the load: on
// a machine it shares with the service, what it costs is CPU the service does
// not get.
//
// Exit status: 0 when the run passed; 1 when it failed — the invariant check
// failed or could not run, the service answered a 5xx other than 503, or the
// client saw a broken guarantee — or could not run; 2 for bad flags.
//
// # JSON report
//
// The field names are stable. Latencies are in milliseconds, durations in
// seconds, times in RFC 3339.
//
//	profile                    flash, steady, realistic or open
//	target                     the -target URL (several, comma-separated, when the load was spread)
//	run_id                     prefix of this run's user ids
//	settings                   the flags used: users, concurrency, rate, max_inflight,
//	                           duration_seconds, double_fire, want_max, think_ms,
//	                           timeout_seconds, max_conns, seed
//	sale                       id, created (by -create-sale), started_at, ended_at,
//	                           total_items, items_sold_before (when found),
//	                           items_sold (after the load, from GET /sales/{id})
//	started_at                 when the load started
//	duration_seconds           how long the load ran (in-flight requests drained)
//	ended_by                   sold_out, duration, users_done, no_items_left,
//	                           sale_ended or interrupted
//	totals                     requests, rps, ok (2xx), rejected (4xx), unavailable
//	                           (503), server_errors (other 5xx), no_answer
//	                           (timeouts and transport errors)
//	endpoints[]                per route ("POST /checkout", "POST /purchase",
//	                           "GET /sales/{id}/items", "GET /sales/{id}", ...):
//	  endpoint, requests, rps
//	  latency_ms               p50, p90, p99, p99_9, max, mean
//	  statuses                 HTTP status ("200", "409", ...) -> count
//	  errors                   JSON error code ("item_sold", ...), or the client's
//	                           "timeout", "transport", "invalid_response" -> count
//	items_sold_by_run          items this run's purchases reported sold
//	sold_out                   whether items_sold reached total_items
//	time_to_sell_out_seconds   from the first request to the answer of the
//	                           run's purchase that sold the last item left, or,
//	                           when other clients sold some, to the reading of
//	                           GET /sales/{id} that showed the sale sold out
//	                           (read every 100 ms; the service answers it from
//	                           a reading up to 1 s old); null when not observed
//	double_fires               purchases fired twice at once
//	open_loop                  open profile only, else null: rate, max_inflight,
//	                           scheduled, sent, late, unsent, late_after_ms,
//	                           max_send_lag_ms
//	client_violations[]        guarantees the client saw broken: a replay answered
//	                           differently, an item reported sold to two carts,
//	                           more sold than the sale holds
//	invariants                 null without -database-url; else result (PASS, FAIL,
//	                           ERROR), error, check: the counts of
//	                           internal/invariants.Report, checks{} (each check's
//	                           breaches, 0 when it holds) and its violations[]
//	timeline[]                 one entry per second: t, requests and p50_ms, p99_ms
//	                           by endpoint, errors (5xx and no answer), items_sold
//	                           (null when not read in that second)
//	result                     PASS or FAIL
//	failures[]                 why the run failed
package main
